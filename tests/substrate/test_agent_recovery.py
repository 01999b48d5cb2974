"""Agent recovery on real processes: an agent SIGKILLed mid-task and restarted (reconnect and
cleanup), a host that rebooted, a partitioned agent that comes back, a drained agent."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from substrate import LocalCluster, Reason, Resources, TaskState
from substrate.master import MasterConfig

from .cluster_helpers import Recorder, start

pytestmark = pytest.mark.timeout(120)

# The agent must be back well before it is declared unreachable (recovery tests) ...
PATIENT = MasterConfig(agent_heartbeat_interval=1.0, agent_max_missed_heartbeats=60)
# ... or declared unreachable quickly (partition tests).
FAST = MasterConfig(agent_heartbeat_interval=0.2, agent_max_missed_heartbeats=5)


def eventually(predicate, timeout: float = 30.0, what: str = "") -> None:
    """Poll a condition on real processes or files until it holds (or fail after timeout)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def checkpoint(cluster: LocalCluster, i: int = 0) -> dict:
    try:
        with open(os.path.join(cluster.work_dir, f"agent{i}", "meta", "agent.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def wait_armed(cluster: LocalCluster, framework_id: str, task_id: str, i: int = 0) -> None:
    """Wait until a shell task has printed ``armed`` (its SIGTERM trap is in place)."""
    out = os.path.join(cluster.work_dir, f"agent{i}", "sandboxes", framework_id, task_id, "stdout")

    def armed() -> bool:
        try:
            with open(out) as f:
                return "armed" in f.read()
        except OSError:
            return False
    eventually(armed, what=f"{task_id} armed")


def checkpointed_executor_pid(cluster: LocalCluster) -> int:
    """Wait until the agent has checkpointed its executor and the executor's task."""
    def ready() -> bool:
        state = checkpoint(cluster)
        return bool(state.get("executors")) and bool(state.get("tasks"))
    eventually(ready, what="executor and task in the agent checkpoint")
    return checkpoint(cluster)["executors"][0]["pid"]


@pytest.fixture
def boot_id(tmp_path):
    path = tmp_path / "boot_id"
    path.write_text("boot-1\n")
    return path


@pytest.fixture
def cluster(boot_id):
    options = {"boot_id_file": str(boot_id), "executor_recovery_timeout": 60}
    with LocalCluster(agents=1, cpus=2, mem=1024, processes=True, master_config=PATIENT,
                      agent_options=options) as c:
        yield c


def _running_waiter(cluster: LocalCluster, rec: Recorder, driver) -> tuple[str, int]:
    agent_id = cluster.agents[0]["agent_id"]
    rec.submit(driver, "t1", kind="executor", payload=b"wait", agent=agent_id)
    rec.wait_state("t1", TaskState.RUNNING)
    pid = checkpointed_executor_pid(cluster)
    return agent_id, pid


def test_sigkilled_agent_restarts_and_its_task_keeps_going_and_finishes(cluster):
    rec = Recorder()
    driver = start(cluster.master, rec)
    try:
        agent_id, pid = _running_waiter(cluster, rec, driver)
        cluster.kill_agent(0, signal.SIGKILL)
        assert not gone(pid), "the executor must outlive its agent"
        again = cluster.start_agent(0)             # --recover=reconnect is the default
        assert again["agent_id"] == agent_id
        # The executor re-subscribes over the agent's Unix socket; a message reaches it and
        # its FINISHED update reaches the framework through the restarted agent.
        driver.send_framework_message(agent_id, "test-executor", b"finish:t1")
        done = rec.wait_state("t1", TaskState.FINISHED)
        assert int(done.data) == pid               # the same executor process, never restarted
        states = [s.state for s in rec.statuses if s.task_id == "t1"]
        assert TaskState.LOST not in states and TaskState.FAILED not in states
        # The executor stays usable for new tasks.
        rec.submit(driver, "t2", kind="executor", payload=b"finish", agent=agent_id)
        assert int(rec.wait_state("t2", TaskState.FINISHED).data) == pid
    finally:
        driver.stop()


def test_restart_with_cleanup_kills_executors_and_reports_their_tasks(cluster):
    rec = Recorder()
    driver = start(cluster.master, rec)
    try:
        agent_id, pid = _running_waiter(cluster, rec, driver)
        cluster.kill_agent(0, signal.SIGKILL)
        again = cluster.start_agent(0, recover="cleanup")
        assert again["agent_id"] == agent_id
        failed = rec.wait_state("t1", TaskState.FAILED)
        assert failed.reason == Reason.AGENT_RESTARTED and "cleanup" in failed.message
        eventually(lambda: gone(pid), what="the old executor killed")
        rec.submit(driver, "after", payload=b"true", agent=agent_id)
        rec.wait_state("after", TaskState.FINISHED)
    finally:
        driver.stop()


def test_rebooted_host_registers_as_a_new_agent_and_its_tasks_are_gone(cluster, boot_id):
    rec = Recorder()
    driver = start(cluster.master, rec)
    try:
        old_id, pid = _running_waiter(cluster, rec, driver)
        cluster.kill_agent(0, signal.SIGKILL)
        os.killpg(pid, signal.SIGKILL)             # a reboot takes every process with it
        boot_id.write_text("boot-2\n")
        new_id = cluster.start_agent(0)["agent_id"]
        assert new_id != old_id
        gone_status = rec.wait_state("t1", TaskState.GONE)
        assert gone_status.reason == Reason.AGENT_REBOOTED
        rec.wait(lambda: old_id in rec.agents_lost, what="old agent reported lost")
        assert [a["id"] for a in cluster.state()["agents"]] == [new_id]
        rec.submit(driver, "fresh", payload=b"true", agent=new_id)
        rec.wait_state("fresh", TaskState.FINISHED)
    finally:
        driver.stop()


def test_partitioned_agent_comes_back_running_for_partition_aware_frameworks_only():
    with LocalCluster(agents=1, cpus=2, mem=1024, processes=True, master_config=FAST) as c:
        aware, plain = Recorder(), Recorder()
        d_aware = start(c.master, aware, name="aware", capabilities=["PARTITION_AWARE"])
        d_plain = start(c.master, plain, name="plain")
        try:
            agent_id, agent_pid = c.agents[0]["agent_id"], c.agents[0]["pid"]
            aware.submit(d_aware, "pa", payload=b"sleep 60")
            plain.submit(d_plain, "np", payload=b"sleep 60")
            aware.wait_state("pa", TaskState.RUNNING)
            plain.wait_state("np", TaskState.RUNNING)
            os.kill(agent_pid, signal.SIGSTOP)    # cut off: no heartbeats, processes go on
            try:
                unreachable = aware.wait_state("pa", TaskState.UNREACHABLE)
                lost = plain.wait_state("np", TaskState.LOST)
                assert unreachable.reason == lost.reason == Reason.AGENT_UNREACHABLE
            finally:
                os.kill(agent_pid, signal.SIGCONT)
            back = aware.wait_state("pa", TaskState.RUNNING)
            assert "reachable again" in back.message
            killed = plain.wait_state("np", TaskState.KILLED)
            assert killed.reason == Reason.AGENT_UNREACHABLE
            state = c.state()
            assert [a["id"] for a in state["agents"]] == [agent_id]
            tasks = {t["id"]: t["state"] for f in state["frameworks"] for t in f["tasks"]}
            assert tasks == {"pa": "RUNNING"}
        finally:
            d_aware.stop()
            d_plain.stop()


def test_drain_kills_tasks_after_the_grace_period_and_stops_offers():
    with LocalCluster(agents=2, cpus=2, mem=1024, processes=True, master_config=FAST) as c:
        rec = Recorder()
        driver = start(c.master, rec)
        try:
            drained, other = c.agents[0]["agent_id"], c.agents[1]["agent_id"]
            rec.submit(driver, "polite", payload=b"sleep 60", agent=drained)
            rec.submit(driver, "deaf", payload=b"trap '' TERM; echo armed; sleep 60", agent=drained)
            rec.submit(driver, "stubborn", kind="executor", payload=b"stubborn", agent=drained)
            for tid in ("polite", "deaf", "stubborn"):
                rec.wait_state(tid, TaskState.RUNNING)
            wait_armed(c, driver.framework_id, "deaf")
            out = subprocess.run(
                [sys.executable, "-m", "substrate.cli", "drain", drained, "--master", c.master,
                 "--grace", "0.5"], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            assert "3 tasks told to stop" in out.stdout
            polite = rec.wait_state("polite", TaskState.KILLED)
            assert polite.reason == Reason.AGENT_DRAINING and "SIGTERM" in polite.message
            deaf = rec.wait_state("deaf", TaskState.KILLED)   # ignored SIGTERM
            assert deaf.reason == Reason.AGENT_DRAINING and "SIGKILL" in deaf.message
            stubborn = rec.wait_state("stubborn", TaskState.KILLED)  # ignored its kill
            assert stubborn.reason == Reason.AGENT_DRAINING and "SIGKILL" in stubborn.message
            assert [a["draining"] for a in c.state()["agents"] if a["id"] == drained] == [True]
            rec.submit(driver, "elsewhere", payload=b"true")
            rec.wait_state("elsewhere", TaskState.FINISHED)
            assert rec.placed["elsewhere"] == other
            out = subprocess.run(
                [sys.executable, "-m", "substrate.cli", "drain", drained, "--master", c.master,
                 "--reactivate"], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            rec.submit(driver, "back", payload=b"true", agent=drained)
            rec.wait_state("back", TaskState.FINISHED)
            bad = subprocess.run(
                [sys.executable, "-m", "substrate.cli", "drain", "no-such-agent", "--master",
                 c.master], capture_output=True, text=True, timeout=60)
            assert bad.returncode == 1 and "no agent 'no-such-agent'" in bad.stderr
        finally:
            driver.stop()


def test_quota_from_the_master_command_line_caps_a_role():
    config = MasterConfig(agent_heartbeat_interval=0.5, agent_max_missed_heartbeats=20,
                          quota={"capped": Resources(cpus=1)})
    with LocalCluster(agents=2, cpus=2, mem=1024, processes=True, master_config=config) as c:
        capped, free = Recorder(), Recorder()
        d_capped = start(c.master, capped, name="capped", role="capped")
        d_free = start(c.master, free, name="free", role="free")
        try:
            for i in range(3):
                capped.submit(d_capped, f"c{i}", cpus=0.5, payload=b"sleep 60")
            capped.wait(lambda: sum(s.state == TaskState.RUNNING for s in capped.latest.values())
                        == 2, what="two capped tasks running")
            # Another role still gets offers after the cap is reached: allocation cycles ran
            # with free cpus on both agents, and the capped role got none of them.
            for i in range(2):
                free.submit(d_free, f"f{i}", cpus=0.5, payload=b"sleep 60")
            for i in range(2):
                free.wait_state(f"f{i}", TaskState.RUNNING)
            assert len(capped.queue) == 1 and len(capped.latest) == 2
            state = c.state()
            assert state["quota"]["capped"]["cpus"] == 1.0
            fw = next(f for f in state["frameworks"] if f["name"] == "capped")
            assert fw["allocated"]["cpus"] <= 1.0
        finally:
            d_capped.stop()
            d_free.stop()
