"""Key/value operations and everything else that shuffles.

All by-key aggregations are :meth:`PairOps.combineByKey` with different functions: it puts a
:class:`~dataflow.shuffle.ShuffleWriteSpec` on a shuffle dependency, and the map side combines
before writing while the reduce side merges with spilling (:mod:`dataflow.spill`). Joins are
a cogroup of tagged values followed by a per-key product. ``sortByKey`` samples the keys to
pick range bounds, shuffles by range and sorts each partition. Partition counts default as in
PySpark: to the parent's number of partitions.

Examples
--------
>>> from operator import add
>>> from dataflow import Context
>>> ctx = Context("inline")
>>> words = ctx.parallelize("a rose is a rose".split(), 2)
>>> sorted(words.map(lambda w: (w, 1)).reduceByKey(add).collect())
[('a', 2), ('is', 1), ('rose', 2)]
>>> a = ctx.parallelize([(1, "x"), (2, "y")])
>>> b = ctx.parallelize([(1, "z"), (3, "w")])
>>> sorted(a.join(b).collect()), sorted(a.fullOuterJoin(b).collect())
([(1, ('x', 'z'))], [(1, ('x', 'z')), (2, ('y', None)), (3, (None, 'w'))])
"""
from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Iterator
from itertools import product
from typing import Any

from .partitioner import HashPartitioner, RangePartitioner, portable_hash
from .shuffle import Aggregator, ShuffleWriteSpec
from .spill import identity


class ResultIterable:
    """The values of one key after a grouping (iterable, with ``len``), as in PySpark."""

    def __init__(self, data: list) -> None:
        self.data = data
        self.maxindex = len(data)

    def __iter__(self) -> Iterator:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"ResultIterable({self.data!r})"


def _list1(v: Any) -> list:
    return [v]


def _append(c: list, v: Any) -> list:
    c.append(v)
    return c


def _extend(a: list, b: list) -> list:
    a.extend(b)
    return a


def _int_key(k: int) -> int:
    return k


