"""``offerpool demo``: start an embedded cluster and push real work through it.

The workload counts the primes below twenty million with a segmented sieve: the range is cut
into 16 segments, one task per segment, run by the ``run`` framework as real processes that
agents launch in their sandboxes. The driver sums the per-segment counts and checks the total
against the known value of pi(2e7).

Then a genetic-algorithm run on the same cluster: two islands, each a long-running executor,
evolve 30-d Rastrigin with ring migration. It runs as ``python -m genetic.demo`` in a child
process (the substrate package never imports a framework) and prints the best fitness, the
generations and the islands. Last, a word count through ``dataflow`` (``python -m
dataflow.demo``, also a child process) on the same cluster.
"""
from __future__ import annotations

import base64
import subprocess
import sys
import time

from substrate.frameworks.run import run_command
from substrate.local import LocalCluster

LIMIT = 20_000_000
TASKS = 16
PI_OF_LIMIT = 1_270_607  # the number of primes below 2e7

# One segment of a segmented sieve; the task's index comes from its environment.
_SEGMENT = """
import os
i, n, k = int(os.environ["OFFERPOOL_TASK_INDEX"]), {limit}, {tasks}
lo, hi = n * i // k, n * (i + 1) // k
root = int(hi ** 0.5) + 1
base = bytearray([1]) * (root + 1)
base[0:2] = b"\\0\\0"
for p in range(2, int(root ** 0.5) + 1):
    if base[p]:
        base[p * p::p] = bytes(len(range(p * p, root + 1, p)))
seg = bytearray([1]) * (hi - lo)
for p in range(2, root + 1):
    if base[p]:
        start = max(p * p, (lo + p - 1) // p * p)
        seg[start - lo::p] = bytes(len(range(start, hi, p)))
for x in range(lo, min(2, hi)):
    seg[x - lo] = 0
print(sum(seg))
"""


def run_demo(agents: int = 2, keep_open: bool = False) -> int:
    started = time.perf_counter()
    with LocalCluster(agents=agents) as cluster:
        print(f"embedded cluster up in {time.perf_counter() - started:.2f} s: master "
              f"{cluster.master}, {agents} agents\n  dashboard: {cluster.dashboard_url}/"
              f"  (open it now: the jobs and the GA run show up there live)"
              f"\n  state:     {cluster.dashboard_url}/state"
              f"\n  metrics:   {cluster.dashboard_url}/metrics", flush=True)
        program = base64.b64encode(_SEGMENT.format(limit=LIMIT, tasks=TASKS).encode()).decode()
        command = [sys.executable, "-c",
                   f"\"import base64; exec(base64.b64decode('{program}'))\""]
        t0 = time.perf_counter()
        result = run_command(command, TASKS, master=cluster.master, cpus=0.5, mem=128,
                             echo=False, timeout=600)
        elapsed = time.perf_counter() - t0
        counts = {}
        for tid, out in result.output.items():
            counts[tid] = int(out.decode().strip() or 0)
        for tid in sorted(counts, key=lambda t: int(t.rpartition("-")[2])):
            print(f"  {tid:>7}: {result.states[tid]:<9} {counts[tid]:>7,} primes in its segment")
        total = sum(counts.values())
        ok = result.exit_code == 0 and total == PI_OF_LIMIT
        print(f"primes below {LIMIT:,}: {total:,} from {TASKS} tasks on {agents} agents in "
              f"{elapsed:.2f} s — {'correct' if ok else f'WRONG, expected {PI_OF_LIMIT:,}'}")
        ok = _genetic_section(cluster.master) and ok
        ok = _dataflow_section(cluster.master) and ok
        if keep_open:
            _keep_open(cluster.dashboard_url)
    return 0 if ok else 1


def _keep_open(url: str) -> None:
    """Keep the cluster and its dashboard up until Ctrl-C."""
    import threading
    print(f"\nthe dashboard stays up at {url}/ ; Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


def _genetic_section(master: str) -> bool:
    """The GA demo: 2 islands as executors on ``master``."""
    return _child_section("genetic algorithm: 2 islands as executors on the same cluster",
                          "genetic", master, timeout=120)


def _dataflow_section(master: str) -> bool:
    """A word count through ``dataflow`` on ``master``."""
    return _child_section("dataflow: word count in executor processes on the same cluster",
                          "dataflow", master, timeout=60)


def _child_section(title: str, package: str, master: str, timeout: float) -> bool:
    """Run ``python -m PACKAGE.demo --master MASTER``; True when it succeeded.

    A child process, because the substrate never imports the frameworks built on it.
    """
    print(f"\n{title}")
    try:
        done = subprocess.run([sys.executable, "-m", f"{package}.demo", "--master", master],
                              check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{package}: did not finish within {timeout:g} s")
        return False
    if done.returncode != 0:
        print(f"{package}: failed with exit status {done.returncode}")
    return done.returncode == 0
