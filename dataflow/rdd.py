"""RDDs: lineage, persistence and the narrow transformations.

An :class:`RDD` is a driver-side description of a distributed collection: how many partitions
it has, which RDDs it depends on (narrow or shuffle dependencies, see :mod:`dataflow.stages`)
and how to compute a partition (its plan, see :mod:`dataflow.plan`). Transformations build new
RDDs lazily; actions (:mod:`dataflow.rdd_actions`) run jobs through the Context. By-key
operations, joins and other shuffles live in :mod:`dataflow.pairs`; file formats in
:mod:`dataflow.io`. Method names, argument order and results follow PySpark's RDD API.

Examples
--------
>>> from dataflow import Context
>>> ctx = Context("inline")
>>> rdd = ctx.parallelize(range(10), 3)
>>> rdd.map(lambda x: x * 2).filter(lambda x: x % 3 == 0).collect()
[0, 6, 12, 18]
>>> rdd.getNumPartitions(), rdd.glom().map(len).collect()
(3, [3, 3, 4])
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, pairwise
from typing import Any

from . import plan
from .display import call_site, rdd_html
from .pairs import PairOps
from .rdd_actions import Actions
from .serialize import refuse_pickling
from .stages import NarrowDependency, ShuffleDependency


class RDD(Actions, PairOps):
    """A resilient distributed dataset: an immutable, partitioned, lazily computed collection.

    The methods are grouped by concern: narrow transformations here, actions in
    :class:`~dataflow.rdd_actions.Actions`, key/value and shuffle operations in
    :class:`~dataflow.pairs.PairOps`.
    """

    def __init__(self, ctx: Any, num_partitions: int, deps: list, partitioner: Any = None) -> None:
        self.ctx = ctx
        self._id = ctx._new_rdd_id()
        self._num_partitions = num_partitions
        self._dependencies = deps
        self.partitioner = partitioner
        self._name: str | None = None
        self.is_cached = False
        self._checkpoint_requested = False
        self._checkpoint: tuple[str, Any] | None = None
        #: ``"operation at file:line"`` of the user code that made this RDD
        self.creation_site = call_site()

    # -- identity and lineage ------------------------------------------------------------
    @property
    def context(self) -> Any:
        """The Context this RDD belongs to."""
        return self.ctx

    def id(self) -> int:
        """A unique id of this RDD within its Context."""
        return self._id

    def name(self) -> str | None:
        """The name given with :meth:`setName`, or None."""
        return self._name

    def setName(self, name: str) -> RDD:
        """Name this RDD (shown by :meth:`toDebugString`).

        >>> from dataflow import Context
        >>> Context("inline").parallelize([1]).setName("ones").name()
        'ones'
        """
        self._name = name
        return self

    def getNumPartitions(self) -> int:
        """Number of partitions.

        >>> from dataflow import Context
        >>> Context("inline").parallelize(range(4), 3).getNumPartitions()
        3
        """
        return self._num_partitions

    def _deps(self) -> list:
        return [] if self._checkpoint is not None else self._dependencies

    def _lineage(self) -> list:
        out, seen, stack = [], set(), [self]
        while stack:
            r = stack.pop()
            if r._id in seen:
                continue
            seen.add(r._id)
            out.append(r)
            stack.extend(d.rdd for d in r._deps())
        return out

    def _node(self) -> plan.Node:
        node = self._checkpoint[1] if self._checkpoint is not None else self._compute_node()
        return plan.CachedNode(node, self._id) if self.is_cached else node

    def _compute_node(self) -> plan.Node:
        raise NotImplementedError

    def __reduce_ex__(self, protocol: Any) -> Any:
        refuse_pickling("an RDD")

    def __repr__(self) -> str:
        label = f"{self._name} " if self._name else ""
        return f"{label}{type(self).__name__}[{self._id}]"

    def _repr_html_(self) -> str:
        """Id, name, partitions, cached or not and lineage, for Jupyter."""
        return rdd_html(self)

    def toDebugString(self) -> bytes:
        """The lineage, one RDD per line, indented at shuffle boundaries (bytes, like PySpark).

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([(1, 2)], 1).reduceByKey(max)
        >>> print(rdd.toDebugString().decode())  # doctest: +ELLIPSIS
        (1) ShuffledRDD[...] []
         +-(1) ParallelRDD[...] []
        """
        lines: list[str] = []

        def walk(r: RDD, indent: str, head: str) -> None:
            cached = "[Memory Serialized 1x Replicated]" if r.is_cached else "[]"
            lines.append(f"{indent}{head}{r!r} {cached}")
            for d in r._deps():
                if isinstance(d, ShuffleDependency):
                    walk(d.rdd, indent + " ", f"+-({d.rdd.getNumPartitions()}) ")
                else:
                    walk(d.rdd, indent + " " if head.startswith("+") else indent, " |  ")

        walk(self, "", f"({self._num_partitions}) ")
        return "\n".join(lines).encode("utf-8")

    # -- persistence ---------------------------------------------------------------------
    def cache(self) -> RDD:
        """Keep computed partitions in executor memory.

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([1, 2]).cache()
        >>> rdd.is_cached, rdd.sum(), rdd.sum()
        (True, 3, 3)
        """
        self.is_cached = True
        return self

    def persist(self, storageLevel: Any = None) -> RDD:
        """Same as :meth:`cache` (memory is the only storage level)."""
        return self.cache()

    def unpersist(self, blocking: bool = False) -> RDD:
        """Drop cached partitions."""
        self.is_cached = False
        self.ctx._unpersist(self._id)
        return self

    def checkpoint(self) -> None:
        """Save this RDD to the checkpoint directory after the next job and cut its lineage.

        >>> import tempfile
        >>> from dataflow import Context
        >>> ctx = Context("inline"); ctx.setCheckpointDir(tempfile.mkdtemp())
        >>> rdd = ctx.parallelize(range(4), 2).map(lambda x: x + 1)
        >>> rdd.checkpoint(); rdd.sum(), rdd.isCheckpointed(), rdd.collect()
        (10, True, [1, 2, 3, 4])
        """
        from .errors import DataflowError
        if self.ctx.checkpoint_dir is None:
            raise DataflowError("call Context.setCheckpointDir() before checkpoint()")
        self._checkpoint_requested = True

    def isCheckpointed(self) -> bool:
        return self._checkpoint is not None

    def getCheckpointFile(self) -> str | None:
        return self._checkpoint[0] if self._checkpoint is not None else None

    # -- narrow transformations ----------------------------------------------------------
    def mapPartitionsWithIndex(self, f: Callable[[int, Iterator], Iterable],
                               preservesPartitioning: bool = False) -> RDD:
        """Apply ``f(partition_index, iterator)`` to each partition.

        >>> from dataflow import Context
        >>> rdd = Context("inline").parallelize([1, 2, 3, 4], 2)
        >>> rdd.mapPartitionsWithIndex(lambda i, it: [(i, sum(it))]).collect()
        [(0, 3), (1, 7)]
        """
        return MapPartitionsRDD(self, f, preservesPartitioning)

    def mapPartitionsWithSplit(self, f: Callable, preservesPartitioning: bool = False) -> RDD:
        """Deprecated alias of :meth:`mapPartitionsWithIndex`."""
        return self.mapPartitionsWithIndex(f, preservesPartitioning)

    def mapPartitions(self, f: Callable[[Iterator], Iterable],
                      preservesPartitioning: bool = False) -> RDD:
        """Apply ``f(iterator)`` to each partition.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([1, 2, 3, 4], 2).mapPartitions(lambda it: [sum(it)]).collect()
        [3, 7]
        """
        return MapPartitionsRDD(self, lambda _, it: f(it), preservesPartitioning)

    def map(self, f: Callable[[Any], Any], preservesPartitioning: bool = False) -> RDD:
        """Apply ``f`` to every element.

        >>> from dataflow import Context
        >>> Context("inline").parallelize(["a", "bb"]).map(len).collect()
        [1, 2]
        """
        return MapPartitionsRDD(self, lambda _, it: map(f, it), preservesPartitioning,
                                vec=("map", f))

    def flatMap(self, f: Callable[[Any], Iterable], preservesPartitioning: bool = False) -> RDD:
        """Apply ``f`` to every element and flatten the results.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([2, 3]).flatMap(lambda x: range(x)).collect()
        [0, 1, 0, 1, 2]
        """
        return MapPartitionsRDD(self, lambda _, it: chain.from_iterable(map(f, it)),
                                preservesPartitioning,
                                vec=("split", None) if f is str.split else None)

    def filter(self, f: Callable[[Any], bool]) -> RDD:
        """Keep the elements for which ``f`` is true.

        >>> from dataflow import Context
        >>> Context("inline").parallelize(range(6)).filter(lambda x: x % 2).collect()
        [1, 3, 5]
        """
        return MapPartitionsRDD(self, lambda _, it: filter(f, it), True, vec=("filter", f))

    def glom(self) -> RDD:
        """Each partition as one list.

        >>> from dataflow import Context
        >>> Context("inline").parallelize([1, 2, 3], 2).glom().collect()
        [[1], [2, 3]]
        """
        return MapPartitionsRDD(self, lambda _, it: [list(it)])

    def keyBy(self, f: Callable[[Any], Any]) -> RDD:
        """Pairs ``(f(x), x)``.

        >>> from dataflow import Context
        >>> Context("inline").parallelize(["ab", "c"]).keyBy(len).collect()
        [(2, 'ab'), (1, 'c')]
        """
        return self.map(lambda x: (f(x), x))

    def union(self, other: RDD) -> RDD:
        """Elements of both RDDs (duplicates kept).

        >>> from dataflow import Context
        >>> ctx = Context("inline")
        >>> ctx.parallelize([1, 2]).union(ctx.parallelize([2])).collect()
        [1, 2, 2]
        """
        return UnionRDD(self.ctx, [self, other])

    def __add__(self, other: RDD) -> RDD:
        return self.union(other)

    def cartesian(self, other: RDD) -> RDD:
        """All pairs ``(a, b)`` with ``a`` in this RDD and ``b`` in ``other``.

        >>> from dataflow import Context
        >>> ctx = Context("inline")
        >>> sorted(ctx.parallelize([1, 2]).cartesian(ctx.parallelize("ab")).collect())
        [(1, 'a'), (1, 'b'), (2, 'a'), (2, 'b')]
        """
        return CartesianRDD(self, other)

    def zip(self, other: RDD) -> RDD:
        """Pair the i-th elements of two RDDs with the same partitioning and partition sizes.

        >>> from dataflow import Context
        >>> ctx = Context("inline")
        >>> ctx.parallelize(range(3), 2).zip(ctx.parallelize("abc", 2)).collect()
        [(0, 'a'), (1, 'b'), (2, 'c')]
        """
        if self.getNumPartitions() != other.getNumPartitions():
            raise ValueError("Can only zip with RDD which has the same number of partitions")
        return ZippedRDD(self, other)

    def zipWithIndex(self) -> RDD:
        """Pairs ``(x, index)``; runs a job to count partitions when there are several.

        >>> from dataflow import Context
        >>> Context("inline").parallelize("abc", 2).zipWithIndex().collect()
        [('a', 0), ('b', 1), ('c', 2)]
        """
        starts = [0]
        if self.getNumPartitions() > 1:
            counts = self.mapPartitions(lambda it: [sum(1 for _ in it)]).collect()
            for c in counts[:-1]:
                starts.append(starts[-1] + c)
        return self.mapPartitionsWithIndex(
            lambda i, it: ((x, n) for n, x in enumerate(it, starts[i])))

    def zipWithUniqueId(self) -> RDD:
        """Pairs ``(x, id)`` with ids ``k, n+k, 2n+k, ...`` in partition ``k`` of ``n``.

        >>> from dataflow import Context
        >>> Context("inline").parallelize("abcde", 2).zipWithUniqueId().collect()
        [('a', 0), ('b', 2), ('c', 1), ('d', 3), ('e', 5)]
        """
        n = self.getNumPartitions()
        return self.mapPartitionsWithIndex(
            lambda k, it: ((x, i * n + k) for i, x in enumerate(it)))

    def coalesce(self, numPartitions: int, shuffle: bool = False) -> RDD:
        """Fewer partitions by merging neighbours (or any number, with ``shuffle=True``).

        >>> from dataflow import Context
        >>> Context("inline").parallelize(range(5), 4).coalesce(2).glom().collect()
        [[0, 1], [2, 3, 4]]
        """
        if shuffle:
            return self.repartition(numPartitions)
        n = self.getNumPartitions()
        m = max(1, min(numPartitions, n)) if n else 0
        groups = [list(range(i * n // m, (i + 1) * n // m)) for i in range(m)]
        return CoalescedRDD(self, groups)

    def sample(self, withReplacement: bool, fraction: float, seed: int | None = None) -> RDD:
        """A random sample: each element kept with probability ``fraction`` (or Poisson counts).

        >>> from dataflow import Context
        >>> s = Context("inline").parallelize(range(1000), 4).sample(False, 0.1, seed=1).count()
        >>> 50 < s < 150
        True
        """
        if fraction < 0:
            raise ValueError("Fraction must be nonnegative")
        base = random.randrange(1 << 30) if seed is None else seed

        def part(split: int, it: Iterator) -> Iterator:
            rng = random.Random(base * 1000003 + split)
            if not withReplacement:
                # the draws of ``x for x in it if rng.random() < fraction``, in C
                return itertools.compress(it, map(float(fraction).__gt__, iter(rng.random, None)))
            import numpy as np
            gen = np.random.default_rng(base * 1000003 + split)
            return (x for x in it for _ in range(int(gen.poisson(fraction))))

        return MapPartitionsRDD(self, part, True)

    def randomSplit(self, weights: list, seed: int | None = None) -> list:
        """Split into RDDs whose sizes follow ``weights``; every element lands in exactly one.

        >>> from dataflow import Context
        >>> a, b = Context("inline").parallelize(range(100), 2).randomSplit([1, 3], seed=7)
        >>> sorted(a.collect() + b.collect()) == list(range(100))
        True
        """
        total = float(sum(weights))
        if total <= 0 or any(w < 0 for w in weights):
            raise ValueError("weights must be non-negative with a positive sum")
        bounds = [0.0]
        for w in weights:
            bounds.append(bounds[-1] + w / total)
        base = random.randrange(1 << 30) if seed is None else seed

        def make(lo: float, hi: float) -> Callable:
            def part(split: int, it: Iterator) -> Iterator:
                rng = random.Random(base * 1000003 + split)
                return (x for x in it if lo <= rng.random() < hi)
            return part

        return [MapPartitionsRDD(self, make(lo, hi), True) for lo, hi in pairwise(bounds)]

    def pipe(self, command: str, env: dict | None = None, checkCode: bool = False) -> RDD:
        """Feed each partition's elements, one per line, to a shell command; its output lines.

        >>> from dataflow import Context
        >>> Context("inline").parallelize(["b", "a"], 1).pipe("sort").collect()
        ['a', 'b']
        """
        from .io import pipe_partition
        return self.mapPartitions(pipe_partition(command, env, checkCode))


class ParallelRDD(RDD):
    """A local collection cut into slices the way PySpark cuts it."""

    def __init__(self, ctx: Any, c: Iterable, num_slices: int) -> None:
        data = c if isinstance(c, range) else list(c)
        n = len(data)
        num_slices = max(1, num_slices) if n or num_slices else 0
        super().__init__(ctx, num_slices, [])
        self._slices = {i: data[i * n // num_slices:(i + 1) * n // num_slices]
                        for i in range(num_slices)}

    def _compute_node(self) -> plan.Node:
        return plan.SourceNode(self._slices)


class SourceRDD(RDD):
    """Partitions read by ``reader(descriptor)`` on the executor (files, checkpoints)."""

    def __init__(self, ctx: Any, descriptors: list, reader: Callable[[Any], Iterable]) -> None:
        super().__init__(ctx, len(descriptors), [])
        self._descriptors = descriptors
        self._reader = reader

    def _compute_node(self) -> plan.Node:
        return plan.SourceNode(dict(enumerate(self._descriptors)), self._reader)


class MapPartitionsRDD(RDD):
    """``f(split, iterator)`` on each partition of ``parent``.

    ``vec`` is ``("map" | "filter", user_function)`` for :meth:`RDD.map` and :meth:`RDD.filter`:
    the user's function is analysed (:mod:`dataflow.vectorize`) when a job's plan is made --
    the moment its closure is serialised, so closure and global numbers are read then, as
    PySpark reads them -- and runs on NumPy columns where the analysis allows.
    """

    def __init__(self, parent: RDD, f: Callable, preserves: bool = False,
                 vec: tuple | None = None) -> None:
        super().__init__(parent.ctx, parent.getNumPartitions(), [NarrowDependency(parent)],
                         parent.partitioner if preserves else None)
        self._parent = parent
        self._f = f
        self._vec = vec

    def _compute_node(self) -> plan.Node:
        vec = None
        if self._vec is not None and self._vec[0] == "split":
            vec = self._vec if self.ctx.vectorize else None
        elif self._vec is not None and self.ctx.vectorize:
            from .vectorize import analyse
            expr = analyse(self._vec[1])
            vec = (self._vec[0], expr) if expr is not None else None
        return plan.MapPartitionsNode(self._parent._node(), self._f, vec)


class UnionRDD(RDD):
    def __init__(self, ctx: Any, rdds: list) -> None:
        parts = {r.partitioner for r in rdds}
        same = len(parts) == 1 and None not in parts
        super().__init__(ctx, sum(r.getNumPartitions() for r in rdds),
                         [NarrowDependency(r) for r in rdds], None)
        self._rdds = rdds
        del same  # PySpark keeps partitioner-aware unions; ours always concatenates

    def _compute_node(self) -> plan.Node:
        return plan.UnionNode([r._node() for r in self._rdds],
                              [r.getNumPartitions() for r in self._rdds])


class CoalescedRDD(RDD):
    def __init__(self, parent: RDD, groups: list) -> None:
        super().__init__(parent.ctx, len(groups), [NarrowDependency(parent)])
        self._parent = parent
        self._groups = groups

    def _compute_node(self) -> plan.Node:
        return plan.CoalesceNode(self._parent._node(), self._groups)


class CartesianRDD(RDD):
    def __init__(self, a: RDD, b: RDD) -> None:
        super().__init__(a.ctx, a.getNumPartitions() * b.getNumPartitions(),
                         [NarrowDependency(a), NarrowDependency(b)])
        self._a, self._b = a, b

    def _compute_node(self) -> plan.Node:
        return plan.CartesianNode(self._a._node(), self._b._node(), self._b.getNumPartitions())


class ZippedRDD(RDD):
    def __init__(self, a: RDD, b: RDD) -> None:
        super().__init__(a.ctx, a.getNumPartitions(), [NarrowDependency(a), NarrowDependency(b)])
        self._a, self._b = a, b

    def _compute_node(self) -> plan.Node:
        return plan.ZipNode(self._a._node(), self._b._node())


class HashJoinedRDD(RDD):
    """``join`` of two RDDs shuffled alike: partition ``i`` joins both ``i``-th partitions."""

    def __init__(self, a: RDD, b: RDD) -> None:
        super().__init__(a.ctx, a.getNumPartitions(), [NarrowDependency(a), NarrowDependency(b)],
                         a.partitioner)
        self._a, self._b = a, b

    def _compute_node(self) -> plan.Node:
        return plan.HashJoinNode(self._a._node(), self._b._node())


class ShuffledRDD(RDD):
    """The reduce side of a shuffle of ``parent`` (pairs) by ``spec.partitioner``."""

    def __init__(self, parent: RDD, spec: Any, sort_key: Callable | None = None,
                 ascending: bool = True) -> None:
        ctx = parent.ctx
        dep = ShuffleDependency(parent, spec.shuffle_id, spec)
        super().__init__(ctx, spec.partitioner.num_partitions, [dep], spec.partitioner)
        dep.site = self.creation_site
        self._spec = spec
        self._sort_key = sort_key
        self._ascending = ascending

    def _compute_node(self) -> plan.Node:
        s = self._spec
        return plan.ShuffledNode(s.shuffle_id, s.aggregator, s.map_side_combine,
                                 self._sort_key, self._ascending)
