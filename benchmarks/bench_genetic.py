"""Benchmark the genetic engine on one island against DEAP and PyGAD on DEAP's canonical
settings, and the fitness kernels compiled vs their NumPy twins.

Run: ``python benchmarks/bench_genetic.py [--quick] [--distributed-only [--scaling-only]]
[--intervals 10,20,100,none] [--runs N]``. Prints a table with
the command, the machine and the ratios ours/DEAP and ours/PyGAD, all measured in the same run.
Times are CPU seconds of this process (``time.process_time``), so a busy shared machine slows
all sides less unevenly than wall time would. Each library runs the same 8 seeds (3 with
``--quick``) for 200 generations (100): generations/s is the median over the seeds, "best" the
mean over the seeds of the best fitness in the final population, so speed is compared at a
stated solution quality. DEAP and PyGAD are not dependencies of offerpool (``pip install
'.[bench]'``); a missing PyGAD prints "unavailable", a missing DEAP its planning numbers (96 and
85 generations/s) marked as not measured here.

Settings:

- OneMax: 100 bits, population 300, two-point crossover p=0.5, bit-flip mutation p=0.2 per
  individual x 0.05 per gene, tournament 3, generational (DEAP's ``eaSimple``). PyGAD has no
  per-individual mutation rate: it flips each gene w.p. 0.01 (the same mean number of flips).
- Rastrigin-30: bounds [-5.12, 5.12], population 300, bounded SBX eta=20 p=0.9, polynomial
  mutation eta=20 p=1.0 per individual x 1/30 per gene, tournament 3. PyGAD has neither SBX nor
  polynomial mutation; its closest built-ins stand in: ``scattered`` crossover (each gene from
  either parent) p=0.9 and ``random`` mutation adding uniform noise in [-0.5, 0.5] to each gene
  w.p. 1/30, kept in the bounds by ``gene_space``. PyGAD runs generationally (no elitism, no
  kept parents) with tournament 3 and a NumPy fitness over the whole population per call.

Islands on the substrate (wall time, since processes run in parallel):

- scaling: Rastrigin-30 with 300 individuals per island, asynchronous migration every 10
  (``evolve``'s default), 20 and 100 generations and without migration, on ``local[2]``;
  evaluations per second of 1 island vs 2 islands, counted over the evolution phase (first
  island RUNNING to last island FINISHED, from ``Result.events``);
- time to the first generation: from the ``evolve()`` call until the scheduler receives the
  first island's statistics for generation 1, with a warm driver process (modules imported,
  one run done before), (a) ``master="local[2]"`` including the embedded cluster's start and
  stop of the previous run, (b) ``master="HOST:PORT"`` on an already running cluster. Executor
  processes are always new Python processes.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import genetic
from _native import compiled_available, load

REFERENCE = {"onemax": 96.0, "rastrigin": 85.0}
SEEDS = 8   # seeds per setting and library in a full run


def ours(kind: str, gens: int, seed: int) -> tuple[float, float]:
    """Generations/s and best fitness of one island run."""
    if kind == "onemax":
        problem = genetic.Problem(genome=genetic.bits(100), fitness="onemax", maximize=True)
        cx, mut = genetic.TwoPoint(0.5), genetic.BitFlip(0.2, 0.05)
    else:
        problem = genetic.Problem(genome=genetic.reals(-5.12, 5.12, 30), fitness="rastrigin")
        cx, mut = genetic.SBX(0.9, 20.0), genetic.Polynomial(1.0, 1 / 30, 20.0)
    settings = genetic.Settings(size=300, selection=genetic.Tournament(3), crossover=cx,
                                mutation=mut, hall_of_fame=1)
    island = genetic.Island(problem, settings, 0, seed)
    t0 = time.process_time()
    island.step(gens)
    dt = time.process_time() - t0
    return gens / dt, island.stats()["best"]


def deap_run(kind: str, gens: int, seed: int) -> tuple[float, float]:
    from deap import algorithms, base, creator, tools

    random.seed(seed)
    if not hasattr(creator, "BenchFitMax"):
        creator.create("BenchFitMax", base.Fitness, weights=(1.0,))
        creator.create("BenchFitMin", base.Fitness, weights=(-1.0,))
        creator.create("BenchIndMax", list, fitness=creator.BenchFitMax)
        creator.create("BenchIndMin", list, fitness=creator.BenchFitMin)
    tb = base.Toolbox()
    if kind == "onemax":
        tb.register("attr", random.randint, 0, 1)
        tb.register("individual", tools.initRepeat, creator.BenchIndMax, tb.attr, 100)
        tb.register("evaluate", lambda ind: (sum(ind),))
        tb.register("mate", tools.cxTwoPoint)
        tb.register("mutate", tools.mutFlipBit, indpb=0.05)
        cxpb, mutpb = 0.5, 0.2
    else:
        from deap import benchmarks
        tb.register("attr", random.uniform, -5.12, 5.12)
        tb.register("individual", tools.initRepeat, creator.BenchIndMin, tb.attr, 30)
        tb.register("evaluate", benchmarks.rastrigin)
        tb.register("mate", tools.cxSimulatedBinaryBounded, eta=20.0, low=-5.12, up=5.12)
        tb.register("mutate", tools.mutPolynomialBounded, eta=20.0, low=-5.12, up=5.12,
                    indpb=1 / 30)
        cxpb, mutpb = 0.9, 1.0
    tb.register("select", tools.selTournament, tournsize=3)
    pop = [tb.individual() for _ in range(300)]
    for ind in pop:
        ind.fitness.values = tb.evaluate(ind)
    t0 = time.process_time()
    pop, _ = algorithms.eaSimple(pop, tb, cxpb=cxpb, mutpb=mutpb, ngen=gens, verbose=False)
    dt = time.process_time() - t0
    values = [ind.fitness.values[0] for ind in pop]
    return gens / dt, (max(values) if kind == "onemax" else min(values))


def pygad_run(kind: str, gens: int, seed: int) -> tuple[float, float]:
    """PyGAD with its built-in operators closest to the settings above (see the module
    docstring); fitness is a NumPy function over the whole population (``fitness_batch_size``
    = population), PyGAD's fastest path, so the comparison is of the GA loops."""
    import pygad

    common = dict(num_generations=gens, sol_per_pop=300, num_parents_mating=300,
                  parent_selection_type="tournament", K_tournament=3,
                  keep_parents=0, keep_elitism=0,       # generational, like eaSimple
                  random_seed=seed, fitness_batch_size=300, suppress_warnings=True)
    if kind == "onemax":
        def fitness(ga, genomes, idx):
            return np.asarray(genomes).sum(axis=1).tolist()
        # PyGAD has no per-individual mutation rate: per-gene 0.01 = 0.2 x 0.05 flips per
        # gene on average; replacement from gene_space [0, 1] always picks the other value.
        ga = pygad.GA(fitness_func=fitness, num_genes=100, gene_space=[0, 1], gene_type=int,
                      crossover_type="two_points", crossover_probability=0.5,
                      mutation_type="random", mutation_by_replacement=True,
                      mutation_probability=0.01, **common)
    else:
        def fitness(ga, genomes, idx):
            x = np.asarray(genomes, dtype=float)
            return (-(10.0 * x.shape[1]
                      + np.sum(x * x - 10.0 * np.cos(2 * np.pi * x), axis=1))).tolist()
        # PyGAD has neither SBX nor polynomial mutation: scattered (uniform per-gene swap)
        # crossover p=0.9 stands in for SBX, and additive uniform noise in [-0.5, 0.5] per
        # gene w.p. 1/30, kept inside the bounds by gene_space, for polynomial mutation.
        ga = pygad.GA(fitness_func=fitness, num_genes=30,
                      gene_space={"low": -5.12, "high": 5.12},
                      crossover_type="scattered", crossover_probability=0.9,
                      mutation_type="random", mutation_by_replacement=False,
                      mutation_probability=1 / 30, random_mutation_min_val=-0.5,
                      random_mutation_max_val=0.5, **common)
    t0 = time.process_time()
    ga.run()
    dt = time.process_time() - t0
    best = float(np.max(ga.last_generation_fitness))   # PyGAD maximises
    return gens / dt, (best if kind == "onemax" else -best)


