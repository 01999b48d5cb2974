"""Genome spaces: what a genome is, how it is stored, drawn at random, shown to users and hashed.

A space owns the storage layout of its genomes (packed ``uint64`` words for bits, ``float64``
rows for reals, ``int64`` rows for integers, ``int32`` rows for permutations). Operators and
fitness kernels read that layout; the engine never builds per-individual Python objects.
Spaces are small, immutable, picklable values and round-trip through JSON for checkpoints.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ProblemError

__all__ = [
    "Bits",
    "GenomeSpace",
    "Integers",
    "Permutation",
    "Reals",
    "bits",
    "integers",
    "pack_bits",
    "permutation",
    "range_mask",
    "reals",
    "space_from_json",
]


def pack_bits(ones: np.ndarray, n_words: int) -> np.ndarray:
    """Pack a ``(rows, n_bits)`` 0/1 array into ``(rows, n_words)`` little-endian uint64 words."""
    ones = np.asarray(ones, dtype=bool)
    rows = ones.shape[0]
    packed = np.packbits(ones, axis=1, bitorder="little")
    out = np.zeros((rows, n_words * 8), dtype=np.uint8)
    out[:, :packed.shape[1]] = packed
    return out.view("<u8").astype(np.uint64, copy=False)


#: ``ONES[k]`` has the low ``k`` bits set, for ``0 <= k <= 64``.
ONES = np.array([(1 << k) - 1 for k in range(65)], dtype=np.uint64)


def range_mask(lo: np.ndarray, hi: np.ndarray, n_words: int) -> np.ndarray:
    """Packed masks with genes ``lo[i] <= g < hi[i]`` set, one row per ``i``."""
    base = 64 * np.arange(n_words)
    a = np.clip(lo[:, None] - base, 0, 64)
    b = np.clip(hi[:, None] - base, 0, 64)
    return ONES[b] & ~ONES[a]


class GenomeSpace:
    """Base class of genome spaces. Subclasses are frozen dataclasses."""

    kind: str = ""
    #: NumPy dtype of the stored rows.
    dtype: np.dtype

    @property
    def n_genes(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def width(self) -> int:
        """Number of stored columns per genome."""
        return self.n_genes

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def decode(self, rows: np.ndarray) -> np.ndarray:
        """The genomes as users see them (bits unpacked to 0/1); a view when possible."""
        return rows

    def encode(self, genomes: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`decode`, validating shape and values."""
        arr = np.ascontiguousarray(genomes, dtype=self.dtype)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.shape[1] != self.width:
            raise ProblemError(f"{self!r} genomes need {self.width} columns, got {arr.shape[1]}")
        return arr

    def hash_words(self, rows: np.ndarray) -> np.ndarray:
        """Rows reinterpreted (or widened) as a contiguous uint64 matrix for hashing."""
        rows = np.ascontiguousarray(rows)
        if rows.dtype.itemsize == 8:
            return rows.view(np.uint64)
        return rows.astype(np.uint64)

    def to_json(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


def _positive(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ProblemError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


@dataclass(frozen=True)
class Bits(GenomeSpace):
    """``n`` bits, stored packed, 64 genes per ``uint64`` word (gene ``i`` is bit ``i % 64``)."""

    n: int
    kind: str = field(default="bits", init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", _positive("bits(n)", self.n))

    dtype = np.dtype(np.uint64)

    @property
    def n_genes(self) -> int:
        return self.n

    @property
    def width(self) -> int:
        return (self.n + 63) // 64

    @property
    def last_mask(self) -> int:
        """Mask of the valid bits in the last word."""
        r = self.n % 64
        return (1 << 64) - 1 if r == 0 else (1 << r) - 1

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        words = rng.bit_generator.random_raw((n, self.width)).astype(np.uint64)
        words[:, -1] &= np.uint64(self.last_mask)
        return words

    def decode(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.uint64)
        as_bytes = rows.view(np.uint8).reshape(rows.shape[0], -1)
        return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :self.n]

    def encode(self, genomes: np.ndarray) -> np.ndarray:
        arr = np.asarray(genomes)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.shape[1] != self.n or not np.isin(arr, (0, 1)).all():
            raise ProblemError(f"bits({self.n}) genomes must be 0/1 rows of length {self.n}")
        return pack_bits(arr, self.width)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "bits", "n": self.n}


def _bounds(low: Any, high: Any, dim: int | None, dtype: Any, what: str
            ) -> tuple[np.ndarray, np.ndarray]:
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    if lo.ndim > 1 or hi.ndim > 1:
        raise ProblemError(f"{what}: bounds must be scalars or 1-d sequences")
    if dim is None:
        sizes = {a.size for a in (lo, hi) if a.ndim == 1}
        if not sizes:
            raise ProblemError(f"{what}: give dim, or per-dimension bounds")
        if len(sizes) > 1:
            raise ProblemError(f"{what}: low and high have different lengths {sorted(sizes)}")
        dim = sizes.pop()
    dim = _positive(f"{what} dim", dim)
    try:
        lo = np.broadcast_to(lo, (dim,)).astype(dtype)
        hi = np.broadcast_to(hi, (dim,)).astype(dtype)
    except ValueError:
        raise ProblemError(f"{what}: bounds do not match dim={dim}") from None
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ProblemError(f"{what}: bounds must be finite")
    bad = np.flatnonzero(lo > hi)
    if bad.size:
        j = int(bad[0])
        raise ProblemError(f"{what}: low > high in dimension {j} ({lo[j]} > {hi[j]})")
    lo.setflags(write=False)
    hi.setflags(write=False)
    return lo, hi


@dataclass(frozen=True, eq=False)
class Reals(GenomeSpace):
    """Real vectors in a box ``[low, high]`` (scalar or per-dimension bounds)."""

    low: np.ndarray
    high: np.ndarray
    kind: str = field(default="reals", init=False, repr=False)
    dtype = np.dtype(np.float64)

    @property
    def n_genes(self) -> int:
        return int(self.low.shape[0])

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, (n, self.n_genes))

    def encode(self, genomes: np.ndarray) -> np.ndarray:
        arr = super().encode(genomes)
        if not np.isfinite(arr).all():
            raise ProblemError("reals genomes must be finite")
        return arr

    def __repr__(self) -> str:
        return f"reals(dim={self.n_genes})"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "reals", "low": self.low.tolist(), "high": self.high.tolist()}


