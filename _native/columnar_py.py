"""Pure NumPy twin of ``_native.columnar``: the reference for the grouping and join kernels.

* :func:`group_index` groups equal int64 keys: ``(starts, order)`` where
  ``order[starts[g]:starts[g + 1]]`` are the indices of group ``g``'s records in arrival order,
  and groups are numbered by their first occurrence.
* :func:`pair_columns` turns a list of plain ``(int, int | float)`` tuples into a key column and
  a value column, or returns None when a record does not fit.
* :func:`combine_into` merges ``(key, value)`` pairs into a dict (``combineByKey``'s loop).
* :func:`join_index` returns ``(li, ri)``, every pair with ``left[li] == right[ri]``, ordered
  by left index, then right index.

Examples
--------
>>> from typing import Any

import numpy as np
>>> starts, order = group_index(np.array([7, 3, 7, 7, 3]))
>>> starts.tolist(), order.tolist()
([0, 3, 5], [0, 2, 3, 1, 4])
>>> li, ri = join_index(np.array([1, 2, 1]), np.array([1, 5, 1]))
>>> li.tolist(), ri.tolist()
([0, 0, 2, 2], [0, 2, 0, 2])
>>> [c.tolist() for c in pair_columns([(1, 2.5), (3, 4.0)])], pair_columns([(1, 2), [3, 4]])
([[1, 3], [2.5, 4.0]], None)
"""
from __future__ import annotations

import numpy as np


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + n)`` for each start ``s`` and length ``n``."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    return np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)


def group_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal keys in first-occurrence order; indices in arrival order within."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    if len(keys) == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    run_starts = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
    lengths = np.diff(np.append(run_starts, len(keys)))
    by_first = np.argsort(order[run_starts], kind="stable")
    new_lengths = lengths[by_first]
    starts = np.zeros(len(run_starts) + 1, dtype=np.int64)
    np.cumsum(new_lengths, out=starts[1:])
    return starts, order[_ranges(run_starts[by_first], new_lengths)].astype(np.int64)


def join_index(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``(i, j)`` with ``left[i] == right[j]``, by ``i`` then ``j``."""
    left = np.ascontiguousarray(left, dtype=np.int64)
    right = np.ascontiguousarray(right, dtype=np.int64)
    starts, order = group_index(right)
    groups = len(starts) - 1
    if groups == 0 or len(left) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    group_keys = right[order[starts[:-1]]]
    sorter = np.argsort(group_keys, kind="stable")
    pos = np.minimum(np.searchsorted(group_keys[sorter], left), groups - 1)
    g = sorter[pos]
    found = group_keys[g] == left
    counts = np.where(found, starts[g + 1] - starts[g], 0)
    li = np.repeat(np.arange(len(left), dtype=np.int64), counts)
    ri = order[_ranges(starts[g][counts > 0], counts[counts > 0])]
    return li, ri.astype(np.int64)


_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def pair_columns(records: list) -> tuple[np.ndarray, np.ndarray] | None:
    """Key and value columns of exact ``(int, int)`` or ``(int, float)`` tuples, else None.

    Every record must be a tuple of two; keys exact ints within int64; values all exact ints
    within int64 or all exact floats (the first record decides). ``bool`` is not an int here.
    """
    if set(map(type, records)) - {tuple}:
        return None
    if any(len(r) != 2 for r in records):
        return None
    ks = [k for k, _ in records]
    vs = [v for _, v in records]
    lo, hi = _INT64
    if set(map(type, ks)) - {int} or any(not lo <= k <= hi for k in ks):
        return None
    if not vs:
        return np.array(ks, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if type(vs[0]) is float:
        if set(map(type, vs)) != {float}:
            return None
        return np.array(ks, dtype=np.int64), np.array(vs, dtype=np.float64)
    if set(map(type, vs)) != {int} or any(not lo <= v <= hi for v in vs):
        return None
    return np.array(ks, dtype=np.int64), np.array(vs, dtype=np.int64)


def combine_into(combined: dict, records: list, create: Any, merge: Any, add: bool) -> int:
    """Merge ``(key, value)`` tuples into ``combined``; returns the records consumed.

    A new key gets ``create(value)`` (the value itself when ``create`` is None), a known key
    ``merge(current, value)`` (``current + value`` when ``add``). Stops before the first record
    that is not an exact tuple of two.

    >>> d = {"a": 1}
    >>> combine_into(d, [("a", 2), ("b", 5), ["c", 1]], None, None, True), d
    (2, {'a': 3, 'b': 5})
    """
    missing = object()
    for i, rec in enumerate(records):
        if type(rec) is not tuple or len(rec) != 2:
            return i
        k, v = rec
        cur = combined.get(k, missing)
        if cur is missing:
            combined[k] = v if create is None else create(v)
        elif add:
            combined[k] = cur + v
        else:
            combined[k] = merge(cur, v)
    return len(records)


def count_into(index: dict, records: list, start: int, sums: np.ndarray) -> int:
    """``reduceByKey(add)`` of ``(key, int)`` tuples from ``records[start:]`` into ``sums``.

    ``index`` maps each key to its slot in ``sums`` (first-occurrence order). Returns the
    position of the first record not consumed: not an exact tuple of two, a value that is not
    an exact int within int64, a sum that would leave int64, or a new key when ``sums`` is full.

    >>> index, sums = {}, np.zeros(2, dtype=np.int64)
    >>> count_into(index, [("a", 1), ("b", 2), ("a", 3), ("c", 1)], 0, sums), index, sums.tolist()
    (3, {'a': 0, 'b': 1}, [4, 2])
    """
    lo, hi = _INT64
    for i in range(start, len(records)):
        rec = records[i]
        if type(rec) is not tuple or len(rec) != 2:
            return i
        k, v = rec
        if type(v) is not int or not lo <= v <= hi:
            return i
        slot = index.get(k)
        if slot is None:
            if len(index) == len(sums):
                return i
            slot = index[k] = len(index)
            sums[slot] = v
        else:
            total = int(sums[slot]) + v
            if not lo <= total <= hi:
                return i
            sums[slot] = total
    return len(records)
