"""The DAG scheduler as a pure state machine (fake clock, hand-made events), and the task seam."""
from __future__ import annotations

import operator
import subprocess
import sys
import tempfile

import pytest

from dataflow.dag import (
    Accumulate,
    DAGScheduler,
    JobFailed,
    JobSucceeded,
    KillTask,
    LaunchTask,
)
from dataflow.errors import FetchFailedError, JobError, TaskFailedError
from dataflow.plan import MapPartitionsNode, SourceNode
from dataflow.serialize import dumps
from dataflow.shuffle import MapStatus
from dataflow.stages import ShuffleDependency, Stage
from dataflow.tasks import ExecutorEnv, ResultSpec, Task, TaskBody, TaskResult, run_task
from tests.dataflow.conftest import inline_only


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def launches(actions):
    return [a for a in actions if isinstance(a, LaunchTask)]


def ok(tid, value=None):
    return TaskResult(tid, True, value_bytes=dumps(value))


def fail(tid, msg="boom"):
    return TaskResult(tid, False, error_type="ValueError", error_message=msg,
                      error_traceback="Traceback: ...")


def map_ok(tid, sid, mid, loc="e1"):
    return TaskResult(tid, True, map_status=MapStatus(sid, mid, 0, loc, (1, 1)))


def two_stage():
    dep = ShuffleDependency(None, 0, None)
    m = Stage(0, None, 2, [], dep)
    r = Stage(1, None, 2, [m])
    return m, r


def test_result_stage_success_and_accumulators():
    dag = DAGScheduler(clock=Clock())
    acts = dag.submit_job(0, Stage(0, None, 3), [0, 1, 2], None)
    assert [a.partition for a in launches(acts)] == [0, 1, 2]
    res = TaskResult(1, True, value_bytes=dumps("b"), accumulators={7: 2})
    assert dag.task_ended(res) == [Accumulate({7: 2}, {})]
    dag.task_ended(ok(0, "a"))
    done = dag.task_ended(ok(2, "c"))
    assert isinstance(done[-1], JobSucceeded)
    assert [r.value() for r in done[-1].results] == ["a", "b", "c"]
    assert dag.job is None
    assert dag.task_ended(ok(2)) == []  # late duplicate is ignored


def test_empty_job_and_one_job_at_a_time():
    dag = DAGScheduler(clock=Clock())
    assert dag.submit_job(0, Stage(0, None, 0), [], None) == [JobSucceeded(0, [])]
    dag.submit_job(1, Stage(1, None, 1), [0], None)
    with pytest.raises(JobError):
        dag.submit_job(2, Stage(2, None, 1), [0], None)


def test_retries_then_fails_with_remote_details():
    dag = DAGScheduler(clock=Clock(), max_task_failures=3)
    (first,) = launches(dag.submit_job(0, Stage(5, None, 1), [0], None))
    retry = launches(dag.task_ended(fail(first.task_id)))
    assert len(retry) == 1 and retry[0].attempt == 1 and retry[0].partition == 0
    retry2 = launches(dag.task_ended(fail(retry[0].task_id)))
    assert retry2[0].attempt == 2
    final = dag.task_ended(fail(retry2[0].task_id, "third"))
    (failed,) = [a for a in final if isinstance(a, JobFailed)]
    err = failed.error
    assert isinstance(err, TaskFailedError)
    assert (err.stage_id, err.partition, err.failures, err.remote_message) == (5, 0, 3, "third")
    assert dag.job is None


def test_abort_kills_running_tasks():
    dag = DAGScheduler(clock=Clock(), max_task_failures=1)
    a, b = launches(dag.submit_job(0, Stage(0, None, 2), [0, 1], None))
    acts = dag.task_ended(fail(a.task_id))
    assert KillTask(b.task_id) in acts and isinstance(acts[-1], JobFailed)


