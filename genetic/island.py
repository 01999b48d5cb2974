"""One island: a population evolving on its own, as a pure object.

An :class:`Island` holds its population arrays, its own RNG and counters, and advances by
``step(n)`` generations. It knows nothing of other islands, clocks outside itself, files or
the network: migrants go out and come in as :class:`~genetic.population.Population` values,
and :meth:`Island.state` / :meth:`Island.from_state` turn it into plain arrays plus JSON (what
:mod:`genetic.checkpoint` writes and an executor on the substrate will host). Coordination
(epochs, topology, stopping rules) belongs to :mod:`genetic.engine`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .crossover import Crossover
from .history import COLUMNS as STAT_COLUMNS
from .errors import ConfigError
from .mutation import Mutation
from .nsga2 import crowding_distance, mo_key, nondominated_fronts, select_nsga2
from .population import Population, genome_hashes, kernels, order_key
from .problem import Problem
from .selection import Selection

__all__ = ["SCHEMES", "STAT_COLUMNS", "Island", "Settings"]

SCHEMES = ("generational", "mu_plus_lambda", "nsga2")
MAX_ERRORS = 100


@dataclass(frozen=True)
class Settings:
    """How one island evolves.

    ``scheme="generational"`` is DEAP's ``eaSimple`` (select ``n``, cross pairs with
    ``crossover.rate``, mutate with ``mutation.rate``; ``elitism`` best kept unchanged);
    ``"mu_plus_lambda"`` is ``eaMuPlusLambda`` (``offspring`` children each made by crossover
    with probability ``crossover.rate``, else by mutation with ``mutation.rate``, else copied;
    survivors selected from parents + children); ``"nsga2"`` is NSGA-II (crowded tournament,
    variation as generational, survivors by fronts and crowding).
    """

    size: int
    selection: Selection
    crossover: Crossover
    mutation: Mutation
    scheme: str = "generational"
    elitism: int = 0
    offspring: int | None = None
    dedup: bool = False
    dedup_memory: int = 1 << 16
    hall_of_fame: int = 10

    def check(self, problem: Problem) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.size < 2:
            raise ConfigError(f"each island needs at least 2 individuals, got {self.size}")
        if self.size < self.selection.min_population:
            raise ConfigError(f"island population {self.size} is smaller than the selection's "
                              f"{self.selection.min_population} (tournament size)")
        if not 0 <= self.elitism < self.size:
            raise ConfigError(f"elitism must be in [0, {self.size}), got {self.elitism}")
        if problem.objectives > 1 and self.scheme != "nsga2":
            raise ConfigError("several objectives need scheme='nsga2'")
        if self.scheme == "nsga2" and self.elitism:
            raise ConfigError("NSGA-II is elitist by construction; leave elitism=0")
        if self.selection.proportional and (problem.objectives > 1 or not problem.maximize[0]):
            raise ConfigError(f"{type(self.selection).__name__} selection needs a single "
                              f"maximised, non-negative fitness")
        if self.scheme == "mu_plus_lambda":
            if self.crossover.rate + self.mutation.rate > 1.0 + 1e-12:
                raise ConfigError("mu_plus_lambda needs crossover.rate + mutation.rate <= 1 "
                                  "(they are exclusive choices, as in DEAP's varOr)")
            if self.offspring is not None and self.offspring < 1:
                raise ConfigError("offspring must be >= 1")
        self.crossover.check(problem.genome)
        self.mutation.check(problem.genome)


def _distinct(values: np.ndarray) -> int:
    """Number of distinct values (``np.unique(values).size``, without its overhead)."""
    if values.shape[0] < 2:
        return int(values.shape[0])
    s = np.sort(values)
    return 1 + int(np.count_nonzero(s[1:] != s[:-1]))


class Island:
    """A population evolving under :class:`Settings`, with its own RNG.

    Parameters
    ----------
    problem : Problem
    settings : Settings
    index : int
        The island's number (recorded in statistics and errors).
    seed : numpy.random.SeedSequence or int
        Seeds the island's PCG64 generator.
    """

    def __init__(self, problem: Problem, settings: Settings, index: int,
                 seed: np.random.SeedSequence | int | None, *, initialize: bool = True) -> None:
        self.problem = problem
        self.settings = settings
        self.index = index
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.generation = 0
        self.evaluations = 0
        self.seconds = 0.0
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0
        self.immigrants = 0                  # individuals taken in by migration
        self._cache: dict[int, np.ndarray] = {}
        self.front: np.ndarray | None = None
        self.crowd: np.ndarray | None = None
        self.hof: Population | None = None
        self.best_w = float("-inf")      # weighted best objective 0 among feasible, this gen
        self._key: np.ndarray | None = None
        self._hof_floor = float("inf")  # weighted worst of a full, feasible hall of fame
        self.pop: Population
        if initialize:
            t0 = time.perf_counter()
            genomes = problem.genome.random(self.rng, settings.size)
            self.pop = self._new(genomes)
            self._after_change()
            self._update_hof()
            self.stats()
            self.seconds += time.perf_counter() - t0

    # -- evaluation ---------------------------------------------------------------------------

    def _new(self, genomes: np.ndarray) -> Population:
        n, m = genomes.shape[0], self.problem.objectives
        pop = Population(genomes, np.empty((n, m)), np.ones(n, bool), np.zeros(n),
                         np.zeros(n, np.uint64))
        self._evaluate(pop, np.ones(n, bool))
        return pop

    def _evaluate(self, pop: Population, rows: np.ndarray) -> None:
        idx = np.flatnonzero(rows)
        if idx.size == 0:
            return
        if idx.size == pop.n and self.problem.kernel is not None:
            # every row, read only by a built-in kernel: no gathered copy (a user function
            # gets a copy, whatever it does to it)
            genomes = np.ascontiguousarray(pop.genomes)
        else:
            genomes = np.ascontiguousarray(pop.genomes[idx])
        hashes = genome_hashes(self.problem.genome, genomes)
        pop.hashes[idx] = hashes
        todo: Any = slice(None)       # all of them, unless dedup finds some in its cache
        if self.settings.dedup:
            hit = np.array([int(h) in self._cache for h in hashes], dtype=bool)
            for j in np.flatnonzero(hit):
                row = self._cache[int(hashes[j])]
                pop.fitness[idx[j]] = row[:-2]
                pop.viable[idx[j]] = bool(row[-2])
                pop.violation[idx[j]] = row[-1]
            todo = np.flatnonzero(~hit)
            if todo.size == 0:
                return
            genomes = np.ascontiguousarray(genomes[todo])
        ev = self.problem.evaluate(genomes)
        target = idx[todo]
        pop.fitness[target] = ev.fitness
        pop.viable[target] = ev.viable
        pop.violation[target] = ev.violation
        self.evaluations += genomes.shape[0]
        done = hashes[todo]
        for j, text in ev.errors.items():
            self.error_count += 1
            if len(self.errors) < MAX_ERRORS:
                self.errors.append({"island": self.index, "generation": self.generation,
                                    "hash": int(done[j]), "error": text})
        if self.settings.dedup:
            self._remember(done, ev)

    def _remember(self, hashes: np.ndarray, ev: Any) -> None:
        cache = self._cache
        rows = np.column_stack([ev.fitness, ev.viable.astype(float), ev.violation])
        for h, row in zip(hashes.tolist(), rows):
            cache[h] = row
        limit = self.settings.dedup_memory
        if len(cache) > limit:
            # Bounded memory: forget the oldest half (dicts keep insertion order).
            for h in list(cache)[: len(cache) - limit // 2]:
                del cache[h]

    # -- ordering -----------------------------------------------------------------------------

    def _wfit(self, pop: Population) -> np.ndarray:
        return pop.fitness * self.problem.weights

    def key(self) -> np.ndarray:
        """Ordering key of the current population, larger is better (cached per generation)."""
        if self._key is None:
            if self.settings.scheme == "nsga2":
                assert self.front is not None and self.crowd is not None
                self._key = mo_key(self.front, self.crowd)
            else:
                self._key = order_key(self.pop, self.problem.weights)
        return self._key

    def _after_change(self) -> None:
        self._key = None
        if self.settings.scheme == "nsga2":
            w = np.where(np.isfinite(self.pop.fitness), self._wfit(self.pop), -np.inf)
            self.front = nondominated_fronts(w, self.pop.viable, self.pop.violation)
            self.crowd = crowding_distance(w, self.front)

    # -- the loop -----------------------------------------------------------------------------

    def step(self, n: int = 1) -> list[dict[str, Any]]:
        """Advance ``n`` generations; returns one statistics row per generation."""
        return [dict(zip(STAT_COLUMNS, self.advance())) for _ in range(n)]

    def advance(self) -> tuple:
        """Advance one generation; returns its statistics row as a tuple in
        :data:`STAT_COLUMNS` order (what :meth:`step` puts in a dictionary)."""
        t0 = time.perf_counter()
        scheme = self.settings.scheme
        if scheme == "generational":
            self._generational()
        elif scheme == "mu_plus_lambda":
            self._mu_plus_lambda()
        else:
            self._nsga2()
        self.generation += 1
        self._key = None
        self._update_hof()
        self.seconds += time.perf_counter() - t0
        return self.stats_row()

    def _vary(self, genomes: np.ndarray) -> np.ndarray:
        space, rng = self.problem.genome, self.rng
        changed = self.settings.crossover.apply(space, genomes, rng)
        changed |= self.settings.mutation.apply(space, genomes, rng)
        return changed

    def _generational(self) -> None:
        s, pop = self.settings, self.pop
        key = self.key()
        idx = s.selection.select(key, pop.n - s.elitism, self.rng)
        off = pop.take(idx)
        self._evaluate(off, self._vary(off.genomes))
        if s.elitism:
            elite = pop.take(np.argsort(-key, kind="stable")[: s.elitism])
            off = Population.concat([elite, off])
        self.pop = off

    def _mu_plus_lambda(self) -> None:
        s, pop, rng, space = self.settings, self.pop, self.rng, self.problem.genome
        lam = s.offspring or pop.n
        choice = rng.random(lam)
        cx = choice < s.crossover.rate
        mut = ~cx & (choice < s.crossover.rate + s.mutation.rate)
        parent = rng.integers(0, pop.n, lam)
        off = pop.take(parent)
        ci = np.flatnonzero(cx)
        if ci.size:
            other = rng.integers(0, pop.n - 1, ci.size)
            other = np.where(other >= parent[ci], other + 1, other)
            a = off.genomes[ci]
            b = pop.genomes[other]
            s.crossover.mate(space, a, b, rng)
            off.genomes[ci] = a
        mi = np.flatnonzero(mut)
        if mi.size:
            rows = off.genomes[mi]
            s.mutation.mutate(space, rows, rng)
            off.genomes[mi] = rows
        self._evaluate(off, cx | mut)
        both = Population.concat([pop, off])
        self.pop = both.take(s.selection.select(order_key(both, self.problem.weights), pop.n, rng))

    def _nsga2(self) -> None:
        s, pop = self.settings, self.pop
        idx = s.selection.select(self.key(), pop.n, self.rng)
        off = pop.take(idx)
        self._evaluate(off, self._vary(off.genomes))
        both = Population.concat([pop, off])
        w = np.where(np.isfinite(both.fitness), self._wfit(both), -np.inf)
        keep, self.front, self.crowd = select_nsga2(w, pop.n, both.viable, both.violation)
        self.pop = both.take(keep)

    # -- results ------------------------------------------------------------------------------

    def best_index(self) -> int:
        """Index of the best individual of objective 0 (feasible first)."""
        if self.settings.scheme != "nsga2":
            return int(np.argmax(self.key()))
        return int(np.argmax(order_key(self.pop, self.problem.weights)))

    def stats(self) -> dict[str, Any]:
        """Statistics of the current generation (objective 0, viable individuals)."""
        return dict(zip(STAT_COLUMNS, self.stats_row()))

    def stats_row(self) -> tuple:
        """:meth:`stats` as a tuple in :data:`STAT_COLUMNS` order."""
        pop = self.pop
        f = pop.fitness[:, 0]
        if not pop.viable.all():
            f = f[pop.viable]
        n = f.shape[0]
        if n:
            bi = self.best_index()
            best = float(pop.fitness[bi, 0])
            feasible = bool(pop.viable[bi] and pop.violation[bi] <= 0.0)
            self.best_w = best * float(self.problem.weights[0]) if feasible else float("-inf")
            mean, std, distinct = kernels("operators").summary(
                np.ascontiguousarray(f, dtype=np.float64), pop.hashes)
        else:
            best = mean = std = float("nan")
            self.best_w = float("-inf")
            distinct = _distinct(pop.hashes)
        return (self.generation, self.index, best, mean, std, distinct / pop.n,
                self.evaluations, self.seconds)

    def _update_hof(self) -> None:
        k = self.settings.hall_of_fame
        if k <= 0:
            return
        pop = self.pop
        if self.problem.objectives == 1 and self.hof is not None:
            top_w = float(self.key().max()) if self.settings.scheme != "nsga2" else np.inf
            if pop.viable.all() and not (pop.violation > 0).any() and top_w <= self._hof_floor:
                return  # nothing here can enter the hall of fame
        if self.problem.objectives > 1:
            cand = pop.take(np.flatnonzero(self.front == 0)) if self.front is not None else pop
        else:
            key = order_key(pop, self.problem.weights)
            top = np.argsort(-key, kind="stable")[:k]
            cand = pop.take(top[pop.viable[top]])
        merged = cand if self.hof is None else Population.concat([self.hof, cand])
        _, first = np.unique(merged.hashes, return_index=True)
        merged = merged.take(np.sort(first))
        if self.problem.objectives > 1:
            w = self._wfit(merged)
            keep, _, _ = select_nsga2(w, min(merged.n, max(k, 100)), merged.viable,
                                      merged.violation)
            front = nondominated_fronts(w[keep], merged.viable[keep], merged.violation[keep])
            merged = merged.take(keep[front == 0])
        else:
            key = order_key(merged, self.problem.weights)
            merged = merged.take(np.argsort(-key, kind="stable")[:k])
            full_ok = merged.n >= k and bool(merged.feasible().all())
            self._hof_floor = (float((merged.fitness[:, 0] * self.problem.weights[0]).min())
                               if full_ok else float("-inf"))
        self.hof = merged

    # -- migration ----------------------------------------------------------------------------

    def export_migrants(self, k: int) -> Population:
        """Copies of this island's ``k`` best individuals."""
        order = np.argsort(-self.key(), kind="stable")[:k]
        return self.pop.take(order)

    def import_migrants(self, migrants: Population) -> None:
        """Replace the worst individuals by ``migrants`` (already evaluated)."""
        if migrants.n == 0:
            return
        k = min(migrants.n, self.pop.n)
        self.immigrants += k
        worst = np.argsort(self.key(), kind="stable")[:k]
        self.pop.put(worst, migrants if k == migrants.n else migrants.take(np.arange(k)))
        self._after_change()
        self._refresh_best()

    def _refresh_best(self) -> None:
        """``best_w`` after a change of the population (what :meth:`stats` sets, alone)."""
        pop = self.pop
        if not pop.viable.any():
            self.best_w = float("-inf")
            return
        bi = self.best_index()
        feasible = bool(pop.viable[bi] and pop.violation[bi] <= 0.0)
        self.best_w = (float(pop.fitness[bi, 0]) * float(self.problem.weights[0])
                       if feasible else float("-inf"))

    # -- checkpoints --------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: arrays plus JSON-able metadata."""
        return {
            "meta": {"island": self.index, "generation": self.generation,
                     "evaluations": self.evaluations, "seconds": self.seconds,
                     "rng": self.rng.bit_generator.state, "errors": self.errors,
                     "error_count": self.error_count, "immigrants": self.immigrants},
            "population": self.pop,
            "hall_of_fame": self.hof,
            "front": self.front,
            "crowd": self.crowd,
        }

    @classmethod
    def from_state(cls, problem: Problem, settings: Settings, state: dict[str, Any]) -> Island:
        """Rebuild an island from :meth:`state` (no evaluation happens)."""
        meta = state["meta"]
        isl = cls(problem, settings, int(meta["island"]), 0, initialize=False)
        isl.rng.bit_generator.state = meta["rng"]
        isl.generation = int(meta["generation"])
        isl.evaluations = int(meta["evaluations"])
        isl.seconds = float(meta["seconds"])
        isl.errors = list(meta.get("errors", []))
        isl.error_count = int(meta.get("error_count", 0))
        isl.immigrants = int(meta.get("immigrants", 0))
        isl.pop = state["population"]
        isl.hof = state.get("hall_of_fame")
        isl.front = state.get("front")
        isl.crowd = state.get("crowd")
        if settings.scheme == "nsga2" and (isl.front is None or isl.crowd is None):
            isl._after_change()
        if isl.hof is not None and problem.objectives == 1:
            hof = isl.hof
            full_ok = hof.n >= settings.hall_of_fame and bool(hof.feasible().all())
            isl._hof_floor = (float((hof.fitness[:, 0] * problem.weights[0]).min())
                              if full_ok else float("-inf"))
        isl.stats()
        return isl
