"""End to end through real gRPC: an embedded cluster, then master and agents as separate OS
processes with faults injected by killing them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import psutil
import pytest

from substrate import LocalCluster, Reason, TaskState
from substrate.master import MasterConfig

from .cluster_helpers import Recorder, start

FAST = MasterConfig(agent_heartbeat_interval=0.2, agent_max_missed_heartbeats=5)


@pytest.fixture
def cluster():
    with LocalCluster(agents=2, cpus=2, mem=1024, master_config=FAST) as c:
        yield c


@pytest.fixture
def proc_cluster():
    with LocalCluster(agents=2, cpus=2, mem=1024, processes=True, master_config=FAST) as c:
        yield c


def test_command_tasks_finish_fail_and_are_killed(cluster):
    rec = Recorder()
    driver = start(cluster.master, rec)
    try:
        rec.submit(driver, "ok", payload=b"echo fine")
        rec.submit(driver, "bad", payload=b"exit 3")
        rec.submit(driver, "long", payload=b"sleep 60")
        assert rec.wait_state("ok", TaskState.FINISHED)
        bad = rec.wait_state("bad", TaskState.FAILED)
        assert bad.reason == Reason.COMMAND_EXECUTOR_FAILED and "3" in bad.message
        rec.wait_state("long", TaskState.RUNNING)
        driver.kill_task("long")
        killed = rec.wait_state("long", TaskState.KILLED)
        assert killed.reason == Reason.TASK_KILLED
        states = [s.state for s in rec.statuses if s.task_id == "ok"]
        assert states[-1] == TaskState.FINISHED and TaskState.RUNNING in states
    finally:
        driver.stop()


def test_executor_is_reused_and_messages_flow_both_ways(cluster):
    rec = Recorder()
    driver = start(cluster.master, rec)
    try:
        agent = cluster.state()["agents"][0]["id"]
        rec.submit(driver, "e1", kind="executor", payload=b"finish", agent=agent)
        first = rec.wait_state("e1", TaskState.FINISHED)
        rec.submit(driver, "e2", kind="executor", payload=b"finish", agent=agent)
        second = rec.wait_state("e2", TaskState.FINISHED)
        assert first.data == second.data  # same executor pid
        driver.send_framework_message(first.agent_id, "test-executor", b"ping")
        rec.wait(lambda: b"echo:ping" in rec.messages, what="echoed message")
        rec.submit(driver, "e3", kind="executor", payload=b"fail", agent=agent)
        assert rec.wait_state("e3", TaskState.FAILED).message == "asked to fail"
    finally:
        driver.stop()


def test_state_and_metrics_over_http(cluster):
    rec = Recorder()
    driver = start(cluster.master, rec, name="visible")
    try:
        rec.submit(driver, "t", payload=b"sleep 30")
        rec.wait_state("t", TaskState.RUNNING)
        with urllib.request.urlopen(cluster.dashboard_url + "/state", timeout=10) as r:
            state = json.load(r)
        assert len(state["agents"]) == 2
        fw = next(f for f in state["frameworks"] if f["name"] == "visible")
        assert [t["state"] for t in fw["tasks"]] == ["TASK_RUNNING".replace("TASK_", "")]
        assert fw["share"] > 0
        with urllib.request.urlopen(cluster.dashboard_url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        assert 'offerpool_master_tasks{state="RUNNING"} 1.0' in text
        assert 'offerpool_master_agents{state="connected"} 2.0' in text
    finally:
        driver.stop()


def _pid_of_agent(cluster, agent_id: str) -> int:
    for info in cluster.agents:
        if info["agent_id"] == agent_id:
            return info["pid"]
    raise AssertionError(agent_id)


def test_agent_killed_mid_task_tasks_lost_resources_freed(proc_cluster):
    rec = Recorder()
    driver = start(proc_cluster.master, rec)
    try:
        victim = proc_cluster.agents[0]["agent_id"]
        rec.submit(driver, "doomed", payload=b"sleep 60", agent=victim, cpus=1)
        rec.wait_state("doomed", TaskState.RUNNING)
        os.kill(_pid_of_agent(proc_cluster, victim), signal.SIGKILL)
        lost = rec.wait_state("doomed", TaskState.LOST, timeout=20)
        assert lost.reason == Reason.AGENT_UNREACHABLE
        rec.wait(lambda: victim in rec.agents_lost, what="agent_lost callback")
        state = proc_cluster.state()
        assert [a["id"] for a in state["agents"]] != [] and victim not in [a["id"] for a in state["agents"]]
        fw = next(f for f in state["frameworks"] if f["id"] == driver.framework_id)
        assert fw["tasks"] == [] and fw["allocated"]["cpus"] <= 2.0
        # The survivor still runs work.
        rec.submit(driver, "after", payload=b"true")
        rec.wait_state("after", TaskState.FINISHED)
    finally:
        driver.stop()


def test_executor_killed_reports_tasks_failed_and_executor_lost(proc_cluster):
    rec = Recorder()
    driver = start(proc_cluster.master, rec)
    try:
        agent = proc_cluster.agents[1]["agent_id"]
        rec.submit(driver, "probe", kind="executor", payload=b"finish", agent=agent)
        pid = int(rec.wait_state("probe", TaskState.FINISHED).data)
        rec.submit(driver, "victim", kind="executor", payload=b"hang", agent=agent)
        rec.wait_state("victim", TaskState.RUNNING)
        os.kill(pid, signal.SIGKILL)
        failed = rec.wait_state("victim", TaskState.FAILED)
        assert failed.reason == Reason.EXECUTOR_TERMINATED
        rec.wait(lambda: any(e[1] == "test-executor" for e in rec.executors_lost), what="executor_lost")
    finally:
        driver.stop()


def _running_processes_with(marker: str) -> list:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def test_scheduler_failover_within_timeout_keeps_tasks(proc_cluster):
    rec = Recorder()
    driver = start(proc_cluster.master, rec, failover_timeout=30)
    fid = driver.framework_id
    rec.submit(driver, "survivor", payload=b"sleep 61.5")
    rec.wait_state("survivor", TaskState.RUNNING)
    driver.abort()
    rec2 = Recorder()
    again = start(proc_cluster.master, rec2, failover_timeout=30, id=fid)
    try:
        assert again.framework_id == fid
        # Reconciliation after re-subscription reports the task still running.
        rec2.wait_state("survivor", TaskState.RUNNING)
        assert _running_processes_with("sleep 61.5")
    finally:
        again.stop()


def test_scheduler_that_never_returns_has_its_tasks_killed(proc_cluster):
    rec = Recorder()
    driver = start(proc_cluster.master, rec, failover_timeout=1.0)
    rec.submit(driver, "orphan", payload=b"sleep 62.5")
    rec.wait_state("orphan", TaskState.RUNNING)
    assert _running_processes_with("sleep 62.5")
    driver.abort()
    watcher = Recorder()
    deadline_driver = start(proc_cluster.master, watcher, name="watcher")
    try:
        watcher.wait(lambda: not _running_processes_with("sleep 62.5"), timeout=20,
                     what="the orphaned task's process to be killed")
        state = proc_cluster.state()
        assert driver.framework_id not in [f["id"] for f in state["frameworks"]]
    finally:
        deadline_driver.stop()


def test_two_frameworks_share_the_cluster_by_weight(proc_cluster):
    light, heavy = Recorder(), Recorder()
    d1 = start(proc_cluster.master, light, name="light", weight=1.0)
    d3 = start(proc_cluster.master, heavy, name="heavy", weight=3.0)
    try:
        # One task per offer: the rest is declined and goes back to DRF at once.
        light.per_offer = heavy.per_offer = 1
        for i in range(8):
            light.submit(None, f"l{i}", cpus=0.5, payload=b"sleep 63.5")
            heavy.submit(None, f"h{i}", cpus=0.5, payload=b"sleep 63.5")
        d1.revive_offers()
        d3.revive_offers()
        heavy.wait(lambda: len(light.placed) + len(heavy.placed) >= 8, timeout=30,
                   what="8 tasks placed")
        n_light, n_heavy = len(light.placed), len(heavy.placed)
        assert n_light + n_heavy == 8  # 4 cpus in 0.5-cpu tasks
        assert 1 <= n_light <= 3 and 5 <= n_heavy <= 7, (n_light, n_heavy)
    finally:
        d1.stop()
        d3.stop()


def test_offerpool_run_exits_nonzero_when_a_task_fails(proc_cluster):
    ok = subprocess.run([sys.executable, "-m", "substrate.cli", "run", "--master",
                         proc_cluster.master, "-n", "2", "--", "echo", "hello"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("hello") == 2 and "2/2 tasks finished" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "substrate.cli", "run", "--master",
                          proc_cluster.master, "-n", "1", "--", "exit 4"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "FAILED" in bad.stdout
    status = subprocess.run([sys.executable, "-m", "substrate.cli", "status", "--json",
                             "--master", proc_cluster.master],
                            capture_output=True, text=True, timeout=60)
    assert len(json.loads(status.stdout)["agents"]) == 2


def test_offerpool_up_serves_until_interrupted():
    proc = subprocess.Popen([sys.executable, "-m", "substrate.cli", "up", "--port", "0",
                             "--http-port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        master = lines[0].split()[1]
        status = subprocess.run([sys.executable, "-m", "substrate.cli", "status", "--master",
                                 master], capture_output=True, text=True, timeout=60)
        assert "agents: 1" in status.stdout, status.stdout + status.stderr
        with urllib.request.urlopen(lines[1].split()[1], timeout=10) as r:
            assert json.load(r)["agents"][0]["connected"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) in (0, 130)
