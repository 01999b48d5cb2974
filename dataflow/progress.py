"""Job progress: one bar per stage, in the terminal and in Jupyter.

The driver loop (:meth:`dataflow.context.Context._run`) owns a :class:`JobProgress` per job and
tells it three things: a task was launched (:meth:`JobProgress.launched`), a batch of events was
handled (:meth:`JobProgress.refresh`) and the job ended (:meth:`JobProgress.finish`). It reads
how many partitions of each stage are done from the DAG scheduler's read-only
:meth:`~dataflow.dag.DAGScheduler.stage_progress`, so the scheduler stays a pure state machine
that knows nothing about bars, and passes what changed to a :class:`ProgressObserver`:
:class:`TqdmProgress` draws ``tqdm`` bars (``tqdm.auto``: a widget in Jupyter when ipywidgets is
installed, text otherwise); tests plug in their own observer. An observer that raises is
dropped with a warning: progress never fails a job.

Whether bars are drawn is :func:`resolve`'s decision: ``Context(progress=True|False)`` wins,
then the ``OFFERPOOL_PROGRESS`` environment variable (``0``/``1``), then auto: on when stderr
is a terminal or the code runs in a Jupyter kernel, quiet otherwise (batch jobs, CI, logs).

Examples
--------
>>> import io
>>> from dataflow import Context
>>> out = io.StringIO()
>>> with Context("inline", progress=TqdmProgress(file=out)) as ctx:
...     ctx.parallelize(range(4), 2).map(lambda x: (x % 2, x)).reduceByKey(max).count()
2
>>> "reduceByKey at" in out.getvalue() and "count at" in out.getvalue()
True
>>> resolve(False), resolve(None, env={"OFFERPOOL_PROGRESS": "1"}) is not None
(None, True)
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

log = logging.getLogger("dataflow.progress")

ENV_PROGRESS = "OFFERPOOL_PROGRESS"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class StageInfo:
    """A stage as a progress observer sees it."""

    job_id: int
    stage_id: int
    attempt: int
    name: str
    total: int

    @property
    def description(self) -> str:
        """``Stage 3 (reduceByKey at wc.py:12)``; retried stages show their attempt."""
        retry = f", attempt {self.attempt}" if self.attempt else ""
        name = f" ({self.name}{retry})" if self.name or retry else ""
        return f"Stage {self.stage_id}{name}"


class ProgressObserver:
    """Receives the progress of jobs from the driver loop; every method does nothing here.

    Calls come on the thread running the job, in this order per job: ``job_started``, then for
    each stage that runs ``stage_started``, any number of ``stage_progress`` and one
    ``stage_ended``, and finally ``job_ended``. ``done`` counts finished partitions of the stage
    (not task attempts: retries and speculative copies do not count twice). A stage whose lost
    outputs are recomputed later in the job starts again with the count it kept.
    """

    def job_started(self, job_id: int, name: str) -> None:
        """A job started; ``name`` is its action's call site."""

    def stage_started(self, stage: StageInfo, done: int) -> None:
        """A stage launched its first tasks; ``done`` of ``stage.total`` partitions exist."""

    def stage_progress(self, stage: StageInfo, done: int) -> None:
        """``done`` of ``stage.total`` partitions of a running stage are finished."""

    def stage_ended(self, stage: StageInfo, succeeded: bool) -> None:
        """The stage finished all its partitions, or its job failed or was interrupted."""

    def job_ended(self, job_id: int, succeeded: bool) -> None:
        """The job succeeded or failed; nothing more comes for it."""


