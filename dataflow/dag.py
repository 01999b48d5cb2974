"""The DAG scheduler: a pure state machine from task events to scheduling actions.

It decides which stages run (parents first), which partitions need tasks, what to retry and
when a job is done. It never runs anything, touches no files and reads time only from the
injected ``clock``: events come in through :meth:`DAGScheduler.submit_job`,
:meth:`~DAGScheduler.task_ended`, :meth:`~DAGScheduler.executor_lost` and
:meth:`~DAGScheduler.tick`, and each returns a list of actions (:class:`LaunchTask`,
:class:`KillTask`, :class:`Accumulate`, :class:`JobSucceeded`, :class:`JobFailed`) for the
driver loop in :mod:`dataflow.context` to carry out. Failures it handles:

* a task that raises is retried up to ``max_task_failures`` attempts, then the job fails with
  :class:`~dataflow.errors.TaskFailedError`;
* a fetch failure marks the map output lost and resubmits the parent stage, which recomputes
  the missing outputs from lineage, then the failed stage (at most ``max_stage_attempts``);
* a lost executor loses its map outputs;
* with ``speculation`` on, a straggler gets a second copy once ``speculation_quantile`` of its
  stage's tasks finished and it ran ``speculation_multiplier`` times the median duration.

Examples
--------
>>> from dataflow.stages import Stage
>>> from dataflow.tasks import TaskResult
>>> dag = DAGScheduler(clock=lambda: 0.0)
>>> final = Stage(0, None, 2)
>>> [type(a).__name__ for a in dag.submit_job(0, final, [0, 1], None)]
['LaunchTask', 'LaunchTask']
>>> dag.task_ended(TaskResult(0, True, value_bytes=None))
[Accumulate(updates={}, metrics={})]
>>> [type(a).__name__ for a in dag.task_ended(TaskResult(1, True))]
['Accumulate', 'JobSucceeded']
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import JobError, TaskFailedError
from .stages import Stage


@dataclass
class LaunchTask:
    task_id: int
    job_id: int
    stage: Stage
    partition: int
    attempt: int
    speculative: bool = False


@dataclass
class KillTask:
    task_id: int


@dataclass
class Accumulate:
    updates: dict
    metrics: dict


@dataclass
class JobSucceeded:
    job_id: int
    results: list  # TaskResult per requested partition, in order


@dataclass
class JobFailed:
    job_id: int
    error: Exception


@dataclass
class _TaskInfo:
    stage: Stage
    stage_attempt: int
    partition: int
    attempt: int
    start: float
    speculative: bool
    running: bool = True


@dataclass
class _Job:
    id: int
    final: Stage
    partitions: list
    context: Any
    results: dict = field(default_factory=dict)


class DAGScheduler:
    """Stage and task bookkeeping for one job at a time; map outputs survive across jobs."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_task_failures: int = 4,
                 max_stage_attempts: int = 4, speculation: bool = False,
                 speculation_multiplier: float = 1.5, speculation_quantile: float = 0.75,
                 speculation_min_runtime: float = 0.1) -> None:
        self.clock = clock
        self.max_task_failures = max_task_failures
        self.max_stage_attempts = max_stage_attempts
        self.speculation = speculation
        self.spec_multiplier = speculation_multiplier
        self.spec_quantile = speculation_quantile
        self.spec_min_runtime = speculation_min_runtime
        self.map_outputs: dict[int, list] = {}
        #: executor id holding each cached ``(rdd_id, partition)`` block
        self.cache_locations: dict[tuple[int, int], str] = {}
        self.job: _Job | None = None
        self.running: set[Stage] = set()
        self.waiting: set[Stage] = set()
        self.tasks: dict[int, _TaskInfo] = {}
        self.failures: dict[tuple[int, int], int] = {}
        self.attempts: dict[tuple[int, int], int] = {}
        self.durations: dict[int, list] = {}
        self.fetch_failures: dict[int, int] = {}
        self._next_task = 0

    # -- events --------------------------------------------------------------------------
    def submit_job(self, job_id: int, final: Stage, partitions: list, context: Any) -> list:
        """Start a job computing ``partitions`` of ``final``; ``context`` is kept for the driver."""
        if self.job is not None:
            raise JobError("a job is already running")
        self.job = _Job(job_id, final, list(partitions), context)
        actions: list = []
        if not self.job.partitions:
            self.job = None
            return [JobSucceeded(job_id, [])]
        self._submit_stage(final, actions)
        return actions

    def task_ended(self, result: Any) -> list:
        """A task finished; ``result`` is a :class:`~dataflow.tasks.TaskResult`."""
        info = self.tasks.get(result.task_id)
        if info is None or not info.running or self.job is None:
            return []
        info.running = False
        actions: list = []
        if result.ok:
            self._succeeded(info, result, actions)
        elif result.fetch_failure is not None:
            self._fetch_failed(info, result.fetch_failure, actions)
        else:
            self._failed(info, result, actions)
        return actions

    def executor_lost(self, executor_id: str) -> list:
        """Forget the map outputs that lived on ``executor_id``."""
        for outs in self.map_outputs.values():
            for i, st in enumerate(outs):
                if st is not None and st.location == executor_id:
                    outs[i] = None
        for key in [k for k, loc in self.cache_locations.items() if loc == executor_id]:
            del self.cache_locations[key]
        return []

    def uncache(self, rdd_id: int) -> None:
        """Forget where the cached partitions of ``rdd_id`` were."""
        for key in [k for k in self.cache_locations if k[0] == rdd_id]:
            del self.cache_locations[key]

    def preferred_locations(self, shuffle_ids: list, cached: list, partition: int) -> tuple:
        """Executors holding a task's input: its cached blocks, then the biggest map outputs.

        ``cached`` lists the ids of cached RDDs the task reads partition ``partition`` of;
        ``shuffle_ids`` the shuffles it reads (reduce partition ``partition``).
        """
        prefs: list[str] = []
        for rdd_id in cached:
            loc = self.cache_locations.get((rdd_id, partition))
            if loc is not None and loc not in prefs:
                prefs.append(loc)
        weight: dict[str, int] = {}
        for sid in shuffle_ids:
            for st in self.map_outputs.get(sid) or ():
                if st is not None and partition < len(st.sizes):
                    weight[st.location] = weight.get(st.location, 0) + st.sizes[partition]
        for loc, _ in sorted(weight.items(), key=lambda kv: -kv[1]):
            if loc not in prefs:
                prefs.append(loc)
        return tuple(prefs)

    def stage_progress(self, stage: Stage) -> tuple[int, int]:
        """``(done, total)`` partitions of ``stage`` for the running job (a read-only view for
        progress display); ``(0, 0)`` for a result stage that is not the running job's."""
        if stage.is_map:
            outs = self.map_outputs.get(stage.shuffle_id) or ()
            return sum(o is not None for o in outs), stage.num_tasks
        if self.job is None or stage is not self.job.final:
            return 0, 0
        return len(self.job.results), len(self.job.partitions)

    def tick(self) -> list:
        """Check for stragglers to speculate on."""
        if not self.speculation or self.job is None:
            return []
        actions: list = []
        now = self.clock()
        for stage in list(self.running):
            done = sorted(self.durations.get(stage.id, []))
            if not done or len(done) < self.spec_quantile * stage.num_tasks:
                continue
            threshold = max(self.spec_multiplier * done[len(done) // 2], self.spec_min_runtime)
            live = [i for i in self.tasks.values() if i.running and i.stage is stage]
            per_part: dict[int, int] = {}
            for i in live:
                per_part[i.partition] = per_part.get(i.partition, 0) + 1
            for i in live:
                if (not i.speculative and per_part[i.partition] == 1
                        and now - i.start > threshold and not self._partition_done(i)):
                    actions.append(self._launch(stage, i.partition, True))
                    per_part[i.partition] = 2
        return actions

    def abort_job(self, error: Exception) -> list:
        """Fail the running job (e.g. its tasks could not be serialised); kills its tasks."""
        actions: list = []
        if self.job is not None:
            self._abort(error, actions)
        return actions

    def remove_shuffle(self, shuffle_id: int) -> None:
        self.map_outputs.pop(shuffle_id, None)

    # -- internals -----------------------------------------------------------------------
    def _available(self, stage: Stage) -> bool:
        outs = self.map_outputs.get(stage.shuffle_id)
        return outs is not None and all(o is not None for o in outs)

    def _submit_stage(self, stage: Stage, actions: list) -> None:
        if stage in self.running or stage in self.waiting:
            return
        missing = [p for p in stage.parents if not self._available(p)]
        if missing:
            self.waiting.add(stage)
            for p in missing:
                self._submit_stage(p, actions)
            return
        self._submit_tasks(stage, actions)

    def _missing_partitions(self, stage: Stage) -> list[int]:
        if stage.is_map:
            outs = self.map_outputs.setdefault(stage.shuffle_id, [None] * stage.num_tasks)
            return [p for p, o in enumerate(outs) if o is None]
        assert self.job is not None
        return [p for p in self.job.partitions if p not in self.job.results]

    def _submit_tasks(self, stage: Stage, actions: list) -> None:
        parts = self._missing_partitions(stage)
        running_parts = {i.partition for i in self.tasks.values() if i.running and i.stage is stage}
        self.running.add(stage)
        for p in parts:
            if p not in running_parts:
                actions.append(self._launch(stage, p, False))
        if not parts:
            self._stage_done(stage, actions)

    def _launch(self, stage: Stage, partition: int, speculative: bool) -> LaunchTask:
        key = (stage.id, partition)
        attempt = self.attempts.get(key, 0)
        self.attempts[key] = attempt + 1
        tid = self._next_task
        self._next_task += 1
        self.tasks[tid] = _TaskInfo(stage, stage.attempt, partition, attempt, self.clock(),
                                    speculative)
        assert self.job is not None
        return LaunchTask(tid, self.job.id, stage, partition, attempt, speculative)

    def _partition_done(self, info: _TaskInfo) -> bool:
        if info.stage.is_map:
            outs = self.map_outputs.get(info.stage.shuffle_id)
            return outs is not None and outs[info.partition] is not None
        assert self.job is not None
        return info.partition in self.job.results

    def _kill_others(self, info: _TaskInfo, actions: list) -> None:
        for tid, other in self.tasks.items():
            if other.running and other.stage is info.stage and other.partition == info.partition:
                other.running = False
                actions.append(KillTask(tid))

    def _succeeded(self, info: _TaskInfo, result: Any, actions: list) -> None:
        job = self.job
        assert job is not None
        stage = info.stage
        if self._partition_done(info):
            return  # a slower copy of a partition that is already done
        self.durations.setdefault(stage.id, []).append(self.clock() - info.start)
        if stage.is_map:
            self.map_outputs[stage.shuffle_id][info.partition] = result.map_status
        else:
            job.results[info.partition] = result
        for block in result.cached:
            self.cache_locations[tuple(block)] = result.executor_id
        actions.append(Accumulate(result.accumulators, result.metrics))
        self._kill_others(info, actions)
        if stage not in self.running:
            return
        if stage.is_map:
            if self._available(stage):
                self._stage_done(stage, actions)
        elif len(job.results) == len(job.partitions):
            actions.append(JobSucceeded(job.id, [job.results[p] for p in job.partitions]))
            self._reset()

    def _stage_done(self, stage: Stage, actions: list) -> None:
        self.running.discard(stage)
        self.durations.pop(stage.id, None)
        for w in list(self.waiting):
            if all(self._available(p) for p in w.parents):
                self.waiting.discard(w)
                self._submit_stage(w, actions)
            elif not any(p in self.running for p in w.parents):
                # a parent lost outputs meanwhile: submit what is missing
                self.waiting.discard(w)
                self._submit_stage(w, actions)

    def _failed(self, info: _TaskInfo, result: Any, actions: list) -> None:
        if self._partition_done(info):
            return
        key = (info.stage.id, info.partition)
        n = self.failures[key] = self.failures.get(key, 0) + 1
        if n >= self.max_task_failures:
            self._abort(TaskFailedError(result.error_type, result.error_message,
                                        result.error_traceback, info.stage.id, info.partition,
                                        info.attempt, n), actions)
            return
        if not any(i.running and i.stage is info.stage and i.partition == info.partition
                   for i in self.tasks.values()):
            actions.append(self._launch(info.stage, info.partition, False))

    def _fetch_failed(self, info: _TaskInfo, ff: Any, actions: list) -> None:
        outs = self.map_outputs.get(ff.shuffle_id)
        if outs is not None and 0 <= ff.map_id < len(outs):
            outs[ff.map_id] = None
        stage = info.stage
        n = self.fetch_failures[stage.id] = self.fetch_failures.get(stage.id, 0) + 1
        if n > self.max_stage_attempts:
            self._abort(JobError(f"stage {stage.id} failed {n} times fetching shuffle "
                                 f"{ff.shuffle_id}: {ff}"), actions)
            return
        for tid, other in self.tasks.items():
            if other.running and other.stage is stage:
                other.running = False
                actions.append(KillTask(tid))
        self.running.discard(stage)
        stage.attempt += 1
        self._submit_stage(stage, actions)

    def _abort(self, error: Exception, actions: list) -> None:
        assert self.job is not None
        for tid, info in self.tasks.items():
            if info.running:
                info.running = False
                actions.append(KillTask(tid))
        actions.append(JobFailed(self.job.id, error))
        self._reset()

    def _reset(self) -> None:
        self.job = None
        self.running.clear()
        self.waiting.clear()
        self.tasks = {tid: i for tid, i in self.tasks.items() if i.running}
        self.failures.clear()
        self.fetch_failures.clear()
        self.durations.clear()
