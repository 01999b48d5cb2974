"""Partitioners: which reduce partition a key goes to.

:class:`HashPartitioner` uses the portable hash from ``_native.hashing`` (the same value in
every process and on every machine, unlike Python's salted ``hash``), as PySpark's
``partitionBy`` does with ``portable_hash``: ``partitionFunc(key) % numPartitions``.
:class:`RangePartitioner` places keys by comparing them with sorted bounds, for ``sortByKey``.
Drawing the bounds from a sample is left to :mod:`dataflow.pairs`.

Examples
--------
>>> p = HashPartitioner(4)
>>> 0 <= p("some key") < 4 and p("some key") == p("some key")
True
>>> r = RangePartitioner([10, 20])
>>> [r(5), r(10), r(15), r(25)]
[0, 0, 1, 2]
>>> RangePartitioner([10, 20], ascending=False)(25)
0
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from _native import load as _load_kernel

from .spill import identity as _spill_identity

try:
    _hashing = _load_kernel("hashing")
except ImportError:  # pragma: no cover - only while _native.hashing is being written
    _hashing = None


def portable_hash(key: Any) -> int:
    """Process-independent hash of ``key`` (ints, floats, str, bytes, None, tuples thereof)."""
    if _hashing is not None:
        return _hashing.portable_hash(key)
    return _fallback_hash(key)


def _fallback_hash(key: Any) -> int:  # pragma: no cover - interim until _native.hashing lands
    import zlib
    if key is None:
        return 0
    if isinstance(key, bool):
        return int(key)
    if isinstance(key, int):
        return key & 0x7FFFFFFFFFFFFFFF
    if isinstance(key, float):
        return int(key) if key.is_integer() else zlib.crc32(repr(key).encode())
    if isinstance(key, str):
        return zlib.crc32(key.encode("utf-8", "surrogatepass"))
    if isinstance(key, (bytes, bytearray)):
        return zlib.crc32(bytes(key))
    if isinstance(key, tuple):
        h = 0x345678
        for item in key:
            h = ((h * 1000003) ^ _fallback_hash(item)) & 0xFFFFFFFFFFFF
        return h ^ len(key)
    raise TypeError(f"unhashable key type for portable_hash: {type(key).__name__}")


def partition_ids(keys: np.ndarray, num_partitions: int) -> np.ndarray:
    """Partition id of every key of an int64 column, equal to ``portable_hash(k) % n``."""
    if _hashing is not None and hasattr(_hashing, "partition_ids"):
        return np.asarray(_hashing.partition_ids(keys, num_partitions), dtype=np.int64)
    return np.fromiter((portable_hash(int(k)) % num_partitions for k in keys),  # pragma: no cover
                       dtype=np.int64, count=len(keys))


def partition_ids_any(keys: list, num_partitions: int) -> list[int]:
    """``portable_hash(k) % n`` for a list of keys of any hashable type, as Python ints."""
    if _hashing is not None and hasattr(_hashing, "partition_ids"):
        return _hashing.partition_ids(keys, num_partitions).tolist()
    return [portable_hash(k) % num_partitions for k in keys]  # pragma: no cover


def _identity(key: Any) -> Any:
    return key


class Partitioner:
    """Maps a key to a partition number in ``range(num_partitions)``."""

    num_partitions: int

    def __call__(self, key: Any) -> int:
        raise NotImplementedError

    def ids(self, keys: np.ndarray) -> np.ndarray | None:
        """Partition ids of an int64 key column, or None when only ``__call__`` knows them."""
        return None


class HashPartitioner(Partitioner):
    """``func(key) % num_partitions``; ``func`` defaults to :func:`portable_hash`."""

    def __init__(self, num_partitions: int, func: Callable[[Any], int] = portable_hash) -> None:
        if num_partitions < 1:
            raise ValueError(f"number of partitions must be positive, got {num_partitions}")
        self.num_partitions = int(num_partitions)
        self.func = func

    @property
    def is_portable(self) -> bool:
        """True when the default hash is used, so columnar kernels may compute the ids."""
        return self.func is portable_hash

    def __call__(self, key: Any) -> int:
        return self.func(key) % self.num_partitions

    def ids(self, keys: np.ndarray) -> np.ndarray | None:
        return partition_ids(keys, self.num_partitions) if self.is_portable else None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, HashPartitioner) and other.num_partitions == self.num_partitions
                and other.func is self.func)

    def __hash__(self) -> int:
        return hash((self.num_partitions, id(self.func)))

    def __repr__(self) -> str:
        return f"HashPartitioner({self.num_partitions})"


class RangePartitioner(Partitioner):
    """Partition ``i`` holds the keys between ``bounds[i-1]`` and ``bounds[i]`` (inclusive)."""

    def __init__(self, bounds: Sequence[Any], ascending: bool = True,
                 keyfunc: Callable[[Any], Any] | None = None) -> None:
        self.bounds = list(bounds)
        self.ascending = ascending
        self.keyfunc = keyfunc if keyfunc is not None else _identity
        self.num_partitions = len(self.bounds) + 1

    def __call__(self, key: Any) -> int:
        p = bisect.bisect_left(self.bounds, self.keyfunc(key))
        return p if self.ascending else self.num_partitions - 1 - p

    def ids(self, keys: np.ndarray) -> np.ndarray | None:
        # the same answer as bisect_left only when keys and bounds are all plain ints
        if self.keyfunc not in (_identity, _spill_identity) or any(type(b) is not int for b in self.bounds):
            return None
        try:
            bounds = np.array(self.bounds, dtype=np.int64)
        except OverflowError:
            return None
        p = np.searchsorted(bounds, keys, side="left").astype(np.int64)
        return p if self.ascending else self.num_partitions - 1 - p

    def __repr__(self) -> str:
        return f"RangePartitioner({self.num_partitions})"
