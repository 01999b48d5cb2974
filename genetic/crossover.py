"""Crossover operators, vectorised over the whole population.

Pairs are consecutive rows ``(0, 1), (2, 3), ...`` of the selected offspring; each pair is
crossed with probability ``rate`` (DEAP's ``cxpb`` in ``varAnd``), and gene-level choices use
the per-gene probabilities stated on each operator. Definitions follow DEAP's ``cxOnePoint``,
``cxTwoPoint``, ``cxUniform``, ``cxSimulatedBinaryBounded`` (including its per-gene 0.5 swap of
the two children), ``cxBlend``, ``cxOrdered`` and ``cxPartialyMatched``. Loops that do not
vectorise run in ``_native/operators.pyx``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, ProblemError
from .population import kernels
from .spaces import GenomeSpace, Reals, pack_bits, range_mask

__all__ = ["OX", "PMX", "SBX", "Blend", "Crossover", "OnePoint", "TwoPoint", "Uniform"]


def _rate(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be within [0, 1], got {value}")
    return value


class Crossover:
    """Base class. ``rate`` is the probability that a pair is crossed."""

    rate: float
    kinds: tuple[str, ...] = ("bits", "reals", "integers")

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", _rate(f"{type(self).__name__}.rate", self.rate))

    def check(self, space: GenomeSpace) -> None:
        """Raise :class:`ProblemError` when the operator does not fit the genome space."""
        if space.kind not in self.kinds:
            raise ProblemError(f"{type(self).__name__} crossover does not apply to "
                               f"{space.kind} genomes (use one of: "
                               f"{', '.join(_for_kind(space.kind))})")
        if space.n_genes < 2:
            raise ProblemError(f"{type(self).__name__} needs at least 2 genes")

    def mate(self, space: GenomeSpace, a: np.ndarray, b: np.ndarray,
             rng: np.random.Generator) -> None:
        """Cross every pair ``(a[i], b[i])`` in place."""
        raise NotImplementedError  # pragma: no cover

    def apply(self, space: GenomeSpace, genomes: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
        """Cross consecutive pairs with probability ``rate``; returns the rows touched."""
        n = genomes.shape[0]
        changed = np.zeros(n, dtype=bool)
        chosen = np.flatnonzero(rng.random(n // 2) < self.rate)
        if chosen.size:
            ia, ib = 2 * chosen, 2 * chosen + 1
            if space.kind == "bits" and hasattr(self, "bit_ranges"):
                # in place on the packed rows, same random draws as mate()
                lo, hi = self.bit_ranges(space, chosen.size, rng)
                kernels("operators").bits_swap_range(genomes, ia, lo, hi)
            elif space.kind == "bits" and hasattr(self, "bit_masks"):
                masks = self.bit_masks(space, chosen.size, rng)
                kernels("operators").bits_swap(genomes, ia, masks)
            else:
                a, b = genomes[ia], genomes[ib]
                self.mate(space, a, b, rng)
                genomes[ia] = a
                genomes[ib] = b
            changed[ia] = True
            changed[ib] = True
        return changed


def _swap_genes(space: GenomeSpace, a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> None:
    if space.kind == "bits":
        m = mask if mask.dtype == np.uint64 else pack_bits(mask, space.width)
        d = (a ^ b) & m
        a ^= d
        b ^= d
    else:
        new_a = np.where(mask, b, a)
        b[...] = np.where(mask, a, b)
        a[...] = new_a


@dataclass(frozen=True)
class OnePoint(Crossover):
    """One cut point uniform in ``1 .. n-1``; the tails are exchanged."""

    rate: float = 0.5

    def bit_ranges(self, space: GenomeSpace, k: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
        point = rng.integers(1, space.n_genes, k)
        return point, np.full_like(point, space.n_genes)

    def bit_masks(self, space: GenomeSpace, k: int, rng: np.random.Generator) -> np.ndarray:
        return range_mask(*self.bit_ranges(space, k, rng), space.width)

    def mate(self, space: GenomeSpace, a: np.ndarray, b: np.ndarray,
             rng: np.random.Generator) -> None:
        n = space.n_genes
        if space.kind == "bits":
            _swap_genes(space, a, b, self.bit_masks(space, a.shape[0], rng))
        else:
            point = rng.integers(1, n, a.shape[0])
            _swap_genes(space, a, b, np.arange(n) >= point[:, None])


@dataclass(frozen=True)
class TwoPoint(Crossover):
    """Two distinct cut points in ``1 .. n`` (DEAP's draw); the middle segment is exchanged."""

    rate: float = 0.5

    @staticmethod
    def _cuts(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p1 = rng.integers(1, n + 1, k)
        p2 = rng.integers(1, n, k)
        p2 = np.where(p2 >= p1, p2 + 1, p2)
        return np.minimum(p1, p2), np.maximum(p1, p2)

    def bit_ranges(self, space: GenomeSpace, k: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
        return self._cuts(space.n_genes, k, rng)

    def bit_masks(self, space: GenomeSpace, k: int, rng: np.random.Generator) -> np.ndarray:
        return range_mask(*self._cuts(space.n_genes, k, rng), space.width)

    def mate(self, space: GenomeSpace, a: np.ndarray, b: np.ndarray,
             rng: np.random.Generator) -> None:
        if space.kind == "bits":
            _swap_genes(space, a, b, self.bit_masks(space, a.shape[0], rng))
        else:
            lo, hi = self._cuts(space.n_genes, a.shape[0], rng)
            g = np.arange(space.n_genes)
            _swap_genes(space, a, b, (g >= lo[:, None]) & (g < hi[:, None]))


@dataclass(frozen=True)
class Uniform(Crossover):
    """Each gene exchanged with probability ``gene_rate`` (DEAP's ``indpb``)."""

    rate: float = 0.5
    gene_rate: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "gene_rate", _rate("Uniform.gene_rate", self.gene_rate))

    def bit_masks(self, space: GenomeSpace, k: int, rng: np.random.Generator) -> np.ndarray:
        return pack_bits(rng.random((k, space.n_genes)) < self.gene_rate, space.width)

    def mate(self, space: GenomeSpace, a: np.ndarray, b: np.ndarray,
             rng: np.random.Generator) -> None:
        _swap_genes(space, a, b, rng.random((a.shape[0], space.n_genes)) < self.gene_rate)


@dataclass(frozen=True)
class SBX(Crossover):
    """Bounded simulated binary crossover with distribution index ``eta``.

    Each gene takes part with probability 0.5, and the two children's values of a gene are
    swapped with probability 0.5, exactly as DEAP's ``cxSimulatedBinaryBounded``. The coin
    tosses are bits of raw random words (see :func:`sbx_draws`).
    """

    rate: float = 0.9
    eta: float = 20.0
    kinds = ("reals",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not float(self.eta) >= 0:
            raise ConfigError(f"SBX.eta must be >= 0, got {self.eta}")

    def apply(self, space: GenomeSpace, genomes: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
        # in place on the genome matrix, the kernel drawing the pair choices too
        assert isinstance(space, Reals)
        return kernels("operators").sbx_rows(genomes, self.rate, space.low, space.high,
                                             float(self.eta), rng.bit_generator)

    def mate(self, space: GenomeSpace, a: np.ndarray, b: np.ndarray,
             rng: np.random.Generator) -> None:
        assert isinstance(space, Reals)
        words, rand = sbx_draws(a.shape[0], space.n_genes, rng)
        kernels("operators").sbx_bounded(a, b, space.low, space.high, float(self.eta), words,
                                         rand)


def sbx_draws(pairs: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The random draws of bounded SBX for ``pairs`` pairs of ``dim`` genes.

    DEAP tosses two fair coins per gene (take part? swap the children?) and draws one spread
    value per gene that takes part. The coins are the bits of raw 64-bit words here, ``2 *
    ceil(dim / 64)`` words per pair (participation words, then swap words), and the spread
    values one ``rng.random`` per participating gene: a third of the draws that one uniform
    per coin would take, in the same distribution.
    """
    nw = (dim + 63) // 64
    words = rng.bit_generator.random_raw(pairs * 2 * nw).reshape(pairs, 2 * nw)
    take = words[:, :nw]
    if dim % 64:
        take = take.copy()
        take[:, -1] &= np.uint64((1 << (dim % 64)) - 1)
    return words, rng.random(int(np.bitwise_count(take).sum()))


@dataclass(frozen=True)
class Blend(Crossover):
    """Blend crossover (BLX-alpha, DEAP's ``cxBlend``): per gene ``g = (1 + 2 alpha) u - alpha``,
    children ``(1 - g) x1 + g x2`` and ``g x1 + (1 - g) x2``; clipped to the bounds when
    ``clip`` (DEAP does not clip)."""

    rate: float = 0.5
    alpha: float = 0.5
    clip: bool = True
    kinds = ("reals",)

    def mate(self, space: GenomeSpace, a: np.ndarray, b: np.ndarray,
             rng: np.random.Generator) -> None:
        assert isinstance(space, Reals)
        g = (1.0 + 2.0 * self.alpha) * rng.random(a.shape) - self.alpha
        x1, x2 = a.copy(), b
        a[...] = (1.0 - g) * x1 + g * x2
        b[...] = g * x1 + (1.0 - g) * x2
        if self.clip:
            np.clip(a, space.low, space.high, out=a)
            np.clip(b, space.low, space.high, out=b)


@dataclass(frozen=True)
class OX(Crossover):
    """Ordered crossover for permutations (DEAP's ``cxOrdered``): two distinct positions
    ``lo < hi``; each child keeps the other parent's ``lo..hi`` segment and fills the rest in
    its own parent's order, starting after ``hi``."""

    rate: float = 0.9
    kinds = ("permutation",)

    def mate(self, space: GenomeSpace, a: np.ndarray, b: np.ndarray,
             rng: np.random.Generator) -> None:
        n = space.n_genes
        x = rng.integers(0, n, a.shape[0])
        y = rng.integers(0, n - 1, a.shape[0])
        y = np.where(y >= x, y + 1, y)
        cuts = np.ascontiguousarray(np.stack([np.minimum(x, y), np.maximum(x, y)], 1),
                                    dtype=np.int64)
        kernels("operators").ordered(a, b, cuts)


@dataclass(frozen=True)
class PMX(Crossover):
    """Partially matched crossover for permutations (DEAP's ``cxPartialyMatched``): cut points
    drawn as DEAP does, genes at ``lo <= j < hi`` exchanged and each child repaired by swaps."""

    rate: float = 0.7
    kinds = ("permutation",)

    def mate(self, space: GenomeSpace, a: np.ndarray, b: np.ndarray,
             rng: np.random.Generator) -> None:
        n = space.n_genes
        c1 = rng.integers(0, n + 1, a.shape[0])
        c2 = rng.integers(0, n, a.shape[0])
        c2 = np.where(c2 >= c1, c2 + 1, c2)
        cuts = np.ascontiguousarray(np.stack([np.minimum(c1, c2), np.maximum(c1, c2)], 1),
                                    dtype=np.int64)
        kernels("operators").partially_matched(a, b, cuts)


def _for_kind(kind: str) -> list[str]:
    ops = [OnePoint, TwoPoint, Uniform, SBX, Blend, OX, PMX]
    return [op.__name__ for op in ops if kind in op.kinds]
