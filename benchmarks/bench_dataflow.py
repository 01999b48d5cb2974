"""Time dataflow workloads on the ``inline`` or a cluster master, each checked against plain Python.

Workloads (the numbering follows issue #3; PySpark ``local[2]`` columns come later):

* W1 word count: ``textFile -> flatMap(split) -> map((w, 1)) -> reduceByKey(add)`` over a
  generated file of 2M words drawn from 50k distinct words.
* W2 ``reduceByKey(add)`` on 10M ``(int, int)`` pairs with 1M distinct keys, generated inside
  the partitions by ``range(10M).map(lambda i: ((i * 7919) % 1M, i))``.
* W6 ``parallelize(range(10M)).map(x * x).filter(even).sum()``.

Each row gives wall seconds and CPU seconds of this process (the inline master runs every task
in the driver, so CPU time is the whole cost; the 2-vCPU machines here are shared, so wall time
swings with other load), the same computation written as a plain Python loop, and whether the
results agreed. Prints the command and the machine first.

With ``--master local[2]`` (or any cluster master) the tasks run in executor processes, so the
driver's CPU time is only the scheduling and result handling; wall time is the number. It also
reports the Context start-up time, the latency of a tiny job on a warm context (median and 90th
percentile of 50 runs of ``parallelize([1, 2, 3], 2).count()``), the task throughput of one job
of 400 empty tasks, and ``Context.stop()``.

Usage::

    python benchmarks/bench_dataflow.py [--scale 1.0] [--partitions 4] [--master inline]
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from operator import add
from typing import Any

from dataflow import Context


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size by this")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--master", default="inline",
                        help="inline (default), local[N] or HOST:PORT of a substrate master")
    args = parser.parse_args(argv)
    n_pairs, n_keys = int(10_000_000 * args.scale), max(1, int(1_000_000 * args.scale))
    n_words, vocab = int(2_000_000 * args.scale), max(1, int(50_000 * args.scale))
    parts = args.partitions

    print(f"command : {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine : {platform.platform()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    if args.master == "inline":
        print(f"master  : inline (tasks run in the driver thread), {parts} partitions")
    else:
        print(f"master  : {args.master} (tasks run in executor processes), {parts} partitions")
    print()

    rows = []
    t0 = time.perf_counter()
    ctx = Context(args.master)
    startup = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp, ctx:
        if args.master != "inline":
            latency(ctx, startup)
        rng = random.Random(7)
        words = [f"w{rng.randrange(vocab)}" for _ in range(n_words)]
        path = os.path.join(tmp, "words.txt")
        with open(path, "w") as f:
            f.writelines(" ".join(words[i:i + 10]) + "\n" for i in range(0, len(words), 10))
        del words

        def w1() -> dict:
            return dict(ctx.textFile(path, parts).flatMap(str.split)
                        .map(lambda w: (w, 1)).reduceByKey(add).collect())

        def w1_ref() -> dict:
            with open(path) as f:
                return Counter(w for line in f for w in line.split())

        def w2() -> dict:
            pairs = ctx.range(n_pairs, numSlices=parts).map(lambda i: ((i * 7919) % n_keys, i))
            return dict(pairs.reduceByKey(add).collect())

        def w2_ref() -> dict:
            acc: dict = defaultdict(int)
            for i in range(n_pairs):
                acc[(i * 7919) % n_keys] += i
            return acc

        def w6() -> int:
            return (ctx.parallelize(range(n_pairs), parts).map(lambda x: x * x)
                    .filter(lambda x: x % 2 == 0).sum())

        def w6_ref() -> int:
            return sum(y for y in (x * x for x in range(n_pairs)) if y % 2 == 0)

        cases = [
            (f"W1 word count, {n_words / 1e6:g}M words / {vocab // 1000}k distinct", w1, w1_ref),
            (f"W2 reduceByKey(add), {n_pairs / 1e6:g}M int pairs / {n_keys / 1e6:g}M keys", w2, w2_ref),
            (f"W6 range({n_pairs / 1e6:g}M).map(x*x).filter(even).sum()", w6, w6_ref),
        ]
        for name, fn, ref in cases:
            got, wall, cpu = timed(fn)
            want, _rwall, rcpu = timed(ref)
            rows.append((name, wall, cpu, rcpu, got == want))
        t0 = time.perf_counter()
    if args.master != "inline":
        print(f"{'Context.stop()':<40} {time.perf_counter() - t0:>8.3f} s\n")

    header = (f"{'workload':<56} {'wall s':>7} {'cpu s':>7} {'plain py cpu s':>15} {'check':>6}")
    print(header)
    print("-" * len(header))
    for name, wall, cpu, rcpu, ok in rows:
        print(f"{name:<56} {wall:>7.2f} {cpu:>7.2f} {rcpu:>15.2f} {'ok' if ok else 'WRONG':>6}")
    if not all(r[-1] for r in rows):
        raise SystemExit("a result differed from its reference")


def latency(ctx: Context, startup: float) -> None:
    """Start-up, warm tiny-job latency and task throughput of a cluster master."""
    t0 = time.perf_counter()
    n = ctx.defaultParallelism
    ctx._backend.wait_executors(n)
    ready = time.perf_counter() - t0
    ctx.parallelize([1, 2, 3], 2).count()  # warm: closures, imports in the executors
    samples = []
    for _ in range(50):
        w = time.perf_counter()
        assert ctx.parallelize([1, 2, 3], 2).count() == 3
        samples.append(time.perf_counter() - w)
    samples.sort()
    w = time.perf_counter()
    assert ctx.parallelize(range(400), 400).count() == 400
    tasks = 400 / (time.perf_counter() - w)
    print(f"{'Context start-up':<40} {startup:>8.3f} s")
    print(f"{f'then all {n} executors up':<40} {ready:>8.3f} s")
    print(f"{'tiny job (2 tasks), warm: median':<40} {samples[25] * 1e3:>8.1f} ms")
    print(f"{'tiny job (2 tasks), warm: p90':<40} {samples[45] * 1e3:>8.1f} ms")
    print(f"{'throughput, one job of 400 empty tasks':<40} {tasks:>8.0f} tasks/s")
    print()


if __name__ == "__main__":
    main()
