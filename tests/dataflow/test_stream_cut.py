"""A broken scheduler stream (a network fault between driver and master) does not lose the
job: the driver re-subscribes within the framework's failover timeout and the job goes on in
the same executors."""
from __future__ import annotations

import threading

import pytest

from dataflow import Context
from substrate import LocalCluster
from tests.substrate.ha_helpers import wait_for
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.timeout(180)


def gated(gate: str):
    def fn(x):
        import os
        import time
        deadline = time.monotonic() + 120
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
        return x * 10
    return fn


def framework(cluster: LocalCluster, fid: str) -> dict:
    return next(f for f in cluster.state()["frameworks"] if f["id"] == fid)


def test_a_job_survives_a_cut_scheduler_stream(tmp_path):
    gate = tmp_path / "gate"
    with LocalCluster(agents=1, cpus=2) as cluster, CuttableProxy(cluster.master) as proxy:
        ctx = Context(proxy.address, appName="cut", progress=False)
        try:
            fid = ctx._backend.framework_id
            out: dict = {}
            job = threading.Thread(target=lambda: out.setdefault(
                "result", ctx.parallelize(range(4), 4).map(gated(str(gate))).collect()),
                daemon=True)
            job.start()
            wait_for(lambda: any(t["state"] == "RUNNING" for t in framework(cluster, fid)["tasks"]),
                     60, "the job's tasks to run")
            executors = {t["id"] for t in framework(cluster, fid)["tasks"]}
            before = proxy.accepted
            proxy.cut()
            # The master saw the stream end, and the driver came back through a new connection.
            assert proxy.wait_accepted(before + 1, 30), "the driver did not reconnect"
            wait_for(lambda: framework(cluster, fid)["connected"], 30, "the re-subscription")
            gate.touch()
            job.join(60)
            assert out.get("result") == [0, 10, 20, 30]
            # No executor was lost with the stream: none ended KILLED, LOST or FAILED.
            ended = {t["id"]: t["state"] for t in framework(cluster, fid)["completed_tasks"]}
            assert not {tid: s for tid, s in ended.items() if tid in executors
                        and s in ("KILLED", "LOST", "FAILED")}
            assert ctx.parallelize(range(3), 3).map(lambda x: -x).collect() == [0, -1, -2]
        finally:
            gate.touch()
            ctx.stop()
