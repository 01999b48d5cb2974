"""Executor-side plans: the picklable part of an RDD lineage that computes one partition.

Each RDD on the driver describes itself as a tree of :class:`Node` objects. A node knows how to
compute the records of one partition from its children's partitions, and nothing about the
Context, so a node tree can be serialised into a task and run by any executor. Narrow
transformations become nested :class:`MapPartitionsNode` objects, which is what pipelines them
inside one task. :meth:`Node.prune` drops the data a task does not need (other partitions'
slices of a parallelized collection) before the tree is serialised. Where the records of a
shuffle come from is the :class:`~dataflow.tasks.TaskContext`'s business.

Examples
--------
>>> src = SourceNode({0: [1, 2], 1: [3, 4]})
>>> node = MapPartitionsNode(src, lambda split, it: (x * 10 for x in it))
>>> list(node.prune(1).compute(1, None))
[30, 40]
>>> sorted(node.prune(1).children[0].slices)
[1]
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any


class Node:
    """Computes partitions; subclasses set ``children`` and implement :meth:`compute`."""

    children: list[Node] = []  # noqa: RUF012 - leaf default, never mutated in place

    def compute(self, split: int, tc: Any) -> Iterator:
        raise NotImplementedError

    def columnar(self, split: int, tc: Any) -> Any:
        """The partition as columns (:mod:`dataflow.batches`) when this node can keep it so,
        else its records (the default)."""
        return self.compute(split, tc)

    def child_splits(self, split: int) -> list[list[int]]:
        """For each child, the splits this node's ``split`` reads (default: the same split)."""
        return [[split] for _ in self.children]

    def prune(self, split: int) -> Node:
        return self._prune_many({split})

    def _prune_many(self, splits: set) -> Node:
        need: list[set] = [set() for _ in self.children]
        for s in splits:
            for i, cs in enumerate(self.child_splits(s)):
                need[i].update(cs)
        clone = copy.copy(self)
        clone.children = [c._prune_many(n) if n else _Pruned() for c, n in zip(self.children, need)]
        return clone


class _Pruned(Node):
    def compute(self, split: int, tc: Any) -> Iterator:  # pragma: no cover - never reached
        raise RuntimeError("pruned plan node evaluated")


class SourceNode(Node):
    """Partitions given by the driver: ``reader(slices[split])`` (default: iterate the slice)."""

    def __init__(self, slices: dict, reader: Callable[[Any], Iterable] | None = None) -> None:
        self.slices = slices
        self.reader = reader
        self.children = []

    def compute(self, split: int, tc: Any) -> Iterator:
        data = self.slices[split]
        return iter(data) if self.reader is None else iter(self.reader(data))

    def columnar(self, split: int, tc: Any) -> Any:
        data = self.slices[split]
        if self.reader is None and isinstance(data, range):
            from .batches import range_columns
            cols = range_columns(data)
            if cols is not None:
                return cols
        from .io import read_text_split
        if self.reader is read_text_split:
            from .words import text_blocks
            blocks = text_blocks(data)
            if blocks is not None:
                return blocks
        return self.compute(split, tc)

    def _prune_many(self, splits: set) -> Node:
        clone = copy.copy(self)
        clone.slices = {s: self.slices[s] for s in splits}
        return clone


class MapPartitionsNode(Node):
    """``func(split, iterator) -> iterator`` over the same split of the parent.

    ``vec`` is ``("map" | "filter", expression)`` when ``func`` is a ``map`` or ``filter`` by a
    function :mod:`dataflow.vectorize` could analyse: the node then runs on columns when its
    parent gives columns (:mod:`dataflow.batches`), with ``func`` for what must stay Python.
    ``("split", None)`` marks ``flatMap(str.split)``, which keeps a text split's blocks
    (:mod:`dataflow.words`).
    """

    def __init__(self, parent: Node, func: Callable[[int, Iterator], Iterable],
                 vec: tuple | None = None) -> None:
        self.children = [parent]
        self.func = func
        self.vec = vec

    def compute(self, split: int, tc: Any) -> Iterator:
        if self.vec is None:
            return iter(self.func(split, self.children[0].compute(split, tc)))
        from .batches import as_records
        return iter(as_records(self.columnar(split, tc)))

    def columnar(self, split: int, tc: Any) -> Any:
        if self.vec is None:
            return self.compute(split, tc)
        from . import batches
        kind, expr = self.vec
        got = self.children[0].columnar(split, tc)
        if kind == "split":  # flatMap(str.split)
            from .words import TextBlocks, Words
            if isinstance(got, TextBlocks):
                return Words(got)
        elif isinstance(got, batches.Columnar):
            return batches.apply(got, kind, expr, lambda it: self.func(split, it))
        elif kind == "map":
            from .vectorize import const_pair
            c = const_pair(expr)
            if c is not None and not isinstance(got, batches.ConstPairs):
                return batches.ConstPairs(got, c)
        return iter(self.func(split, batches.as_records(got)))


