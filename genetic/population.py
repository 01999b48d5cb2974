"""A population as a handful of arrays: genome rows, a fitness matrix, viability, constraint
violation and 64-bit genome hashes.

There is no per-individual Python object anywhere: selection produces index arrays, and
"cloning" the selected individuals is one fancy-indexing copy per array. This module also
turns fitness into the single "larger is better" ordering key that selection uses; the
multi-objective ordering (fronts, crowding) is in :mod:`genetic.nsga2`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from _native import PURE_ENV, load

from .spaces import GenomeSpace

__all__ = ["Population", "genome_hashes", "kernels", "order_key"]

_loaded: dict[tuple[str, str | None], ModuleType] = {}


def kernels(name: str) -> ModuleType:
    """``_native.load(name)``, memoised (per value of the environment switch): the hot loop
    asks for kernels several times per generation."""
    key = (name, os.environ.get(PURE_ENV))
    mod = _loaded.get(key)
    if mod is None:
        mod = _loaded[key] = load(name)
    return mod


def genome_hashes(space: GenomeSpace, genomes: np.ndarray) -> np.ndarray:
    """64-bit hashes of genome rows (the ``row_hash`` kernel over the rows' words)."""
    return kernels("fitness").row_hash(space.hash_words(genomes))


@dataclass
class Population:
    """Arrays describing ``n`` individuals; row ``i`` of each array is individual ``i``."""

    genomes: np.ndarray
    fitness: np.ndarray
    viable: np.ndarray
    violation: np.ndarray
    hashes: np.ndarray

    @property
    def n(self) -> int:
        return int(self.genomes.shape[0])

    def take(self, idx: np.ndarray) -> Population:
        """The individuals at ``idx`` (copies; repeated indices give independent rows)."""
        return Population(self.genomes[idx], self.fitness[idx], self.viable[idx],
                          self.violation[idx], self.hashes[idx])

    @staticmethod
    def concat(parts: list[Population]) -> Population:
        return Population(np.concatenate([p.genomes for p in parts]),
                          np.concatenate([p.fitness for p in parts]),
                          np.concatenate([p.viable for p in parts]),
                          np.concatenate([p.violation for p in parts]),
                          np.concatenate([p.hashes for p in parts]))

    def put(self, idx: np.ndarray, other: Population) -> None:
        """Overwrite rows ``idx`` with ``other``'s rows."""
        self.genomes[idx] = other.genomes
        self.fitness[idx] = other.fitness
        self.viable[idx] = other.viable
        self.violation[idx] = other.violation
        self.hashes[idx] = other.hashes

    def feasible(self) -> np.ndarray:
        return self.viable & (self.violation <= 0.0)


def order_key(pop: Population, weights: np.ndarray) -> np.ndarray:
    """Single-objective ordering key, larger is better.

    Feasible individuals keep ``weight * fitness``; when some are infeasible or non-viable, the
    key becomes a dense rank: feasible by fitness, above infeasible by decreasing violation,
    above non-viable ones (all tied last).
    """
    key = pop.fitness[:, 0] * weights[0]
    if pop.viable.all() and not (pop.violation > 0.0).any():
        return key
    tier = np.where(pop.viable, np.where(pop.violation > 0.0, 1, 2), 0)
    second = np.where(tier == 2, key, np.where(tier == 1, -pop.violation, 0.0))
    second = np.where(np.isfinite(second), second, 0.0)
    order = np.lexsort((second, tier))
    ts, ss = tier[order], second[order]
    step = np.empty(len(order), dtype=np.int64)
    step[0] = 0
    step[1:] = (ts[1:] != ts[:-1]) | (ss[1:] != ss[:-1])
    ranks = np.empty(len(order), dtype=np.float64)
    ranks[order] = np.cumsum(step)
    return ranks
