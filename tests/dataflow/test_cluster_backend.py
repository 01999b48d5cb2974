"""The substrate backend: dataflow jobs in executor processes on an embedded cluster.

Behaviour tests run on ``local[2]`` through the ``ctx`` fixture; these tests cover what only a
cluster has: executor processes that die or are killed, map outputs on other agents, big
results, broadcasts fetched from the driver, and a clean stop.
"""
from __future__ import annotations

import collections
import glob
import operator
import os
import signal
import threading

import psutil
import pytest

from dataflow import Context, TaskFailedError
from dataflow.cluster_backend import ClusterBackend, parse_master
from dataflow.errors import BackendUnavailableError
from dataflow.remote_fetch import parse_location

TEXT = ["the quick brown fox", "jumps over the lazy dog", "the dog sleeps", "a fox runs"] * 50


@pytest.fixture(scope="module")
def fault_ctx():
    """A local[2] context of its own: these tests kill its executors."""
    with Context("local[2]", appName="fault tests") as c:
        yield c


def _word_count(c: Context) -> dict:
    return dict(c.parallelize(TEXT, 4).flatMap(str.split).map(lambda w: (w, 1))
                .reduceByKey(operator.add, 3).collect())


EXPECTED = dict(collections.Counter(w for line in TEXT for w in line.split()))


def test_parse_master():
    assert parse_master("local[4]") == ("local", 4)
    assert parse_master("local") == ("local", os.cpu_count() or 1)
    assert parse_master("example.org:5050") == ("remote", "example.org:5050")
    with pytest.raises(BackendUnavailableError):
        parse_master("local[0]")


def test_word_count_and_join_run_in_executor_processes(shared_contexts):
    c = shared_contexts("local[2]")
    assert _word_count(c) == EXPECTED
    left = c.parallelize([(i % 10, i) for i in range(100)], 4)
    right = c.parallelize([(k, str(k)) for k in range(0, 10, 2)], 2)
    joined = left.join(right, 3).collect()
    assert sorted(joined) == sorted((i % 10, (i, str(i % 10))) for i in range(100)
                                    if i % 10 % 2 == 0)
    pids = set(c.parallelize(range(8), 8).mapPartitions(lambda it: [os.getpid()]).collect())
    assert os.getpid() not in pids
    assert pids <= set(c._backend.executor_pids().values())


def test_map_output_is_fetched_from_another_agent(shared_contexts):
    c = shared_contexts("local[2]")
    c._backend.wait_executors(2)
    pairs = c.parallelize(range(4000), 8).map(lambda i: (i % 50, 1))
    assert dict(pairs.reduceByKey(operator.add, 4).collect()) == {k: 80 for k in range(50)}
    sid = max(c._dag.map_outputs)
    statuses = c._dag.map_outputs[sid]
    agents = {parse_location(s.location)[1] for s in statuses}
    assert len(agents) == 2, "map outputs should be spread over both agents"
    for reduce_id in range(4):  # every reducer read non-empty buckets on both agents
        assert {parse_location(s.location)[1] for s in statuses if s.sizes[reduce_id]} == agents


def test_task_that_exits_its_executor_is_retried(fault_ctx, tmp_path):
    mark = str(tmp_path / "exited")

    def exit_once(x):
        try:
            os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return x * 2
        os._exit(3)

    assert fault_ctx.parallelize(range(10), 2).map(exit_once).collect() == \
        [x * 2 for x in range(10)]
    assert os.path.exists(mark)
    assert _word_count(fault_ctx) == EXPECTED


def test_task_that_always_exits_fails_the_job_clearly_and_the_context_survives(fault_ctx):
    with pytest.raises(TaskFailedError) as info:
        fault_ctx.parallelize([1, 2], 2).map(lambda x: os._exit(5) if x == 2 else x).collect()
    err = info.value
    assert err.remote_type == "ExecutorLostError" and err.partition == 1
    assert "exit" in err.remote_message and err.failures == 4
    assert _word_count(fault_ctx) == EXPECTED


def test_sigkill_of_an_executor_mid_stage_still_gives_the_right_answer(fault_ctx, tmp_path):
    fifo, claim = str(tmp_path / "pid"), str(tmp_path / "claimed")
    os.mkfifo(fifo)

    def stall_once(it):
        data = list(it)
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return data
        with open(fifo, "w") as f:  # blocks until the test reads: then it knows our pid
            f.write(str(os.getpid()))
        threading.Event().wait()  # hang here until killed
        return data

    rdd = fault_ctx.parallelize(range(200), 4).mapPartitions(stall_once) \
        .map(lambda x: (x % 7, x)).reduceByKey(operator.add)
    out: dict = {}
    job = threading.Thread(target=lambda: out.update(result=rdd.collect()), daemon=True)
    job.start()
    with open(fifo) as f:
        pid = int(f.read())
    assert pid in fault_ctx._backend.executor_pids().values() and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    job.join(60)
    assert not job.is_alive()
    expected = collections.Counter()
    for x in range(200):
        expected[x % 7] += x
    assert dict(out["result"]) == dict(expected)
    assert pid not in fault_ctx._backend.executor_pids().values()


