"""Launching and killing: command tasks, executors, their exits and their shutdowns.

This module owns the life of the agent's children as the master's events drive it: validating ids
before they become paths, running command tasks, starting an executor (with its secret token) or
reusing a running one, queueing tasks until the executor subscribes, registration timeouts,
executor exits, the OS user a framework's tasks run as (resolved once per launch by
:mod:`substrate.agent.users`; a refusal fails the tasks before anything starts), kills with a grace
period (an executor whose task outlives its kill's grace is killed with it), framework shutdowns,
adopting the processes a previous agent run left (see :mod:`substrate.agent.recovery`), and
forgetting everything when the master gives the agent a new identity. It reports through
:meth:`AgentCore.status` and :meth:`AgentCore.send`; the records and the status-update manager
belong to :class:`~substrate.agent.core.AgentCore`.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import math
import os
import secrets
import shutil
from typing import TYPE_CHECKING, Iterable, Optional

from substrate.agent import fetch_launch
from substrate.agent.files import framework_dir
from substrate.agent.isolation import Container, Limits
from substrate.agent.processes import ChildProcess, describe_exit, is_safe_id, sandbox_path, spawn
from substrate.agent.records import TERMINAL, Executor, ExecutorKey, Task, TaskKey, executor_event
from substrate.agent.users import (
    TaskUser, UserRefused, hand_over, let_through, resolve as resolve_user,
)
from substrate.resources import Resources
from substrate.v1 import pb

if TYPE_CHECKING:
    from substrate.agent.core import AgentCore

log = logging.getLogger(__name__)
S = pb.TaskStatus
EV = pb.ExecutorEvent


class Launcher:
    """The agent's process side; one per :class:`~substrate.agent.core.AgentCore`."""

    def __init__(self, core: "AgentCore") -> None:
        self.core = core
        self._background: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ RUN_TASKS

    def run_tasks(self, framework: pb.FrameworkInfo, tasks: Iterable[pb.TaskInfo]) -> None:
        """Start every task of a RUN_TASKS event; invalid ones get ERROR / TASK_INVALID."""
        core = self.core
        fid = framework.id
        if is_safe_id(fid):
            core.frameworks[fid] = framework
        groups: dict[ExecutorKey, list[pb.TaskInfo]] = {}
        try:
            user: Optional[TaskUser] = resolve_user(framework.user,
                                                    core.config.allow_root_tasks)
            refusal: Optional[UserRefused] = None
        except UserRefused as exc:
            user, refusal = None, exc
            log.warning("framework %s: %s", fid, exc)
        for task in tasks:
            key = (fid, task.task_id)
            if key in core.tasks:
                log.warning("ignoring a second launch of known task %s", key)
                continue
            problem = self._invalid(fid, task)
            executor_id = task.executor.executor_id if task.HasField("executor") else ""
            if problem:
                core.status(fid, task.task_id, S.ERROR, S.TASK_INVALID, problem, executor_id)
                continue
            if refusal is not None:
                core.status(fid, task.task_id, S.FAILED, refusal.reason, str(refusal),
                            executor_id)
                continue
            core.tasks[key] = Task(task, fid, executor_id, user=user)
            if executor_id:
                groups.setdefault((fid, executor_id), []).append(task)
            else:
                self._run_command(fid, task)
        for ex_key, group in groups.items():
            self._launch_in_executor(framework, ex_key, group, user)
        core.checkpoint_soon()

    @staticmethod
    def _invalid(fid: str, task: pb.TaskInfo) -> Optional[str]:
        if not is_safe_id(fid):
            return f"invalid framework id {fid!r}"
        if not is_safe_id(task.task_id):
            return f"invalid task id {task.task_id!r}"
        has_executor, has_command = task.HasField("executor"), task.HasField("command")
        if has_executor == has_command:
            return "a task needs exactly one of 'executor' and 'command'"
        if has_executor:
            if not is_safe_id(task.executor.executor_id):
                return f"invalid executor id {task.executor.executor_id!r}"
            if not task.executor.command.value:
                return "the executor has no command"
        elif not task.command.value:
            return "the command is empty"
        return None

    def _environment(self, fid: str, command: pb.CommandInfo, sandbox: str,
                     extra: dict[str, str], user: Optional[TaskUser] = None) -> dict[str, str]:
        env = dict(os.environ)
        if user is not None:
            # The agent's own credentials (its master link) are not the user's to see.
            env = {k: v for k, v in env.items() if not k.startswith("OFFERPOOL_")}
            env.update(user.environment())
        env.update(command.environment)
        shared = framework_dir(self.core.config.work_dir, fid)
        shared.mkdir(parents=True, exist_ok=True)
        if user is not None:     # one framework, one user: its shared files are that user's
            let_through(shared.parent)
            hand_over(shared, user)
        env.update({
            "SUBSTRATE_AGENT_ID": self.core.agent_id, "SUBSTRATE_FRAMEWORK_ID": fid,
            "SUBSTRATE_SANDBOX": sandbox, "SUBSTRATE_FRAMEWORK_DIR": str(shared),
            "SUBSTRATE_AGENT_ADDRESS": self.core.address,
        })
        env.update(extra)
        return env

    # ------------------------------------------------------------------ isolation

    def _limits(self, *resources: pb.Resources) -> Limits:
        def total(values) -> float:  # the master validated them; stay safe regardless
            return sum(v for v in values if math.isfinite(v) and v > 0)
        summed = Resources(cpus=total(r.cpus for r in resources),
                           mem=total(r.mem for r in resources))
        return Limits.of(summed, self.core.config.container_pids_max)

    def _spawn_isolated(self, label: str, limits: Limits, command: pb.CommandInfo,
                        sandbox, env: dict[str, str],
                        user: Optional[TaskUser] = None) -> ChildProcess:
        """Spawn inside a new container (if the agent isolates); OSError on any failure."""
        isolator = self.core.isolator
        container: Optional[Container] = isolator.create(label, limits)
        try:
            return spawn(command, sandbox, env, container=container, user=user)
        except BaseException:
            if container is not None:
                isolator.release(container)
            raise

    def _resize(self, ex: Executor) -> None:
        """An executor's container holds the executor plus every live task it runs."""
        container = ex.proc.container if ex.proc is not None else None
        if container is None:
            return
        container.update(self._limits(ex.info.resources, *self._task_resources(ex)))

    def _task_resources(self, ex: Executor) -> list[pb.Resources]:
        return [self.core.tasks[(ex.framework_id, tid)].info.resources for tid in ex.tasks
                if (ex.framework_id, tid) in self.core.tasks]

    @staticmethod
    def _limit_failure(proc: ChildProcess, code: int):
        """The limitation to report for an exit: memory always; others for a failing exit."""
        lim = proc.limitation
        if lim is not None and (lim.is_memory or code != 0):
            return lim
        return None

    # ------------------------------------------------------------------ command tasks

    def _run_command(self, fid: str, info: pb.TaskInfo) -> None:
        if info.command.uris:  # fetch first, on a worker thread
            sandbox = sandbox_path(self.core.config.work_dir, fid, info.task_id)
            self._spawn_background(fetch_launch.run_command_after_fetch(self, fid, info, sandbox))
            return
        self.spawn_command(fid, info)

    def spawn_command(self, fid: str, info: pb.TaskInfo) -> None:
        """Start a command task's process now (its URIs, if any, are already fetched)."""
        core = self.core
        key = (fid, info.task_id)
        user = core.tasks[key].user
        try:
            sandbox = sandbox_path(core.config.work_dir, fid, info.task_id)
            env = self._environment(fid, info.command, str(sandbox),
                                    {"SUBSTRATE_TASK_ID": info.task_id}, user)
            proc = self._spawn_isolated(info.task_id, self._limits(info.resources),
                                        info.command, sandbox, env, user)
        except OSError as exc:
            core.status(fid, info.task_id, S.FAILED, S.CONTAINER_LAUNCH_FAILED,
                        f"cannot launch {info.command.value!r}: {exc}")
            return
        core.tasks[key].proc = proc
        core.status(fid, info.task_id, S.RUNNING, message=f"pid {proc.pid}")
        proc.exited.add_done_callback(lambda fut: self._command_exited(key, proc, fut.result()))

    def adopt_command(self, fid: str, task: Task) -> None:
        """Watch a command task that a previous run of the agent started (recovery)."""
        key, proc = (fid, task.info.task_id), task.proc
        assert proc is not None
        proc.exited.add_done_callback(lambda fut: self._command_exited(key, proc, fut.result()))

    def _command_exited(self, key: TaskKey, proc, code: Optional[int]) -> None:
        task = self.core.tasks.get(key)
        if task is None or task.proc is not proc or task.state in TERMINAL:
            return
        how = describe_exit(code)
        limitation = self._limit_failure(proc, code)
        if task.killing:
            self.core.status(*key, S.KILLED, task.kill_reason, how)
        elif code is None:
            self.core.status(*key, S.FAILED, S.AGENT_RESTARTED,
                             f"the command {how}; the agent restarted while it ran")
        elif limitation is not None:
            self.core.status(*key, S.FAILED, limitation.reason, f"{limitation.message}; {how}")
        elif code == 0:
            self.core.status(*key, S.FINISHED, message=how)
        else:
            self.core.status(*key, S.FAILED, S.COMMAND_EXECUTOR_FAILED, how)

    # ------------------------------------------------------------------ executors

    def _launch_in_executor(self, framework: pb.FrameworkInfo, key: ExecutorKey,
                            tasks: list[pb.TaskInfo], user: Optional[TaskUser]) -> None:
        core = self.core
        ex = core.executors.get(key)
        if ex is not None and ex.shutting_down:
            for t in tasks:
                core.status(key[0], t.task_id, S.DROPPED, S.EXECUTOR_SHUTDOWN,
                            "the executor is shutting down", key[1])
            return
        if ex is None:
            ex = self._start_executor(framework, tasks[0].executor, tasks, user)
            if ex is None:
                return  # launch failure already reported below
        ex.tasks.update(t.task_id for t in tasks)
        self._resize(ex)
        if ex.subscribed:
            ev = executor_event(EV.LAUNCH)
            ev.launch.tasks.extend(tasks)
            ex.push(ev)
        else:
            ex.pending.extend(tasks)

    def _start_executor(self, framework: pb.FrameworkInfo, info: pb.ExecutorInfo,
                        tasks: list[pb.TaskInfo],
                        user: Optional[TaskUser]) -> Optional[Executor]:
        core = self.core
        fid, eid = framework.id, info.executor_id
        token = secrets.token_urlsafe(32)
        sandbox = sandbox_path(core.config.work_dir, fid, eid)
        ex = Executor(fid, eid, info, token, sandbox, None, user=user)
        ex.tasks.update(t.task_id for t in tasks)  # so its container is sized for them
        core.executors[ex.key] = ex
        if info.command.uris or user is not None:
            # Fetch first, or open the user's own socket; tasks wait in ex.pending meanwhile.
            self._spawn_background(fetch_launch.start_executor_after_fetch(self, ex))
            return ex
        return self.spawn_executor(ex)

    def spawn_executor(self, ex: Executor) -> Optional[Executor]:
        """Start the process of a recorded executor (its URIs, if any, are already fetched)."""
        core = self.core
        fid, eid, info, token, sandbox = (ex.framework_id, ex.executor_id, ex.info, ex.token,
                                          ex.sandbox)
        limits = self._limits(info.resources, *self._task_resources(ex))
        try:
            env = self._environment(fid, info.command, str(sandbox), {
                # The executor talks to its agent over a Unix socket in a 0700 directory, never
                # TCP: only processes of its user can reach it, and the token says which.
                "SUBSTRATE_AGENT_ENDPOINT": ex.endpoint or core.executor_endpoint or core.address,
                "SUBSTRATE_EXECUTOR_ID": eid, "SUBSTRATE_EXECUTOR_TOKEN": token,
                "SUBSTRATE_MAX_PAYLOAD_BYTES": str(core.config.max_payload_bytes),
            }, ex.user)
            # The framework may choose its executors' patience; the agent's is the default.
            if "SUBSTRATE_RECOVERY_TIMEOUT" not in info.command.environment:
                env["SUBSTRATE_RECOVERY_TIMEOUT"] = str(core.config.executor_recovery_timeout)
            proc = self._spawn_isolated(eid, limits, info.command, sandbox, env, ex.user)
        except OSError as exc:
            message = f"cannot launch executor {eid!r} ({info.command.value!r}): {exc}"
            if core.executors.get(ex.key) is ex:
                del core.executors[ex.key]
            for (tfid, tid), task in list(core.tasks.items()):
                if tfid == fid and task.executor_id == eid and task.state not in TERMINAL:
                    core.status(fid, tid, S.FAILED, S.CONTAINER_LAUNCH_FAILED, message, eid)
            return None
        ex.proc = proc
        self.adopt_executor(ex)
        core.checkpoint_soon()
        log.info("started executor %s/%s as pid %d", fid, eid, proc.pid)
        return ex

    def adopt_executor(self, ex: Executor) -> None:
        """Wait for ``ex`` (just started, or left by a previous agent run) to subscribe."""
        assert ex.proc is not None
        ex.registration_timer = asyncio.get_running_loop().call_later(
            self.core.config.executor_registration_timeout, self._registration_timeout, ex)
        ex.proc.exited.add_done_callback(lambda fut: self._executor_exited(ex, fut.result()))

    def executor_subscribe(self, sub: "pb.ExecutorCall.Subscribe",
                           uid: Optional[int] = None) -> tuple[Optional[Executor], str]:
        """Authenticate a SUBSCRIBE; on success queue SUBSCRIBED and the waiting tasks first.

        ``uid`` is the user whose socket the call came through (None: the agent's main
        socket); an executor subscribes only through the socket of the user it runs as.
        """
        core = self.core
        ex = core.executors.get((sub.framework_id, sub.executor_id))
        if ex is None or ex.closed or not hmac.compare_digest(ex.token.encode(),
                                                              sub.token.encode()):
            return None, (f"subscription of executor {sub.executor_id!r} refused: unknown "
                          f"executor or wrong token")
        if (ex.user.uid if ex.user is not None else None) != uid:
            return None, (f"subscription of executor {sub.executor_id!r} refused: it must "
                          f"connect through the socket of the user it runs as")
        ex.session += 1
        ex.subscribed = True
        if ex.registration_timer is not None:
            ex.registration_timer.cancel()
            ex.registration_timer = None
        first = executor_event(EV.SUBSCRIBED)
        first.subscribed.executor.CopyFrom(ex.info)
        first.subscribed.executor.framework_id = ex.framework_id
        framework = core.frameworks.get(ex.framework_id)
        if framework is not None:
            first.subscribed.framework.CopyFrom(framework)
        first.subscribed.agent.CopyFrom(core.agent_info())
        head = [first]
        if ex.pending:
            launch = executor_event(EV.LAUNCH)
            launch.launch.tasks.extend(ex.pending)
            ex.pending = []
            head.append(launch)
            core.checkpoint_soon()
        if ex.shutting_down:
            head.append(executor_event(EV.SHUTDOWN))
        ex.events.extendleft(reversed(head))
        ex.wake.set()
        return ex, ""

    def _registration_timeout(self, ex: Executor) -> None:
        ex.registration_timer = None
        if ex.subscribed or ex.closed:
            return
        timeout = self.core.config.executor_registration_timeout
        log.warning("executor %s did not subscribe within %g s; killing it", ex.key, timeout)
        self.fail_tasks(ex, S.FAILED, S.EXECUTOR_REGISTRATION_TIMEOUT,
                         f"executor did not subscribe within {timeout:g} s")
        ex.pending = []
        if ex.proc is not None:
            ex.proc.kill()

    def fail_tasks(self, ex: Executor, state: int, reason: int, message: str) -> None:
        """Report every live task of ``ex`` (tasks being killed: KILLED with their reason)."""
        for tid in list(ex.tasks):
            task = self.core.tasks.get((ex.framework_id, tid))
            if task is not None and task.killing:
                self.core.status(ex.framework_id, tid, S.KILLED, task.kill_reason,
                                 f"{message} after the kill grace period", ex.executor_id)
            else:
                self.core.status(ex.framework_id, tid, state, reason, message, ex.executor_id)

    def _executor_exited(self, ex: Executor, code: Optional[int]) -> None:
        core = self.core
        if core.executors.get(ex.key) is not ex:
            return  # forgotten on purpose (new agent id, or stopped)
        del core.executors[ex.key]
        how = describe_exit(code)
        log.info("executor %s %s", ex.key, how)
        limitation = self._limit_failure(ex.proc, code) if ex.proc is not None else None
        if limitation is not None:
            self.fail_tasks(ex, S.FAILED, limitation.reason,
                             f"{limitation.message}; executor {how}")
        else:
            self.fail_tasks(ex, S.FAILED, S.EXECUTOR_TERMINATED, f"executor {how}")
        ex.close()
        call = pb.AgentCall(type=pb.AgentCall.EXECUTOR_EXITED)
        call.executor_exited.framework_id = ex.framework_id
        call.executor_exited.executor_id = ex.executor_id
        call.executor_exited.status = code if code is not None else 255
        core.send(call)
        core.checkpoint_soon()

    # ------------------------------------------------------------------ kills

    def kill_task(self, fid: str, tid: str, grace: Optional[float] = None,
                  reason: int = S.TASK_KILLED) -> None:
        """KILL_TASK: signal a command task, ask an executor, or report what is known.

        A command task gets SIGTERM, then SIGKILL after ``grace`` seconds (default: the
        configured executor shutdown grace). An executor task is asked through its executor;
        if it is still alive after ``grace`` the whole executor is killed, and the task is
        reported KILLED with ``reason``.
        """
        core = self.core
        grace = core.config.executor_shutdown_grace if grace is None else grace
        reason = reason or S.TASK_KILLED
        task = core.tasks.get((fid, tid))
        if task is None:
            core.status(fid, tid, S.DROPPED, S.TASK_UNKNOWN, "no such task on this agent")
            return
        if task.state in TERMINAL or task.killing:
            return
        if not task.executor_id:
            task.killing, task.kill_reason = True, reason
            if task.proc is not None:
                self._spawn_background(task.proc.terminate(grace))
            return
        ex = core.executors.get((fid, task.executor_id))
        if ex is None or ex.closed:
            core.status(fid, tid, S.KILLED, reason, "its executor is gone", task.executor_id)
            return
        for i, queued in enumerate(ex.pending):
            if queued.task_id == tid:
                del ex.pending[i]
                core.status(fid, tid, S.KILLED,
                            S.TASK_KILLED_DURING_LAUNCH if reason == S.TASK_KILLED else reason,
                            "killed before its executor subscribed", task.executor_id)
                return
        task.killing, task.kill_reason = True, reason
        ev = executor_event(EV.KILL)
        ev.kill.task_id = tid
        ex.push(ev)
        task.kill_timer = asyncio.get_running_loop().call_later(
            grace, self._kill_grace_over, (fid, tid), ex)

    def _kill_grace_over(self, key: TaskKey, ex: Executor) -> None:
        task = self.core.tasks.get(key)
        if task is None or task.state in TERMINAL or ex.proc is None:
            return
        log.warning("task %s ignored its kill for the grace period; killing executor %s",
                    key, ex.key)
        ex.proc.kill()

    def shutdown_framework(self, fid: str) -> None:
        """SHUTDOWN_FRAMEWORK: every task KILLED (FRAMEWORK_REMOVED); executors shut down."""
        core = self.core
        grace = core.config.executor_shutdown_grace
        for (tfid, tid), task in list(core.tasks.items()):
            if tfid != fid or task.state in TERMINAL:
                continue
            core.status(fid, tid, S.KILLED, S.FRAMEWORK_REMOVED, "the framework was removed",
                        task.executor_id)
            if task.proc is not None:
                task.killing, task.kill_reason = True, S.FRAMEWORK_REMOVED
                self._spawn_background(task.proc.terminate(grace))
        waits = [self._shutdown_executor(ex, grace)
                 for ex in core.executors.values() if ex.framework_id == fid]
        self._spawn_background(self._remove_framework_dir(fid, waits))
        core.frameworks.pop(fid, None)
        core.checkpoint_soon()

    async def _remove_framework_dir(self, fid: str, waits: list) -> None:
        """Once the framework's executors are gone, so are the files it kept on this agent."""
        await asyncio.gather(*waits, return_exceptions=True)
        shutil.rmtree(framework_dir(self.core.config.work_dir, fid), ignore_errors=True)

    async def _shutdown_executor(self, ex: Executor, grace: float) -> None:
        if not ex.shutting_down:
            ex.shutting_down = True
            ex.pending = []
            if ex.subscribed:
                ex.push(executor_event(EV.SHUTDOWN))
        if ex.proc is None:
            return
        if not ex.subscribed:
            ex.proc.kill()  # nobody to ask politely
        try:
            await asyncio.wait_for(ex.proc.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("executor %s ignored SHUTDOWN for %g s; killing it", ex.key, grace)
        ex.proc.kill()
        await ex.proc.wait()

    def wipe(self) -> None:
        """Kill every child and forget every task, executor and update, reporting nothing."""
        core = self.core
        for ex in core.executors.values():
            ex.close()
            if ex.proc is not None:
                ex.proc.kill()
        for task in core.tasks.values():
            if task.proc is not None:
                task.proc.kill()
        core.executors.clear()
        core.tasks.clear()
        core.frameworks.clear()
        core.updates.clear()
        core.checkpoint_soon()

    async def shutdown_all(self, grace: float) -> None:
        """Shut every executor down and terminate every command task (agent stop)."""
        jobs = [self._shutdown_executor(ex, grace) for ex in list(self.core.executors.values())]
        jobs += [t.proc.terminate(grace) for t in self.core.tasks.values()
                 if t.proc is not None and not t.proc.exited.done()]
        if jobs:
            await asyncio.wait_for(asyncio.gather(*jobs, return_exceptions=True), grace + 10)

    def _spawn_background(self, coro) -> None:
        job = asyncio.ensure_future(coro)
        self._background.add(job)
        job.add_done_callback(self._background.discard)
