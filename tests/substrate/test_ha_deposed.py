"""A deposed leader that keeps running and keeps sending does no harm.

Two real masters share one registry: A (epoch 1), then B (epoch 2) recovers from it. The test
steers the ZooKeeper members itself, so that a real agent process and a real scheduler driver
(both following ``zk://``) are sent back to A after they have seen B's epoch, as a stale view
of the election would. A, which never learnt it was deposed, registers them and sends its
own commands (a kill of the running task); they drop every message of the older epoch.
"""
from __future__ import annotations

import json
import threading

import pytest

from substrate import (
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo,
    TaskState,
)
from substrate.detector import LeaderDetector, parse_zk_url
from substrate.master import Master, MasterConfig
from substrate.master.calls import handle_call
from substrate.master.registry import InMemoryRegistry
from substrate.v1 import pb
from tests.substrate.ha_helpers import LoopThread, start_agent, wait_for
from tests.zookeeper import zookeeper  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


class Watcher(Scheduler):
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.launched = False
        self.updates: list = []
        self.masters: list = []
        self.offers: list = []

    def registered(self, driver, framework_id, master_id):
        with self.cond:
            self.masters.append(master_id)
            self.cond.notify_all()

    def reregistered(self, driver, master_id):
        self.registered(driver, driver.framework_id, master_id)

    def resource_offers(self, driver, offers):
        with self.cond:
            self.offers.extend(offers)
            if not self.launched:
                self.launched = True
                driver.launch_tasks(offers[0].id, [TaskInfo(
                    "t", offers[0].agent_id, Resources(cpus=0.1, mem=16),
                    command=CommandInfo("exec sleep 600", shell=True))])
            else:
                driver.decline_offer([o.id for o in offers], Filters(refuse_seconds=600))

    def status_update(self, driver, status):
        with self.cond:
            self.updates.append(status)
            self.cond.notify_all()

    def wait(self, predicate, timeout: float = 60.0) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), (self.updates, self.masters)


def test_a_deposed_leader_that_keeps_sending_is_ignored(zookeeper, tmp_path):  # noqa: F811
    from kazoo.client import KazooClient

    url = zookeeper.url("deposed")
    hosts, path = parse_zk_url(url)
    zk = KazooClient(hosts)
    zk.start(timeout=20)
    zk.ensure_path(f"{path}/members")

    def point_at(master: Master) -> str:
        for child in zk.get_children(f"{path}/members"):
            zk.delete(f"{path}/members/{child}")
        return zk.create(f"{path}/members/member_", json.dumps(
            {"address": master.address, "master_id": master.core.master_id}).encode(),
            sequence=True)

    loop = LoopThread()
    registry = InMemoryRegistry()
    cfg = MasterConfig(agent_heartbeat_interval=5.0)
    a = Master(http_port=None, config=cfg, registry=registry)
    loop.run(a.start())
    point_at(a)
    agent = start_agent(url, str(tmp_path / "agent"), "host-0")
    sched = Watcher()
    driver = SchedulerDriver(sched, FrameworkInfo(name="w", failover_timeout=300), url)
    detector = LeaderDetector(url).start()
    b = None
    try:
        driver.start()
        driver.wait_registered(60)
        sched.wait(lambda: any(u.task_id == "t" and u.state == TaskState.RUNNING
                               for u in sched.updates))
        fid = driver.framework_id
        assert loop.call(lambda: a.core.epoch) == 1

        # B takes over (epoch 2) from the same registry; everyone follows it.
        b = Master(http_port=None, config=cfg, registry=registry)
        loop.run(b.start())
        assert loop.call(lambda: b.core.epoch) == 2
        point_at(b)
        wait_for(lambda: loop.call(lambda: len(b.core.agents) == 1 and
                                   b.core.frameworks[fid].connected
                                   and "t" in b.core.frameworks[fid].tasks), 60,
                 "agent and scheduler on B")
        seen = len(sched.masters)

        # The stale view: everyone is sent back to A, which still believes it leads.
        point_at(a)
        wait_for(lambda: loop.call(lambda: any(ag.connected for ag in a.core.agents.values())),
                 60, "the agent to reach A")
        agent_id = next(iter(loop.call(lambda: list(a.core.agents))))

        def kill_from_a():
            handle_call(a.core, fid, pb.Call(type=pb.Call.KILL,
                                             kill=pb.Call.Kill(task_id="t", agent_id=agent_id)))
            a.service.flush()
        loop.call(kill_from_a)  # A keeps sending: KILL_TASK at epoch 1

        # Back to B: the task is still running there, and the scheduler never subscribed
        # with A again nor heard of a kill.
        point_at(b)
        wait_for(lambda: loop.call(lambda: b.core.agents[agent_id].connected
                                   and b.core.frameworks[fid].connected), 60,
                 "agent and scheduler back on B")
        driver.reconcile_tasks(["t"])
        sched.wait(lambda: sum(1 for u in sched.updates if u.task_id == "t") >= 2)
        assert sched.updates[-1].state == TaskState.RUNNING
        assert not [u for u in sched.updates if u.state.is_terminal]
        assert all(m.startswith(b.core.master_id) for m in sched.masters[seen:])
        assert loop.call(lambda: b.core.frameworks[fid].tasks["t"].state) == pb.TaskStatus.RUNNING
    finally:
        driver.stop()
        detector.close()
        agent.terminate()
        loop.run(a.stop())
        if b is not None:
            loop.run(b.stop())
        zk.stop()
        zk.close()
