"""The Context: entry point of dataflow, owner of the driver loop.

:class:`Context` is PySpark's ``SparkContext`` under another name: it makes RDDs
(``parallelize``, ``range``, ``textFile``, ...), broadcasts and accumulators, and runs jobs.
Running a job means: cut the lineage into stages (:mod:`dataflow.stages`), ask the DAG
scheduler (:mod:`dataflow.dag`) what to do, turn its ``LaunchTask`` actions into serialised
:class:`~dataflow.tasks.Task` objects for the backend, and feed the backend's events back to the
scheduler until the job succeeds or fails. Which backend runs the tasks depends on ``master``:
``"inline"`` runs them in the driver thread (:mod:`dataflow.inline`); ``"local[N]"``,
``"local"`` and ``"HOST:PORT"`` run them in executor processes on a substrate cluster
(:mod:`dataflow.cluster_backend`), an embedded one for the ``local`` forms.

Examples
--------
>>> with Context("inline") as ctx:
...     ctx.parallelize([1, 2, 3, 4], 2).map(lambda x: x * x).collect()
[1, 4, 9, 16]
>>> with Context("local[2]") as ctx:
...     ctx.parallelize(["a b", "b"]).flatMap(str.split).countByValue()["b"]
2
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Self

from .accumulators import Accumulator, AccumulatorParam, default_param
from .broadcast import Broadcast
from .dag import Accumulate, DAGScheduler, JobFailed, JobSucceeded, KillTask, LaunchTask
from .display import call_site, context_html, dashboard_url
from .errors import (
    ContextStoppedError,
    DataflowError,
    JobError,
)
from .progress import JobProgress, ProgressObserver, resolve
from .serialize import dumps, refuse_pickling
from .status import StatusTracker, Tee, tracker_for
from .stages import StageGraph, stage_inputs, task_body
from .tasks import (
    DEFAULT_MEMORY,
    ExecutorLost,
    ResultSpec,
    Task,
    TaskBackend,
    TaskEnded,
    TaskResult,
)

_LEVELS = ("ALL", "DEBUG", "ERROR", "FATAL", "INFO", "OFF", "TRACE", "WARN")


def _make_backend(master: str, work_dir: str, memory_budget: int,
                  app_name: str = "dataflow") -> TaskBackend:
    if master == "inline":
        from .inline import InlineBackend
        return InlineBackend(work_dir, memory_budget)
    from .cluster_backend import ClusterBackend, parse_master
    parse_master(master)  # unknown masters fail before anything starts
    return ClusterBackend(master, work_dir, memory_budget, app_name)


class Context:
    """Main entry point: connect to a cluster and create RDDs, broadcasts and accumulators.

    Parameters
    ----------
    master : str, optional
        Default: the ``master`` setting (``$OFFERPOOL_MASTER``, which ``offerpool submit``
        sets, or the config file), else ``"local"``. ``"inline"`` runs tasks in the driver thread; ``"local[N]"`` starts an embedded
        substrate cluster with N executor processes (``"local"``: one per cpu) that
        :meth:`stop` shuts down; ``"HOST:PORT"`` uses a running substrate master.
    appName : str
        Name of the application.
    memory_budget : int
        Bytes a task may hold while merging a shuffle before spilling to disk.
    max_task_failures : int
        Attempts per task before the job fails.
    speculation : bool
        Launch copies of straggling tasks.
    work_dir : str, optional
        Where shuffle files, spills and broadcasts go (default: a fresh temporary directory,
        removed by :meth:`stop`).
    clock : callable, optional
        Monotonic clock for the scheduler (tests inject one).
    progress : bool or ProgressObserver, optional
        Progress bars per stage (:mod:`dataflow.progress`): True or False forces them on or
        off; None (the default) follows the ``OFFERPOOL_PROGRESS`` environment variable
        (``0``/``1``), else draws them only in a terminal or a Jupyter notebook. An observer
        receives the progress instead. Kept in the :attr:`progress` attribute, which may be
        changed between jobs.
    vectorize : bool
        Run ``map`` and ``filter`` functions that are plain arithmetic on numbers as NumPy
        array operations where the partition allows it (:mod:`dataflow.vectorize`); results
        are identical either way. Kept in the :attr:`vectorize` attribute.
    """

    def __init__(self, master: str | None = None, appName: str = "dataflow", *,
                 memory_budget: int = DEFAULT_MEMORY, max_task_failures: int = 4,
                 speculation: bool = False, work_dir: str | None = None,
                 clock: Callable[[], float] | None = None,
                 progress: bool | ProgressObserver | None = None,
                 vectorize: bool = True) -> None:
        if master is None:  # `offerpool submit` or the config file may name one
            import substrate
            master = substrate.default_master("local")
        self.master = master
        self.progress = progress
        self.vectorize = vectorize
        self.appName = appName
        self._own_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="dataflow-")
        os.makedirs(self.work_dir, exist_ok=True)
        try:
            self._backend = _make_backend(master, self.work_dir, memory_budget, appName)
        except BaseException:
            if self._own_dir:
                shutil.rmtree(self.work_dir, ignore_errors=True)
            raise
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.work_dir, True) \
            if self._own_dir else None
        self._dag = DAGScheduler(clock=clock or time.monotonic,
                                 max_task_failures=max_task_failures, speculation=speculation)
        self._stages = StageGraph()
        self._ids = itertools.count()
        self._shuffle_ids = itertools.count()
        self._job_ids = itertools.count()
        self._accumulators: dict[int, Accumulator] = {}
        self._lock = threading.RLock()
        self._stopped = False
        self._log_level = "WARN"
        self.checkpoint_dir: str | None = None
        self.last_job_metrics: dict[str, int] = {}
        self.applicationId = f"dataflow-{os.getpid()}-{id(self):x}"
        self._tracker = tracker_for(appName, self._backend, lambda: self.dashboard_url)

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Shut down the backend and delete the work directory. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._backend.stop()
        if self._finalizer is not None:
            self._finalizer()

    def __reduce_ex__(self, protocol: Any) -> Any:
        refuse_pickling("a Context")

    def __repr__(self) -> str:
        return f"<dataflow.Context master={self.master!r} app={self.appName!r}>"

    def _repr_html_(self) -> str:
        """Master, app, parallelism, executors, state and a dashboard link, for Jupyter."""
        return context_html(self)

    @property
    def dashboard_url(self) -> str | None:
        """This application's page on the substrate master's dashboard (None for ``inline``,
        or once the embedded cluster of a ``local`` master is stopped)."""
        if self._stopped and getattr(self._backend, "cluster", None) is not None:
            return None
        return dashboard_url(self._backend)

    def statusTracker(self) -> StatusTracker:
        """The recent jobs and their stages' progress (PySpark's ``statusTracker()``)."""
        return self._tracker

    @property
    def uiWebUrl(self) -> str | None:
        """PySpark's name for :attr:`dashboard_url`."""
        return self.dashboard_url

    @property
    def defaultParallelism(self) -> int:
        """Default number of partitions for ``parallelize`` and friends."""
        return max(1, self._backend.default_parallelism)

    @property
    def defaultMinPartitions(self) -> int:
        return min(self.defaultParallelism, 2)

    def setLogLevel(self, logLevel: str) -> None:
        """Set the log level (one of PySpark's names: ALL, DEBUG, ERROR, INFO, WARN, ...)."""
        if logLevel.upper() not in _LEVELS:
            raise ValueError(f"unknown log level {logLevel!r}; expected one of {_LEVELS}")
        import logging
        self._log_level = logLevel.upper()
        level = {"ALL": 0, "TRACE": 5, "OFF": 100, "FATAL": 50, "WARN": 30}.get(
            self._log_level, getattr(logging, self._log_level, 30))
        logging.getLogger("dataflow").setLevel(level)

    def addPyFile(self, path: str) -> None:
        """Ship Python code (``.py``, ``.zip``, ``.egg``, ``.whl``, a package dir) to executors."""
        from .shipping import add_py_file
        add_py_file(self, path)

    def addFile(self, path: str, recursive: bool = False) -> None:
        """Ship a file (a directory with ``recursive``) to executors; see ``SparkFiles.get``."""
        if os.path.isdir(path) and not recursive:
            raise ValueError(f"{path} is a directory: pass recursive=True to ship it")
        from .shipping import add_file
        add_file(self, path)

    def setCheckpointDir(self, dirName: str) -> None:
        """Directory where ``RDD.checkpoint()`` writes partitions."""
        os.makedirs(dirName, exist_ok=True)
        self.checkpoint_dir = dirName

    # -- ids -----------------------------------------------------------------------------
    def _new_rdd_id(self) -> int:
        return next(self._ids)

    def _new_shuffle_id(self) -> int:
        return next(self._shuffle_ids)

    # -- making RDDs ---------------------------------------------------------------------
    def parallelize(self, c: Iterable, numSlices: int | None = None) -> Any:
        """Distribute a local collection as an RDD of ``numSlices`` partitions.

        >>> ctx = Context("inline")
        >>> ctx.parallelize(range(5), 2).glom().collect()
        [[0, 1], [2, 3, 4]]
        """
        from .rdd import ParallelRDD
        return ParallelRDD(self, c, numSlices or self.defaultParallelism)

    def range(self, start: int, end: int | None = None, step: int = 1,
              numSlices: int | None = None) -> Any:
        """RDD of ``range(start, end, step)``; with one argument, ``range(0, start)``.

        >>> Context("inline").range(1, 7, 2).collect()
        [1, 3, 5]
        """
        if end is None:
            start, end = 0, start
        return self.parallelize(range(start, end, step), numSlices)

    def emptyRDD(self) -> Any:
        """An RDD with no partitions.

        >>> Context("inline").emptyRDD().collect()
        []
        """
        from .rdd import ParallelRDD
        return ParallelRDD(self, [], 0)

    def union(self, rdds: list) -> Any:
        """Union of a list of RDDs (duplicates kept).

        >>> ctx = Context("inline")
        >>> ctx.union([ctx.parallelize([1]), ctx.parallelize([2, 3])]).collect()
        [1, 2, 3]
        """
        from .rdd import UnionRDD
        return UnionRDD(self, list(rdds))

    def textFile(self, name: str, minPartitions: int | None = None,
                 use_unicode: bool = True) -> Any:
        """Lines of a text file, a directory of them, or a glob; ``.gz`` files are decompressed."""
        from .io import text_file
        return text_file(self, name, minPartitions or self.defaultMinPartitions, use_unicode)

    def wholeTextFiles(self, path: str, minPartitions: int | None = None,
                       use_unicode: bool = True) -> Any:
        """``(path, content)`` for every file in a directory or glob."""
        from .io import whole_text_files
        return whole_text_files(self, path, minPartitions or self.defaultMinPartitions,
                                use_unicode)

    def pickleFile(self, name: str, minPartitions: int | None = None) -> Any:
        """Read back an RDD written by ``saveAsPickleFile``."""
        from .io import pickle_file
        return pickle_file(self, name, minPartitions)

    def parquetFile(self, path: str, columns: list | None = None) -> Any:
        """Rows of Parquet file(s) as dicts (one partition per file and row group)."""
        from .io import parquet_file
        return parquet_file(self, path, columns)

    def csvFile(self, path: str, header: bool = True, columns: list | None = None) -> Any:
        """Rows of CSV file(s) as dicts (``header=True``) or tuples, typed by pyarrow."""
        from .io import csv_file
        return csv_file(self, path, header, columns)

    # -- shared variables ----------------------------------------------------------------
    def broadcast(self, value: Any) -> Broadcast:
        """Ship a read-only value to the executors once.

        >>> ctx = Context("inline")
        >>> ctx.broadcast([1, 2]).value
        [1, 2]
        """
        self._check()
        return Broadcast.create(next(self._ids), value, os.path.join(self.work_dir, "broadcast"),
                                self._backend.drop_broadcast)

    def accumulator(self, value: Any, accum_param: AccumulatorParam | None = None) -> Accumulator:
        """An add-only shared variable starting at ``value``.

        >>> ctx = Context("inline")
        >>> acc = ctx.accumulator(1.5)
        >>> ctx.parallelize([1, 2]).foreach(lambda x: acc.add(x))
        >>> acc.value
        4.5
        """
        acc = Accumulator(next(self._ids), value, accum_param or default_param(value))
        self._accumulators[acc.aid] = acc
        return acc

    # -- running jobs --------------------------------------------------------------------
    def _check(self) -> None:
        if self._stopped:
            raise ContextStoppedError("this Context was stopped")

    def runJob(self, rdd: Any, partitionFunc: Callable, partitions: list | None = None,
               allowLocal: bool = False) -> list:
        """Run ``partitionFunc(iterator)`` on the given partitions and concatenate its results.

        >>> ctx = Context("inline")
        >>> ctx.runJob(ctx.parallelize(range(6), 3), lambda it: [sum(it)], [0, 2])
        [1, 9]
        """
        parts = self._run(rdd, lambda tc, it: list(partitionFunc(it)), partitions)
        return [x for p in parts for x in p]

    def _run(self, rdd: Any, func: Callable[[Any, Any], Any],
             partitions: list | None = None) -> list:
        """Run ``func(task_context, records)`` on partitions of ``rdd``; one result per partition."""
        self._check()
        if rdd.ctx is not self:
            raise DataflowError("this RDD belongs to another Context")
        site = call_site()
        with self._lock:
            try:
                return self._run_locked(rdd, func, partitions, site)
            except BaseException as exc:
                # interrupted (Ctrl-C in a notebook) or failed: leave the scheduler idle
                for a in self._dag.abort_job(exc):
                    if isinstance(a, KillTask):
                        self._backend.kill(a.task_id)
                raise

    def _run_locked(self, rdd: Any, func: Callable, partitions: list | None,
                    site: str = "") -> list:
        if partitions is None:
            partitions = list(range(rdd.getNumPartitions()))
        final = self._stages.result_stage(rdd)
        spec = ResultSpec(func)
        job_id = next(self._job_ids)
        self.last_job_metrics = {}
        progress = JobProgress(Tee(resolve(self.progress), self._tracker), self._dag, job_id,
                               final, site)
        try:
            results = self._loop(rdd, final, partitions, spec, job_id, progress)
        except BaseException:
            progress.finish(False)
            raise
        progress.finish(True)
        return results

    def _loop(self, rdd: Any, final: Any, partitions: list, spec: ResultSpec, job_id: int,
              progress: JobProgress) -> list:
        nodes: dict = {}
        functions: dict = {}  # closures serialised once per job, not once per task
        actions = self._dag.submit_job(job_id, final, partitions, spec)
        while True:
            progress.refresh()  # before launches, so a finished parent's bar ends first
            for action in actions:
                if isinstance(action, LaunchTask):
                    self._launch(action, spec, nodes, functions)
                    progress.launched(action.stage)
                elif isinstance(action, KillTask):
                    self._backend.kill(action.task_id)
                elif isinstance(action, Accumulate):
                    self._accumulate(action)
                elif isinstance(action, JobSucceeded):
                    progress.finish(True)  # checkpoints may run jobs of their own
                    self._finish_checkpoints(rdd)
                    return [r.value() for r in action.results]
                elif isinstance(action, JobFailed):
                    raise action.error
            actions = []
            events = self._backend.poll(timeout=1.0)
            if not events and not self._backend.has_pending():
                self._dag.abort_job(JobError("scheduler stalled"))
                raise JobError("internal error: the scheduler waits for tasks no backend runs")
            for event in events:
                if isinstance(event, TaskEnded):
                    actions += self._dag.task_ended(TaskResult.from_bytes(event.result))
                elif isinstance(event, ExecutorLost):
                    actions += self._dag.executor_lost(event.executor_id)
            actions += self._dag.tick()

    def _launch(self, action: LaunchTask, spec: ResultSpec, nodes: dict, functions: dict) -> None:
        stage = action.stage
        try:
            body = task_body(stage, action.partition, self._dag.map_outputs, spec, nodes)
            what = f"the functions of stage {stage.id} ({stage.rdd.name() or stage.rdd!r})"
            payload = dumps(body, what, functions)
        except BaseException as exc:
            for a in self._dag.abort_job(exc):
                if isinstance(a, KillTask):
                    self._backend.kill(a.task_id)
            raise
        kind = "map" if stage.is_map else "result"
        cached, shuffles = stage_inputs(stage)
        prefs = self._dag.preferred_locations(shuffles, cached, action.partition)
        self._backend.launch(Task(action.task_id, action.job_id, stage.id, stage.attempt,
                                  action.partition, action.attempt, kind, payload,
                                  action.speculative, prefs))

    def _accumulate(self, action: Accumulate) -> None:
        self._tracker.task_finished(action.metrics)
        for aid, update in action.updates.items():
            acc = self._accumulators.get(aid)
            if acc is not None:
                acc._value = acc.accum_param.addInPlace(acc._value, update)
        for k, v in action.metrics.items():
            self.last_job_metrics[k] = self.last_job_metrics.get(k, 0) + v

    def _finish_checkpoints(self, rdd: Any) -> None:
        pending = [r for r in rdd._lineage() if r._checkpoint_requested and not r.isCheckpointed()]
        for r in pending:
            from .io import write_checkpoint
            write_checkpoint(r)

    def _unpersist(self, rdd_id: int) -> None:
        self._dag.uncache(rdd_id)
        self._backend.unpersist(rdd_id)
