"""Time ``partition_ids`` of the compiled ``_native.hashing`` against its pure twin.

Cases: 1M int64 keys as a NumPy array (the GIL-free array path), the same 1M keys as Python
ints (the per-object path) and 200k short strings. Each timing is the median of ``--runs``
runs. Prints the command, the machine and a table with the compiled/twin speed-up.

Usage::

    python benchmarks/bench_hashing.py [--runs 5] [--partitions 64]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from _native import load


def median_seconds(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=64)
    args = parser.parse_args(argv)

    compiled, twin = load("hashing", pure=False), load("hashing", pure=True)
    ints = np.random.default_rng(42).integers(-(2**62), 2**62, size=1_000_000, dtype=np.int64)
    cases = {
        "1M int64 (ndarray)": ints,
        "1M Python ints (list)": ints.tolist(),
        "200k short str (list)": [f"user-{i:06d}" for i in range(200_000)],
    }

    print(f"command : {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine : {platform.platform()}, {platform.machine()}, "
          f"{os.cpu_count()} cpus, {platform.processor() or 'cpu n/a'}")
    print(f"python  : {platform.python_version()}, numpy {np.__version__}; "
          f"median of {args.runs} runs, num_partitions={args.partitions}")
    print()
    header = f"{'case':<24} {'compiled ms':>12} {'twin ms':>10} {'twin/compiled':>14} {'ns/key':>8}"
    print(header)
    print("-" * len(header))
    for name, keys in cases.items():
        assert (compiled.partition_ids(keys, args.partitions)
                == twin.partition_ids(keys, args.partitions)).all()
        fast = median_seconds(lambda: compiled.partition_ids(keys, args.partitions), args.runs)
        slow = median_seconds(lambda: twin.partition_ids(keys, args.partitions), args.runs)
        print(f"{name:<24} {fast * 1e3:>12.2f} {slow * 1e3:>10.1f} {slow / fast:>13.1f}x "
              f"{fast * 1e9 / len(keys):>8.1f}")


if __name__ == "__main__":
    main()
