"""Reduce-side fast paths for shuffles whose records arrived as int64 key columns.

Map tasks write chunks of plain ``(int, int | float)`` pairs as columns
(:func:`dataflow.shuffle.encode_columns`). When every frame of a reduce partition is such a
column and the columns fit the memory budget, the reducer does its work on the arrays instead of
record by record:

* :func:`sorted_records` (``sortByKey`` with the identity key function) is one stable argsort;
* :func:`grouped_records` (``groupByKey``) is a stable argsort plus the group boundaries, and
  builds each group's list once;
* :func:`hash_join` (``join`` on int keys) matches the two sides with
  :func:`_native.columnar.join_index`.

Anything else -- a pickled frame, mixed value types, more than the budget -- hands every record
to the general path (``fallback``) in arrival order, which spills to disk as it must. The
results are the ones of the general path: the same records, the same types, equal keys in
arrival order (sorts are stable, ``ascending=False`` included, as Python's ``sorted`` with
``reverse=True`` is).

Examples
--------
>>> import numpy as np
>>> frames = [(np.array([3, 1, 3]), np.array([10, 11, 12]))]
>>> list(sorted_records(iter(frames), True, 1 << 20, None))
[(1, 11), (3, 10), (3, 12)]
>>> list(grouped_records(iter(frames), 1 << 20, None))
[(3, [10, 12]), (1, [11])]
"""
from __future__ import annotations

import contextlib
import gc
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from _native import load as _load_kernel

_shuffle = _load_kernel("shuffle")
_columnar = _load_kernel("columnar")

#: Records turned into Python objects at once when a result is streamed out.
OUT_CHUNK = 65536
#: Bytes of working memory per record of a column (keys, values, permutation, sorted copies).
BYTES_PER_RECORD = 48


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def gather_columns(frames: Iterator, budget: int) -> tuple[list, Iterator | None]:
    """Columns read while every frame is a column of one value dtype within ``budget``.

    Returns ``(columns, rest)``: ``rest`` is None when all frames were gathered, else the
    frames not gathered, starting with the one that stopped the gathering.
    """
    cols: list = []
    n = 0
    for frame in frames:
        if isinstance(frame, list) or (cols and frame[1].dtype != cols[0][1].dtype) \
                or (n + len(frame[0])) * BYTES_PER_RECORD > budget:
            return cols, itertools.chain([frame], frames)
        cols.append(frame)
        n += len(frame[0])
    return cols, None


def _frame_records(frame: Any) -> Iterator:
    if isinstance(frame, list):
        return iter(frame)
    return _pairs(frame[0], frame[1])


def _pairs(keys: np.ndarray, values: np.ndarray) -> Iterator:
    """``(key, value)`` tuples of Python objects, converted a chunk at a time (in C: no
    Python frame per record)."""
    return itertools.chain.from_iterable(
        zip(keys[i:i + OUT_CHUNK].tolist(), values[i:i + OUT_CHUNK].tolist())
        for i in range(0, len(keys), OUT_CHUNK))


def records_of(cols: list, rest: Iterator | None) -> Iterator:
    """Every record of the gathered columns and of the rest, in arrival order."""
    frames = itertools.chain(cols, rest) if rest is not None else iter(cols)
    return itertools.chain.from_iterable(_frame_records(f) for f in frames)


def _concat(cols: list) -> tuple[np.ndarray, np.ndarray]:
    if len(cols) == 1:
        return cols[0]
    return np.concatenate([c[0] for c in cols]), np.concatenate([c[1] for c in cols])


def _not_columns(cols: list, rest: Iterator | None,
                 fallback: Callable[[Iterator], Iterator] | None) -> Iterator:
    """No frames at all (nothing), or not all of them columns within the budget: every
    record, in arrival order, to ``fallback``."""
    if rest is None:
        return iter(())
    assert fallback is not None
    return fallback(records_of(cols, rest))


def sorted_records(frames: Iterator, ascending: bool, budget: int,
                   fallback: Callable[[Iterator], Iterator] | None) -> Iterator:
    """The records of ``frames`` sorted by key (stable), or ``fallback(records)``."""
    cols, rest = gather_columns(frames, budget)
    if rest is not None or not cols:
        return _not_columns(cols, rest, fallback)
    keys, values = _concat(cols)
    # ~k reverses the order without overflow and keeps equal keys in arrival order
    order = _shuffle.argsort(keys if ascending else ~keys)
    return _pairs(keys[order], values[order])


def grouped_records(frames: Iterator, budget: int,
                    fallback: Callable[[Iterator], Iterator] | None) -> Iterator:
    """``(key, [values...])`` per key, keys in order of first arrival, or ``fallback(records)``."""
    cols, rest = gather_columns(frames, budget)
    if rest is not None or not cols:
        return _not_columns(cols, rest, fallback)
    keys, values = _concat(cols)
    starts, order = _columnar.group_index(keys)
    shared = _Values(values[order])
    firsts = keys[order[starts[:-1]]].tolist()
    bounds = starts.tolist()
    with _no_gc():  # only new acyclic objects: the collector would rescan them many times
        return iter([(k, _Group(shared, a, b)) for k, a, b in zip(firsts, bounds, bounds[1:])])


class _Values:
    """A reduce partition's grouped value column, made Python values once, on first use."""

    __slots__ = ("arr", "items")

    def __init__(self, arr: np.ndarray) -> None:
        self.arr = arr
        self.items: list | None = None

    def get(self) -> list:
        if self.items is None:
            self.items = self.arr.tolist()
        return self.items


class _Group:
    """One key's values, a slice of the partition's :class:`_Values`: ``len`` costs nothing
    (``groupByKey().mapValues(len)`` makes no value objects), iterating makes them. Pickles
    as a plain list.

    >>> g = _Group(_Values(np.array([7, 8, 9])), 1, 3)
    >>> len(g), list(g), g
    (2, [8, 9], [8, 9])
    """

    __slots__ = ("values", "lo", "hi")

    def __init__(self, values: _Values, lo: int, hi: int) -> None:
        self.values, self.lo, self.hi = values, lo, hi

    def _list(self) -> list:
        return self.values.get()[self.lo:self.hi]

    def __len__(self) -> int:
        return self.hi - self.lo

    def __iter__(self) -> Iterator:
        return iter(self._list())

    def __reduce__(self) -> tuple:
        return (list, (self._list(),))

    def __repr__(self) -> str:
        return repr(self._list())


def hash_join(left: Iterator, right: Iterator, budget: int,
              fallback: Callable[[Iterator, Iterator], Iterator]) -> Iterator:
    """``(k, (v, w))`` for every pair of a left and a right record with equal keys.

    Output order: left records in arrival order, each with its matches in right arrival order.
    """
    lcols, lrest = gather_columns(left, budget // 2)
    rcols, rrest = gather_columns(right, budget // 2)
    if lrest is not None or rrest is not None:
        return fallback(records_of(lcols, lrest), records_of(rcols, rrest))
    if not lcols or not rcols:
        return iter(())
    lk, lv = _concat(lcols)
    rk, rv = _concat(rcols)
    li, ri = _columnar.join_index(lk, rk)
    keys, lvals, rvals = lk[li], lv[li], rv[ri]
    return _joined(keys, lvals, rvals)


def _joined(keys: np.ndarray, lvals: np.ndarray, rvals: np.ndarray) -> Iterator:
    return itertools.chain.from_iterable(
        zip(keys[i:i + OUT_CHUNK].tolist(),
            zip(lvals[i:i + OUT_CHUNK].tolist(), rvals[i:i + OUT_CHUNK].tolist()))
        for i in range(0, len(keys), OUT_CHUNK))
