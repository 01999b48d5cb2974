"""Faults of whole agents, on real processes: an agent holding map outputs is SIGKILLed while a
job is running, and the job still returns the right answer.

The cluster runs master and agents as separate OS processes (``LocalCluster(processes=True)``)
and the Context joins it as a ``"HOST:PORT"`` master, the way a real deployment does. The master
is told to give up on a silent agent after about a second, so the loss is noticed quickly.
"""
from __future__ import annotations

import collections
import operator
import os
import signal
import threading

import psutil
import pytest

from dataflow import Context
from dataflow.remote_fetch import parse_location
from substrate import LocalCluster
from substrate.master import MasterConfig

# Short enough to notice the killed agent soon; long enough that a loaded machine does not
# make the surviving agent miss its heartbeats too.
FAST = MasterConfig(agent_heartbeat_interval=0.2, agent_max_missed_heartbeats=15)
N = 2000


@pytest.fixture
def proc_cluster():
    # one cpu per agent: exactly one executor per agent, so both agents hold map outputs
    with LocalCluster(agents=2, cpus=1, mem=512, processes=True, master_config=FAST) as c:
        yield c


def _first_time(path: str) -> bool:
    """True for the first caller across processes (the retries of a task skip the fault)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


@pytest.mark.timeout(180)
def test_sigkill_of_an_agent_holding_map_outputs_mid_job(proc_cluster, tmp_path):
    meet, stall = str(tmp_path / "meet"), str(tmp_path / "stall")
    os.mkfifo(meet)
    os.mkfifo(stall)
    with Context(proc_cluster.master, appName="agent fault") as ctx:
        calls = ctx.accumulator(0)

        def tag(i, it):
            # the first attempts of map partitions 0 and 1 wait for each other, so both
            # executors (one per agent) write map outputs
            if i < 2 and _first_time(str(tmp_path / f"map{i}")):
                with open(meet, "w" if i == 0 else "r") as f:
                    f.write("") if i == 0 else f.read()
            for x in it:
                calls.add(1)
                yield x % 97, x

        def stall_once(i, it):
            data = list(it)  # the map outputs are fetched by now
            if i == 0 and _first_time(str(tmp_path / "reduce0")):
                with open(stall, "w") as f:  # tell the test our pid, then hang until killed
                    f.write(str(os.getpid()))
                threading.Event().wait()
            return data

        summed = ctx.parallelize(range(N), 4).mapPartitionsWithIndex(tag) \
            .reduceByKey(operator.add, 2).mapPartitionsWithIndex(stall_once)
        out: dict = {}
        job = threading.Thread(target=lambda: out.update(result=summed.collect()), daemon=True)
        job.start()
        with open(stall) as f:
            stalled = int(f.read())
        try:
            agent_pid = psutil.Process(stalled).ppid()
            (victim,) = [a for a in proc_cluster.agents if a["pid"] == agent_pid]
            (sid,) = [s for s in ctx._dag.map_outputs if ctx._dag.map_outputs[s]]
            holders = {parse_location(s.location)[1] for s in ctx._dag.map_outputs[sid] if s}
            assert len(holders) == 2, "both agents hold map outputs before the kill"
            assert victim["address"] in holders
            os.kill(agent_pid, signal.SIGKILL)
            job.join(120)
            assert not job.is_alive(), "the job did not recover from the lost agent"
        finally:
            try:
                os.kill(stalled, signal.SIGKILL)  # orphaned by its agent; it would wait forever
            except ProcessLookupError:
                pass
        expected = collections.Counter()
        for x in range(N):
            expected[x % 97] += x
        assert dict(out["result"]) == dict(expected)
        assert calls.value > N, "the lost map outputs were recomputed from lineage"
        survivors = {parse_location(s.location)[1] for s in ctx._dag.map_outputs[sid]}
        assert victim["address"] not in survivors
