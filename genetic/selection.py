"""Parent selection operators over an ordering key (larger is better), as index arrays.

Each operator follows DEAP's definition (``selTournament``, ``selBest``, ``selRoulette``,
``selStochasticUniversalSampling``) but draws all its random numbers in one NumPy call. The key
comes from :func:`genetic.population.order_key` (single objective) or
:func:`genetic.nsga2.mo_key` (fronts and crowding); roulette and SUS need the raw, positive
fitness of a maximised objective and receive it as ``key`` too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .population import kernels

__all__ = ["SUS", "Roulette", "Selection", "Tournament", "Truncation"]


class Selection:
    """Base class: ``select(key, k, rng)`` returns ``k`` indices into the population."""

    #: Smallest population the operator can work on.
    min_population: int = 1
    #: Whether the key must be a raw, non-negative fitness (roulette-like operators).
    proportional: bool = False

    def select(self, key: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover


@dataclass(frozen=True)
class Tournament(Selection):
    """``k`` tournaments of ``size`` contestants drawn uniformly with replacement; the best
    contestant wins, the first drawn among equals (DEAP's ``selTournament``)."""

    size: int = 3

    def __post_init__(self) -> None:
        if int(self.size) < 1:
            raise ConfigError(f"tournament size must be >= 1, got {self.size}")

    @property
    def min_population(self) -> int:  # type: ignore[override]
        return int(self.size)

    def select(self, key: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        # contestants floor(u * n) of uniform draws, in the kernel (a third of the cost of
        # rng.integers here); the same uniform choice as DEAP's random.choice
        return kernels("operators").tournament_draw(
            np.ascontiguousarray(key, dtype=np.float64), k, int(self.size), rng.bit_generator)


@dataclass(frozen=True)
class Truncation(Selection):
    """The ``k`` best (DEAP's ``selBest``); cycles through the ranking if ``k > n``."""

    def select(self, key: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        order = np.argsort(-key, kind="stable")
        return order[np.arange(k) % order.shape[0]]


def _weights(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-key, kind="stable")
    w = key[order]
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    return order, np.cumsum(w)


@dataclass(frozen=True)
class Roulette(Selection):
    """Fitness-proportionate selection (DEAP's ``selRoulette``): individuals sorted by
    decreasing fitness, ``u * total`` located in the running sum. Needs a maximised,
    non-negative fitness; non-viable individuals get zero weight."""

    proportional = True

    def select(self, key: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        order, cum = _weights(key)
        if cum[-1] <= 0:
            return rng.integers(0, key.shape[0], k)
        pos = np.searchsorted(cum, rng.random(k) * cum[-1], side="right")
        return order[np.minimum(pos, key.shape[0] - 1)]


@dataclass(frozen=True)
class SUS(Selection):
    """Stochastic universal sampling (DEAP's ``selStochasticUniversalSampling``): ``k`` evenly
    spaced pointers ``start + i * total / k`` with one random ``start`` in ``[0, total / k)``."""

    proportional = True

    def select(self, key: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        order, cum = _weights(key)
        if cum[-1] <= 0:
            return rng.integers(0, key.shape[0], k)
        distance = cum[-1] / k
        points = rng.uniform(0, distance) + distance * np.arange(k)
        pos = np.searchsorted(cum, points, side="left")
        return order[np.minimum(pos, key.shape[0] - 1)]
