"""Errors reach the driver clearly and leave the context usable."""
from __future__ import annotations

import operator

import pytest

from dataflow import (
    BackendUnavailableError,
    ClosureCaptureError,
    Context,
    DataflowError,
    NotPairError,
    SerializationError,
    TaskFailedError,
)
from tests.dataflow.conftest import inline_only


def boom(x):
    if x == 7:
        raise ZeroDivisionError(f"cannot handle {x}")
    return x


def test_user_exception_carries_type_message_traceback_stage_partition(ctx):
    rdd = ctx.parallelize(range(10), 3).map(boom)
    with pytest.raises(TaskFailedError) as info:
        rdd.collect()
    err = info.value
    assert err.remote_type == "ZeroDivisionError"
    assert err.remote_message == "cannot handle 7"
    assert "in boom" in err.remote_traceback and "raise ZeroDivisionError" in err.remote_traceback
    assert err.partition == 2 and err.stage_id >= 0
    assert f"stage {err.stage_id}, partition 2" in str(err) and "ZeroDivisionError" in str(err)
    assert err.failures == 4
    assert isinstance(err, DataflowError)
    # the context is usable for the next job
    assert ctx.parallelize(range(4), 2).map(lambda x: x + 1).collect() == [1, 2, 3, 4]


def test_exception_in_shuffle_map_stage_names_that_stage(ctx):
    rdd = ctx.parallelize(range(10), 2).map(lambda x: (x, 1 // (x - 3))).reduceByKey(operator.add)
    with pytest.raises(TaskFailedError) as info:
        rdd.collect()
    assert info.value.remote_type == "ZeroDivisionError" and info.value.partition == 0
    assert sorted(ctx.parallelize([(1, 1), (1, 2)]).reduceByKey(operator.add).collect()) == [(1, 3)]


def test_flaky_task_is_retried(tmp_path):
    marks = str(tmp_path)

    def flaky(x):
        import os
        mark = os.path.join(marks, str(x))
        if not os.path.exists(mark):  # closures are copied into tasks: remember on disk
            open(mark, "w").close()
            raise RuntimeError("first time fails")
        return x

    with Context("inline", max_task_failures=2) as c:
        assert c.parallelize([1, 2], 2).map(flaky).collect() == [1, 2]


def test_max_task_failures_one_fails_fast():
    with Context("inline", max_task_failures=1) as c:
        with pytest.raises(TaskFailedError) as info:
            c.parallelize([7], 1).map(boom).collect()
        assert info.value.failures == 1


def test_closure_capturing_rdd_is_a_clear_error(ctx):
    other = ctx.parallelize([1, 2])
    with pytest.raises(ClosureCaptureError, match="RDD"):
        ctx.parallelize([1, 2]).map(lambda x: other.count() + x).collect()
    assert ctx.parallelize([1]).collect() == [1]


def test_closure_capturing_context_is_a_clear_error(ctx):
    with pytest.raises(ClosureCaptureError, match="Context"):
        ctx.parallelize([1, 2]).map(lambda x: ctx.parallelize([x])).collect()
    assert ctx.parallelize([3]).collect() == [3]


def test_unpicklable_closure_is_a_clear_error(ctx):
    lock = (i for i in range(3))  # generators cannot be pickled, not even by dill
    with pytest.raises(SerializationError, match="cannot serialise"):
        ctx.parallelize([1]).map(lambda x: (lock, x)[1]).collect()
    assert ctx.parallelize([2]).collect() == [2]


def test_unpicklable_result_is_a_task_error(ctx):
    with pytest.raises(TaskFailedError, match="SerializationError"):
        ctx.parallelize([1]).map(lambda x: (i for i in range(x))).collect()


@pytest.mark.parametrize("bad", [[1, 2, 3], [("a", 1, 2)], ["abc"], [None]])
def test_non_pair_rdd_in_by_key_op(ctx, bad):
    with pytest.raises(TaskFailedError) as info:
        ctx.parallelize(bad).reduceByKey(operator.add).collect()
    assert info.value.remote_type == "NotPairError"
    assert "(key, value) pairs" in info.value.remote_message
    with pytest.raises(TaskFailedError, match="NotPairError"):
        ctx.parallelize(bad).groupByKey().collect()
    assert ctx.parallelize([("a", 1)]).groupByKey().mapValues(list).collect() == [("a", [1])]


def test_not_pair_error_type():
    assert issubclass(NotPairError, TypeError) and issubclass(NotPairError, DataflowError)


def test_malformed_zookeeper_master_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="zk://HOST:PORT"):
        Context("zk://h:2181")


def test_unreachable_cluster_master_is_a_clear_error(monkeypatch):
    import dataflow.cluster_backend as cb
    monkeypatch.setattr(cb, "REGISTER_TIMEOUT", 1.0)
    with pytest.raises(BackendUnavailableError, match="cannot reach the substrate master"):
        Context("127.0.0.1:1")


def test_unknown_master():
    with pytest.raises(BackendUnavailableError, match="unknown master"):
        Context("yarn")


def test_task_failed_error_pickles():
    import pickle
    err = TaskFailedError("KeyError", "'x'", "tb text", 3, 4, 1, 2)
    back = pickle.loads(pickle.dumps(err))
    assert (back.remote_type, back.stage_id, back.partition, back.failures) == ("KeyError", 3, 4, 2)


def test_accumulator_value_inside_task_is_an_error(ctx):
    acc = ctx.accumulator(0)
    with pytest.raises(TaskFailedError, match="cannot be accessed inside tasks"):
        ctx.parallelize([1]).map(lambda x: acc.value).collect()


def test_interrupted_job_leaves_the_context_usable(ctx):
    inline_only(ctx)
    def interrupt(x):
        raise KeyboardInterrupt

    rdd = ctx.parallelize([1, 2], 2).map(interrupt)
    with pytest.raises(TaskFailedError, match="KeyboardInterrupt"):
        rdd.collect()
    calls = []
    real = ctx._backend.poll

    def poll(timeout=None):
        if not calls:
            calls.append(1)
            raise KeyboardInterrupt  # the driver itself is interrupted mid-job
        return real(timeout)

    ctx._backend.poll = poll
    with pytest.raises(KeyboardInterrupt):
        ctx.parallelize([1, 2], 2).count()
    assert ctx._dag.job is None and not ctx._backend.queue
    assert ctx.parallelize([1, 2], 2).count() == 2
