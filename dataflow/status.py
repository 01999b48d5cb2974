"""What the driver knows about its jobs, for people: the master's dashboard and notebooks.

:class:`StatusTracker` is a :class:`~dataflow.progress.ProgressObserver` that every job of a
:class:`~dataflow.context.Context` reports to (beside the progress bars, through :class:`Tee`).
It keeps the recent jobs with their stages' progress, counts finished tasks and shuffle bytes,
publishes all that as the framework's status document on the substrate master (at most a few
times a second; the master shows it on its dashboard and exports its ``metrics`` on
``/metrics``), and answers PySpark's ``statusTracker()`` questions. :class:`JobInfo` is one
job's snapshot, with a ``_repr_html_`` for Jupyter that links the job's dashboard page.

Examples
--------
>>> from dataflow import Context
>>> with Context("inline") as ctx:
...     ctx.parallelize(range(6), 3).map(lambda x: (x % 2, x)).reduceByKey(max).count()
...     tracker = ctx.statusTracker()
...     job = tracker.getJobInfo(tracker.getJobIdsForGroup()[-1])
2
>>> job.status, [s.done for s in job.stages], job.numTasks
('SUCCEEDED', [3, 3], 6)
>>> "Job 0" in job._repr_html_()
True
"""
from __future__ import annotations

import html
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .progress import ProgressObserver, StageInfo

log = logging.getLogger("dataflow.status")

#: Jobs kept (and published) per context.
KEEP_JOBS = 20
#: Seconds between two published documents while nothing starts or ends.
PUBLISH_EVERY = 0.5


@dataclass
class StageStatus:
    """One stage of a job as last reported."""

    id: int
    name: str
    attempt: int
    total: int
    done: int = 0
    state: str = "running"   # running, done, failed


@dataclass
class JobInfo:
    """A job's snapshot: PySpark's ``SparkJobInfo`` with its stages' progress."""

    jobId: int
    name: str
    status: str                                   # RUNNING, SUCCEEDED, FAILED
    started: float
    ended: float | None = None
    stages: list[StageStatus] = field(default_factory=list)
    dashboard_url: str | None = None

    @property
    def stageIds(self) -> list[int]:
        return [s.id for s in self.stages]

    @property
    def numTasks(self) -> int:
        return sum(s.total for s in self.stages)

    @property
    def numCompletedTasks(self) -> int:
        return sum(s.done for s in self.stages)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{s.id}</td><td>{html.escape(s.name)}</td><td>{s.state}</td>"
            f"<td><progress value='{s.done}' max='{max(s.total, 1)}'></progress> "
            f"{s.done}/{s.total}</td></tr>" for s in self.stages)
        took = f", {self.ended - self.started:.2f} s" if self.ended else ""
        link = ""
        if self.dashboard_url:
            u = html.escape(self.dashboard_url, quote=True)
            link = f" · <a href='{u}' target='_blank'>dashboard</a>"
        return (f"<div><b>Job {self.jobId}</b> {html.escape(self.name)}: {self.status}{took}"
                f"{link}<table><tr><th>stage</th><th>name</th><th>state</th>"
                f"<th>progress</th></tr>{rows}</table></div>")


class Tee(ProgressObserver):
    """Forward progress to several observers; one that fails is dropped, not the others."""

    def __init__(self, *observers: ProgressObserver | None) -> None:
        self.observers = [o for o in observers if o is not None]

    def _each(self, method: str, *args: Any) -> None:
        for obs in list(self.observers):
            try:
                getattr(obs, method)(*args)
            except Exception:  # a broken display must not fail the job
                log.warning("progress observer %r failed in %s; dropped", obs, method,
                            exc_info=True)
                self.observers.remove(obs)

    def job_started(self, job_id: int, name: str) -> None:
        self._each("job_started", job_id, name)

    def stage_started(self, stage: StageInfo, done: int) -> None:
        self._each("stage_started", stage, done)

    def stage_progress(self, stage: StageInfo, done: int) -> None:
        self._each("stage_progress", stage, done)

    def stage_ended(self, stage: StageInfo, succeeded: bool) -> None:
        self._each("stage_ended", stage, succeeded)

    def job_ended(self, job_id: int, succeeded: bool) -> None:
        self._each("job_ended", job_id, succeeded)