def test_parent_map_stage_runs_first_and_outputs_are_reused():
    dag = DAGScheduler(clock=Clock())
    m, r = two_stage()
    acts = launches(dag.submit_job(0, r, [0, 1], None))
    assert [a.stage for a in acts] == [m, m]
    assert launches(dag.task_ended(map_ok(acts[0].task_id, 0, 0))) == []
    reduce_tasks = launches(dag.task_ended(map_ok(acts[1].task_id, 0, 1)))
    assert [a.stage for a in reduce_tasks] == [r, r]
    dag.task_ended(ok(reduce_tasks[0].task_id, 1))
    assert isinstance(dag.task_ended(ok(reduce_tasks[1].task_id, 2))[-1], JobSucceeded)
    # a second job on the same shuffle skips the map stage
    r2 = Stage(2, None, 2, [m])
    again = launches(dag.submit_job(1, r2, [0, 1], None))
    assert [a.stage for a in again] == [r2, r2]


def test_fetch_failure_resubmits_only_the_lost_map_output():
    dag = DAGScheduler(clock=Clock())
    m, r = two_stage()
    maps = launches(dag.submit_job(0, r, [0, 1], None))
    dag.task_ended(map_ok(maps[0].task_id, 0, 0))
    red = launches(dag.task_ended(map_ok(maps[1].task_id, 0, 1)))
    ff = FetchFailedError(0, 1, 0, "e1", "gone")
    acts = dag.task_ended(TaskResult(red[0].task_id, False, error_type="FetchFailedError",
                                     fetch_failure=ff))
    assert KillTask(red[1].task_id) in acts
    rerun = launches(acts)
    assert [(a.stage, a.partition) for a in rerun] == [(m, 1)]
    assert rerun[0].attempt == 1 and r.attempt == 1
    red2 = launches(dag.task_ended(map_ok(rerun[0].task_id, 0, 1)))
    assert sorted(a.partition for a in red2) == [0, 1]
    dag.task_ended(ok(red2[0].task_id))
    assert isinstance(dag.task_ended(ok(red2[1].task_id))[-1], JobSucceeded)


def test_repeated_fetch_failures_abort():
    dag = DAGScheduler(clock=Clock(), max_stage_attempts=1)
    _m, r = two_stage()
    maps = launches(dag.submit_job(0, r, [0, 1], None))
    dag.task_ended(map_ok(maps[0].task_id, 0, 0))
    red = launches(dag.task_ended(map_ok(maps[1].task_id, 0, 1)))
    ff = FetchFailedError(0, 0, 0, "e1")
    rerun = launches(dag.task_ended(TaskResult(red[0].task_id, False, fetch_failure=ff)))
    red2 = launches(dag.task_ended(map_ok(rerun[0].task_id, 0, 0)))
    acts = dag.task_ended(TaskResult(red2[0].task_id, False, fetch_failure=ff))
    assert isinstance(acts[-1], JobFailed) and "fetching shuffle 0" in str(acts[-1].error)


def test_executor_lost_drops_its_outputs():
    dag = DAGScheduler(clock=Clock())
    m, r = two_stage()
    maps = launches(dag.submit_job(0, r, [0, 1], None))
    dag.task_ended(map_ok(maps[0].task_id, 0, 0, "e1"))
    red = launches(dag.task_ended(map_ok(maps[1].task_id, 0, 1, "e2")))
    dag.task_ended(ok(red[0].task_id))
    dag.task_ended(ok(red[1].task_id))
    dag.executor_lost("e2")
    assert dag.map_outputs[0][0] is not None and dag.map_outputs[0][1] is None
    again = launches(dag.submit_job(1, Stage(3, None, 2, [m]), [0, 1], None))
    assert [(a.stage, a.partition) for a in again] == [(m, 1)]


def test_speculation_launches_a_copy_of_a_straggler_and_kills_the_loser():
    clock = Clock()
    dag = DAGScheduler(clock=clock, speculation=True, speculation_multiplier=1.5,
                       speculation_quantile=0.75, speculation_min_runtime=0.5)
    tasks = launches(dag.submit_job(0, Stage(0, None, 4), [0, 1, 2, 3], None))
    clock.t = 1.0
    assert dag.tick() == []
    for t in tasks[:3]:
        dag.task_ended(ok(t.task_id))
    clock.t = 1.4
    assert dag.tick() == []  # 1.4 s < 1.5 x median 1.0 s
    clock.t = 2.0
    (copy,) = launches(dag.tick())
    assert copy.speculative and copy.partition == 3 and copy.attempt == 1
    assert dag.tick() == []  # one copy only
    acts = dag.task_ended(ok(copy.task_id, "fast"))
    assert KillTask(tasks[3].task_id) in acts and isinstance(acts[-1], JobSucceeded)
    assert dag.task_ended(ok(tasks[3].task_id)) == []


