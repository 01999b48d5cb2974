"""A dataflow job against ``zk://``: the context hands the URL to the substrate, whose driver
finds the leading master through a real ZooKeeper, with a standby master beside it."""
from __future__ import annotations

import pytest

from dataflow import Context
from substrate.detector import LeaderDetector
from tests.substrate.ha_helpers import start_agent, start_master, state, wait_for
from tests.zookeeper import zookeeper  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def test_a_dataflow_job_runs_against_a_zookeeper_master_url(zookeeper, tmp_path):  # noqa: F811
    url = zookeeper.url("dataflow")
    procs = [start_master(url, str(tmp_path), "m1", session_timeout=5)]
    detector = LeaderDetector(url).start()
    try:
        wait_for(lambda: detector.leader is not None
                 and state(detector.leader.address)["leading"], 60, "a leader")
        procs.append(start_master(url, str(tmp_path), "m2", session_timeout=5))
        procs.append(start_agent(url, str(tmp_path / "agent"), "host-0", cpus=2, mem=2048))
        ctx = Context(url, appName="zk job")
        try:
            counts = dict(ctx.parallelize(["a b", "b c", "c"], 2)
                          .flatMap(str.split).map(lambda w: (w, 1))
                          .reduceByKey(lambda x, y: x + y).collect())
            assert counts == {"a": 1, "b": 2, "c": 2}
            leader = state(detector.leader.address)
            assert [f["name"] for f in leader["frameworks"]] == ["dataflow: zk job"]
        finally:
            ctx.stop()
    finally:
        detector.close()
        for p in reversed(procs):
            p.terminate()
