"""Stages: cutting an RDD lineage at its shuffle dependencies.

A job's last RDD becomes a *result stage*; every shuffle dependency met while walking its
lineage becomes a *shuffle map stage* (one per shuffle, reused by later jobs so a shuffle
that is already written is not written again). Narrow dependencies stay inside a stage, so the
transformations between two shuffles run pipelined in one task. Deciding when stages run is
:mod:`dataflow.dag`'s job; turning a stage and a partition into task bytes is :func:`task_body`.

Examples
--------
>>> from dataflow import Context
>>> with Context("inline") as ctx:
...     rdd = ctx.parallelize([("a", 1), ("b", 2)], 2).reduceByKey(lambda a, b: a + b)
...     final = StageGraph().result_stage(rdd.mapValues(str))
...     [(s.is_map, s.num_tasks) for s in [final] + final.parents]
[(False, 2), (True, 2)]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .tasks import ResultSpec, TaskBody


class NarrowDependency:
    """Each child partition reads a bounded set of parent partitions."""

    def __init__(self, rdd: Any) -> None:
        self.rdd = rdd


class ShuffleDependency:
    """The child reads every parent partition, through a shuffle."""

    def __init__(self, rdd: Any, shuffle_id: int, spec: Any) -> None:
        self.rdd = rdd
        self.shuffle_id = shuffle_id
        self.spec = spec  # a ShuffleWriteSpec
        self.site = ""  # the call site of the operation that shuffles, set by ShuffledRDD


@dataclass(eq=False)
class Stage:
    """A set of tasks, one per partition, that run the same pipelined plan."""

    id: int
    rdd: Any
    num_tasks: int
    parents: list[Stage] = field(default_factory=list)
    shuffle_dep: ShuffleDependency | None = None
    attempt: int = 0

    @property
    def is_map(self) -> bool:
        return self.shuffle_dep is not None

    @property
    def shuffle_id(self) -> int | None:
        return self.shuffle_dep.shuffle_id if self.shuffle_dep else None

    def __repr__(self) -> str:
        kind = f"ShuffleMapStage(shuffle {self.shuffle_id})" if self.is_map else "ResultStage"
        return f"{kind}#{self.id}[{self.num_tasks} tasks]"


class StageGraph:
    """Builds stages from lineages; remembers map stages by shuffle id across jobs."""

    def __init__(self) -> None:
        self.by_shuffle: dict[int, Stage] = {}
        self._next_id = 0

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def result_stage(self, rdd: Any) -> Stage:
        return Stage(self._new_id(), rdd, rdd.getNumPartitions(), self._parents(rdd))

    def _parents(self, rdd: Any) -> list[Stage]:
        parents: list[Stage] = []
        seen: set[int] = set()
        stack = [rdd]
        while stack:
            r = stack.pop()
            if id(r) in seen:
                continue
            seen.add(id(r))
            for dep in r._deps():
                if isinstance(dep, ShuffleDependency):
                    st = self._map_stage(dep)
                    if st not in parents:
                        parents.append(st)
                else:
                    stack.append(dep.rdd)
        return parents

    def _map_stage(self, dep: ShuffleDependency) -> Stage:
        st = self.by_shuffle.get(dep.shuffle_id)
        if st is None:
            st = Stage(self._new_id(), dep.rdd, dep.rdd.getNumPartitions(),
                       self._parents(dep.rdd), dep)
            self.by_shuffle[dep.shuffle_id] = st
        return st


def task_body(stage: Stage, partition: int, map_outputs: dict, result: ResultSpec | None,
              node_cache: dict) -> TaskBody:
    """The body of the task computing ``partition`` of ``stage``, with an unpruned-plan cache."""
    node = node_cache.get(stage.id)
    if node is None:
        node = node_cache[stage.id] = stage.rdd._node()
    needed = {}
    for sid in _shuffles_read(node):
        needed[sid] = list(map_outputs[sid])
    output = stage.shuffle_dep.spec if stage.is_map else result
    return TaskBody(node.prune(partition), partition, output, needed)


def stage_inputs(stage: Stage) -> tuple[list[int], list[int]]:
    """Cached RDD ids whose partition ``p`` task ``p`` reads, and the shuffles it reads.

    Only one-to-one narrow chains keep partition numbers, so the walk stops at unions,
    coalesces, cartesian products and zips.
    """
    cached: list[int] = []
    shuffles: list[int] = []
    r = stage.rdd
    while r is not None:
        if r.is_cached:
            cached.append(r.id())
        deps = r._deps()
        if len(deps) != 1:
            break
        if isinstance(deps[0], ShuffleDependency):
            shuffles.append(deps[0].shuffle_id)
            break
        parent = deps[0].rdd
        r = parent if parent.getNumPartitions() == r.getNumPartitions() and \
            type(r).__name__ == "MapPartitionsRDD" else None
    return cached, shuffles


def _shuffles_read(node: Any) -> list[int]:
    from .plan import ShuffledNode
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ShuffledNode):
            out.append(n.shuffle_id)
        stack.extend(n.children)
    return out