@dataclass(frozen=True, eq=False)
class Integers(GenomeSpace):
    """Integer vectors with inclusive bounds ``low <= x <= high``."""

    low: np.ndarray
    high: np.ndarray
    kind: str = field(default="integers", init=False, repr=False)
    dtype = np.dtype(np.int64)

    @property
    def n_genes(self) -> int:
        return int(self.low.shape[0])

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(self.low, self.high, (n, self.n_genes), endpoint=True)

    def __repr__(self) -> str:
        return f"integers(dim={self.n_genes})"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "integers", "low": self.low.tolist(), "high": self.high.tolist()}


@dataclass(frozen=True)
class Permutation(GenomeSpace):
    """Permutations of ``0 .. n-1``, stored as ``int32`` rows."""

    n: int
    kind: str = field(default="permutation", init=False, repr=False)
    dtype = np.dtype(np.int32)

    def __post_init__(self) -> None:
        n = _positive("permutation(n)", self.n)
        if n < 2:
            raise ProblemError("permutation(n) needs n >= 2")
        object.__setattr__(self, "n", n)

    @property
    def n_genes(self) -> int:
        return self.n

    def random(self, rng: np.random.Generator, n: int) -> np.ndarray:
        base = np.broadcast_to(np.arange(self.n, dtype=np.int32), (n, self.n))
        return np.ascontiguousarray(rng.permuted(base, axis=1))

    def encode(self, genomes: np.ndarray) -> np.ndarray:
        arr = super().encode(genomes)
        if not (np.sort(arr, axis=1) == np.arange(self.n)).all():
            raise ProblemError(f"permutation({self.n}) genomes must be permutations of 0..n-1")
        return arr

    def to_json(self) -> dict[str, Any]:
        return {"kind": "permutation", "n": self.n}


def bits(n: int) -> Bits:
    """A genome of ``n`` bits.

    Examples
    --------
    >>> import genetic
    >>> space = genetic.bits(100)
    >>> space.n_genes, space.width   # 100 genes in two uint64 words
    (100, 2)
    """
    return Bits(n)


def reals(low: float | Sequence[float], high: float | Sequence[float],
          dim: int | None = None) -> Reals:
    """A genome of ``dim`` reals, each within ``[low, high]``.

    Parameters
    ----------
    low, high : float or sequence of float
        Bounds, shared or per dimension (then ``dim`` may be omitted).
    dim : int, optional
        Number of dimensions.

    Examples
    --------
    >>> import genetic
    >>> genetic.reals(-5.12, 5.12, 30).n_genes
    30
    >>> genetic.reals([0, -1], [1, 1]).high.tolist()
    [1.0, 1.0]
    """
    lo, hi = _bounds(low, high, dim, np.float64, "reals")
    return Reals(lo, hi)


def integers(low: int | Sequence[int], high: int | Sequence[int],
             dim: int | None = None) -> Integers:
    """A genome of ``dim`` integers with inclusive bounds.

    Examples
    --------
    >>> import genetic
    >>> genetic.integers(0, 9, 4).n_genes
    4
    """
    lo, hi = _bounds(low, high, dim, np.float64, "integers")
    if not (np.all(lo == np.round(lo)) and np.all(hi == np.round(hi))):
        raise ProblemError("integers: bounds must be whole numbers")
    return Integers(lo.astype(np.int64), hi.astype(np.int64))


def permutation(n: int) -> Permutation:
    """A genome that is a permutation of ``0 .. n-1`` (e.g. a TSP tour).

    Examples
    --------
    >>> import genetic, numpy as np
    >>> space = genetic.permutation(5)
    >>> sorted(space.random(np.random.default_rng(0), 1)[0].tolist())
    [0, 1, 2, 3, 4]
    """
    return Permutation(n)


def space_from_json(data: dict[str, Any]) -> GenomeSpace:
    """Rebuild a space from :meth:`GenomeSpace.to_json`."""
    kind = data.get("kind")
    if kind == "bits":
        return bits(data["n"])
    if kind == "reals":
        return reals(data["low"], data["high"])
    if kind == "integers":
        return integers(data["low"], data["high"])
    if kind == "permutation":
        return permutation(data["n"])
    raise ProblemError(f"unknown genome kind {kind!r}")

