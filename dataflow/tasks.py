"""Tasks as self-contained bytes, the executor-side runner, and the backend seam.

A :class:`Task` is what the DAG scheduler asks to run: ids (job, stage, stage attempt,
partition, attempt) plus ``payload``, the serialised :class:`TaskBody` (a pruned plan, the
partition, and what to do with the records: return a value or write a shuffle map output).
:func:`run_task` is the whole executor side: bytes in, bytes of a :class:`TaskResult` out. An
executor process needs only an :class:`ExecutorEnv` (work directory, block fetcher, cache)
and this function.

:class:`TaskBackend` is the seam between the driver and whatever runs tasks: the inline backend
(:mod:`dataflow.inline`) calls :func:`run_task` in the driver thread; the substrate backend
(:mod:`dataflow.cluster_backend`) sends ``Task.to_bytes()`` to executors and reports their
results as :class:`TaskEnded` events.

Examples
--------
>>> import tempfile
>>> from dataflow.plan import SourceNode
>>> env = ExecutorEnv("exec-0", tempfile.mkdtemp())
>>> body = TaskBody(SourceNode({0: [1, 2, 3]}), 0, ResultSpec(lambda tc, it: sum(it)), {})
>>> task = Task(1, 0, 0, 0, 0, 0, "result", dumps(body))
>>> result = TaskResult.from_bytes(run_task(task.to_bytes(), env))
>>> result.ok, result.value()
(True, 6)
"""
from __future__ import annotations

import gc
import os
import pickle
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .batches import Columnar, as_records
from .errors import FetchFailedError, SerializationError
from .serialize import dumps, loads
from .shuffle import (
    BlockFetcher,
    LocalBlockFetcher,
    MapStatus,
    ShuffleReader,
    ShuffleWriteSpec,
    write_map_output,
)

DEFAULT_MEMORY = 256 * 1024 * 1024
_local = threading.local()


@dataclass
class ResultSpec:
    """A result task returns ``func(task_context, records)``."""

    func: Callable[[Any, Iterator], Any]


@dataclass
class TaskBody:
    """The serialised part of a task: plan, partition, output and shuffle locations."""

    node: Any
    split: int
    output: Any  # ResultSpec or ShuffleWriteSpec
    map_outputs: dict  # shuffle id -> list[MapStatus]