class PairOps:
    """By-key, join, set and sort operations of :class:`~dataflow.rdd.RDD`."""

    ctx: Any
    partitioner: Any

    # -- simple per-pair maps ------------------------------------------------------------
    def keys(self) -> Any:
        """The keys of a pair RDD.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([(1, 2), (3, 4)]).keys().collect()
        [1, 3]
        """
        return self.map(lambda kv: kv[0])  # type: ignore[attr-defined]

    def values(self) -> Any:
        """The values of a pair RDD."""
        return self.map(lambda kv: kv[1])  # type: ignore[attr-defined]

    def mapValues(self, f: Callable[[Any], Any]) -> Any:
        """Apply ``f`` to each value, keeping keys (and the partitioner).

        >>> from dataflow import Context
        >>> Context("inline").parallelize([("a", [1, 2])]).mapValues(len).collect()
        [('a', 2)]
        """
        return self.map(lambda kv: (kv[0], f(kv[1])), True)  # type: ignore[attr-defined]

    def flatMapValues(self, f: Callable[[Any], Any]) -> Any:
        """Pairs ``(k, w)`` for every ``w`` in ``f(v)``.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([("a", 2)]).flatMapValues(range).collect()
        [('a', 0), ('a', 1)]
        """
        return self.flatMap(lambda kv: ((kv[0], x) for x in f(kv[1])), True)  # type: ignore[attr-defined]

    # -- shuffles ------------------------------------------------------------------------
    def _n(self, numPartitions: int | None) -> int:
        return numPartitions or max(1, self.getNumPartitions())  # type: ignore[attr-defined]

    def _shuffle(self, partitioner: Any, aggregator: Aggregator | None = None,
                 map_side_combine: bool = True, sort_key: Callable | None = None,
                 ascending: bool = True) -> Any:
        from .rdd import ShuffledRDD
        spec = ShuffleWriteSpec(self.ctx._new_shuffle_id(), partitioner, aggregator,
                                map_side_combine)
        return ShuffledRDD(self, spec, sort_key, ascending)  # type: ignore[arg-type]

    def partitionBy(self, numPartitions: int, partitionFunc: Callable = portable_hash) -> Any:
        """Move each pair to partition ``partitionFunc(key) % numPartitions``.

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([(0, "a"), (1, "b"), (2, "c")]).partitionBy(2, lambda k: k)
        >>> rdd.glom().collect()
        [[(0, 'a'), (2, 'c')], [(1, 'b')]]
        """
        part = HashPartitioner(numPartitions, partitionFunc)
        if self.partitioner == part:
            return self
        return self._shuffle(part)

    def combineByKey(self, createCombiner: Callable, mergeValue: Callable,
                     mergeCombiners: Callable, numPartitions: int | None = None,
                     partitionFunc: Callable = portable_hash) -> Any:
        """Combine the values of each key into a combiner.

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([("a", 1), ("b", 2), ("a", 3)], 2)
        >>> sorted(rdd.combineByKey(lambda v: [v], lambda c, v: c + [v], lambda a, b: a + b).collect())
        [('a', [1, 3]), ('b', [2])]
        """
        agg = Aggregator(createCombiner, mergeValue, mergeCombiners)
        return self._combine(agg, numPartitions, partitionFunc)

    def _combine(self, agg: Aggregator, numPartitions: int | None, partitionFunc: Callable,
                 map_side_combine: bool = True) -> Any:
        return self._shuffle(HashPartitioner(self._n(numPartitions), partitionFunc), agg,
                             map_side_combine)

    def reduceByKey(self, func: Callable[[Any, Any], Any], numPartitions: int | None = None,
                    partitionFunc: Callable = portable_hash) -> Any:
        """Merge the values of each key with ``func`` (map-side first).

        >>> from dataflow import Context
        >>> sorted(Context("inline").parallelize([("a", 1), ("a", 2), ("b", 5)]).reduceByKey(max).collect())
        [('a', 2), ('b', 5)]
        """
        return self._combine(Aggregator.for_reduce(func), numPartitions, partitionFunc)

    def reduceByKeyLocally(self, func: Callable[[Any, Any], Any]) -> dict:
        """Merge the values of each key with ``func`` and return a dict to the driver."""
        def part(it: Iterator) -> dict:
            m: dict = {}
            for k, v in it:
                m[k] = func(m[k], v) if k in m else v
            return m

        out: dict = {}
        for m in self.mapPartitions(lambda it: [part(it)]).collect():  # type: ignore[attr-defined]
            for k, v in m.items():
                out[k] = func(out[k], v) if k in out else v
        return out

    def foldByKey(self, zeroValue: Any, func: Callable[[Any, Any], Any],
                  numPartitions: int | None = None,
                  partitionFunc: Callable = portable_hash) -> Any:
        """Fold the values of each key from a fresh copy of ``zeroValue``.

        >>> from operator import add
        >>> from dataflow import Context
        >>> sorted(Context("inline").parallelize([("a", 1), ("a", 2)]).foldByKey(10, add).collect())
        [('a', 13)]
        """
        return self.combineByKey(lambda v: func(copy.deepcopy(zeroValue), v), func, func,
                                 numPartitions, partitionFunc)

    def aggregateByKey(self, zeroValue: Any, seqFunc: Callable, combFunc: Callable,
                       numPartitions: int | None = None,
                       partitionFunc: Callable = portable_hash) -> Any:
        """Aggregate each key's values with ``seqFunc`` from ``zeroValue``; merge with ``combFunc``.

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([("a", 1), ("a", 2), ("b", 3)], 2)
        >>> sorted(rdd.aggregateByKey(0, lambda c, v: c + v, lambda a, b: a + b).collect())
        [('a', 3), ('b', 3)]
        """
        return self.combineByKey(lambda v: seqFunc(copy.deepcopy(zeroValue), v), seqFunc,
                                 combFunc, numPartitions, partitionFunc)

    def groupByKey(self, numPartitions: int | None = None,
                   partitionFunc: Callable = portable_hash) -> Any:
        """Group the values of each key into a :class:`ResultIterable`.

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([("a", 1), ("b", 2), ("a", 3)], 2)
        >>> sorted(rdd.groupByKey().mapValues(list).collect())
        [('a', [1, 3]), ('b', [2])]
        """
        agg = Aggregator(_list1, _append, _extend)
        return self._combine(agg, numPartitions, partitionFunc, False).mapValues(ResultIterable)

    def groupBy(self, f: Callable[[Any], Any], numPartitions: int | None = None,
                partitionFunc: Callable = portable_hash) -> Any:
        """Group elements by ``f(x)``.

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([1, 2, 3, 4])
        >>> sorted((k, sorted(v)) for k, v in rdd.groupBy(lambda x: x % 2).collect())
        [(0, [2, 4]), (1, [1, 3])]
        """
        return self.map(lambda x: (f(x), x)).groupByKey(numPartitions, partitionFunc)  # type: ignore[attr-defined]

    def repartition(self, numPartitions: int) -> Any:
        """Exactly ``numPartitions`` partitions of about equal size (a shuffle).

        >>> from dataflow import Context
        >>> Context("inline").parallelize(range(8), 1).repartition(4).glom().map(len).collect()
        [2, 2, 2, 2]
        """
        n = int(numPartitions)

        def keyed(i: int, it: Iterator) -> Iterator:
            return (((i + j) % n, x) for j, x in enumerate(it))

        shuffled = self.mapPartitionsWithIndex(keyed)._shuffle(HashPartitioner(n, _int_key))  # type: ignore[attr-defined]
        return shuffled.values()

    def repartitionAndSortWithinPartitions(self, numPartitions: int | None = None,
                                           partitionFunc: Callable = portable_hash,
                                           ascending: bool = True,
                                           keyfunc: Callable = identity) -> Any:
        """Repartition by ``partitionFunc`` and sort each partition by key.

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([(0, 5), (3, 8), (2, 6), (0, 8), (3, 8), (1, 3)])
        >>> rdd.repartitionAndSortWithinPartitions(2, lambda x: x % 2).glom().collect()
        [[(0, 5), (0, 8), (2, 6)], [(1, 3), (3, 8), (3, 8)]]
        """
        part = HashPartitioner(self._n(numPartitions), partitionFunc)
        return self._shuffle(part, sort_key=keyfunc, ascending=ascending)

    def sortByKey(self, ascending: bool = True, numPartitions: int | None = None,
                  keyfunc: Callable = identity) -> Any:
        """Sort pairs by key across partitions (samples the keys to choose ranges).

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([("b", 1), ("a", 2), ("c", 3)], 2)
        >>> rdd.sortByKey().collect(), rdd.sortByKey(False).keys().collect()
        ([('a', 2), ('b', 1), ('c', 3)], ['c', 'b', 'a'])
        """
        n = self._n(numPartitions)
        if n == 1:
            return self._shuffle(HashPartitioner(1), sort_key=keyfunc, ascending=ascending)
        bounds = _range_bounds(self._per_partition(_key_sketch), n, keyfunc)  # type: ignore[attr-defined]
        return self._shuffle(RangePartitioner(bounds, ascending, keyfunc), sort_key=keyfunc,
                             ascending=ascending)

    def sortBy(self, keyfunc: Callable[[Any], Any], ascending: bool = True,
               numPartitions: int | None = None) -> Any:
        """Sort elements by ``keyfunc``.

        >>> from dataflow import Context
        >>> Context("inline").parallelize(["ccc", "a", "bb"], 2).sortBy(len).collect()
        ['a', 'bb', 'ccc']
        """
        return self.keyBy(keyfunc).sortByKey(ascending, numPartitions).values()  # type: ignore[attr-defined]

    # -- set operations ------------------------------------------------------------------
    def distinct(self, numPartitions: int | None = None) -> Any:
        """The distinct elements.

        >>> from dataflow import Context
        >>> sorted(Context("inline").parallelize([1, 1, 2, 3, 3]).distinct().collect())
        [1, 2, 3]
        """
        return (self.map(lambda x: (x, None))  # type: ignore[attr-defined]
                .reduceByKey(lambda x, _: x, numPartitions).map(lambda kv: kv[0]))

    def intersection(self, other: Any) -> Any:
        """Distinct elements present in both RDDs.

        >>> from dataflow import Context
        >>> ctx = Context("inline")
        >>> sorted(ctx.parallelize([1, 2, 2, 3]).intersection(ctx.parallelize([2, 3, 4])).collect())
        [2, 3]
        """
        a = self.map(lambda v: (v, None))  # type: ignore[attr-defined]
        b = other.map(lambda v: (v, None))
        return a.cogroup(b).filter(lambda kv: len(kv[1][0]) and len(kv[1][1])).keys()

    def subtractByKey(self, other: Any, numPartitions: int | None = None) -> Any:
        """Pairs whose key does not occur in ``other``.

        >>> from dataflow import Context
        >>> ctx = Context("inline")
        >>> ctx.parallelize([("a", 1), ("b", 2)]).subtractByKey(ctx.parallelize([("a", 9)])).collect()
        [('b', 2)]
        """
        return (self.cogroup(other, numPartitions)
                .filter(lambda kv: len(kv[1][0]) and not len(kv[1][1]))
                .flatMapValues(lambda vs: vs[0]))

    def subtract(self, other: Any, numPartitions: int | None = None) -> Any:
        """Elements not in ``other`` (duplicates of the survivors kept).

        >>> from dataflow import Context
        >>> ctx = Context("inline")
        >>> sorted(ctx.parallelize([1, 2, 2, 3]).subtract(ctx.parallelize([3])).collect())
        [1, 2, 2]
        """
        a = self.map(lambda x: (x, True))  # type: ignore[attr-defined]
        return a.subtractByKey(other.map(lambda x: (x, True)), numPartitions).keys()

    # -- cogroup and joins ---------------------------------------------------------------
    def cogroup(self, other: Any, numPartitions: int | None = None) -> Any:
        """For each key, the values in this RDD and in ``other`` as two ResultIterables.

        >>> from dataflow import Context
        >>> ctx = Context("inline")
        >>> g = ctx.parallelize([("a", 1)]).cogroup(ctx.parallelize([("a", 2), ("b", 3)]))
        >>> sorted((k, tuple(map(list, v))) for k, v in g.collect())
        [('a', ([1], [2])), ('b', ([], [3]))]
        """
        return _cogroup([self, other], numPartitions)

    def groupWith(self, other: Any, *others: Any) -> Any:
        """Cogroup with any number of other RDDs."""
        return _cogroup([self, other, *others], None)

    def join(self, other: Any, numPartitions: int | None = None) -> Any:
        """Inner join: ``(k, (v, w))`` for every pair of matching values.

        Both sides are shuffled by the same partitioner and each reduce partition is
        hash-joined (on int keys by the ``_native.columnar`` kernel).

        >>> from dataflow import Context
        >>> ctx = Context("inline")
        >>> a = ctx.parallelize([(1, "a"), (2, "b"), (1, "c")])
        >>> sorted(a.join(ctx.parallelize([(1, 10), (3, 30)])).collect())
        [(1, ('a', 10)), (1, ('c', 10))]
        """
        from .rdd import HashJoinedRDD
        # PySpark's default: as many partitions as both sides together
        n = numPartitions or max(1, self.getNumPartitions() + other.getNumPartitions())  # type: ignore[attr-defined]
        part = HashPartitioner(n)
        return HashJoinedRDD(self._shuffle(part), other._shuffle(part))

    def leftOuterJoin(self, other: Any, numPartitions: int | None = None) -> Any:
        """``(k, (v, w))``, with ``w = None`` when ``other`` lacks ``k``.

        >>> from dataflow import Context
        >>> ctx = Context("inline")
        >>> sorted(ctx.parallelize([("a", 1), ("b", 2)]).leftOuterJoin(ctx.parallelize([("a", 3)])).collect())
        [('a', (1, 3)), ('b', (2, None))]
        """
        return self.cogroup(other, numPartitions).flatMapValues(
            lambda vw: product(vw[0], vw[1] if len(vw[1]) else [None]))

    def rightOuterJoin(self, other: Any, numPartitions: int | None = None) -> Any:
        """``(k, (v, w))``, with ``v = None`` when this RDD lacks ``k``."""
        return self.cogroup(other, numPartitions).flatMapValues(
            lambda vw: product(vw[0] if len(vw[0]) else [None], vw[1]))

    def fullOuterJoin(self, other: Any, numPartitions: int | None = None) -> Any:
        """Left and right outer join together."""
        return self.cogroup(other, numPartitions).flatMapValues(
            lambda vw: product(vw[0] if len(vw[0]) else [None], vw[1] if len(vw[1]) else [None]))

    def lookup(self, key: Any) -> list:
        """All values of ``key`` (one partition scanned when the partitioner is known).

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([(1, "a"), (2, "b"), (1, "c")]).partitionBy(3)
        >>> rdd.lookup(1)
        ['a', 'c']
        """
        values = self.filter(lambda kv: kv[0] == key).values()  # type: ignore[attr-defined]
        if self.partitioner is not None:
            return self.ctx.runJob(values, lambda it: list(it), [self.partitioner(key)])
        return values.collect()