class TqdmProgress(ProgressObserver):
    """One ``tqdm`` bar per running stage.

    Parameters
    ----------
    file : text stream, optional
        Where to draw text bars (default: ``tqdm.auto`` decides: a Jupyter widget or stderr).
    leave : bool, optional
        Keep finished bars on screen (default: in Jupyter yes, in a terminal no — bars vanish
        when their stage is done, like PySpark's console progress).
    """

    def __init__(self, file: TextIO | None = None, leave: bool | None = None) -> None:
        self.file = file
        self.leave = leave
        self.bars: dict[int, tuple[StageInfo, Any]] = {}  # stage id -> info, bar

    def _bar(self, stage: StageInfo, done: int) -> Any:
        if self.file is None:
            from tqdm.auto import tqdm
        else:
            from tqdm.std import tqdm
        leave = self.leave if self.leave is not None else (self.file is None and in_jupyter())
        return tqdm(total=stage.total, initial=done, desc=stage.description, unit="task",
                    file=self.file, leave=leave, dynamic_ncols=True)

    def stage_started(self, stage: StageInfo, done: int) -> None:
        self.stage_ended(stage, False)
        self.bars[stage.stage_id] = (stage, self._bar(stage, done))

    def stage_progress(self, stage: StageInfo, done: int) -> None:
        _, bar = self.bars.get(stage.stage_id, (None, None))
        if bar is not None and done != bar.n:
            bar.update(done - bar.n)

    def stage_ended(self, stage: StageInfo, succeeded: bool) -> None:
        _, bar = self.bars.pop(stage.stage_id, (None, None))
        if bar is not None:
            bar.close()

    def job_ended(self, job_id: int, succeeded: bool) -> None:
        # normally nothing is left: every stage was ended
        for sid in [sid for sid, (info, _) in self.bars.items() if info.job_id == job_id]:
            self.bars.pop(sid)[1].close()


def in_jupyter() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - a half-initialised IPython is not a notebook
        return False
    return shell is not None and hasattr(shell, "kernel")


def _interactive() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def resolve(setting: bool | ProgressObserver | None,
            env: Mapping[str, str] | None = None) -> ProgressObserver | None:
    """The observer for a job, or None for no progress.

    ``setting`` is ``Context(progress=...)``: an observer is used as given, True and False
    force bars on and off, None defers to ``OFFERPOOL_PROGRESS`` and then to whether the
    session is interactive.
    """
    if isinstance(setting, ProgressObserver):
        return setting
    if setting is None:
        raw = (os.environ if env is None else env).get(ENV_PROGRESS, "").strip().lower()
        if raw in _TRUE:
            setting = True
        elif raw in _FALSE:
            setting = False
        else:
            setting = _interactive() or in_jupyter()
    return TqdmProgress() if setting else None


class JobProgress:
    """Turns one job's launches and the DAG scheduler's counts into observer calls.

    Parameters
    ----------
    observer : ProgressObserver or None
        Where progress goes; None makes every method a no-op.
    dag : DAGScheduler
        Queried (read-only) for the partitions each stage has done.
    job_id : int
    final : Stage
        The job's result stage.
    job_site : str
        The call site of the action, which names the result stage.
    """

    def __init__(self, observer: ProgressObserver | None, dag: Any, job_id: int, final: Any,
                 job_site: str = "") -> None:
        self.observer = observer
        self.dag = dag
        self.job_id = job_id
        self.final = final
        self.job_site = job_site
        self.open: dict[int, tuple[Any, StageInfo, int]] = {}  # stage id -> stage, info, done
        self._call("job_started", job_id, job_site)

    def launched(self, stage: Any) -> None:
        """A task of ``stage`` was launched: start its bar unless it has one."""
        if self.observer is None or stage.id in self.open:
            return
        from .display import stage_name
        done, total = self.dag.stage_progress(stage)
        info = StageInfo(self.job_id, stage.id, stage.attempt,
                         stage_name(stage, self.job_site), total)
        self.open[stage.id] = (stage, info, done)
        self._call("stage_started", info, done)

    def refresh(self) -> None:
        """Report new counts; end the map stages whose outputs are all written."""
        for sid, (stage, info, last) in list(self.open.items()):
            done, total = self.dag.stage_progress(stage)
            if total == 0:
                continue  # the job is over: finish() ends what is left
            if done != last:
                self.open[sid] = (stage, info, done)
                self._call("stage_progress", info, done)
            if stage.is_map and done >= total:
                del self.open[sid]
                self._call("stage_ended", info, True)

    def finish(self, succeeded: bool) -> None:
        """The job ended: end every open stage and the job. Safe to call twice."""
        if self.observer is None:
            return
        for _, info, done in self.open.values():
            if succeeded and done < info.total:
                self._call("stage_progress", info, info.total)
            self._call("stage_ended", info, succeeded)
        self.open.clear()
        self._call("job_ended", self.job_id, succeeded)
        self.observer = None

    def _call(self, method: str, *args: Any) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, method)(*args)
        except Exception:  # a broken display must not fail the job
            log.warning("progress observer %r failed in %s; progress is off for this job",
                        self.observer, method, exc_info=True)
            self.observer = None
