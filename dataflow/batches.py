"""Columnar partitions: a chain of narrow transformations run on NumPy arrays.

A partition that starts as a range (``parallelize(range(...))``, ``Context.range``) can stay
columnar through the ``map`` and ``filter`` calls whose functions :mod:`dataflow.vectorize`
understands: a :class:`Columnar` partition is a stream of items, each either a :class:`Batch`
(``n`` records held as one column or a flat tuple of columns) or an iterable of plain records
(the Python path, for a batch the arrays could not compute exactly). Consumers that know
columns -- ``count``, ``sum``, ``reduce``/``fold`` with ``add`` (here) and the map side of a
shuffle with a built-in combine (:mod:`dataflow.shuffle`) -- read the arrays; every other
consumer calls :meth:`Columnar.records` and gets exactly the records the Python path would
have made (Python ints, floats, bools and tuples, in the same order).

:class:`ConstPairs` is the other columnar shape: ``map(lambda x: (x, c))`` over any records,
kept as the keys and the constant so that ``reduceByKey(add)`` can count keys in C.

Examples
--------
>>> from dataflow.vectorize import analyse
>>> def squares_of_evens():
...     part = range_columns(range(10))
...     part = apply(part, "map", analyse(lambda x: x * x), lambda it: (x * x for x in it))
...     return apply(part, "filter", analyse(lambda x: x % 2 == 0), None)
>>> list(squares_of_evens().records()), add_fold(squares_of_evens(), 0)
([0, 4, 16, 36, 64], 120)
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from functools import reduce as _reduce
from typing import Any

import numpy as np

from .vecexec import INT_MAX, INT_MIN, Col, Fallback, as_columns, evaluate, mask_of

#: Records per batch of a range: 8 MB per int64 column.
CHUNK = 1 << 20


class Part:
    """A partition in a form other than an iterator of records; :meth:`records` gives them."""

    def records(self) -> Iterator:
        raise NotImplementedError


class Batch:
    """``n`` records as one :class:`~dataflow.vecexec.Col` or a flat tuple of them."""

    __slots__ = ("n", "value")

    def __init__(self, value: Col | tuple, n: int) -> None:
        self.value = value
        self.n = n

    def records(self) -> list:
        v = self.value
        if isinstance(v, Col):
            return v.arr.tolist()
        return list(zip(*[c.arr.tolist() for c in v]))


class Columnar(Part):
    """A partition as a stream of :class:`Batch` objects and iterables of records."""

    def __init__(self, items: Iterable) -> None:
        self.items = items

    def records(self) -> Iterator:
        return itertools.chain.from_iterable(
            i.records() if isinstance(i, Batch) else i for i in self.items)


class ConstPairs(Part):
    """The records ``(k, c)`` for every ``k`` of ``keys`` (records or a :class:`Part`)."""

    def __init__(self, keys: Iterable, c: Any) -> None:
        self.keys = keys
        self.c = c

    def records(self) -> Iterator:
        return zip(as_records(self.keys), itertools.repeat(self.c))


def as_records(part: Any) -> Iterator:
    """The records of a partition in any representation."""
    if isinstance(part, Part):
        return part.records()
    return part


def range_columns(r: range) -> Columnar | None:
    """Batches of the ints of ``r``, or None when they do not fit int64."""
    if len(r) and not (INT_MIN <= min(r[0], r[-1]) and max(r[0], r[-1]) <= INT_MAX):
        return None

    def gen() -> Iterator[Batch]:
        for i in range(0, len(r), CHUNK):
            part = r[i:i + CHUNK]
            first, last = part[0], part[-1]
            if INT_MIN < last + part.step < INT_MAX:
                arr = np.arange(first, last + part.step, part.step, dtype=np.int64)
            else:  # the end of the arange would not fit int64
                arr = np.fromiter(part, dtype=np.int64, count=len(part))
            yield Batch(Col(arr, min(first, last), max(first, last)), len(part))

    return Columnar(gen())


def apply(part: Columnar, kind: str, expr: tuple,
          python: Callable[[Iterator], Iterable] | None) -> Columnar:
    """``map`` or ``filter`` by ``expr`` on every batch; ``python(records)`` where it falls back.

    ``python`` may be None for a filter: the fallback then keeps the records whose value of
    ``expr`` is true, which needs a Python function -- so callers always pass one; None is only
    accepted for expressions that cannot fall back (tests and examples).
    """
    def gen() -> Iterator:
        for item in part.items:
            if not isinstance(item, Batch):
                yield python(iter(item)) if python is not None else item
                continue
            try:
                out = _apply_batch(kind, expr, item)
            except Fallback:
                if python is None:
                    raise
                yield python(iter(item.records()))
                continue
            if out.n:
                yield out

    return Columnar(gen())


def _apply_batch(kind: str, expr: tuple, batch: Batch) -> Batch:
    with np.errstate(all="ignore"):
        value = evaluate(expr, [batch.value], batch.n)
        if kind == "map":
            return Batch(as_columns(value, batch.n), batch.n)
        mask = mask_of(value, batch.n)
    if isinstance(mask, bool):
        return batch if mask else Batch(batch.value, 0)
    count = int(np.count_nonzero(mask))
    if count == batch.n:
        return batch
    v = batch.value
    if isinstance(v, Col):  # bounds of the whole column still hold for a part of it
        return Batch(Col(v.arr[mask], v.lo, v.hi), count)
    return Batch(tuple(Col(c.arr[mask], c.lo, c.hi) for c in v), count)


class Collected:
    """A partition's records for the trip to the driver: batches travel as arrays (pickled
    as raw bytes), and iterating gives the records."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __iter__(self) -> Iterator:
        return Columnar(iter(self.items)).records()