def over_seeds(fn, kind: str, gens: int, seeds: int) -> tuple[float, str]:
    """Median generations/s over ``seeds`` runs (seeds 0..seeds-1), and the mean best fitness
    with its standard error, formatted."""
    rates, bests = [], []
    for seed in range(seeds):
        r, b = fn(kind, gens, seed)
        rates.append(r)
        bests.append(b)
    se = statistics.stdev(bests) / len(bests) ** 0.5 if len(bests) > 1 else 0.0
    return statistics.median(rates), f"{statistics.fmean(bests):.3g}\u00b1{se:.2g}"


def kernel_timings(repeat: int) -> list[tuple[str, float, float]]:
    compiled, twin = load("fitness", pure=False), load("fitness", pure=True)
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**63, (300, 2), dtype=np.uint64)
    tours = np.ascontiguousarray(np.argsort(rng.random((300, 100)), axis=1).astype(np.int32))
    dist = rng.random((100, 100))
    x = rng.uniform(-5.12, 5.12, (300, 30))
    cases = [("onemax popcount (300x100 bits)", lambda m: m.onemax(bits)),
             ("tsp tour length (300x100)", lambda m: m.tsp_length(tours, dist)),
             ("rastrigin (300x30)", lambda m: m.rastrigin(x))]
    out = []
    for name, call in cases:
        t = []
        for mod in (compiled, twin):
            best = float("inf")
            for _ in range(repeat):
                t0 = time.process_time()
                for _ in range(200):
                    call(mod)
                best = min(best, (time.process_time() - t0) / 200)
            t.append(best)
        out.append((name, t[0] * 1e6, t[1] * 1e6))
    return out


