"""RDD actions: the methods that run a job and bring a result to the driver.

Each action turns into one call of ``Context._run(rdd, func, partitions)``: ``func`` reduces a
partition's records on the executor to something small, and the driver combines the
per-partition results. ``take`` and its relatives scan a few partitions first and more only
when needed. Statistics follow PySpark's ``StatCounter``. Writing files is
:mod:`dataflow.io`'s job.

Examples
--------
>>> from dataflow import Context
>>> rdd = Context("inline").parallelize([3, 1, 4, 1, 5, 9, 2, 6], 3)
>>> rdd.count(), rdd.sum(), rdd.max(), rdd.top(2), rdd.takeOrdered(3)
(8, 31, 9, [9, 6], [1, 1, 2])
>>> s = rdd.stats()
>>> s.count(), s.mean(), round(s.stdev(), 4), s.max(), s.min()
(8, 3.875, 2.5709, 9, 1)
"""
from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from functools import reduce as _reduce
from itertools import islice, pairwise
from typing import Any

from . import batches
from .vectorize import is_add


class StatCounter:
    """Count, mean, variance, max and min of numbers, mergeable (Welford / Chan et al.)."""

    def __init__(self, values: Any = ()) -> None:
        self.n = 0
        self.mu = 0.0
        self.m2 = 0.0
        self.maxValue = float("-inf")
        self.minValue = float("inf")
        for v in values:
            self.merge(v)

    def merge(self, value: Any) -> StatCounter:
        delta = value - self.mu
        self.n += 1
        self.mu += delta / self.n
        self.m2 += delta * (value - self.mu)
        self.maxValue = max(self.maxValue, value)
        self.minValue = min(self.minValue, value)
        return self

    def mergeStats(self, other: StatCounter) -> StatCounter:
        if other.n == 0:
            return self
        if self.n == 0:
            self.n, self.mu, self.m2 = other.n, other.mu, other.m2
            self.maxValue, self.minValue = other.maxValue, other.minValue
            return self
        delta = other.mu - self.mu
        n = self.n + other.n
        self.mu = (self.mu * self.n + other.mu * other.n) / n if n else 0.0
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.n = n
        self.maxValue = max(self.maxValue, other.maxValue)
        self.minValue = min(self.minValue, other.minValue)
        return self

    def count(self) -> int:
        return self.n

    def mean(self) -> float:
        return self.mu if self.n else float("nan")

    def sum(self) -> float:
        return self.n * self.mu

    def min(self) -> float:
        return self.minValue

    def max(self) -> float:
        return self.maxValue

    def variance(self) -> float:
        return self.m2 / self.n if self.n else float("nan")

    def sampleVariance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else float("nan")

    def stdev(self) -> float:
        return math.sqrt(self.variance())

    def sampleStdev(self) -> float:
        return math.sqrt(self.sampleVariance())

    def __repr__(self) -> str:
        return (f"(count: {self.count()}, mean: {self.mean()}, stdev: {self.stdev()}, "
                f"max: {float(self.max())}, min: {float(self.min())})")


