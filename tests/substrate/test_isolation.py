"""Executor isolation on real processes: cgroup limits (memory, pids), whole-tree kills, the
posix fallback, and cleanup of every cgroup the agent made."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from substrate.agent.isolation import cgroupfs
from substrate.v1 import pb

from .agent_harness import (
    Harness, command_task, container_of, executor_task, pid_alive, run, wait_until,
)
from .isolation_helpers import cgroups_usable, offerpool_cgroups

pytestmark = pytest.mark.timeout(120)
S = pb.TaskStatus
HOG = str(Path(__file__).resolve().parent / "hog_executor.py")
NO_CGROUPS = cgroups_usable()
needs_cgroups = pytest.mark.skipif(bool(NO_CGROUPS), reason=NO_CGROUPS or "cgroups usable")


@pytest.fixture
def no_leaks():
    """Every cgroup the test's agents made is gone when the test ends."""
    before = offerpool_cgroups()
    yield
    # this process's agents only (another test run may share the machine)
    leaked = {c for c in offerpool_cgroups() - before if f"offerpool-{os.getpid()}-" in c}
    assert not leaked, f"cgroups left behind: {sorted(leaked)}"


def with_resources(task: pb.TaskInfo, cpus: float, mem: float) -> pb.TaskInfo:
    task.resources.cpus, task.resources.mem = cpus, mem
    return task