def _evolution_rate(islands: int, gens: int, interval: int | None
                    ) -> tuple[float, float, float]:
    """Evaluations per second over the evolution phase of a ``local[2]`` run
    (``interval=None``: no migration) in wall time, then evaluations per CPU-second of the
    islands' loops alone and of those plus the driver process's CPU over the same phase (the
    master, the agent and the scheduler are threads of the driver process)."""
    from genetic import framework

    problem = genetic.Problem(genome=genetic.reals(-5.12, 5.12, 30), fitness="rastrigin")
    marks: dict[str, float] = {}
    original = framework.GeneticScheduler._event

    def timed(sched, kind, **info):   # driver CPU at the first RUNNING and the last FINISHED
        if kind == "running":
            marks.setdefault("running", time.process_time())
        elif kind == "finished":
            marks["finished"] = time.process_time()
        original(sched, kind, **info)

    framework.GeneticScheduler._event = timed
    try:
        r = genetic.evolve(problem, population=300 * islands, generations=gens,
                           islands=islands, master="local[2]",
                           migration_interval=interval or gens,
                           migrants=2 if interval else 0, synchronous=False, progress=False)
    finally:
        framework.GeneticScheduler._event = original
    start = min(e["seconds"] for e in r.events if e["event"] == "running")
    finished = [e for e in r.events if e["event"] == "finished"]
    end = max(e["seconds"] for e in finished)
    island_cpu = sum(e["cpu"] for e in finished)
    driver_cpu = marks["finished"] - marks["running"]
    return (r.evaluations / (end - start), r.evaluations / island_cpu,
            r.evaluations / (island_cpu + driver_cpu))


def _first_generation(master: str) -> float:
    problem = genetic.Problem(genome=genetic.bits(100), fitness="onemax")
    r = genetic.evolve(problem, population=600, generations=20, islands=2, master=master,
                       seed=1, progress=False)
    return next(e["seconds"] for e in r.events if e["event"] == "first_generation")


#: Migration intervals of the scaling table (``None``: no migration, the ceiling); 10 is
#: ``evolve``'s default.
INTERVALS: tuple[int | None, ...] = (10, 20, 100, None)