class StatusTracker(ProgressObserver):
    """Jobs of one context; publishes them through ``publish`` (None: keep them only).

    Parameters
    ----------
    app : str
        The application name shown with the jobs.
    publish : callable, optional
        ``publish(document)``: ``SchedulerDriver.publish_status`` of the backend.
    task_counts : callable, optional
        ``() -> (running, queued)`` tasks of the backend.
    dashboard_url : callable, optional
        ``() -> str | None``: the framework's dashboard page.
    clock : callable
        Wall-clock time (seconds since the epoch).
    """

    def __init__(self, app: str, publish: Callable[[dict], None] | None = None,
                 task_counts: Callable[[], tuple[int, int]] | None = None,
                 dashboard_url: Callable[[], str | None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.publish = publish
        self.task_counts = task_counts
        self.dashboard_url = dashboard_url
        self.clock = clock
        self.jobs: deque[JobInfo] = deque(maxlen=KEEP_JOBS)
        self.counters = {"jobs_succeeded_total": 0, "jobs_failed_total": 0,
                         "stages_completed_total": 0, "tasks_completed_total": 0,
                         "shuffle_bytes_written_total": 0}
        self._lock = threading.Lock()
        self._last_publish = 0.0
        self._trailing: threading.Timer | None = None

    # -- ProgressObserver ---------------------------------------------------------------
    def job_started(self, job_id: int, name: str) -> None:
        with self._lock:
            self.jobs.append(JobInfo(job_id, name, "RUNNING", self.clock()))
        self._publish(force=True)

    def _stage(self, stage: StageInfo) -> StageStatus | None:
        for job in reversed(self.jobs):
            if job.jobId == stage.job_id:
                for st in job.stages:
                    if st.id == stage.stage_id:
                        return st
                st = StageStatus(stage.stage_id, stage.name, stage.attempt, stage.total)
                job.stages.append(st)
                return st
        return None

    def stage_started(self, stage: StageInfo, done: int) -> None:
        with self._lock:
            st = self._stage(stage)
            if st is not None:
                st.done, st.state, st.attempt = done, "running", stage.attempt
        self._publish(force=True)

    def stage_progress(self, stage: StageInfo, done: int) -> None:
        with self._lock:
            st = self._stage(stage)
            if st is not None:
                st.done = done
        self._publish()

    def stage_ended(self, stage: StageInfo, succeeded: bool) -> None:
        with self._lock:
            st = self._stage(stage)
            if st is not None:
                st.state = "done" if succeeded else "failed"
                if succeeded:
                    st.done = st.total
                    self.counters["stages_completed_total"] += 1
        self._publish(force=True)

    def job_ended(self, job_id: int, succeeded: bool) -> None:
        with self._lock:
            for job in self.jobs:
                if job.jobId == job_id:
                    job.status, job.ended = ("SUCCEEDED" if succeeded else "FAILED"), self.clock()
            self.counters["jobs_succeeded_total" if succeeded else "jobs_failed_total"] += 1
        self._publish(force=True)

    # -- tasks ----------------------------------------------------------------------------
    def task_finished(self, metrics: dict) -> None:
        """A task succeeded with these metrics (``shuffle_bytes_written`` among them)."""
        with self._lock:
            self.counters["tasks_completed_total"] += 1
            self.counters["shuffle_bytes_written_total"] += int(
                metrics.get("shuffle_bytes_written", 0) or 0)
        self._publish()

    # -- PySpark's status tracker ---------------------------------------------------------
    def getJobIdsForGroup(self, jobGroup: str | None = None) -> list[int]:
        """Ids of the recent jobs (dataflow has no job groups: all of them)."""
        with self._lock:
            return [j.jobId for j in self.jobs]

    def getActiveJobsIds(self) -> list[int]:
        with self._lock:
            return [j.jobId for j in self.jobs if j.status == "RUNNING"]

    def getActiveStageIds(self) -> list[int]:
        with self._lock:
            return [s.id for j in self.jobs if j.status == "RUNNING" for s in j.stages
                    if s.state == "running"]

    def getJobInfo(self, jobId: int) -> JobInfo | None:
        """A copy of the job's current state, or None when it is unknown (or too old)."""
        with self._lock:
            for job in self.jobs:
                if job.jobId == jobId:
                    url = self.dashboard_url() if self.dashboard_url else None
                    return JobInfo(job.jobId, job.name, job.status, job.started, job.ended,
                                   [StageStatus(**vars(s)) for s in job.stages], url)
        return None

    # -- publishing -----------------------------------------------------------------------
    def document(self) -> dict:
        """The status document the master keeps for this framework."""
        running, queued = self.task_counts() if self.task_counts else (0, 0)
        with self._lock:
            jobs = [{"id": j.jobId, "name": j.name[:200], "state": j.status.lower(),
                     "started": j.started, "ended": j.ended,
                     "stages": [{"id": s.id, "name": s.name[:200], "attempt": s.attempt,
                                 "total": s.total, "done": s.done, "state": s.state}
                                for s in j.stages[-20:]]}
                    for j in self.jobs]
            active = [j for j in self.jobs if j.status == "RUNNING"]
            metrics = {f"dataflow_{k}": v for k, v in self.counters.items()}
        metrics.update(dataflow_jobs_running=len(active), dataflow_tasks_running=running,
                       dataflow_tasks_queued=queued,
                       dataflow_stages_running=sum(s["state"] == "running" for j in jobs
                                                   if j["state"] == "running"
                                                   for s in j["stages"]))
        return {"kind": "dataflow", "app": self.app[:200], "jobs": jobs,
                "tasks": {"running": running, "queued": queued}, "metrics": metrics}

    def _publish(self, force: bool = False) -> None:
        if self.publish is None:
            return
        now = time.monotonic()
        wait = PUBLISH_EVERY - (now - self._last_publish)
        if not force and wait > 0:
            # too soon: publish once the interval is over, so the last change is never lost
            with self._lock:
                if self._trailing is None:
                    self._trailing = threading.Timer(wait, self._publish_trailing)
                    self._trailing.daemon = True
                    self._trailing.start()
            return
        self._last_publish = now
        try:
            self.publish(self.document())
        except Exception as exc:  # noqa: BLE001 - the dashboard never fails a job
            log.debug("could not publish the status: %s", exc)


    def _publish_trailing(self) -> None:
        with self._lock:
            self._trailing = None
        self._publish(force=True)


def tracker_for(app: str, backend: Any, dashboard_url: Callable[[], str | None]) -> StatusTracker:
    """A tracker publishing through ``backend``'s scheduler driver, when it has one."""
    driver = getattr(backend, "driver", None)
    publish = getattr(driver, "publish_status", None)
    state = getattr(backend, "_state", None)
    counts = None
    if state is not None:
        def counts() -> tuple[int, int]:
            running = sum(1 for r in list(state.running.values()) if r.task_id is not None)
            queued = sum(1 for p in list(state.pending) if p.task is not None)
            return running, queued
    return StatusTracker(app, publish, counts, dashboard_url)
