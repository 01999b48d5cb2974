"""The agent's checkpoint and what a restarted agent makes of it, without a master: corrupt
files, recycled pids (never signalled), reboots, and the Unix socket's path and modes."""
from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import Harness, executor_task, run  # noqa: E402

from substrate.agent import Agent, AgentConfig  # noqa: E402
from substrate.agent import checkpoint  # noqa: E402
from substrate.agent.processes import process_start_time  # noqa: E402
from substrate.errors import ClusterError  # noqa: E402
from substrate.resources import Resources  # noqa: E402
from substrate.v1 import pb  # noqa: E402

pytestmark = pytest.mark.timeout(60)
S = pb.TaskStatus


def config(work: Path, boot: Path, **extra) -> AgentConfig:
    return AgentConfig(master="", work_dir=str(work), hostname="h", boot_id_file=str(boot),
                       resources=Resources(cpus=1, mem=256), **extra)


def saved_state(boot_id: str, pid: int, start_time: str) -> dict:
    ex_info = pb.ExecutorInfo(executor_id="ex-1")
    ex_info.command.value = "never-run"
    task = pb.TaskInfo(task_id="t1", executor=ex_info)
    latest = pb.TaskStatus(task_id="t1", state=S.RUNNING, framework_id="fw-1", uuid=b"")
    return {
        "version": checkpoint.VERSION, "agent_id": "agent-7", "boot_id": boot_id,
        "frameworks": [checkpoint.encode(pb.FrameworkInfo(id="fw-1", name="f"))],
        "executors": [{"framework_id": "fw-1", "executor_id": "ex-1",
                       "info": checkpoint.encode(ex_info), "token": "secret",
                       "sandbox": "/nonexistent", "pid": pid, "start_time": start_time,
                       "pending": []}],
        "tasks": [{"framework_id": "fw-1", "executor_id": "ex-1",
                   "info": checkpoint.encode(task), "state": S.RUNNING,
                   "latest": checkpoint.encode(latest), "pid": 0, "start_time": ""}],
        "updates": [],
    }


@pytest.mark.parametrize("mode", ["reconnect", "cleanup"])
def test_a_recycled_pid_is_never_adopted_nor_signalled(tmp_path, mode):
    boot = tmp_path / "boot"
    boot.write_text("b1")
    # Our own pid, with another start time: a pid the kernel gave to someone else.
    checkpoint.write(tmp_path / "w", saved_state("b1", os.getpid(), "1"))

    async def main():
        agent = Agent(config(tmp_path / "w", boot, recover=mode))
        await agent.start()
        try:
            assert agent.agent_id == "agent-7"
            assert agent.snapshot()["executors"] == []
            failed = agent.core.updates.pending(("fw-1", "t1"))
            assert [(s.state, s.reason) for s in failed] == [(S.FAILED, S.EXECUTOR_TERMINATED)]
            call = agent.core.registration_call()
            assert call.type == pb.AgentCall.REREGISTER and call.register.info.id == "agent-7"
            assert [t.latest.state for t in call.register.tasks] == [S.FAILED]
        finally:
            await agent.stop()
        # The checkpoint now holds the failed update (to be delivered) and no executor.
        saved = checkpoint.load(tmp_path / "w")
        assert saved["executors"] == [] and len(saved["updates"]) == 1
    run(main())   # and we are still alive: nothing signalled our process group


def test_a_changed_boot_id_registers_anew_naming_the_old_id(tmp_path):
    boot = tmp_path / "boot"
    boot.write_text("b2")
    checkpoint.write(tmp_path / "w", saved_state("b1", os.getpid(), "1"))

    async def main():
        agent = Agent(config(tmp_path / "w", boot))
        await agent.start()
        try:
            call = agent.core.registration_call()
            assert call.type == pb.AgentCall.REGISTER
            assert call.register.previous_agent_id == "agent-7"
            assert agent.snapshot()["tasks"] == [] and agent.agent_id == ""
        finally:
            await agent.stop()
    run(main())


def test_a_corrupt_checkpoint_stops_the_agent_with_a_clear_error(tmp_path):
    meta = tmp_path / "w" / "meta"
    meta.mkdir(parents=True)
    (meta / "agent.json").write_text("{ not json")

    async def main():
        with pytest.raises(ClusterError, match="remove it"):
            await Agent(config(tmp_path / "w", tmp_path / "no-boot-id")).start()
    run(main())


