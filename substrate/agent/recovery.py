"""Agent recovery: taking back (or cleaning up) what a previous run of the agent left running.

When an agent process dies, its executors and command tasks keep running (each leads its own
session). A restarted agent reads the checkpoint (:mod:`substrate.agent.checkpoint`) and:

* **reconnect** (the default): adopts every executor still alive (same pid *and* same start
  time), waits for it to re-subscribe over the agent's Unix socket with its old token, and
  re-registers with the master under the same agent id, reporting the tasks, so they keep
  running and finish normally. Executors and command tasks that died meanwhile are reported
  FAILED; an adopted command task's exit status cannot be known (it is not our child), so it
  is reported FAILED with ``AGENT_RESTARTED`` when it ends.
* **cleanup**: kills every surviving process group and reports the tasks FAILED with reason
  ``AGENT_RESTARTED``, under the same agent id.
* If the host **rebooted** (its boot id changed), nothing survived: the agent registers as a
  *new* agent and names its previous id, so the master reports the old tasks GONE
  (``AGENT_REBOOTED``).

This module decides; the processes are watched through :class:`AdoptedProcess`, which has the
surface of :class:`~substrate.agent.processes.ChildProcess`.
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from substrate.agent.checkpoint import decode
from substrate.agent.processes import GroupProcess, process_start_time
from substrate.agent.records import TERMINAL, Executor, Task
from substrate.agent.users import TaskUser
from substrate.v1 import pb

if TYPE_CHECKING:
    from substrate.agent.core import AgentCore

log = logging.getLogger(__name__)
S = pb.TaskStatus
#: How often an adopted process is polled where pidfds are not available.
POLL_INTERVAL = 0.5


class AdoptedProcess(GroupProcess):
    """A process a previous agent started: watched through a pidfd (or polling), not reaped.

    ``exited`` resolves to None (the exit status went to whoever reaped it). An adopted
    process has no isolation container of this run: its cgroup (if any) belonged to the
    previous agent process, so no limit is watched for it.
    """

    container = None
    limitation = None

    def __init__(self, pid: int, start_time: str, sandbox: Path,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.pid = self.pgid = pid
        self.start_time = start_time
        self.sandbox = sandbox
        self.exited: asyncio.Future = loop.create_future()
        self._loop = loop
        self._pidfd: Optional[int] = None
        self._watch()

    @property
    def returncode(self) -> Optional[int]:
        return None

    def alive(self) -> bool:
        """The same process is still running (a recycled pid has another start time)."""
        return bool(self.start_time) and process_start_time(self.pid) == self.start_time

    def signal_group(self, sig: int) -> bool:
        if self.exited.done() and not self.alive():
            # The leader is gone: its group may hold stragglers, but the pgid could now be
            # someone else's; only signal a group that still exists and is the one we know.
            try:
                os.killpg(self.pgid, 0)
            except OSError:
                return False
        try:
            os.killpg(self.pgid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def _watch(self) -> None:
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self._pidfd = pidfd_open(self.pid)
            except OSError:
                self._pidfd = None
            if self._pidfd is not None:
                if not self.alive():    # the pid was recycled between the check and here
                    self._close_pidfd()
                    self._finish()
                    return
                self._loop.add_reader(self._pidfd, self._on_pidfd)
                return
        self._loop.call_later(POLL_INTERVAL, self._poll)

    def _on_pidfd(self) -> None:
        self._close_pidfd()
        self._finish()

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _poll(self) -> None:
        if self.alive():
            self._loop.call_later(POLL_INTERVAL, self._poll)
        else:
            self._finish()

    def _finish(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _adopt(pid: int, start_time: str, sandbox: Path,
           loop: asyncio.AbstractEventLoop) -> Optional[AdoptedProcess]:
    if pid <= 0 or not start_time or process_start_time(pid) != start_time:
        return None
    return AdoptedProcess(pid, start_time, sandbox, loop)


def recover(core: "AgentCore", state: Optional[dict], mode: str, boot_id: str) -> str:
    """Apply a checkpoint to a fresh ``core`` before it registers; returns a one-line summary.

    Must run on the agent's event loop (adopted processes are watched there).
    """
    if not state or not state.get("agent_id"):
        return "no previous run to recover"
    old_id = state["agent_id"]
    if state.get("boot_id") and boot_id and state["boot_id"] != boot_id:
        core.previous_agent_id = old_id
        return (f"the host rebooted since agent {old_id} ran: registering as a new agent; "
                f"its tasks will be reported GONE")
    loop = asyncio.get_running_loop()
    launcher = core.launcher
    core.agent_id = old_id
    for text in state.get("frameworks", []):
        info = decode(pb.FrameworkInfo, text)
        core.frameworks[info.id] = info
    for rec in state.get("tasks", []):
        info = decode(pb.TaskInfo, rec["info"])
        task = Task(info, rec["framework_id"], rec.get("executor_id", ""),
                    state=int(rec.get("state", S.STAGING)))
        if rec.get("latest"):
            task.latest = decode(pb.TaskStatus, rec["latest"])
        elif task.state != S.STAGING:   # keep what re-registration reports consistent
            task.latest = pb.TaskStatus(task_id=info.task_id, state=task.state, uuid=b"",
                                        framework_id=task.framework_id, agent_id=old_id,
                                        executor_id=task.executor_id, source=S.AGENT)
        core.tasks[(task.framework_id, info.task_id)] = task
        if not task.executor_id and task.state not in TERMINAL:
            sandbox = Path(core.config.work_dir)
            task.proc = _adopt(int(rec.get("pid", 0)), rec.get("start_time", ""), sandbox, loop)
    for text in state.get("updates", []):
        st = decode(pb.TaskStatus, text)
        core.updates.add((st.framework_id, st.task_id), st.uuid, st.state in TERMINAL, st)

    adopted, lost = 0, 0
    for rec in state.get("executors", []):
        info = decode(pb.ExecutorInfo, rec["info"])
        ex = Executor(rec["framework_id"], rec["executor_id"], info, rec["token"],
                      Path(rec["sandbox"]))
        ex.pending = [decode(pb.TaskInfo, t) for t in rec.get("pending", [])]
        if rec.get("user"):     # it reconnects through its user's socket (the daemon reopens it)
            ex.user = TaskUser.from_dict(rec["user"])
            ex.endpoint = str(rec.get("endpoint", ""))
        ex.tasks = {tid for (fid, tid), t in core.tasks.items()
                    if fid == ex.framework_id and t.executor_id == ex.executor_id
                    and t.state not in TERMINAL}
        ex.proc = _adopt(int(rec.get("pid", 0)), rec.get("start_time", ""), ex.sandbox, loop)
        core.executors[ex.key] = ex
        if ex.proc is None:
            lost += 1
            del core.executors[ex.key]
            launcher.fail_tasks(ex, S.FAILED, S.EXECUTOR_TERMINATED,
                                "the executor exited while its agent was down")
        elif mode == "cleanup":
            ex.proc.kill()
            del core.executors[ex.key]
            launcher.fail_tasks(ex, S.FAILED, S.AGENT_RESTARTED,
                                "the agent restarted with --recover=cleanup and killed its "
                                "executor")
        else:
            adopted += 1
            launcher.adopt_executor(ex)

    # Command tasks, and executor tasks whose executor record is missing.
    for (fid, tid), task in list(core.tasks.items()):
        if task.state in TERMINAL:
            continue
        if task.executor_id:
            if (fid, task.executor_id) not in core.executors:
                core.status(fid, tid, S.FAILED, S.EXECUTOR_TERMINATED,
                            "its executor is gone after the agent restarted", task.executor_id)
        elif task.proc is None:
            core.status(fid, tid, S.FAILED, S.AGENT_RESTARTED,
                        "the command ended while its agent was down (exit status unknown)")
        elif mode == "cleanup":
            task.proc.kill()
            task.proc = None
            core.status(fid, tid, S.FAILED, S.AGENT_RESTARTED,
                        "the agent restarted with --recover=cleanup and killed the command")
        else:
            launcher.adopt_command(fid, task)
    return (f"recovered agent {old_id} ({mode}): {adopted} executors adopted, {lost} gone, "
            f"{len(core.tasks)} tasks known")