def collect_part(part: Columnar) -> Collected:
    """``collect``'s value for one columnar partition."""
    return Collected([i if isinstance(i, Batch) else list(i) for i in part.items])


def count(part: Columnar) -> int:
    """Number of records (the batches are not turned into records)."""
    n = 0
    for item in part.items:
        if isinstance(item, Batch):
            n += item.n
        else:
            counter = itertools.count()
            for _ in zip(item, counter):
                pass
            n += next(counter)
    return n


def int_sum(arr: np.ndarray) -> int:
    """The exact sum of an int64 (or bool) array as a Python int.

    The high and low 32 bits are summed apart, so no partial sum can overflow int64 for
    arrays shorter than ``2**31``.

    >>> int_sum(np.array([2 ** 62, 2 ** 62, 2 ** 62], dtype=np.int64)) == 3 * 2 ** 62
    True
    """
    if arr.dtype == np.bool_:
        return int(np.count_nonzero(arr))
    if not len(arr):
        return 0
    lo, hi = int(arr.min()), int(arr.max())
    if max(-lo, hi) * len(arr) <= INT_MAX:
        return int(arr.sum())
    return int((arr >> 32).sum()) * (1 << 32) + int((arr & 0xFFFFFFFF).sum())


def _int_batch(item: Any, allow_bool: bool) -> bool:
    return isinstance(item, Batch) and isinstance(item.value, Col) \
        and (item.value.kind == "i" or (allow_bool and item.value.kind == "b"))


def add_fold(part: Columnar, start: Any, has_start: bool = True,
             add: Callable[[Any, Any], Any] | None = None) -> Any:
    """``functools.reduce(add, records[, start])`` with int batches summed in NumPy.

    Exact because Python's ints are: a fold by ``+`` over ints is their exact sum whatever the
    grouping, and the records that are not ints continue the fold from that sum in order.
    ``sum`` is ``add_fold(part, 0)``. Without a start, bool batches go the Python way
    (``reduce(add, [True])`` is ``True``, not ``1``).
    """
    import operator
    add = add or operator.add
    items = iter(part.items)
    total, seen = start, has_start
    for item in items:
        if _int_batch(item, has_start or seen) and (type(total) is int or not seen):
            if item.n:
                s = int_sum(item.value.arr)
                total, seen = (total + s if seen else s), True
            continue
        rest = Columnar(itertools.chain([item], items)).records()
        if not seen:
            first = next(rest, EMPTY)
            if first is EMPTY:
                return EMPTY
            total, seen = first, True
        return _reduce(add, rest, total)
    return total if seen else EMPTY


EMPTY = object()


def sum_part(part: Columnar) -> Any:
    """``sum(records)``: int batches in NumPy, the rest by Python's ``sum`` from there."""
    items = iter(part.items)
    total = 0
    for item in items:
        if _int_batch(item, True):
            total += int_sum(item.value.arr)
            continue
        return sum(Columnar(itertools.chain([item], items)).records(), total)
    return total
