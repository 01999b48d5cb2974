"""Mutation operators, vectorised over the population.

Every operator states two rates: ``rate``, the probability that an individual is mutated at
all (DEAP's ``mutpb`` in ``varAnd``), and ``gene_rate``, the probability for each gene of a
mutated individual (DEAP's ``indpb``). With the defaults of DEAP's OneMax example
(``rate=0.2, gene_rate=0.05``) an offspring has on average 0.2 * 0.05 * n flipped genes.
Definitions follow DEAP's ``mutFlipBit``, ``mutGaussian``, ``mutPolynomialBounded``,
``mutUniformInt``, ``mutShuffleIndexes`` and ``mutInversion``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, ProblemError
from .population import kernels
from .spaces import GenomeSpace, Integers, Reals, pack_bits

__all__ = ["BitFlip", "Gaussian", "Inversion", "Mutation", "Polynomial", "Swap", "UniformInt"]


def _rate(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be within [0, 1], got {value}")
    return value


class Mutation:
    """Base class: ``rate`` per individual, ``gene_rate`` per gene where it applies."""

    rate: float
    kinds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "rate", _rate(f"{name}.rate", self.rate))
        if hasattr(self, "gene_rate") and self.gene_rate is not None:
            object.__setattr__(self, "gene_rate",
                               _rate(f"{name}.gene_rate", self.gene_rate))

    def check(self, space: GenomeSpace) -> None:
        if space.kind not in self.kinds:
            ok = [m.__name__ for m in (BitFlip, Gaussian, Polynomial, UniformInt, Swap, Inversion)
                  if space.kind in m.kinds]
            raise ProblemError(f"{type(self).__name__} mutation does not apply to {space.kind} "
                               f"genomes (use one of: {', '.join(ok)})")

    def genes(self, space: GenomeSpace) -> float:
        g = getattr(self, "gene_rate", None)
        return 1.0 / space.n_genes if g is None else float(g)

    def mutate(self, space: GenomeSpace, rows: np.ndarray,
               rng: np.random.Generator) -> np.ndarray | None:
        """Mutate every row of ``rows`` in place (gene-level rates apply). Returns which rows
        actually changed when the operator knows it cheaply, else ``None`` (all may have)."""
        raise NotImplementedError  # pragma: no cover

    def apply(self, space: GenomeSpace, genomes: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
        """Mutate each individual with probability ``rate``; returns the rows changed.

        DEAP re-evaluates every individual the mutation was applied to; here an individual
        none of whose genes was hit keeps its fitness (its genome is unchanged), which saves
        evaluations without changing the search.
        """
        chosen = rng.random(genomes.shape[0]) < self.rate
        idx = np.flatnonzero(chosen)
        if idx.size:
            rows = genomes[idx]
            changed = self.mutate(space, rows, rng)
            if changed is not None:
                idx = idx[changed]
                rows = rows[changed]
                chosen[:] = False
                chosen[idx] = True
            genomes[idx] = rows
        return chosen


@dataclass(frozen=True)
class BitFlip(Mutation):
    """Flip each gene with probability ``gene_rate`` (``None``: ``1/n``)."""

    rate: float = 0.2
    gene_rate: float | None = 0.05
    kinds = ("bits",)

    def mutate(self, space: GenomeSpace, rows: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
        flips = rng.random((rows.shape[0], space.n_genes)) < self.genes(space)
        rows ^= pack_bits(flips, space.width)
        return flips.any(axis=1)

    def apply(self, space: GenomeSpace, genomes: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
        # in place on the packed rows (a kernel), same random draws as mutate()
        chosen = rng.random(genomes.shape[0]) < self.rate
        idx = np.flatnonzero(chosen)
        if idx.size:
            u = rng.random((idx.size, space.n_genes))
            changed = kernels("operators").bits_flip(genomes, idx, u, self.genes(space))
            chosen[idx[~changed]] = False
        return chosen


@dataclass(frozen=True)
class Gaussian(Mutation):
    """Add ``N(mu, sigma)`` to each gene with probability ``gene_rate``; ``sigma`` may be per
    dimension; the result is clipped to the bounds when ``clip``."""

    rate: float = 1.0
    gene_rate: float | None = None
    sigma: float | Sequence[float] = 1.0
    mu: float = 0.0
    clip: bool = True
    kinds = ("reals",)

    def mutate(self, space: GenomeSpace, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        assert isinstance(space, Reals)
        hit = rng.random(rows.shape) < self.genes(space)
        noise = rng.normal(self.mu, 1.0, rows.shape) * np.asarray(self.sigma, dtype=np.float64)
        rows += np.where(hit, noise, 0.0)
        if self.clip:
            np.clip(rows, space.low, space.high, out=rows)
        return hit.any(axis=1)


@dataclass(frozen=True)
class Polynomial(Mutation):
    """Bounded polynomial mutation (Deb) with distribution index ``eta`` on each gene with
    probability ``gene_rate`` (``None``: ``1/n``), DEAP's ``mutPolynomialBounded``. The hit
    genes are drawn as geometric gaps (``_native.operators.polynomial_rows``), the same
    distribution as one uniform per gene."""

    rate: float = 1.0
    gene_rate: float | None = None
    eta: float = 20.0
    kinds = ("reals",)

    def mutate(self, space: GenomeSpace, rows: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
        assert isinstance(space, Reals)
        return kernels("operators").polynomial_rows(rows, 1.0, self.genes(space), space.low,
                                                    space.high, float(self.eta),
                                                    rng.bit_generator)

    def apply(self, space: GenomeSpace, genomes: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
        # in place on the genome matrix: the kernel draws the row choices and the hit genes
        assert isinstance(space, Reals)
        return kernels("operators").polynomial_rows(genomes, self.rate, self.genes(space),
                                                    space.low, space.high, float(self.eta),
                                                    rng.bit_generator)


@dataclass(frozen=True)
class UniformInt(Mutation):
    """Replace each gene with probability ``gene_rate`` by a uniform integer within its
    inclusive bounds (DEAP's ``mutUniformInt``)."""

    rate: float = 0.2
    gene_rate: float | None = None
    kinds = ("integers",)

    def mutate(self, space: GenomeSpace, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        assert isinstance(space, Integers)
        hit = rng.random(rows.shape) < self.genes(space)
        fresh = rng.integers(space.low, space.high, rows.shape, endpoint=True)
        rows[...] = np.where(hit, fresh, rows)
        return hit.any(axis=1)


@dataclass(frozen=True)
class Swap(Mutation):
    """Swap each gene, with probability ``gene_rate``, with another uniformly chosen gene
    (DEAP's ``mutShuffleIndexes``); keeps permutations valid."""

    rate: float = 0.2
    gene_rate: float | None = 0.05
    kinds = ("permutation",)

    def mutate(self, space: GenomeSpace, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random((rows.shape[0], space.n_genes, 2))
        kernels("operators").shuffle_indexes(rows, self.genes(space), u)
        return (u[:, :, 0] < self.genes(space)).any(axis=1)


@dataclass(frozen=True)
class Inversion(Mutation):
    """Reverse the genes between two uniformly drawn positions (DEAP's ``mutInversion``:
    ``start = min(i, j)``, ``end = max(i, j)``, reverse ``[start, end)``)."""

    rate: float = 0.2
    kinds = ("permutation",)

    def mutate(self, space: GenomeSpace, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ij = rng.integers(0, space.n_genes, (rows.shape[0], 2))
        cuts = np.ascontiguousarray(np.stack([ij.min(1), ij.max(1) - 1], 1), dtype=np.int64)
        kernels("operators").invert(rows, cuts)
        return cuts[:, 1] > cuts[:, 0]