def distributed(runs: int, gens: int, intervals: tuple[int | None, ...] = INTERVALS,
                first_generation: bool = True) -> None:
    from substrate import LocalCluster

    _first_generation("local[2]")   # warm the driver process
    print(f"{'islands on local[2] (Rastrigin-30, 300/island, ' + str(gens) + ' gens)':<58}"
          f"{'1 island ev/s':>14}{'2 islands ev/s':>16}{'speed-up':>10}{'best-of':>9}"
          f"{'cpu model':>11}")
    for interval in intervals:
        # alternate the two so that background load hits both alike
        one, two = [], []
        for _ in range(runs):
            one.append(_evolution_rate(1, gens, interval))
            two.append(_evolution_rate(2, gens, interval))
        r1, r2 = statistics.median(x[0] for x in one), statistics.median(x[0] for x in two)
        c1, c2 = statistics.median(x[1] for x in one), statistics.median(x[2] for x in two)
        label = (f"  migration every {interval}{' (default)' if interval == 10 else ''} "
                 f"generations (goal >= 1.8x)" if interval else "  no migration (the ceiling)")
        # best-of: the fastest run of each, the one least disturbed by other load.
        # cpu model: what two free cores would give, from CPU time (which other load barely
        # changes): one island runs on one core with the driver on the other; two islands
        # and the driver share both, so 2 * (evaluations per CPU-second of the two-island
        # run) / (one island's evaluations per CPU-second of its own loop) -- conservative,
        # as the one-island side is not charged for the driver.
        best = max(x[0] for x in two) / max(x[0] for x in one)
        print(f"{label:<58}{r1:>14,.0f}{r2:>16,.0f}{r2 / r1:>9.2f}x{best:>8.2f}x"
              f"{2 * c2 / c1:>10.2f}x", flush=True)
    print(f"  (load average after the scaling runs: "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())})")
    print()
    if not first_generation:
        return
    cold = [_first_generation("local[2]") for _ in range(runs)]
    with LocalCluster(agents=1, cpus=2, http=False) as cluster:
        warm = [_first_generation(cluster.master) for _ in range(runs)]
    print(f"{'time to first generation (goal < 1 s), median of ' + str(runs):<58}{'seconds':>14}")
    print(f"{'  local[2], embedded cluster start included':<58}{statistics.median(cold):>14.3f}")
    print(f"{'  HOST:PORT, cluster already running':<58}{statistics.median(warm):>14.3f}")
    print(f"  (all runs: local[2] {', '.join(f'{x:.3f}' for x in cold)}; "
          f"running cluster {', '.join(f'{x:.3f}' for x in warm)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs and generations")
    ap.add_argument("--distributed-only", action="store_true",
                    help="only the islands-on-the-substrate measurements")
    ap.add_argument("--intervals", default=",".join(str(i or "none") for i in INTERVALS),
                    help="migration intervals of the scaling table, 'none' for no migration "
                         "(default: %(default)s)")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs of each side per scaling row (default 5, 3 with --quick)")
    ap.add_argument("--scaling-only", action="store_true",
                    help="with --distributed-only: skip the time to the first generation")
    args = ap.parse_args()
    intervals = tuple(None if x.strip().lower() == "none" else int(x)
                      for x in args.intervals.split(",") if x.strip())
    runs = args.runs or (3 if args.quick else 5)
    if args.distributed_only:
        print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
              f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")
        print()
        distributed(runs, 1000 if args.quick else 4000, intervals,
                    first_generation=not args.scaling_only)
        return
    seeds = 3 if args.quick else SEEDS
    if not compiled_available("fitness") or not compiled_available("operators"):
        print("WARNING: compiled kernels missing; build with "
              "`cythonize -3 -i _native/fitness.pyx _native/operators.pyx`")
    have = {}
    for name in ("deap", "pygad"):
        try:
            __import__(name)
            have[name] = True
        except ImportError:
            have[name] = False
    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"Python {platform.python_version()}, NumPy {np.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print()
    gens = 100 if args.quick else 200
    print(f"one island, one core: gen/s = median over {seeds} seeds (CPU time); best = mean "
          f"(\u00b1 standard error) over the same seeds of the best fitness after {gens} "
          f"generations")
    print(f"{'setting':<10}{'ours gen/s':>11}{'best':>11}{'DEAP gen/s':>11}{'best':>11}"
          f"{'PyGAD gen/s':>12}{'best':>11}{'ours/DEAP':>10}{'ours/PyGAD':>11}")
    for kind in ("onemax", "rastrigin"):
        rate, best = over_seeds(ours, kind, gens, seeds)
        row = f"{kind:<10}{rate:>11.0f}{best:>11}"
        if have["deap"]:
            d_rate, d_best = over_seeds(deap_run, kind, gens, seeds)
            row += f"{d_rate:>11.1f}{d_best:>11}"
            d_ratio = f"{rate / d_rate:>9.0f}x"
        else:
            d_rate = REFERENCE[kind]
            row += f"{d_rate:>11.1f}{'ref.':>11}"   # planning number, not measured here
            d_ratio = f"{rate / d_rate:>8.0f}x*"
        if have["pygad"]:
            p_rate, p_best = over_seeds(pygad_run, kind, gens, seeds)
            row += f"{p_rate:>12.1f}{p_best:>11}{d_ratio}{rate / p_rate:>10.0f}x"
        else:
            row += f"{'unavailable':>12}{'-':>11}{d_ratio}{'unavailable':>12}"
        print(row)
    if not have["deap"]:
        print("  * DEAP not installed: its planning numbers (reference, not measured here)")
    if not have["pygad"]:
        print("  PyGAD not installed (pip install pygad): unavailable")
    print()
    print(f"{'kernel':<34}{'compiled us':>12}{'NumPy us':>10}{'ratio':>8}")
    for name, c, p in kernel_timings(3 if args.quick else 9):
        print(f"{name:<34}{c:>12.1f}{p:>10.1f}{p / c:>7.1f}x")
    print()
    distributed(runs, 1000 if args.quick else 4000, intervals)


if __name__ == "__main__":
    main()