def cogroup_aggregator(width: int) -> Aggregator:
    """Combines ``(side, value)`` records into one list of values per side."""

    def create(tv: tuple) -> list:
        c: list = [[] for _ in range(width)]
        c[tv[0]].append(tv[1])
        return c

    def merge_value(c: list, tv: tuple) -> list:
        c[tv[0]].append(tv[1])
        return c

    def merge_combiners(a: list, b: list) -> list:
        for x, y in zip(a, b):
            x.extend(y)
        return a

    return Aggregator(create, merge_value, merge_combiners)


def _cogroup(rdds: list, numPartitions: int | None) -> Any:
    def tag(i: int) -> Callable:
        return lambda kv: (kv[0], (i, kv[1]))

    ctx = rdds[0].ctx
    tagged = ctx.union([r.map(tag(i)) for i, r in enumerate(rdds)])
    agg = cogroup_aggregator(len(rdds))
    grouped = tagged._combine(agg, numPartitions, portable_hash, False)
    return grouped.mapValues(lambda c: tuple(ResultIterable(x) for x in c))


#: Keys kept per partition to choose the bounds of ``sortByKey`` (PySpark samples 20 a partition).
SKETCH_KEYS = 60


def _key_sketch(it: Iterator) -> tuple[int, list]:
    """``(count, up to SKETCH_KEYS keys drawn uniformly)`` of one partition, in one pass.

    Reservoir sampling with geometric skips (Li's algorithm L): the skipped records are
    consumed in C, so the pass costs about what ``count()`` does, and ``sortByKey`` needs one
    job before its shuffle instead of a count and a sample.
    """
    import math
    import random
    from itertools import count, islice
    counter = count()
    pairs = zip(it, counter)  # ``counter`` ends one past the last record consumed
    sample = [kv[0] for kv, _ in islice(pairs, SKETCH_KEYS)]
    if len(sample) < SKETCH_KEYS:
        return len(sample), sample
    rng = random.Random(len(sample))  # fixed: the same data gives the same bounds
    w = math.exp(math.log(1.0 - rng.random()) / SKETCH_KEYS)
    while w < 1.0:
        skip = int(math.log(1.0 - rng.random()) / math.log(1.0 - w))
        nxt = next(islice(pairs, skip, None), None)
        if nxt is None:
            break
        sample[rng.randrange(SKETCH_KEYS)] = nxt[0][0]
        w *= math.exp(math.log(1.0 - rng.random()) / SKETCH_KEYS)
    else:  # w rounded to 1: no more replacements; just count the rest
        deque(pairs, maxlen=0)
    return next(counter), sample


def _range_bounds(sketches: list, n: int, keyfunc: Callable) -> list:
    """``n - 1`` bounds splitting the sampled keys into parts of equal weight (each sampled key
    stands for ``count / len(sample)`` records of its partition)."""
    weighted = [(keyfunc(k), c / len(keys)) for c, keys in sketches if keys for k in keys]
    if not weighted:
        return []
    weighted.sort(key=lambda kw: kw[0])
    total = sum(w for _, w in weighted)
    bounds, acc, i = [], 0.0, 0
    for j in range(1, n):
        target = total * j / n
        while i < len(weighted) - 1 and acc + weighted[i][1] <= target:
            acc += weighted[i][1]
            i += 1
        bounds.append(weighted[i][0])
    return bounds
