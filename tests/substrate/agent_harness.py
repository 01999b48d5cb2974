"""Test harness: a real :class:`Agent` with no master link, where the test plays the master.

The agent's executor server and its children are real; the master side is the agent's own
seam (``handle_master_event`` in, ``outbox`` out), not a mock.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from substrate.agent import Agent, AgentConfig
from substrate.resources import Resources
from substrate.v1 import pb

HERE = Path(__file__).resolve().parent
EXECUTOR_PROGRAM = HERE / "executor_program.py"
FRAMEWORK_ID = "fw-1"
AGENT_ID = "agent-1"
S = pb.TaskStatus


def run(coro, timeout: float = 40.0):
    """Run a test coroutine on a fresh loop with an overall timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
                     what: str = "condition") -> None:
    """Wait for a condition that no event announces (another process's state)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def framework(fid: str = FRAMEWORK_ID, user: str = "") -> pb.FrameworkInfo:
    return pb.FrameworkInfo(id=fid, name="test-framework", role="*", user=user)


def executor_task(task_id: str, data: bytes = b"", executor_id: str = "ex-1",
                  env: Optional[dict] = None, program: Optional[list] = None) -> pb.TaskInfo:
    task = pb.TaskInfo(task_id=task_id, agent_id=AGENT_ID, data=data)
    task.executor.executor_id = executor_id
    argv = program or [sys.executable, str(EXECUTOR_PROGRAM)]
    task.executor.command.value = argv[0]
    task.executor.command.arguments.extend(argv[1:])
    task.executor.command.environment.update(env or {})
    return task


def command_task(task_id: str, line: str, shell: bool = True,
                 arguments: Optional[list] = None) -> pb.TaskInfo:
    task = pb.TaskInfo(task_id=task_id, agent_id=AGENT_ID)
    task.command.value = line
    task.command.shell = shell
    task.command.arguments.extend(arguments or [])
    return task


class Harness:
    """Start with ``async with Harness(tmp_path) as h:``; the agent is registered as agent-1."""

    def __init__(self, tmp_path: Path, auto_ack: bool = True, **overrides) -> None:
        settings = dict(
            master="", work_dir=str(tmp_path / "work"), hostname="test-host",
            resources=Resources(cpus=4, mem=4096, disk=1000, ports=((31000, 31010),)),
            executor_shutdown_grace=2.0, executor_registration_timeout=20.0,
            status_update_retry_initial=10.0, status_update_retry_max=60.0,
        )
        settings.update(overrides)
        self.config = AgentConfig(**settings)
        self.agent = Agent(self.config)
        self.calls: list[pb.AgentCall] = []
        self.statuses: list[pb.TaskStatus] = []
        self._used: set[int] = set()
        self.epoch = 0             # the master epoch the harness plays
        self.auto_ack = auto_ack   # acknowledge every update as it arrives, like a scheduler

    async def __aenter__(self) -> "Harness":
        await self.agent.start()
        self.register()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.agent.stop(kill_executors=True)

    # ---------------------------------------------------------------- playing the master

    def register(self, agent_id: str = AGENT_ID, epoch: int = 1) -> None:
        self.epoch = max(self.epoch, epoch)
        ev = pb.AgentEvent(type=pb.AgentEvent.REGISTERED, epoch=epoch)
        ev.registered.agent_id = agent_id
        ev.registered.heartbeat_interval_seconds = 30
        self.agent.handle_master_event(ev)

    def run_tasks(self, *tasks: pb.TaskInfo, fid: str = FRAMEWORK_ID,
                  epoch: Optional[int] = None, user: str = "") -> None:
        ev = pb.AgentEvent(type=pb.AgentEvent.RUN_TASKS,
                           epoch=self.epoch if epoch is None else epoch)
        ev.run_tasks.framework.CopyFrom(framework(fid, user))
        ev.run_tasks.tasks.extend(tasks)
        self.agent.handle_master_event(ev)

    def kill(self, task_id: str, fid: str = FRAMEWORK_ID) -> None:
        ev = pb.AgentEvent(type=pb.AgentEvent.KILL_TASK, epoch=self.epoch)
        ev.kill_task.framework_id, ev.kill_task.task_id = fid, task_id
        self.agent.handle_master_event(ev)

    def ack(self, *statuses: pb.TaskStatus) -> None:
        ev = pb.AgentEvent(type=pb.AgentEvent.ACKNOWLEDGE, epoch=self.epoch)
        ev.acknowledge.framework_id = statuses[0].framework_id
        for st in statuses:
            ev.acknowledge.acks.add(agent_id=st.agent_id, task_id=st.task_id, uuid=st.uuid)
        self.agent.handle_master_event(ev)

    def shutdown_framework(self, fid: str = FRAMEWORK_ID) -> None:
        ev = pb.AgentEvent(type=pb.AgentEvent.SHUTDOWN_FRAMEWORK, epoch=self.epoch)
        ev.shutdown_framework.framework_id = fid
        self.agent.handle_master_event(ev)

    def message(self, data: bytes, executor_id: str = "ex-1", fid: str = FRAMEWORK_ID) -> None:
        ev = pb.AgentEvent(type=pb.AgentEvent.MESSAGE, epoch=self.epoch)
        ev.message.framework_id, ev.message.executor_id, ev.message.data = fid, executor_id, data
        self.agent.handle_master_event(ev)

    # ---------------------------------------------------------------- what the agent sent

    async def _next_call(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise asyncio.TimeoutError
        call = await asyncio.wait_for(self.agent.outbox.get(), remaining)
        self.calls.append(call)
        if call.type == pb.AgentCall.UPDATE:
            self.statuses.extend(call.update.statuses)
            if self.auto_ack:
                for st in call.update.statuses:
                    self.ack(st)

    async def expect_status(self, task_id: str, state: int, timeout: float = 15.0) -> pb.TaskStatus:
        """The next not-yet-consumed status of ``task_id`` in ``state``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for i in range(seen, len(self.statuses)):
                st = self.statuses[i]
                if i not in self._used and st.task_id == task_id and st.state == state:
                    self._used.add(i)
                    return st
            seen = len(self.statuses)
            try:
                await self._next_call(deadline)
            except asyncio.TimeoutError:
                got = [(s.task_id, S.State.Name(s.state), s.message) for s in self.statuses]
                raise AssertionError(f"no {S.State.Name(state)} for {task_id}; got {got}") from None

    async def expect_call(self, kind: int, timeout: float = 15.0,
                          where: Callable[[pb.AgentCall], bool] = lambda c: True) -> pb.AgentCall:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for call in self.calls[seen:]:
                if call.type == kind and where(call):
                    self.calls.remove(call)
                    return call
            seen = len(self.calls)
            try:
                await self._next_call(deadline)
            except asyncio.TimeoutError:
                raise AssertionError(f"no {pb.AgentCall.Type.Name(kind)} call") from None

    def sandbox(self, name: str, fid: str = FRAMEWORK_ID) -> Path:
        return Path(self.config.work_dir) / "sandboxes" / fid / name

    def task_states(self) -> dict[str, str]:
        return {t["task_id"]: t["state"] for t in self.agent.snapshot()["tasks"]}


def container_of(h: Harness, task_id: str) -> dict:
    """The live container (cgroups, limits) of a task, or of the executor running it."""
    for t in h.agent.snapshot()["tasks"]:
        if t["task_id"] == task_id and t["container"]:
            return t["container"]
    for ex in h.agent.snapshot()["executors"]:
        if task_id in ex["tasks"] and ex["container"]:
            return ex["container"]
    raise AssertionError(f"no live container for {task_id}")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