def hog_task(task_id: str, data: bytes, executor_id: str, mem: float) -> pb.TaskInfo:
    task = executor_task(task_id, data=data, executor_id=executor_id,
                         program=[sys.executable, HOG],
                         env={"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    task.executor.resources.mem = 96
    return with_resources(task, 0.2, mem)


def test_config_rejects_unknown_isolation(tmp_path):
    from substrate.agent import AgentConfig
    from substrate.errors import InvalidRequest
    with pytest.raises(InvalidRequest, match="isolation must be one of"):
        AgentConfig(work_dir=str(tmp_path), isolation="jail").validate()


@needs_cgroups
def test_memory_hog_fails_with_memory_reason_neighbours_run(tmp_path, no_leaks):
    async def body():
        async with Harness(tmp_path, isolation="cgroups") as h:
            assert h.agent.snapshot()["isolation"]["kind"].startswith("cgroups-")
            h.run_tasks(with_resources(command_task("calm", "sleep 300"), 0.1, 32))
            calm = await h.expect_status("calm", S.RUNNING)
            calm_pid = int(calm.message.split()[-1])
            limits = container_of(h, "calm")
            assert limits["mem_mib"] == 32 and limits["pids_max"] == 1024
            if "cpu" in limits.get("cgroups", {}):   # cgroup v1: the kernel holds the limits
                cpu, mem = limits["cgroups"]["cpu"], limits["cgroups"]["memory"]
                assert cgroupfs.read(os.path.join(cpu, "cpu.shares")).strip() == "102"
                assert cgroupfs.read(os.path.join(cpu, "cpu.cfs_quota_us")).strip() == "10000"
                assert int(cgroupfs.read(os.path.join(mem, "memory.limit_in_bytes"))) == 32 * 2**20
            # An executor whose task goes far past executor (96) + task (64) MiB.
            h.run_tasks(hog_task("hog", b"alloc:600", "ex-hog", mem=64))
            await h.expect_status("hog", S.RUNNING, timeout=60)
            failed = await h.expect_status("hog", S.FAILED, timeout=60)
            assert failed.reason == S.CONTAINER_LIMITATION_MEMORY, failed
            assert "160 MiB" in failed.message
            # A command task over its memory: the same reason, from the agent's own launch path.
            h.run_tasks(with_resources(command_task(
                "cmd-hog", f"{sys.executable} -c \"x = bytearray(b'1') * (400 * 2**20)\""),
                0.1, 48))
            failed = await h.expect_status("cmd-hog", S.FAILED, timeout=60)
            assert failed.reason == S.CONTAINER_LIMITATION_MEMORY, failed
            # The neighbour never noticed.
            assert pid_alive(calm_pid)
            assert h.task_states()["calm"] == "RUNNING"
            h.kill("calm")
            killed = await h.expect_status("calm", S.KILLED)
            assert killed.reason == S.TASK_KILLED
            await wait_until(lambda: not pid_alive(calm_pid), what="calm gone")
    run(body(), timeout=110)


@needs_cgroups
def test_fork_bomb_is_stopped_by_pids_limit_and_killed_whole(tmp_path, no_leaks):
    bomb = (f"{sys.executable} -c \"import os, time\n"
            "while True:\n"
            "    try:\n"
            "        os.fork()\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\"")

    async def body():
        async with Harness(tmp_path, isolation="cgroups", container_pids_max=24) as h:
            h.run_tasks(with_resources(command_task("calm", "sleep 300"), 0.1, 32))
            calm_pid = int((await h.expect_status("calm", S.RUNNING)).message.split()[-1])
            h.run_tasks(with_resources(command_task("bomb", bomb), 0.2, 256))
            await h.expect_status("bomb", S.RUNNING)
            pids_dir = container_of(h, "bomb")["cgroups"]["pids"]
            events = os.path.join(pids_dir, "pids.events")
            await wait_until(lambda: cgroupfs.keyed(events).get("max", 0) > 0, timeout=60,
                             what="the pids limit to refuse a fork")
            held = cgroupfs.procs(pids_dir)
            assert 1 < len(held) <= 24
            assert int(cgroupfs.read(os.path.join(pids_dir, "pids.current"))) <= 24
            # The agent and the neighbour are untouched: a new task still starts.
            h.run_tasks(with_resources(command_task("after", "true"), 0.1, 32))
            await h.expect_status("after", S.FINISHED, timeout=30)
            assert pid_alive(calm_pid)
            h.kill("bomb")
            await h.expect_status("bomb", S.KILLED, timeout=30)
            await wait_until(lambda: not any(pid_alive(p) for p in held), timeout=30,
                             what="every process of the bomb gone")
            await wait_until(lambda: not os.path.isdir(pids_dir), timeout=30,
                             what="the bomb's cgroup removed")
            h.kill("calm")
            await h.expect_status("calm", S.KILLED)
    run(body(), timeout=110)


@pytest.mark.parametrize("isolation", [
    pytest.param("cgroups", marks=needs_cgroups), "posix"])
def test_kill_takes_processes_that_left_the_group(tmp_path, no_leaks, isolation):
    """A task that ``setsid``s a child out of its process group still dies whole."""
    async def body():
        async with Harness(tmp_path, isolation=isolation) as h:
            line = "setsid sleep 301 & echo $! > escaped.pid; sleep 300"
            h.run_tasks(with_resources(command_task("t", line), 0.1, 32))
            await h.expect_status("t", S.RUNNING)
            pid_file = h.sandbox("t") / "escaped.pid"
            await wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(),
                             what="the escaped pid")
            escaped = int(pid_file.read_text())
            group = h.agent.core.tasks[("fw-1", "t")].proc.pgid
            await wait_until(lambda: pid_alive(escaped) and os.getpgid(escaped) != group,
                             what="the child to leave its task's process group")
            h.kill("t")
            await h.expect_status("t", S.KILLED)
            await wait_until(lambda: not pid_alive(escaped), timeout=20,
                             what="the escaped process killed with its task")
    run(body(), timeout=60)


def test_posix_fallback_enforces_memory(tmp_path, no_leaks):
    async def body():
        async with Harness(tmp_path, isolation="posix", isolation_poll_interval=0.05) as h:
            assert h.agent.snapshot()["isolation"]["kind"] == "posix"
            assert h.agent.core.agent_info().isolation == "posix"
            h.run_tasks(with_resources(command_task("calm", "sleep 300"), 0.1, 32))
            calm_pid = int((await h.expect_status("calm", S.RUNNING)).message.split()[-1])
            hog = (f"{sys.executable} -c \"import time; x = bytearray(b'1') * (300 * 2**20); "
                   "time.sleep(300)\"")
            h.run_tasks(with_resources(command_task("hog", hog), 0.1, 64))
            failed = await h.expect_status("hog", S.FAILED, timeout=60)
            assert failed.reason == S.CONTAINER_LIMITATION_MEMORY, failed
            assert "64 MiB exceeded" in failed.message
            assert pid_alive(calm_pid)
            # The child really runs under the rlimits it set on itself.
            h.run_tasks(with_resources(command_task("limits", "ulimit -c > core.txt"), 0.1, 32))
            await h.expect_status("limits", S.FINISHED)
            assert (h.sandbox("limits") / "core.txt").read_text().strip() == "0"
            h.kill("calm")
            await h.expect_status("calm", S.KILLED)
    run(body(), timeout=90)


def test_missing_program_is_a_launch_failure_under_isolation(tmp_path):
    async def body():
        async with Harness(tmp_path, isolation="posix") as h:
            h.run_tasks(command_task("nope", "/no/such/program", shell=False))
            st = await h.expect_status("nope", S.FAILED)
            assert st.reason == S.CONTAINER_LAUNCH_FAILED
    run(body())


@pytest.mark.parametrize("isolation", [
    pytest.param("cgroups", marks=needs_cgroups), "posix"])
def test_framework_sees_memory_failure_and_state_names_isolation(isolation, no_leaks):
    """Through a real master and scheduler: the reason reaches the framework; /state says
    which isolation each agent enforces."""
    import json
    import urllib.request

    from substrate import LocalCluster, Reason, TaskState

    from .cluster_helpers import Recorder, start

    options = {"isolation": isolation, "isolation_poll_interval": 0.05}
    with LocalCluster(agents=1, cpus=2, mem=1024, agent_options=options) as cluster:
        with urllib.request.urlopen(cluster.dashboard_url + "/state", timeout=10) as resp:
            state = json.load(resp)
        expected = "posix" if isolation == "posix" else ("cgroups-v1", "cgroups-v2")
        assert state["agents"][0]["isolation"] in expected
        rec = Recorder()
        driver = start(cluster.master, rec, name="iso")
        try:
            hog = f"{sys.executable} -c \"import time; x = bytearray(b'1') * (400 * 2**20); " \
                  "time.sleep(60)\""
            rec.submit(driver, "hog", mem=48, payload=hog.encode())
            rec.submit(driver, "fine", mem=32, payload=b"true")
            st = rec.wait_state("hog", TaskState.FAILED, timeout=60)
            assert st.reason == Reason.CONTAINER_LIMITATION_MEMORY, st
            rec.wait_state("fine", TaskState.FINISHED, timeout=60)
        finally:
            driver.stop()


@needs_cgroups
def test_empty_cgroups_of_a_dead_agent_are_swept_at_start(tmp_path, no_leaks):
    import asyncio
    import subprocess

    from substrate.agent.isolation import select

    gone = subprocess.Popen(["true"])
    gone.wait()
    probe = select("cgroups")
    base = os.path.dirname(next(iter(probe.roots.values())) if hasattr(probe, "roots")
                           else probe.root)
    asyncio.run(probe.close())
    stale = os.path.join(base, f"offerpool-{gone.pid}-dead00")
    os.makedirs(os.path.join(stale, "c1-task"))
    fresh = select("cgroups")
    try:
        assert not os.path.exists(stale)
    finally:
        asyncio.run(fresh.close())
        if os.path.exists(stale):
            os.rmdir(os.path.join(stale, "c1-task"))
            os.rmdir(stale)
