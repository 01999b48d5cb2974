"""``python -m genetic.demo --master HOST:PORT``: the genetic part of ``offerpool demo``.

Evolves 30-dimensional Rastrigin on two islands hosted by executors of a running substrate
cluster (migration along a ring, seeded, synchronous) and prints the best fitness, the
generations and the islands. ``offerpool demo`` runs it as a child process against its
embedded cluster, because the substrate package never imports a framework.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from .engine import evolve
from .problem import Problem
from .spaces import reals


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m genetic.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--master", required=True, help="HOST:PORT of a running master, or local[N]")
    ap.add_argument("--islands", type=int, default=2)
    ap.add_argument("--population", type=int, default=600)
    ap.add_argument("--generations", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    problem = Problem(genome=reals(-5.12, 5.12, 30), fitness="rastrigin")
    t0 = time.perf_counter()
    result = evolve(problem, population=args.population, generations=args.generations,
                    islands=args.islands, seed=args.seed, master=args.master,
                    migration_interval=20, migrants=3, progress=False)
    elapsed = time.perf_counter() - t0
    pids = sorted({e["pid"] for e in result.events if e["event"] == "running"})
    print(f"genetic: Rastrigin-30 (minimise, optimum 0), population {args.population} on "
          f"{result.islands} islands in executor processes {pids}")
    print(f"genetic: best fitness {result.best.fitness:.4f} after {result.generations} "
          f"generations on {result.islands} islands, {result.evaluations:,} evaluations in "
          f"{elapsed:.2f} s (ring migration every 20 generations, seed {args.seed})")
    return 0 if np.isfinite(result.best.fitness) and result.generations == args.generations \
        else 1


if __name__ == "__main__":
    sys.exit(main())