def test_speculation_off_by_default():
    clock = Clock()
    dag = DAGScheduler(clock=clock)
    tasks = launches(dag.submit_job(0, Stage(0, None, 2), [0, 1], None))
    dag.task_ended(ok(tasks[0].task_id))
    clock.t = 100.0
    assert dag.tick() == []


def double(split, it):
    return (x * 2 for x in it)


def test_task_bytes_run_in_another_process():
    """The executor side is ``run_task(bytes, env) -> bytes``: prove it across a process."""
    node = MapPartitionsNode(SourceNode({0: [1, 2, 3]}), lambda split, it: (x + 1 for x in it))
    body = TaskBody(node, 0, ResultSpec(lambda tc, it: sum(it)), {})
    task = Task(9, 0, 0, 0, 0, 0, "result", dumps(body))
    code = ("import sys, tempfile; from dataflow.tasks import ExecutorEnv, run_task; "
            "sys.stdout.buffer.write(run_task(sys.stdin.buffer.read(), "
            "ExecutorEnv('child', tempfile.mkdtemp())))")
    out = subprocess.run([sys.executable, "-c", code], input=task.to_bytes(),
                         capture_output=True, check=True, timeout=60).stdout
    result = TaskResult.from_bytes(out)
    assert result.ok and result.value() == 9 and result.executor_id == "child"
    local = TaskResult.from_bytes(run_task(task.to_bytes(), ExecutorEnv("x", tempfile.mkdtemp())))
    assert local.value() == 9


def test_run_task_reports_errors_as_results():
    body = TaskBody(SourceNode({0: [0]}), 0, ResultSpec(lambda tc, it: [1 / x for x in it]), {})
    task = Task(3, 0, 4, 0, 0, 0, "result", dumps(body))
    result = TaskResult.from_bytes(run_task(task.to_bytes(), ExecutorEnv("x", tempfile.mkdtemp())))
    assert not result.ok and result.error_type == "ZeroDivisionError"
    assert "division by zero" in result.error_message and "Traceback" in result.error_traceback


def test_preferred_locations_from_cache_and_map_outputs():
    dag = DAGScheduler(clock=Clock())
    dag.map_outputs[0] = [MapStatus(0, 0, 0, "e1", (5, 1)), MapStatus(0, 1, 0, "e2", (9, 0))]
    assert dag.preferred_locations([0], [], 0) == ("e2", "e1")
    assert dag.preferred_locations([0], [], 1) == ("e1", "e2")
    dag.cache_locations[(7, 0)] = "e3"
    assert dag.preferred_locations([0], [7], 0) == ("e3", "e2", "e1")
    dag.executor_lost("e3")
    dag.uncache(7)
    assert dag.preferred_locations([], [7], 0) == ()


def test_tasks_carry_preferred_locations(ctx):
    inline_only(ctx)
    launched = []
    real = ctx._backend.launch
    ctx._backend.launch = lambda task: (launched.append(task), real(task))
    rdd = ctx.parallelize(range(6), 2).map(lambda x: (x % 2, x)).cache()
    assert rdd.count() == 6
    assert all(t.preferred_locations == () for t in launched)
    launched.clear()
    assert rdd.mapValues(str).count() == 6
    assert [t.preferred_locations for t in launched] == [("inline",), ("inline",)]
    launched.clear()
    assert sorted(rdd.reduceByKey(operator.add).collect()) == [(0, 6), (1, 9)]
    reduce_tasks = [t for t in launched if t.kind == "result"]
    assert all(t.preferred_locations == ("inline",) for t in reduce_tasks)
    rdd.unpersist()
    assert ctx._dag.cache_locations == {}