def test_a_work_dir_too_deep_for_a_unix_socket_is_a_clear_error(tmp_path):
    deep = tmp_path / ("d" * 100)

    async def main():
        with pytest.raises(ClusterError, match="shorter --work-dir"):
            await Agent(config(deep, tmp_path / "no-boot-id")).start()
    run(main())


def test_socket_and_checkpoint_are_private_and_the_checkpoint_tracks_executors(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.run_tasks(executor_task("hang", b"hang"))
            await h.expect_status("hang", S.RUNNING)
            sock = Path(h.agent.executor_endpoint[len("unix:"):])
            assert stat.S_ISSOCK(sock.stat().st_mode) and sock.stat().st_mode & 0o077 == 0
            path = checkpoint.checkpoint_path(h.config.work_dir)
            assert path.stat().st_mode & 0o777 == 0o600
            assert path.parent.stat().st_mode & 0o777 == 0o700
            for _ in range(200):    # written within CHECKPOINT_INTERVAL of the change
                saved = checkpoint.load(h.config.work_dir)
                if saved["executors"] and saved["tasks"]:
                    break
                await asyncio.sleep(0.05)
            ex = saved["executors"][0]
            assert ex["pid"] == h.agent.snapshot()["executors"][0]["pid"]
            assert ex["start_time"] == process_start_time(ex["pid"]) != ""
            task = checkpoint.decode(pb.TaskInfo, saved["tasks"][0]["info"])
            assert task.task_id == "hang" and task.data == b""   # payloads are not kept
    run(main())


def test_two_agents_cannot_share_a_work_dir(tmp_path):
    async def main():
        first = Agent(config(tmp_path / "w", tmp_path / "no-boot-id"))
        await first.start()
        try:
            with pytest.raises(ClusterError, match="another agent"):
                await Agent(config(tmp_path / "w", tmp_path / "no-boot-id")).start()
            assert Path(first.executor_endpoint[len("unix:"):]).exists()   # left alone
        finally:
            await first.stop()
        second = Agent(config(tmp_path / "w", tmp_path / "no-boot-id"))
        await second.start()     # the lock went with the first agent
        await second.stop()
    run(main())


_states = st.sampled_from([S.STAGING, S.STARTING, S.RUNNING, S.KILLING, S.FINISHED, S.FAILED])


@settings(max_examples=40, deadline=None)
@given(tasks=st.lists(st.tuples(st.booleans(), _states), max_size=12),
       mode=st.sampled_from(["reconnect", "cleanup"]))
def test_with_nothing_left_alive_every_live_task_fails_exactly_once(tmp_path_factory, tasks,
                                                                     mode):
    work = tmp_path_factory.mktemp("w")
    boot = work / "boot"
    boot.write_text("b1")
    state = saved_state("b1", 0, "")       # executor ex-1, whose process is gone
    state["tasks"] = []
    for i, (in_executor, task_state) in enumerate(tasks):
        info = pb.TaskInfo(task_id=f"t{i}")
        if in_executor:
            info.executor.executor_id = "ex-1"
        else:
            info.command.value = "true"
        state["tasks"].append({"framework_id": "fw-1",
                               "executor_id": "ex-1" if in_executor else "",
                               "info": checkpoint.encode(info), "state": task_state,
                               "latest": "", "pid": 0, "start_time": ""})
    checkpoint.write(work / "agent", state)

    async def main():
        agent = Agent(config(work / "agent", boot, recover=mode))
        await agent.start()
        try:
            for i, (_, task_state) in enumerate(tasks):
                updates = agent.core.updates.pending(("fw-1", f"t{i}"))
                if task_state in (S.FINISHED, S.FAILED):
                    assert updates == []
                else:
                    assert [u.state for u in updates] == [S.FAILED]
                    assert updates[0].reason in (S.EXECUTOR_TERMINATED, S.AGENT_RESTARTED)
            reg = agent.core.registration_call().register
            assert sorted(t.info.task_id for t in reg.tasks) == sorted(
                f"t{i}" for i in range(len(tasks)))
            assert all(t.latest.state not in (S.RUNNING, S.STAGING, S.STARTING, S.KILLING)
                       for t in reg.tasks)
            assert agent.snapshot()["executors"] == []
        finally:
            await agent.stop()
    run(main())