class Actions:
    """Actions of :class:`~dataflow.rdd.RDD`."""

    ctx: Any

    def _per_partition(self, func: Callable[[Iterator], Any],
                       partitions: list | None = None,
                       on_columns: Callable[[Any], Any] | None = None) -> list:
        if on_columns is not None:  # the same result from a columnar partition
            return self.ctx._run(self, _WithColumns(func, on_columns), partitions)
        return self.ctx._run(self, lambda tc, it: func(it), partitions)

    def collect(self) -> list:
        """All elements, in partition order."""
        out: list = []
        for part in self._per_partition(list, on_columns=batches.collect_part):
            out.extend(part)
        return out

    def collectAsMap(self) -> dict:
        """The pairs of this RDD as a dict (later keys win).

        >>> from dataflow import Context
        >>> Context("inline").parallelize([(1, "a"), (2, "b")]).collectAsMap()
        {1: 'a', 2: 'b'}
        """
        return dict(self.collect())

    def count(self) -> int:
        """Number of elements."""
        return sum(self._per_partition(_count, on_columns=batches.count))

    def countByValue(self) -> dict:
        """How many times each element occurs.

        >>> from dataflow import Context
        >>> sorted(Context("inline").parallelize([1, 2, 1, 2, 2]).countByValue().items())
        [(1, 2), (2, 3)]
        """
        def part(it: Iterator) -> dict:
            counts: dict = defaultdict(int)
            for x in it:
                counts[x] += 1
            return counts

        total: dict = defaultdict(int)
        for d in self._per_partition(part):
            for k, v in d.items():
                total[k] += v
        return total

    def countByKey(self) -> dict:
        """How many pairs each key has.

        >>> from dataflow import Context
        >>> sorted(Context("inline").parallelize([("a", 1), ("b", 1), ("a", 1)]).countByKey().items())
        [('a', 2), ('b', 1)]
        """
        return self.map(lambda kv: kv[0]).countByValue()  # type: ignore[attr-defined]

    def take(self, num: int) -> list:
        """The first ``num`` elements, scanning as few partitions as it can.

        >>> from dataflow import Context
        >>> Context("inline").parallelize(range(100), 10).take(3)
        [0, 1, 2]
        """
        out: list = []
        total = self.getNumPartitions()  # type: ignore[attr-defined]
        scanned = 0
        while len(out) < num and scanned < total:
            n = 1 if scanned == 0 else (scanned * 4 if not out else
                                        max(1, int(1.5 * num * scanned / len(out)) - scanned))
            parts = list(range(scanned, min(total, scanned + n)))
            left = num - len(out)
            for chunk in self._per_partition(lambda it, left=left: list(islice(it, left)), parts):
                out.extend(chunk)
            scanned += len(parts)
        return out[:num]

    def first(self) -> Any:
        """The first element.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([7, 8]).first()
        7
        """
        got = self.take(1)
        if not got:
            raise ValueError("RDD is empty")
        return got[0]

    def isEmpty(self) -> bool:
        """True when the RDD has no elements.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([]).isEmpty()
        True
        """
        return self.getNumPartitions() == 0 or not self.take(1)  # type: ignore[attr-defined]

    def takeOrdered(self, num: int, key: Callable | None = None) -> list:
        """The ``num`` smallest elements (by ``key``), ascending.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([5, 3, 9, 1], 2).takeOrdered(2, key=lambda x: -x)
        [9, 5]
        """
        parts = self._per_partition(lambda it: heapq.nsmallest(num, it, key=key))
        return heapq.nsmallest(num, (x for p in parts for x in p), key=key)

    def top(self, num: int, key: Callable | None = None) -> list:
        """The ``num`` largest elements (by ``key``), descending."""
        parts = self._per_partition(lambda it: heapq.nlargest(num, it, key=key))
        return heapq.nlargest(num, (x for p in parts for x in p), key=key)

    def takeSample(self, withReplacement: bool, num: int, seed: int | None = None) -> list:
        """A sample of exactly ``num`` elements (fewer if the RDD is smaller, without replacement).

        >>> from dataflow import Context
        >>> s = Context("inline").parallelize(range(50), 3).takeSample(False, 5, seed=3)
        >>> len(s), len(set(s)), all(0 <= x < 50 for x in s)
        (5, 5, True)
        """
        if num < 0:
            raise ValueError("Sample size cannot be negative.")
        if num == 0:
            return []
        rng = random.Random(seed)
        count = self.count()
        if count == 0:
            return []
        if not withReplacement and num >= count:
            items = self.collect()
            rng.shuffle(items)
            return items
        fraction = _fraction_for_sample(num, count, withReplacement)
        items = self.sample(withReplacement, fraction, rng.randrange(1 << 30)).collect()  # type: ignore[attr-defined]
        while len(items) < num:
            items = self.sample(withReplacement, fraction, rng.randrange(1 << 30)).collect()  # type: ignore[attr-defined]
        rng.shuffle(items)
        return items[:num]

    def reduce(self, f: Callable[[Any, Any], Any]) -> Any:
        """Combine all elements with the associative, commutative ``f``.

        >>> from dataflow import Context
        >>> Context("inline").parallelize(range(1, 6), 2).reduce(lambda a, b: a * b)
        120
        """
        def part(it: Iterator) -> list:
            it = iter(it)
            for first in it:
                return [_reduce(f, it, first)]
            return []

        on_columns = None
        if is_add(f):
            def on_columns(cols: Any) -> list:
                v = batches.add_fold(cols, None, False, f)
                return [] if v is batches.EMPTY else [v]
        vals = [v for p in self._per_partition(part, on_columns=on_columns) for v in p]
        if not vals:
            raise ValueError("Can not reduce() empty RDD")
        return _reduce(f, vals)

    def treeReduce(self, f: Callable[[Any, Any], Any], depth: int = 2) -> Any:
        """Same result as :meth:`reduce`, combining partials in a tree of ``depth`` levels.

        The intermediate levels run as shuffle stages on the executors, so the driver only
        combines the last level's few partials (PySpark's algorithm).

        >>> from dataflow import Context
        >>> Context("inline").parallelize(range(1, 11), 8).treeReduce(lambda a, b: a + b)
        55
        """
        if depth < 1:
            raise ValueError(f"Depth cannot be smaller than 1 but got {depth}.")
        # the flag marks the zero: an empty partition must not reach ``f``
        zero = (None, True)

        def op(x: tuple, y: tuple) -> tuple:
            if x[1]:
                return y
            if y[1]:
                return x
            return f(x[0], y[0]), False

        reduced = self.map(lambda x: (x, False)).treeAggregate(zero, op, op, depth)
        if reduced[1]:
            raise ValueError("Cannot reduce empty RDD.")
        return reduced[0]

    def fold(self, zeroValue: Any, op: Callable[[Any, Any], Any]) -> Any:
        """Fold each partition from ``zeroValue`` with ``op``, then fold the partials likewise.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([1, 2, 3], 2).fold(0, lambda a, b: a + b)
        6
        """
        on_columns = None
        if type(zeroValue) is int and is_add(op):
            def on_columns(cols: Any) -> Any:
                return batches.add_fold(cols, zeroValue, True, op)
        vals = self._per_partition(lambda it: _reduce(op, it, zeroValue), on_columns=on_columns)
        return _reduce(op, vals, zeroValue)

    def aggregate(self, zeroValue: Any, seqOp: Callable, combOp: Callable) -> Any:
        """Aggregate each partition with ``seqOp`` from ``zeroValue``, combine with ``combOp``.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([1, 2, 3, 4], 2).aggregate(
        ...     (0, 0), lambda acc, x: (acc[0] + x, acc[1] + 1), lambda a, b: (a[0] + b[0], a[1] + b[1]))
        (10, 4)
        """
        vals = self._per_partition(lambda it: _reduce(seqOp, it, zeroValue))
        return _reduce(combOp, vals, zeroValue)

    def treeAggregate(self, zeroValue: Any, seqOp: Callable, combOp: Callable,
                      depth: int = 2) -> Any:
        """Same result as :meth:`aggregate`, combining partials in a tree of ``depth`` levels.

        Each level but the last is a ``reduceByKey`` over ``partition index % width`` that runs
        on the executors; the width shrinks by ``ceil(n ** (1 / depth))`` per level while a
        level still pays for itself (PySpark's rule).

        >>> from dataflow import Context
        >>> Context("inline").parallelize(range(10), 8).treeAggregate(
        ...     0, lambda acc, x: acc + x, lambda a, b: a + b, depth=2)
        45
        """
        if depth < 1:
            raise ValueError(f"Depth cannot be smaller than 1 but got {depth}.")
        if self.getNumPartitions() == 0:
            return zeroValue

        def aggregate_partition(it: Iterator) -> Iterator:
            yield _reduce(seqOp, it, zeroValue)

        partials = self.mapPartitions(aggregate_partition)
        width = float(partials.getNumPartitions())
        scale = max(math.ceil(width ** (1.0 / depth)), 2)
        while width > scale + width / scale:
            width /= scale
            n = int(width)

            def keyed(i: int, it: Iterator, n: int = n) -> Iterator:
                for obj in it:
                    yield i % n, obj

            partials = partials.mapPartitionsWithIndex(keyed).reduceByKey(combOp, n).values()
        return partials.reduce(combOp)

    def sum(self) -> Any:
        """Sum of the elements."""
        return sum(self._per_partition(sum, on_columns=batches.sum_part))

    def max(self, key: Callable | None = None) -> Any:
        """Largest element (by ``key``)."""
        return self.reduce(max if key is None else (lambda a, b: max(a, b, key=key)))

    def min(self, key: Callable | None = None) -> Any:
        """Smallest element (by ``key``)."""
        return self.reduce(min if key is None else (lambda a, b: min(a, b, key=key)))

    def stats(self) -> StatCounter:
        """A :class:`StatCounter` of the elements."""
        parts = self._per_partition(StatCounter)
        return _reduce(lambda a, b: a.mergeStats(b), parts, StatCounter())

    def mean(self) -> float:
        """Mean of the elements.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([1, 2, 3]).mean()
        2.0
        """
        return self.stats().mean()

    def variance(self) -> float:
        """Population variance."""
        return self.stats().variance()

    def stdev(self) -> float:
        """Population standard deviation."""
        return self.stats().stdev()

    def sampleVariance(self) -> float:
        return self.stats().sampleVariance()

    def sampleStdev(self) -> float:
        return self.stats().sampleStdev()

    def histogram(self, buckets: Any) -> tuple[list, list]:
        """Counts per bucket; ``buckets`` is a count (evenly spaced) or sorted boundaries.

        The last bucket includes its upper boundary.

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize(range(51))
        >>> rdd.histogram(2)
        ([0, 25, 50], [25, 26])
        >>> rdd.histogram([0, 5, 25, 50])
        ([0, 5, 25, 50], [5, 20, 26])
        """
        if isinstance(buckets, int):
            if buckets < 1:
                raise ValueError("number of buckets must be >= 1")

            def minmax(it: Iterator) -> tuple | None:
                lo = hi = None
                for x in it:
                    if isinstance(x, float) and math.isnan(x):
                        continue
                    lo = x if lo is None or x < lo else lo
                    hi = x if hi is None or x > hi else hi
                return None if lo is None else (lo, hi)

            ranges = [r for r in self._per_partition(minmax) if r is not None]
            if not ranges:
                raise ValueError("can not generate buckets from empty RDD")
            lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
            if lo == hi or buckets == 1:
                return [lo, hi], [self.count()]
            inc = (hi - lo) / buckets
            if isinstance(lo, int) and isinstance(hi, int) and (hi - lo) % buckets == 0:
                inc = (hi - lo) // buckets
            edges = [lo + i * inc for i in range(buckets)] + [hi]
        else:
            edges = list(buckets)
            if len(edges) < 2:
                raise ValueError("buckets should have more than one value")
            if any(a >= b for a, b in pairwise(edges)):
                raise ValueError("buckets should be sorted and not contain duplicates")
        nb = len(edges) - 1

        def count(it: Iterator) -> list:
            counts = [0] * nb
            lo, hi = edges[0], edges[-1]
            for x in it:
                if (isinstance(x, float) and math.isnan(x)) or x < lo or x > hi:
                    continue
                i = nb - 1 if x == hi else bisect.bisect_right(edges, x) - 1
                counts[i] += 1
            return counts

        totals = [sum(c) for c in zip(*self._per_partition(count))] or [0] * nb
        return edges, totals

    def foreach(self, f: Callable[[Any], Any]) -> None:
        """Apply ``f`` to every element for its side effects."""
        def part(it: Iterator) -> None:
            for x in it:
                f(x)
        self._per_partition(part)

    def foreachPartition(self, f: Callable[[Iterator], Any]) -> None:
        """Apply ``f`` to each partition's iterator for its side effects."""
        self._per_partition(lambda it: (f(it), None)[1])

    def toLocalIterator(self, prefetchPartitions: bool = False) -> Iterator:
        """Iterate over all elements, fetching one partition per job.

        >>> from dataflow import Context
        >>> list(Context("inline").parallelize(range(4), 2).toLocalIterator())
        [0, 1, 2, 3]
        """
        for p in range(self.getNumPartitions()):  # type: ignore[attr-defined]
            yield from self._per_partition(list, [p])[0]

    def saveAsTextFile(self, path: str, compressionCodecClass: str | None = None,
                       overwrite: bool = False) -> None:
        """Write ``str(x)`` lines, one ``part-NNNNN`` file per partition (``.gz`` if asked)."""
        from .io import save_as_text_file
        save_as_text_file(self, path, compressionCodecClass, overwrite)

    def saveAsPickleFile(self, path: str, batchSize: int = 10, overwrite: bool = False) -> None:
        """Write the elements pickled in batches; read back with ``Context.pickleFile``."""
        from .io import save_as_pickle_file
        save_as_pickle_file(self, path, batchSize, overwrite)

    def saveAsParquetFile(self, path: str, overwrite: bool = False) -> None:
        """Write dict (or tuple) records as Parquet, one file per partition."""
        from .io import save_as_table
        save_as_table(self, path, "parquet", overwrite)

    def saveAsCsvFile(self, path: str, overwrite: bool = False) -> None:
        """Write dict (or tuple) records as CSV with a header, one file per partition."""
        from .io import save_as_table
        save_as_table(self, path, "csv", overwrite)


def _fraction_for_sample(num: int, total: int, with_replacement: bool) -> float:
    """Sampling fraction that yields at least ``num`` elements with high probability."""
    fraction = num / total
    if with_replacement:
        return fraction + (12.0 if num < 12 else 5.0) * math.sqrt(fraction / total) if num else 0.0
    delta = 0.00005
    gamma = -math.log(delta) / total
    return min(1.0, fraction + gamma + math.sqrt(gamma * gamma + 2 * gamma * fraction))



class _WithColumns:
    """A per-partition function, and how to get its value from a columnar partition."""

    def __init__(self, func: Callable[[Iterator], Any], on_columns: Callable[[Any], Any]) -> None:
        self.func = func
        self.on_columns = on_columns

    def __call__(self, tc: Any, it: Iterator) -> Any:
        return self.func(it)


def _count(it: Iterator) -> int:
    """Length of an iterator, counted in C (no Python frame per element)."""
    counter = itertools.count()
    deque(zip(it, counter), maxlen=0)
    return next(counter)
