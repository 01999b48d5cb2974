"""Pure NumPy twin of ``_native.shuffle``: the reference for the shuffle kernels.

Three kernels serve the columnar path of the dataflow shuffle:

* :func:`hash_aggregate` combines the values of equal int64 keys with ``add``, ``min`` or
  ``max``; the output keeps the order of each key's first occurrence.
* :func:`bucket_order` is a stable counting sort of records by partition id: it returns the
  permutation that groups records by bucket and the bucket offsets.
* :func:`argsort` is a stable argsort of an int64 column.

Overflow of int64 sums wraps in both implementations; the caller guards against it.

Examples
--------
>>> import numpy as np
>>> k, v = hash_aggregate(np.array([3, 1, 3, 2, 1]), np.array([1, 2, 3, 4, 5]), "add")
>>> k.tolist(), v.tolist()
([3, 1, 2], [4, 7, 4])
>>> order, offsets = bucket_order(np.array([1, 0, 1, 2]), 3)
>>> order.tolist(), offsets.tolist()
([1, 0, 2, 3], [0, 1, 3, 4])
>>> argsort(np.array([5, -1, 5, 0])).tolist()
[1, 3, 0, 2]
"""
from __future__ import annotations

import numpy as np

OPS = ("add", "min", "max")
_UFUNC = {"add": np.add, "min": np.minimum, "max": np.maximum}


def hash_aggregate(keys: np.ndarray, values: np.ndarray, op: str) -> tuple[np.ndarray, np.ndarray]:
    """Combine values of equal keys with ``op``; keys in first-occurrence order."""
    if op not in _UFUNC:
        raise ValueError(f"unknown aggregation op {op!r}; expected one of {OPS}")
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    values = np.ascontiguousarray(values)
    if values.dtype not in (np.int64, np.float64):
        raise TypeError(f"values must be int64 or float64, got {values.dtype}")
    if len(keys) != len(values):
        raise ValueError("keys and values differ in length")
    if len(keys) == 0:
        return keys.copy(), values.copy()
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
    agg = _UFUNC[op].reduceat(values[order], starts)
    first = order[starts]  # stable sort: first index of each key in the input
    back = np.argsort(first, kind="stable")
    return sk[starts][back], agg[back]


def bucket_order(pids: np.ndarray, num_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Stable permutation grouping records by bucket, and ``num_buckets + 1`` offsets."""
    pids = np.ascontiguousarray(pids, dtype=np.int64)
    if len(pids) and (pids.min() < 0 or pids.max() >= num_buckets):
        raise ValueError("partition id out of range")
    counts = np.bincount(pids, minlength=num_buckets).astype(np.int64)
    offsets = np.zeros(num_buckets + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return np.argsort(pids, kind="stable").astype(np.int64), offsets


def argsort(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of an int64 column."""
    return np.argsort(np.ascontiguousarray(keys, dtype=np.int64), kind="stable").astype(np.int64)
