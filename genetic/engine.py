"""``evolve()``: validate everything, build islands, run epochs with synchronous migration,
apply the stopping rules, write checkpoints, and assemble the :class:`~genetic.result.Result`.

``master="inline"`` runs all islands in the caller's process, in lockstep (the reproducible
mode). ``"local[N]"`` and ``"HOST:PORT"`` host each island in an executor on the substrate
through :mod:`genetic.framework`, reusing :class:`~genetic.island.Island`, the checkpoint
format and the result assembly of this module.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any

import numpy as np

from .checkpoint import read_checkpoint, write_checkpoint
from .crossover import PMX, SBX, Crossover, TwoPoint
from .errors import CheckpointError, ConfigError
from .island import SCHEMES, Island, Settings
from .mutation import BitFlip, Mutation, Polynomial, Swap, UniformInt
from .nsga2 import nondominated_fronts
from .population import Population, order_key
from .problem import Problem
from .history import History
from .result import Individual, ParetoFront, Result
from .selection import Selection, Tournament

__all__ = ["TOPOLOGIES", "default_operators", "evolve"]

TOPOLOGIES = ("ring", "random", "complete")
_DISTRIBUTED = re.compile(r"^(local(\[\d+\])?|zk://.+|[\w.\-]+:\d+)$")


def default_operators(problem: Problem) -> tuple[Crossover, Mutation]:
    """Crossover and mutation used when not given, by genome kind: DEAP's OneMax example for
    bits (two-point 0.5; bit-flip 0.2 x 0.05), SBX(0.9, eta 20) + polynomial (1.0 x 1/n,
    eta 20) for reals, two-point + uniform-int (0.2 x 1/n) for integers, PMX(0.7) + swap
    (0.2 x 0.05) for permutations (DEAP's TSP example)."""
    kind = problem.genome.kind
    if kind == "bits":
        return TwoPoint(0.5), BitFlip(0.2, 0.05)
    if kind == "reals":
        return SBX(0.9, 20.0), Polynomial(1.0, None, 20.0)
    if kind == "integers":
        return TwoPoint(0.5), UniformInt(0.2, None)
    return PMX(0.7), Swap(0.2, 0.05)


def migration_targets(topology: str, i: int, n: int, rng: np.random.Generator) -> list[int]:
    """Islands that island ``i`` of ``n`` sends to (``random`` draws from ``rng``)."""
    if topology == "ring":
        return [(i + 1) % n]
    if topology == "complete":
        return [j for j in range(n) if j != i]
    j = int(rng.integers(0, n - 1))
    return [j + 1 if j >= i else j]


def _check_master(master: str) -> None:
    if master == "inline":
        return
    if isinstance(master, str) and master.startswith("zk://"):
        # The substrate's driver finds (and follows) the leading master itself.
        from substrate import InvalidRequest, check_master_address
        try:
            check_master_address(master)
        except InvalidRequest as exc:
            raise ConfigError(f"master={master!r}: {exc}; expected "
                              f"'zk://HOST:PORT[,HOST:PORT]/PATH'") from None
        return
    if isinstance(master, str) and _DISTRIBUTED.match(master):
        return
    raise ConfigError(f"master must be 'inline', 'local[N]', 'HOST:PORT' or 'zk://...', "
                      f"got {master!r}")


def _positive_or_none(name: str, value: Any, kind: type = int) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")
    return kind(value)


def evolve(problem: Problem, *, population: int = 100, generations: int = 100,
           islands: int = 1, seed: int | None = None, master: str | None = None,
           selection: Selection | None = None, crossover: Crossover | None = None,
           mutation: Mutation | None = None, scheme: str | None = None, elitism: int = 0,
           offspring: int | None = None, migration_interval: int = 10, migrants: int = 2,
           topology: str = "ring", max_evaluations: int | None = None,
           max_seconds: float | None = None, target: float | None = None,
           stagnation: int | None = None, checkpoint: str | os.PathLike[str] | None = None,
           checkpoint_every: int | None = None, resume: str | os.PathLike[str] | None = None,
           dedup: bool | None = None, hall_of_fame: int = 10,
           synchronous: bool | None = None, island_cpus: float | None = None,
           progress: bool | None = None, farm: bool = False, batch_size: int = 64) -> Result:
    """Evolve a population for ``problem`` and return a :class:`~genetic.Result`.

    Parameters
    ----------
    problem : Problem
    population : int
        Total individuals, split evenly over the islands.
    generations : int
        Generations per island (the run stops there unless another rule stops it first).
    islands : int
        Number of sub-populations; they exchange ``migrants`` best individuals every
        ``migration_interval`` generations along ``topology`` (``"ring"``, ``"random"``:
        each island sends to one other drawn at random, ``"complete"``).
    seed : int, optional
        With a seed, two runs give identical results (on ``"inline"``, migration is
        synchronous).
    master : str, optional
        Default: the ``master`` setting (``$OFFERPOOL_MASTER``, set by ``offerpool submit``,
        or the config file), else ``"inline"``. ``"inline"`` runs every island in this
        process. ``"local[N]"`` starts an embedded
        :class:`substrate.LocalCluster` with N cpu slots for the run (``"local"``: one per
        core) and stops it after; ``"HOST:PORT"`` uses a running master. On the substrate each
        island is a long-running executor; an island lost with its executor or agent is
        relaunched from its last checkpoint state and the run goes on. Stopping rules other
        than ``generations`` are checked when islands report (every migration epoch, or
        twice a second), not every generation.
    selection, crossover, mutation
        Operators with their rates (see :mod:`genetic.selection`, :mod:`genetic.crossover`,
        :mod:`genetic.mutation`); defaults: ``Tournament(3)`` (``Tournament(2)`` on fronts and
        crowding for NSGA-II) and :func:`default_operators`.
    scheme : {"generational", "mu_plus_lambda", "nsga2"}, optional
        Default ``"nsga2"`` for several objectives, else ``"generational"``.
    elitism : int
        Best individuals copied unchanged into the next generation (generational scheme).
    offspring : int, optional
        Children per generation for ``"mu_plus_lambda"`` (default: the island size).
    max_evaluations, max_seconds, target, stagnation
        Further stopping rules: total fitness evaluations, wall time, a fitness to reach
        (objective 0, in its own direction), generations without improvement of the best.
    checkpoint, checkpoint_every
        Write a checkpoint to this path every ``checkpoint_every`` generations and at the end.
    resume : path, optional
        Continue from a checkpoint (same problem and settings) up to ``generations``.
    dedup : bool, optional
        Reuse the fitness of genomes seen before (by 64-bit hash, bounded memory). Default: on
        for Python fitness functions, off for built-in kernels (cheaper to recompute).
    hall_of_fame : int
        How many distinct best individuals to keep.
    synchronous : bool, optional
        Substrate masters only: islands wait for their immigrants at each migration epoch,
        which makes a seeded run equal to ``"inline"``. Default: on when ``seed`` is given,
        else islands take whatever migrants have arrived (asynchronous, Exelixi's way).
        Synchronous islands must all fit on the cluster at once (``islands x island_cpus``).
    island_cpus : float, optional
        Substrate masters only: cpus each island takes (default 1, or ``N / islands`` when
        that is smaller on ``"local[N]"``).
    progress : bool or genetic.progress.GenerationProgress, optional
        Live progress (best and mean fitness per generation): a widget with a small chart in
        Jupyter, a status line on a terminal. Default: when in a notebook or stderr is a
        TTY (``OFFERPOOL_PROGRESS=0/1`` overrides); ``False`` never, ``True`` always.
    farm, batch_size
        Evaluation-farm mode for expensive fitness (substrate masters only): islands evolve
        in this process and each generation's new genomes are evaluated on executors in
        batches of ``batch_size`` (see :mod:`genetic.farm`).

    Returns
    -------
    Result

    Examples
    --------
    >>> import genetic
    >>> problem = genetic.Problem(genome=genetic.bits(64), fitness="onemax", maximize=True)
    >>> result = genetic.evolve(problem, population=100, generations=60, islands=2, seed=1)
    >>> result.best.fitness
    64.0
    >>> result.history.num_rows   # one row per island and generation
    120
    """
    t_call = time.perf_counter()
    if master is None:  # `offerpool submit` or the config file may name one
        import substrate
        master = substrate.default_master("inline")
    _check_master(master)
    if not isinstance(problem, Problem):
        raise ConfigError(f"evolve() needs a genetic.Problem, got {problem!r}")
    for name, value in (("population", population), ("generations", generations),
                        ("islands", islands), ("migration_interval", migration_interval)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(migrants, (int, np.integer)) or migrants < 0:
        raise ConfigError(f"migrants must be >= 0, got {migrants!r}")
    if topology not in TOPOLOGIES:
        raise ConfigError(f"topology must be one of {TOPOLOGIES}, got {topology!r}")
    max_evaluations = _positive_or_none("max_evaluations", max_evaluations)
    max_seconds = _positive_or_none("max_seconds", max_seconds, float)
    stagnation = _positive_or_none("stagnation", stagnation)
    checkpoint_every = _positive_or_none("checkpoint_every", checkpoint_every)
    if checkpoint_every and checkpoint is None:
        raise ConfigError("checkpoint_every needs checkpoint=<path>")
    if target is not None and not np.isfinite(target):
        raise ConfigError("target must be a finite number")
    if population < 2 * islands:
        raise ConfigError(f"population {population} is too small for {islands} islands")
    scheme = scheme or ("nsga2" if problem.objectives > 1 else "generational")
    if scheme not in SCHEMES:
        raise ConfigError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    default_cx, default_mut = default_operators(problem)
    selection = selection or Tournament(2 if scheme == "nsga2" else 3)
    if dedup is None:
        dedup = problem.kernel is None and not problem.vectorized
    sizes = [population // islands + (1 if i < population % islands else 0)
             for i in range(islands)]
    settings = [Settings(size=s, selection=selection, crossover=crossover or default_cx,
                         mutation=mutation or default_mut, scheme=scheme, elitism=elitism,
                         offspring=offspring, dedup=bool(dedup), hall_of_fame=hall_of_fame)
                for s in sizes]
    for s in settings:
        s.check(problem)

    seq = np.random.SeedSequence(seed)
    children = seq.spawn(islands + 2)
    problem.preflight(np.random.default_rng(children[-1]))
    run = _Run(problem, settings, children, topology, migrants, migration_interval)
    if resume is not None:
        run.load(resume)
    if farm:
        if master == "inline":
            raise ConfigError("farm=True needs a substrate master ('local[N]' or 'HOST:PORT')")
        from .farm import run_farm
        go_args = {"generations": generations, "max_evaluations": max_evaluations,
                   "max_seconds": max_seconds, "target": target, "stagnation": stagnation,
                   "checkpoint": checkpoint, "checkpoint_every": checkpoint_every, "seed": seed}
        return run_farm(run, master, go_args, batch_size=int(batch_size),
                        island_cpus=island_cpus, t0=t_call)
    if master != "inline":
        from .framework import run_distributed
        return run_distributed(
            run, master, generations=int(generations),
            synchronous=seed is not None if synchronous is None else bool(synchronous),
            checkpoint_every=checkpoint_every, checkpoint=checkpoint,
            max_evaluations=max_evaluations, max_seconds=max_seconds, target=target,
            stagnation=stagnation, seed=seed, island_cpus=island_cpus, progress=progress,
            t0=t_call)
    return run.go(generations, max_evaluations, max_seconds, target, stagnation, checkpoint,
                  checkpoint_every, seed, progress=progress)


class _Run:
    """The inline coordinator: lockstep islands, synchronous migration, stopping rules."""

    def __init__(self, problem: Problem, settings: list[Settings],
                 seeds: list[np.random.SeedSequence], topology: str, migrants: int,
                 interval: int) -> None:
        self.problem = problem
        self.settings = settings
        self.seeds = seeds
        self.topology = topology
        self.migrants = migrants
        self.interval = interval
        self.rng = np.random.Generator(np.random.PCG64(seeds[len(settings)]))
        self.islands: list[Island] | None = None
        self.history = History()
        self.generation = 0
        self.best: float | None = None      # weighted best so far (larger is better)
        self.since_improvement = 0
        self.elapsed = 0.0

    # -- checkpoints --------------------------------------------------------------------------

    def _layout(self) -> tuple[np.dtype, int, int]:
        g = self.problem.genome
        return g.dtype, g.width, self.problem.objectives

    def load(self, path: str | os.PathLike[str]) -> None:
        meta, states = read_checkpoint(path, *self._layout())
        if meta.get("problem") != _jsonable(self.problem.signature()):
            raise CheckpointError("the checkpoint was written for a different problem: "
                                  f"{meta.get('problem')} != {self.problem.signature()}")
        if len(states) != len(self.settings):
            raise CheckpointError(f"the checkpoint has {len(states)} islands, "
                                  f"not {len(self.settings)}")
        self.islands = [Island.from_state(self.problem, s, st)
                        for s, st in zip(self.settings, states)]
        self.rng.bit_generator.state = meta["engine_rng"]
        self.history = History.from_rows(meta["history"])
        self.generation = int(meta["generation"])
        self.best = meta["best"]
        self.since_improvement = int(meta["since_improvement"])
        self.elapsed = float(meta["elapsed"])

    def save(self, path: str | os.PathLike[str]) -> None:
        assert self.islands is not None
        meta = {"problem": _jsonable(self.problem.signature()),
                "engine_rng": self.rng.bit_generator.state, "history": self.history.rows(),
                "generation": self.generation, "best": self.best,
                "since_improvement": self.since_improvement, "elapsed": self.elapsed}
        write_checkpoint(path, [i.state() for i in self.islands], meta, *self._layout())

    # -- the loop -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        assert self.islands is not None
        n = len(self.islands)
        if n < 2 or self.migrants == 0:
            return
        outgoing = [isl.export_migrants(self.migrants) for isl in self.islands]
        incoming: list[list[Population]] = [[] for _ in range(n)]
        for i in range(n):
            for t in migration_targets(self.topology, i, n, self.rng):
                incoming[t].append(outgoing[i])
        for isl, parts in zip(self.islands, incoming):
            if parts:
                isl.import_migrants(Population.concat(parts))

    def _weighted_best(self) -> float:
        assert self.islands is not None
        return max(isl.best_w for isl in self.islands)

    def go(self, generations: int, max_evaluations: int | None, max_seconds: float | None,
           target: float | None, stagnation: int | None,
           checkpoint: str | os.PathLike[str] | None, checkpoint_every: int | None,
           seed: int | None, progress: Any = False) -> Result:
        from .progress import resolve

        show = resolve(progress, generations, maximize=bool(self.problem.maximize[0]))
        outcome = "failed"
        try:
            result = self._go(generations, max_evaluations, max_seconds, target, stagnation,
                              checkpoint, checkpoint_every, seed, show)
            outcome = result.stopped
            return result
        finally:
            if show is not None:
                show.close(outcome)

    def _go(self, generations: int, max_evaluations: int | None, max_seconds: float | None,
            target: float | None, stagnation: int | None,
            checkpoint: str | os.PathLike[str] | None, checkpoint_every: int | None,
            seed: int | None, show: Any) -> Result:
        t0 = time.perf_counter()
        start_elapsed = self.elapsed
        if self.islands is None:
            self.islands = [Island(self.problem, s, i, self.seeds[i])
                            for i, s in enumerate(self.settings)]
            self.best = self._weighted_best()
        w_target = None if target is None else self.problem.weights[0] * target
        stopped = "generations"
        while True:
            evaluations = sum(isl.evaluations for isl in self.islands)
            if w_target is not None and self.best is not None and self.best >= w_target:
                stopped = "target"
                break
            if stagnation is not None and self.since_improvement >= stagnation:
                stopped = "stagnation"
                break
            if max_evaluations is not None and evaluations >= max_evaluations:
                stopped = "evaluations"
                break
            if max_seconds is not None and self.elapsed >= max_seconds:
                stopped = "seconds"
                break
            if self.generation >= generations:
                break
            rows = []
            for isl in self.islands:
                rows.extend(isl.step(1))
            self.history.add_rows(rows)
            self.generation += 1
            if show is not None:
                bests = [r["best"] for r in rows]
                show.update(generation=self.generation,
                            best=max(bests) if self.problem.maximize[0] else min(bests),
                            mean=sum(r["mean"] for r in rows) / len(rows),
                            evaluations=sum(isl.evaluations for isl in self.islands),
                            running=len(self.islands), islands=len(self.islands))
            if self.generation % self.interval == 0:
                self._migrate()
            current = self._weighted_best()
            if self.best is None or current > self.best:
                self.best = current
                self.since_improvement = 0
            else:
                self.since_improvement += 1
            self.elapsed = start_elapsed + time.perf_counter() - t0
            if checkpoint is not None and checkpoint_every and \
                    self.generation % checkpoint_every == 0:
                self.save(checkpoint)
        self.elapsed = start_elapsed + time.perf_counter() - t0
        if checkpoint is not None:
            self.save(checkpoint)
        return self._result(stopped, seed)

    # -- result -------------------------------------------------------------------------------

    def _result(self, stopped: str, seed: int | None) -> Result:
        assert self.islands is not None
        problem, space = self.problem, self.problem.genome
        pools = [isl.hof if isl.hof is not None and isl.hof.n else isl.pop
                 for isl in self.islands] + [isl.pop for isl in self.islands]
        merged = Population.concat(pools)
        _, first = np.unique(merged.hashes, return_index=True)
        merged = merged.take(np.sort(first))
        key = order_key(merged, problem.weights)
        order = np.argsort(-key, kind="stable")
        front = None
        if problem.objectives > 1:
            w = np.where(np.isfinite(merged.fitness), merged.fitness * problem.weights, -np.inf)
            ranks = nondominated_fronts(w, merged.viable, merged.violation)
            on_front = np.flatnonzero((ranks == 0) & merged.feasible())
            front = ParetoFront(space.decode(merged.genomes[on_front]),
                                merged.fitness[on_front].copy())

        def individual(i: int) -> Individual:
            f = merged.fitness[i]
            fit: Any = float(f[0]) if problem.objectives == 1 else tuple(float(v) for v in f)
            return Individual(space.decode(merged.genomes[i:i + 1])[0], fit)

        k = max(self.settings[0].hall_of_fame, 1)
        hof = [individual(int(i)) for i in order[:k] if merged.viable[i]]
        best = hof[0] if hof else individual(int(order[0]))
        errors = [e for isl in self.islands for e in isl.errors]
        return Result(best=best, history=self.history.table(),
                      hall_of_fame=hof if problem.objectives == 1 else [],
                      pareto_front=front, generations=self.generation,
                      evaluations=sum(isl.evaluations for isl in self.islands),
                      stopped=stopped, errors=errors,
                      error_count=sum(isl.error_count for isl in self.islands),
                      seconds=self.elapsed, islands=len(self.islands), seed=seed,
                      maximize=bool(problem.maximize[0]))


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON types (tuples become lists) so signatures compare equal."""
    import json
    return json.loads(json.dumps(obj))
