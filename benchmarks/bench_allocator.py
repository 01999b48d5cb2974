"""Allocator benchmark on the grid Mesos used for its hierarchical allocator benchmarks.

For each (agents, frameworks) size it measures, with a fake clock and no I/O:

- **full cycle**: one ``allocate()`` with every agent free and every framework active
  (a fresh allocator per run; setup is not timed);
- **steady-state cycle**: after that, the owners of 10% of the agents decline them
  (``recover`` with the default 5 s filter), then one ``allocate()`` hands them to others.

It prints a Markdown table with the median of ``--runs`` runs, the ratio against Mesos 1.8's
published numbers for a full cycle, the command line and the machine. Run::

    python benchmarks/bench_allocator.py            # the whole grid, 5 runs each
    python benchmarks/bench_allocator.py --sizes 1000x100 --runs 3
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time

from substrate.allocator import Allocator
from substrate.resources import Resources

#: Mesos 1.8 full-cycle times (seconds) at (agents, frameworks), as quoted in the brief.
MESOS_1_8 = {(10_000, 1_000): 1.1, (20_000, 2_000): 3.8}

AGENT = Resources(cpus=24, mem=64 * 1024, disk=512 * 1024, ports=((31000, 32000),))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def build(agents: int, frameworks: int, roles: int) -> tuple[Allocator, FakeClock]:
    clock = FakeClock()
    alloc = Allocator(clock)
    for i in range(frameworks):
        alloc.add_framework(f"fw-{i:05d}", f"role-{i % roles}")
    for i in range(agents):
        alloc.add_agent(f"agent-{i:06d}", AGENT)
    return alloc, clock


def timed(fn, cpu: list[float]):  # type: ignore[no-untyped-def]
    """Wall seconds of ``fn()`` (and its CPU seconds appended to ``cpu``), and its result."""
    gc.collect()
    start, start_cpu = time.perf_counter(), time.process_time()
    result = fn()
    cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start, result


def run_size(agents: int, frameworks: int, roles: int, runs: int) -> dict[str, float]:
    full, steady, recover, full_cpu, steady_cpu = [], [], [], [], []
    for run in range(runs):
        alloc, clock = build(agents, frameworks, roles)
        seconds, offers = timed(alloc.allocate, full_cpu)
        if len(offers) != agents:
            raise SystemExit(f"full cycle allocated {len(offers)} of {agents} agents")
        full.append(seconds)
        # Steady state: 10% of the agents are declined by their owners, then re-offered.
        declined = offers[run % 10::10]
        clock.now += 1.0
        start = time.perf_counter()
        for fid, aid, res in declined:
            alloc.recover(fid, aid, res, refuse_seconds=alloc.default_refuse_seconds)
        recover.append((time.perf_counter() - start) / len(declined))
        seconds, again = timed(alloc.allocate, steady_cpu)
        if len(again) != len(declined):
            raise SystemExit(f"steady cycle allocated {len(again)} of {len(declined)} agents")
        if any(fid == old for (fid, _, _), (old, _, _) in zip(again, declined)):
            raise SystemExit("a declined agent went back to the framework that filtered it")
        steady.append(seconds)
    median = statistics.median
    return {"full": median(full), "steady": median(steady), "full_cpu": median(full_cpu),
            "steady_cpu": median(steady_cpu), "recover_us": median(recover) * 1e6}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000x100,10000x1000,20000x2000",
                        help="comma-separated AGENTSxFRAMEWORKS")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--roles", type=int, default=4)
    args = parser.parse_args(argv)
    sizes = [tuple(int(n) for n in s.split("x")) for s in args.sizes.split(",")]

    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"os.cpu_count()={os.cpu_count()}, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"agents: {AGENT}; {args.roles} roles; median of {args.runs} runs\n")
    print("| agents | frameworks | full cycle, wall (CPU) s | Mesos 1.8 s | speed-up | "
          "steady cycle, 10% declined, wall (CPU) s | recover µs/call |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for agents, frameworks in sizes:
        r = run_size(agents, frameworks, args.roles, args.runs)
        mesos = MESOS_1_8.get((agents, frameworks))
        ratio = f"{mesos / r['full']:.1f}×" if mesos else "—"
        print(f"| {agents:,} | {frameworks:,} | {r['full']:.3f} ({r['full_cpu']:.3f}) | "
              f"{mesos if mesos else '—'} | {ratio} | {r['steady']:.4f} ({r['steady_cpu']:.4f}) "
              f"| {r['recover_us']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