@dataclass
class Task:
    """One attempt at one partition of one stage, as the scheduler hands it to a backend."""

    task_id: int
    job_id: int
    stage_id: int
    stage_attempt: int
    partition: int
    attempt: int
    kind: str  # "result" or "map"
    payload: bytes
    speculative: bool = False
    #: Executor ids where the task's input already is (cached partitions, map outputs), best
    #: first; a hint for delay scheduling, never a requirement.
    preferred_locations: tuple = ()

    def to_bytes(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_bytes(data: bytes) -> Task:
        return pickle.loads(data)


@dataclass
class TaskResult:
    """What an executor sends back. Exactly one of value / map status / error is set."""

    task_id: int
    ok: bool
    value_bytes: bytes | None = None
    map_status: MapStatus | None = None
    error_type: str = ""
    error_message: str = ""
    error_traceback: str = ""
    fetch_failure: FetchFailedError | None = None
    accumulators: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    executor_id: str = ""
    #: ``(rdd_id, partition)`` blocks this task put in its executor's cache.
    cached: list = field(default_factory=list)

    def value(self) -> Any:
        return loads(self.value_bytes) if self.value_bytes is not None else None

    def to_bytes(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def from_bytes(data: bytes) -> TaskResult:
        return pickle.loads(data)


@dataclass
class TaskEnded:
    """Backend event: a task finished (successfully or not); ``result`` is TaskResult bytes."""

    task_id: int
    result: bytes


@dataclass
class ExecutorLost:
    """Backend event: an executor and its map outputs are gone."""

    executor_id: str


class ExecutorEnv:
    """Per-executor state: work directory, shuffle fetcher, partition cache, broadcasts."""

    def __init__(self, executor_id: str, work_dir: str, memory_budget: int = DEFAULT_MEMORY,
                 fetcher: BlockFetcher | None = None,
                 broadcast_loader: Callable[[int], Any] | None = None) -> None:
        self.executor_id = executor_id
        self.work_dir = work_dir
        self.shuffle_root = os.path.join(work_dir, "shuffle")
        self.spill_dir = os.path.join(work_dir, "spill")
        self.memory_budget = memory_budget
        self.reader = ShuffleReader(fetcher or LocalBlockFetcher(self.shuffle_root))
        self.cache: dict[tuple[int, int], list] = {}
        self.broadcasts: dict[int, Any] = {}
        self.broadcast_loader = broadcast_loader
        self.lock = threading.Lock()

    def drop_rdd(self, rdd_id: int) -> None:
        with self.lock:
            for key in [k for k in self.cache if k[0] == rdd_id]:
                del self.cache[key]


class TaskContext:
    """What running code can see of its task (PySpark's ``TaskContext``)."""

    def __init__(self, task: Task, env: ExecutorEnv, map_outputs: dict) -> None:
        self.task = task
        self.env = env
        self.map_outputs = map_outputs
        self.accumulators: dict[int, Any] = {}
        self.cached_blocks: list[tuple[int, int]] = []
        self.metrics: dict[str, int] = {"spill_files": 0, "spilled_records": 0,
                                        "shuffle_bytes_written": 0, "cache_hits": 0}

    def stageId(self) -> int:
        return self.task.stage_id

    def partitionId(self) -> int:
        return self.task.partition

    def attemptNumber(self) -> int:
        return self.task.attempt

    def taskAttemptId(self) -> int:
        return self.task.task_id

    @staticmethod
    def get() -> TaskContext | None:
        """The context of the task running in this thread, or None on the driver."""
        return getattr(_local, "tc", None)

    def cached(self, rdd_id: int, split: int, compute: Callable[[], Iterator]) -> Iterator:
        key = (rdd_id, split)
        with self.env.lock:
            hit = self.env.cache.get(key)
        if hit is not None:
            self.metrics["cache_hits"] += 1
            return iter(hit)
        data = list(compute())
        with self.env.lock:
            self.env.cache[key] = data
        self.cached_blocks.append(key)
        return iter(data)

    def _statuses(self, shuffle_id: int, split: int) -> list:
        """The map outputs of a shuffle; one the driver already knows is lost (its executor
        died after this task was made) is a fetch failure, so the scheduler recomputes it."""
        statuses = self.map_outputs[shuffle_id]
        for map_id, status in enumerate(statuses):
            if status is None:
                raise FetchFailedError(shuffle_id, map_id, split, "", "map output lost")
        return statuses

    def read_shuffle(self, node: Any, split: int, columns: bool = False) -> Any:
        """The records of reduce partition ``split`` of ``node``'s shuffle; with ``columns``,
        a columnar partition (:mod:`dataflow.batches`) instead when the merge ended as arrays."""
        from . import columnar
        from .spill import ExternalAggregator, identity
        statuses = self._statuses(node.shuffle_id, split)
        reader = self.env.reader
        budget = self.env.memory_budget
        if node.aggregator is not None and not node.map_side_combine \
                and node.sort_key is None and _is_group_by_key(node.aggregator):
            def group_fallback(records: Iterator) -> Iterator:
                agg = ExternalAggregator(node.aggregator, budget, self.env.spill_dir)
                agg.insert_values(records)
                self._count_spills(agg)
                return agg.items()
            return columnar.grouped_records(reader.frames(statuses, split), budget,
                                            group_fallback)
        if node.aggregator is None and node.sort_key is identity:
            return columnar.sorted_records(reader.frames(statuses, split), node.ascending,
                                           budget, lambda records: self._sort(node, records))
        if node.aggregator is not None:
            agg = ExternalAggregator(node.aggregator, self.env.memory_budget, self.env.spill_dir)
            for frame in reader.frames(statuses, split):
                if isinstance(frame, list):
                    if node.map_side_combine:
                        agg.insert_combiners(frame)
                    else:
                        agg.insert_values(frame)
                elif node.map_side_combine:
                    agg.insert_columns(frame[0], frame[1])
                else:
                    agg.insert_values(zip(frame[0].tolist(), frame[1].tolist()))
            merged = agg.columns() if columns and node.sort_key is None else None
            if merged is not None:
                from .batches import Batch, Columnar
                from .vecexec import column
                self._count_spills(agg)
                return Columnar(iter([Batch((column(merged[0]), column(merged[1])),
                                            len(merged[0]))]))
            out = agg.items()
            if node.sort_key is not None:
                out = self._sort(node, out)
            self._count_spills(agg)
            return out
        records = reader.records(statuses, split)
        if node.sort_key is not None:
            return self._sort(node, records)
        return records

    def join_shuffles(self, left: Any, right: Any, split: int) -> Iterator:
        """Inner join of reduce partition ``split`` of two shuffles (``join``)."""
        from . import columnar
        from .plan import ShuffledNode
        if not (isinstance(left, ShuffledNode) and isinstance(right, ShuffledNode)):
            return self._join_records(left.compute(split, self), right.compute(split, self))
        reader = self.env.reader
        return columnar.hash_join(reader.frames(self._statuses(left.shuffle_id, split), split),
                                  reader.frames(self._statuses(right.shuffle_id, split), split),
                                  self.env.memory_budget, self._join_records)

    def _join_records(self, left: Iterator, right: Iterator) -> Iterator:
        """The general join: values of both sides grouped per key within the budget."""
        from .pairs import cogroup_aggregator
        from .spill import ExternalAggregator
        agg = ExternalAggregator(cogroup_aggregator(2), self.env.memory_budget,
                                 self.env.spill_dir)
        agg.insert_values((k, (0, v)) for k, v in left)
        agg.insert_values((k, (1, w)) for k, w in right)
        self._count_spills(agg)
        return ((k, (v, w)) for k, (vs, ws) in agg.items() for v in vs for w in ws)

    def _sort(self, node: Any, records: Iterator) -> Iterator:
        from .spill import ExternalSorter
        sorter = ExternalSorter(node.sort_key, node.ascending, self.env.memory_budget,
                                self.env.spill_dir)
        sorter.insert_all(records)
        self._count_spills(sorter)
        return sorter.items()

    def _count_spills(self, spiller: Any) -> None:
        self.metrics["spill_files"] += spiller.spill_files
        self.metrics["spilled_records"] += spiller.spilled_records


#: Allocations between two young-generation collections in executor processes.
GC_THRESHOLD = 100_000


def tune_gc() -> None:
    """Make the cyclic GC of an executor process run rarely.

    Tasks build millions of small containers (records, groups) that live until the task ends;
    with the default threshold (700) the collector runs all the time and walks them again and
    again (measured: building groups was 7x slower). Cycles are still collected, just later.
    """
    gc.freeze()  # what was imported so far is never garbage
    gc.set_threshold(GC_THRESHOLD, 50, 100)


def _is_group_by_key(aggregator: Any) -> bool:
    from .pairs import _append, _list1
    return aggregator.create_combiner is _list1 and aggregator.merge_value is _append


def run_task(data: bytes, env: ExecutorEnv) -> bytes:
    """Run one serialised :class:`Task` and return the serialised :class:`TaskResult`."""
    task = Task.from_bytes(data)
    tc: TaskContext | None = None
    try:
        tc = TaskContext(task, env, {})
        _local.tc = tc  # set first: unpickling accumulators registers them with the task
        body: TaskBody = loads(task.payload)
        tc.map_outputs = body.map_outputs
        # columns when the plan keeps them (dataflow.batches): the shuffle writer and the
        # actions that know columns read them, everything else gets the records
        records = body.node.columnar(body.split, tc)
        if isinstance(body.output, ShuffleWriteSpec):
            status, written = write_map_output(body.output, records, env.shuffle_root,
                                               task.partition, task.attempt, env.executor_id,
                                               env.memory_budget)
            tc.metrics["shuffle_bytes_written"] += written
            result = TaskResult(task.task_id, True, map_status=status)
        else:
            on_columns = getattr(body.output.func, "on_columns", None)
            if on_columns is not None and isinstance(records, Columnar):
                value = on_columns(records)
            else:
                value = body.output.func(tc, as_records(records))
            result = TaskResult(task.task_id, True,
                                value_bytes=dumps(value, "the result of a task"))
        result.accumulators = {aid: acc._value for aid, acc in tc.accumulators.items()}
        result.metrics = tc.metrics
        result.cached = tc.cached_blocks
    except FetchFailedError as exc:
        result = TaskResult(task.task_id, False, error_type="FetchFailedError",
                            error_message=str(exc), error_traceback=traceback.format_exc(),
                            fetch_failure=exc)
    except BaseException as exc:  # the user's code may raise anything; report it, never die
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and tc is None:
            raise
        result = TaskResult(task.task_id, False, error_type=type(exc).__name__,
                            error_message=str(exc), error_traceback=traceback.format_exc())
    finally:
        _local.tc = None
    result.executor_id = env.executor_id
    try:
        return result.to_bytes()
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - TaskResult is plain data
        raise SerializationError(f"cannot serialise task result: {exc}") from None


class TaskBackend:
    """Runs tasks for the driver; :mod:`dataflow.inline` and :mod:`dataflow.cluster_backend`.

    The driver calls :meth:`launch` and :meth:`kill` as the DAG scheduler asks, and
    :meth:`poll` to wait for :class:`TaskEnded` / :class:`ExecutorLost` events. A launched task
    must eventually be reported exactly once by ``poll`` (as a failure if its executor died),
    unless it was killed. Executors run :func:`run_task` on ``Task.to_bytes()`` and send back
    the bytes it returns; map outputs are served to other executors through a
    :class:`~dataflow.shuffle.BlockFetcher` keyed by ``MapStatus.location``.
    """

    default_parallelism: int = 1

    def launch(self, task: Task) -> None:
        raise NotImplementedError

    def kill(self, task_id: int) -> None:
        raise NotImplementedError

    def poll(self, timeout: float | None = None) -> list:
        raise NotImplementedError

    def has_pending(self) -> bool:
        """True while some launched task has not been reported by :meth:`poll` yet."""
        return True

    def unpersist(self, rdd_id: int) -> None:
        """Drop cached partitions of ``rdd_id`` on every executor."""
        raise NotImplementedError

    def drop_broadcast(self, broadcast_id: int) -> None:
        """Forget executor copies of a broadcast value."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