class UnionNode(Node):
    """Partitions of all children, one after another."""

    def __init__(self, children: list[Node], counts: list[int]) -> None:
        self.children = children
        self.counts = counts

    def _locate(self, split: int) -> tuple[int, int]:
        for i, c in enumerate(self.counts):
            if split < c:
                return i, split
            split -= c
        raise IndexError(split)

    def child_splits(self, split: int) -> list[list[int]]:
        i, s = self._locate(split)
        return [[s] if j == i else [] for j in range(len(self.children))]

    def compute(self, split: int, tc: Any) -> Iterator:
        i, s = self._locate(split)
        return self.children[i].compute(s, tc)


class CoalesceNode(Node):
    """Partition ``i`` is the concatenation of parent partitions ``groups[i]``."""

    def __init__(self, parent: Node, groups: list[list[int]]) -> None:
        self.children = [parent]
        self.groups = groups

    def child_splits(self, split: int) -> list[list[int]]:
        return [list(self.groups[split])]

    def compute(self, split: int, tc: Any) -> Iterator:
        return chain.from_iterable(self.children[0].compute(s, tc) for s in self.groups[split])


class CartesianNode(Node):
    """Partition ``i * nb + j`` pairs every record of ``a[i]`` with every record of ``b[j]``."""

    def __init__(self, a: Node, b: Node, nb: int) -> None:
        self.children = [a, b]
        self.nb = nb

    def child_splits(self, split: int) -> list[list[int]]:
        return [[split // self.nb], [split % self.nb]]

    def compute(self, split: int, tc: Any) -> Iterator:
        right = list(self.children[1].compute(split % self.nb, tc))
        return ((x, y) for x in self.children[0].compute(split // self.nb, tc) for y in right)


class ZipNode(Node):
    """Pairs the i-th records of the same partition of two parents."""

    def compute(self, split: int, tc: Any) -> Iterator:
        return _zip_strict(self.children[0].compute(split, tc), self.children[1].compute(split, tc))

    def __init__(self, a: Node, b: Node) -> None:
        self.children = [a, b]


def _zip_strict(a: Iterator, b: Iterator) -> Iterator:
    sentinel = object()
    for x in a:
        y = next(b, sentinel)
        if y is sentinel:
            raise ValueError("Can only zip RDDs with the same number of elements in each partition")
        yield x, y
    if next(b, sentinel) is not sentinel:
        raise ValueError("Can only zip RDDs with the same number of elements in each partition")


class HashJoinNode(Node):
    """Inner join of the same reduce partition of two shuffles by the same partitioner."""

    def __init__(self, left: Node, right: Node) -> None:
        self.children = [left, right]

    def compute(self, split: int, tc: Any) -> Iterator:
        return tc.join_shuffles(self.children[0], self.children[1], split)


class ShuffledNode(Node):
    """Reads one reduce partition of a shuffle and merges it (aggregate, sort or plain)."""

    def __init__(self, shuffle_id: int, aggregator: Any = None, map_side_combine: bool = True,
                 sort_key: Callable | None = None, ascending: bool = True) -> None:
        self.children = []
        self.shuffle_id = shuffle_id
        self.aggregator = aggregator
        self.map_side_combine = map_side_combine
        self.sort_key = sort_key
        self.ascending = ascending

    def compute(self, split: int, tc: Any) -> Iterator:
        return tc.read_shuffle(self, split)

    def columnar(self, split: int, tc: Any) -> Any:
        return tc.read_shuffle(self, split, columns=True)

    def _prune_many(self, splits: set) -> Node:
        return self


class CachedNode(Node):
    """Serves the parent's partition from the executor's cache, computing it on a miss."""

    def __init__(self, parent: Node, rdd_id: int) -> None:
        self.children = [parent]
        self.rdd_id = rdd_id

    def compute(self, split: int, tc: Any) -> Iterator:
        return tc.cached(self.rdd_id, split, lambda: self.children[0].compute(split, tc))