def test_lost_map_outputs_are_recomputed_from_lineage(fault_ctx):
    counts = fault_ctx.parallelize(TEXT, 4).flatMap(str.split).map(lambda w: (w, 1)) \
        .reduceByKey(operator.add, 3)
    assert dict(counts.collect()) == EXPECTED
    sid = max(fault_ctx._dag.map_outputs)
    root = fault_ctx._backend.cluster.work_dir
    pattern = os.path.join(root, "**", "shuffle", str(sid), "*", "*")
    removed = glob.glob(pattern, recursive=True)
    assert removed
    for path in removed:
        os.unlink(path)
    assert dict(counts.collect()) == EXPECTED  # FetchFailed -> the map stage runs again
    assert glob.glob(pattern, recursive=True), "the map outputs were written again"


def test_big_results_travel_as_files():
    with Context("local[2]") as c:
        sizes = c.parallelize(range(2), 2).map(lambda i: os.urandom(5 * 2**20 + i)).map(len) \
            .collect()
        assert sizes == [5 * 2**20, 5 * 2**20 + 1]
        blobs = c.parallelize(range(2), 2).map(lambda i: bytes([i]) * (5 * 2**20)).collect()
        assert [len(b) for b in blobs] == [5 * 2**20] * 2 and blobs[1][:1] == b"\x01"
        sched = c._backend.scheduler
        assert c._backend.wait_for(lambda: sched.results_deleted >= 2, timeout=30)
        assert not glob.glob(os.path.join(c._backend.cluster.work_dir, "**", "results", "*"),
                             recursive=True), "result files are deleted once read"


def test_broadcast_is_sent_by_the_driver_when_executors_cannot_read_it(monkeypatch):
    monkeypatch.setattr(ClusterBackend, "_broadcast_dir", lambda self: "")
    with Context("local[2]") as c:
        table = c.broadcast({i: i * i for i in range(1000)})
        acc = c.accumulator(0)

        def look(i):
            acc.add(1)
            return table.value[i]

        assert c.parallelize(range(0, 1000, 100), 2).map(look).collect() == \
            [i * i for i in range(0, 1000, 100)]
        assert acc.value == 10
        assert c._backend.scheduler.broadcasts_sent >= 1


def test_stop_leaves_no_executor_processes():
    c = Context("local[2]")
    pids = c._backend.wait_executors(2).values()
    assert c.parallelize(range(10), 2).sum() == 45
    c.stop()
    alive = [p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive
    assert c._backend.cluster is not None and not c._backend.driver.running


def test_interpreter_exit_without_stop_ends_the_executors(tmp_path):
    import subprocess
    import sys
    script = ("from dataflow import Context\n"
              "c = Context('local[2]')\n"
              "print(' '.join(map(str, c._backend.wait_executors(2).values())))\n"
              "assert c.parallelize(range(4), 2).sum() == 6\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=str(tmp_path), check=False)
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    alive = [p for p in pids if psutil.pid_exists(p)
             and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive


def test_host_port_master_uses_a_running_cluster():
    import substrate
    with substrate.LocalCluster(agents=2, cpus=1, mem=512) as cluster:
        with Context(cluster.master) as c:
            assert c.defaultParallelism >= 2
            assert _word_count(c) == EXPECTED
            assert c._backend.cluster is None
        state = cluster.state()
        assert cluster.master and state["agents"]


def test_tree_ops_combine_their_intermediate_levels_on_executors(shared_contexts):
    """16 partials, depth 2: one level of 4 reducers on executors, then the driver combines
    the at most 4 partials that are left (3 combines or fewer; all 15 before the tree)."""
    c = shared_contexts("local[2]")
    driver = os.getpid()

    def comb(a: list, b: list) -> list:  # each combine records the process it ran in
        return a + b + [os.getpid()]

    rdd = c.parallelize(range(16), 16)
    for where in (rdd.map(lambda x: []).treeReduce(comb, depth=2),
                  rdd.treeAggregate([], lambda acc, x: acc, comb, depth=2)):
        assert len(where) == 15
        assert where.count(driver) <= 3
        assert set(where) - {driver} <= set(c._backend.executor_pids().values())
    # depth 1 keeps PySpark's meaning: no intermediate level, everything meets on the driver
    assert rdd.map(lambda x: []).treeReduce(comb, depth=1).count(driver) == 15
