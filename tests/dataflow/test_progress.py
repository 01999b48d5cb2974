"""Progress per stage (an observer fed by the driver loop, tqdm bars) and the notebook HTML."""
from __future__ import annotations

import io
import operator
import sys

import pytest

from dataflow import Context, TaskFailedError
from dataflow.dag import DAGScheduler, LaunchTask
from dataflow.errors import FetchFailedError
from dataflow.progress import (
    ENV_PROGRESS,
    JobProgress,
    ProgressObserver,
    TqdmProgress,
    resolve,
)
from dataflow.shuffle import MapStatus
from dataflow.stages import ShuffleDependency, Stage
from dataflow.tasks import TaskResult


class Recorder(ProgressObserver):
    """Keeps every call, and per stage the last count seen."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.done: dict[int, int] = {}
        self.open: set[int] = set()

    def job_started(self, job_id, name):
        self.calls.append(("job_started", job_id, name))

    def stage_started(self, stage, done):
        assert stage.stage_id not in self.open
        self.open.add(stage.stage_id)
        self.done[stage.stage_id] = done
        self.calls.append(("stage_started", stage, done))

    def stage_progress(self, stage, done):
        assert stage.stage_id in self.open and done >= self.done[stage.stage_id]
        self.done[stage.stage_id] = done
        self.calls.append(("stage_progress", stage, done))

    def stage_ended(self, stage, succeeded):
        self.open.remove(stage.stage_id)
        self.calls.append(("stage_ended", stage, succeeded))

    def job_ended(self, job_id, succeeded):
        self.calls.append(("job_ended", job_id, succeeded))

    def stages(self) -> list:
        return [c[1] for c in self.calls if c[0] == "stage_started"]

    def ended(self) -> list:
        return [(c[1].stage_id, c[2]) for c in self.calls if c[0] == "stage_ended"]


class Bars(TqdmProgress):
    """Real tqdm bars on a captured stream; remembers them to check they were closed."""

    def __init__(self) -> None:
        super().__init__(file=io.StringIO())
        self.made: list = []

    def _bar(self, stage, done):
        bar = super()._bar(stage, done)
        self.made.append(bar)
        return bar

    def all_closed(self) -> bool:
        return not self.bars and all(b.disable for b in self.made)


@pytest.fixture
def watched(ctx):
    """The ``ctx`` fixture with progress going to a fresh Recorder (restored afterwards)."""
    before = ctx.progress
    ctx.progress = rec = Recorder()
    try:
        yield ctx, rec
    finally:
        ctx.progress = before


def _failing(x):
    raise ValueError("no")


@pytest.mark.timeout(60)
def test_stage_totals_and_counts_reach_the_observer(watched):
    ctx, rec = watched
    pairs = ctx.parallelize(range(30), 3).map(lambda x: (x % 4, x))
    summed = pairs.reduceByKey(operator.add, 2)
    assert sorted(summed.collect()) == [(0, 112), (1, 120), (2, 98), (3, 105)]
    mapped, result = rec.stages()
    assert (mapped.total, result.total) == (3, 2)
    assert mapped.name.startswith("reduceByKey at test_progress.py:")
    assert result.name.startswith("collect at test_progress.py:")
    assert rec.done == {mapped.stage_id: 3, result.stage_id: 2}
    assert rec.ended() == [(mapped.stage_id, True), (result.stage_id, True)]
    assert rec.calls[0][0] == "job_started" and rec.calls[-1][:3:2] == ("job_ended", True)
    assert not rec.open

    # the shuffle is already written: the next job shows its result stage only
    rec.calls.clear()
    assert summed.count() == 4
    (only,) = rec.stages()
    assert only.total == 2 and only.name.startswith("count at test_progress.py:")


@pytest.mark.timeout(60)
def test_a_failing_job_ends_its_stages_and_the_job(watched):
    ctx, rec = watched
    with pytest.raises(TaskFailedError):
        ctx.parallelize([1, 2], 2).map(_failing).collect()
    assert rec.stages() and not rec.open
    assert all(ok is False for _, ok in rec.ended())
    assert rec.calls[-1][0] == "job_ended" and rec.calls[-1][2] is False
    assert ctx.parallelize([1, 2], 2).count() == 2  # and the context still works


@pytest.mark.timeout(60)
def test_bars_are_closed_after_success_and_failure(ctx):
    before = ctx.progress
    ctx.progress = bars = Bars()
    try:
        ctx.parallelize(range(6), 3).map(lambda x: (x, x)).groupByKey(2).count()
        assert len(bars.made) == 2 and bars.all_closed()
        assert [b.n for b in bars.made] == [3, 2]
        with pytest.raises(TaskFailedError):
            ctx.parallelize([1], 1).map(_failing).count()
        assert len(bars.made) == 3 and bars.all_closed()
    finally:
        ctx.progress = before
    text = bars.file.getvalue()
    assert "Stage" in text and "groupByKey at test_progress.py:" in text and "/3 " in text


def test_forced_progress_prints_the_stage_description(capsys, monkeypatch):
    monkeypatch.setenv(ENV_PROGRESS, "0")  # the argument wins over the environment
    with Context("inline", progress=True) as ctx:
        ctx.parallelize(range(4), 2).setName("my numbers").sum()
        err = capsys.readouterr().err
        assert "Stage 0 (sum at test_progress.py:" in err and "0/2 " in err
        ctx.progress = False
        ctx.parallelize(range(4), 2).sum()
        assert capsys.readouterr().err == ""
    out = io.StringIO()
    with Context("inline", progress=TqdmProgress(file=out)) as ctx:
        ctx.parallelize([("a", 1)], 1).sortByKey().collect()
    assert "Stage" in out.getvalue() and "sortByKey at test_progress.py:" in out.getvalue()


def test_progress_is_quiet_when_not_interactive(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delenv(ENV_PROGRESS, raising=False)
    assert resolve(None) is None
    assert resolve(None, env={ENV_PROGRESS: "1"}) is not None
    assert resolve(None, env={ENV_PROGRESS: "0"}) is None
    assert resolve(False, env={ENV_PROGRESS: "1"}) is None
    assert isinstance(resolve(True, env={ENV_PROGRESS: "0"}), TqdmProgress)
    rec = Recorder()
    assert resolve(rec) is rec
    with Context("inline") as ctx:  # auto, stderr not a terminal: nothing drawn
        ctx.parallelize(range(4), 2).count()
    assert sys.stderr.getvalue() == ""


def test_a_broken_observer_does_not_fail_the_job():
    class Broken(ProgressObserver):
        def stage_started(self, stage, done):
            raise RuntimeError("display gone")

    with Context("inline", progress=Broken()) as ctx:
        assert ctx.parallelize(range(5), 2).count() == 5


def test_a_recomputed_map_stage_starts_again_with_what_it_kept():
    """Pure: a hand-driven DAG scheduler, a fetch failure, and what the observer sees."""
    dag = DAGScheduler(clock=lambda: 0.0)
    m = Stage(0, None, 2, [], ShuffleDependency(None, 0, None))
    r = Stage(1, None, 2, [m])
    rec = Recorder()
    job = JobProgress(rec, dag, 0, r, "collect at here.py:1")

    def feed(actions):
        job.refresh()
        launched = [a for a in actions if isinstance(a, LaunchTask)]
        for a in launched:
            job.launched(a.stage)
        return launched

    maps = feed(dag.submit_job(0, r, [0, 1], None))
    feed(dag.task_ended(TaskResult(maps[0].task_id, True,
                                   map_status=MapStatus(0, 0, 0, "e1", (1, 1)))))
    reds = feed(dag.task_ended(TaskResult(maps[1].task_id, True,
                                          map_status=MapStatus(0, 1, 0, "e2", (1, 1)))))
    ff = FetchFailedError(0, 1, 0, "e2", "gone")
    rerun = feed(dag.task_ended(TaskResult(reds[0].task_id, False,
                                           error_type="FetchFailedError", fetch_failure=ff)))
    assert [(a.stage, a.partition) for a in rerun] == [(m, 1)]
    first, result, again = rec.stages()
    assert (first.stage_id, result.stage_id, again.stage_id) == (0, 1, 0)
    assert [c[2] for c in rec.calls if c[0] == "stage_started"] == [0, 0, 1]
    assert result.name == "collect at here.py:1"
    job.finish(False)
    job.finish(False)  # twice is harmless
    assert not rec.open and sum(c[0] == "job_ended" for c in rec.calls) == 1


def test_context_html_shows_the_dashboard_link(ctx):
    page = ctx._repr_html_()
    assert f"<code>{ctx.master}</code>" in page
    assert "running" in page and f"<td style='text-align:left'>{ctx.defaultParallelism}" in page
    if ctx.master == "inline":
        assert ctx.dashboard_url is None and "dashboard" not in page
    else:
        url = ctx.dashboard_url
        assert url.startswith("http://") and "/frameworks/fw-" in url and ctx.uiWebUrl == url
        assert f'<a href="{url}"' in page and "executors" in page


def test_html_escapes_user_text():
    with Context("inline", appName="<img src=x onerror=alert(1)>") as ctx:
        rdd = ctx.parallelize(range(3), 3).setName("<script>x</script>").cache()
        page = rdd._repr_html_()
        assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
        assert f"<td style='text-align:left'>{rdd.id()}</td>" in page
        assert "<td style='text-align:left'>3</td>" in page and ">yes<" in page
        assert "ParallelRDD" in page and "Memory Serialized" in page  # the lineage
        child = rdd.map(str)
        assert "&lt;script&gt;" in child._repr_html_() and ">no<" in child._repr_html_()
        assert "<img" not in ctx._repr_html_() and "&lt;img" in ctx._repr_html_()
    assert "stopped" in ctx._repr_html_()
