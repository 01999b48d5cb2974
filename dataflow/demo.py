"""The dataflow part of ``offerpool demo``: a word count on a running substrate cluster.

``python -m dataflow.demo --master HOST:PORT`` generates a small corpus, counts its words with
``flatMap`` / ``map`` / ``reduceByKey`` in executor processes on that cluster, checks the
counts against a plain-Python count and prints the most frequent words. ``substrate.demo``
runs it in a child process, because the substrate package never imports a framework.
"""
from __future__ import annotations

import argparse
import collections
import operator
import random
import sys
import time

from .context import Context

WORDS = ["offer", "pool", "agent", "master", "executor", "task", "shuffle", "stage", "lineage",
         "partition", "cache", "broadcast", "accumulator", "scheduler", "framework", "resource"]


def corpus(lines: int = 20_000, seed: int = 7) -> list[str]:
    """Deterministic lines of Zipf-ish words."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(WORDS))]
    return [" ".join(rng.choices(WORDS, weights, k=12)) for _ in range(lines)]


def word_count(master: str, lines: int = 20_000) -> bool:
    """Run the word count on ``master``; print a summary; True when the counts are right."""
    text = corpus(lines)
    t0 = time.perf_counter()
    with Context(master, appName="offerpool demo: word count") as ctx:
        started = time.perf_counter() - t0
        t1 = time.perf_counter()
        counts = dict(ctx.parallelize(text, 8).flatMap(str.split).map(lambda w: (w, 1))
                      .reduceByKey(operator.add, 4).collect())
        elapsed = time.perf_counter() - t1
    expected = collections.Counter(w for line in text for w in line.split())
    ok = counts == dict(expected)
    top = ", ".join(f"{w} {n:,}" for w, n in sorted(counts.items(), key=lambda kv: -kv[1])[:5])
    print(f"  context up in {started:.2f} s; {sum(counts.values()):,} words, {len(counts)} "
          f"distinct, counted in {elapsed:.2f} s (8 map tasks, 4 reduce tasks)\n  top: {top}\n"
          f"  word count {'correct' if ok else 'WRONG'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args(argv)
    return 0 if word_count(args.master, args.lines) else 1


if __name__ == "__main__":
    sys.exit(main())
