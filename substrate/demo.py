"""``offerpool demo``: start an embedded cluster and push real work through it.

The workload counts primes below two million, split into ranges, one task per range, with the
``run`` framework; each task is a real process launched by an agent in its sandbox. The
results are summed and checked against a count made here in the driver.
"""
from __future__ import annotations

import sys
import time

from substrate.frameworks.run import run_command
from substrate.local import LocalCluster

LIMIT = 2_000_000
TASKS = 8
_COUNT_PRIMES = (
    "import os,sys; i=int(os.environ['OFFERPOOL_TASK_INDEX']); n={limit}; k={tasks}; "
    "lo=n*i//k; hi=n*(i+1)//k; s=bytearray([1])*n; s[0:2]=b'\\x00\\x00'; "
    "[s.__setitem__(slice(p*p,n,p), bytes(len(range(p*p,n,p)))) for p in range(2,int(n**.5)+1) if s[p]]; "
    "print(sum(s[lo:hi]))"
)


def _reference_count(limit: int) -> int:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for p in range(2, int(limit ** 0.5) + 1):
        if sieve[p]:
            sieve[p * p::p] = bytes(len(range(p * p, limit, p)))
    return sum(sieve)


def run_demo(agents: int = 2) -> int:
    started = time.perf_counter()
    with LocalCluster(agents=agents) as cluster:
        print(f"embedded cluster up in {time.perf_counter() - started:.2f} s: master "
              f"{cluster.master}, {agents} agents, state at {cluster.dashboard_url}/state")
        code = _COUNT_PRIMES.format(limit=LIMIT, tasks=TASKS)
        t0 = time.perf_counter()
        result = run_command([sys.executable, "-c", f'"{code}"'], TASKS, master=cluster.master,
                             cpus=0.25, mem=64, echo=False, timeout=300)
        elapsed = time.perf_counter() - t0
        counts = {tid: int(out.decode().strip() or 0) for tid, out in sorted(result.output.items())}
        for tid, count in counts.items():
            print(f"  {tid}: {result.states[tid]:<9} primes in its range: {count}")
        total = sum(counts.values())
        expected = _reference_count(LIMIT)
        print(f"primes below {LIMIT:,}: {total:,} from {TASKS} tasks in {elapsed:.2f} s "
              f"({'correct' if total == expected else f'WRONG, expected {expected:,}'})")
        ok = result.exit_code == 0 and total == expected
    return 0 if ok else 1
