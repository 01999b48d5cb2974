"""Launching after a fetch: what the agent does with a command or executor that has URIs, or an
executor that runs as another OS user.

:class:`~substrate.agent.launcher.Launcher` hands a program whose command lists ``uris`` (or an
executor with a :class:`~substrate.agent.users.TaskUser`, which first needs its user's own Unix
socket from the daemon) to these coroutines instead of spawning it at once. They run the fetcher on
a worker thread (the agent's event loop keeps serving heartbeats and other tasks meanwhile) and
then either spawn the program through the launcher, or report TASK_FAILED with reason FETCH_FAILED
and the fetcher's message (which names the URI) for every task that was waiting for it. Files
fetched for a task that runs as another user are fetched by the agent into a sandbox the agent owns
meanwhile, then handed over to that user (links re-owned, never followed). A task killed, or a
framework shut down, while its files were downloading is not started afterwards.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from substrate.agent.fetcher import FetchError, FetcherConfig, fetch_all
from substrate.agent.records import TERMINAL, Executor
from substrate.agent.users import TaskUser, hand_over, take_back
from substrate.errors import SubstrateError
from substrate.v1 import pb

if TYPE_CHECKING:
    from substrate.agent.launcher import Launcher

log = logging.getLogger(__name__)
S = pb.TaskStatus


def fetcher_config(core) -> FetcherConfig:
    """The agent's fetcher settings, with the cache under its work directory by default."""
    config = getattr(core.config, "fetcher", None) or FetcherConfig()
    if not config.cache_dir:
        config.cache_dir = str(Path(core.config.work_dir) / "fetch-cache")
    return config


def _fetch_for(uris, sandbox: Path, config: FetcherConfig, user: Optional[TaskUser]) -> None:
    if user is not None:
        take_back(sandbox)
    fetch_all(uris, sandbox, config)
    if user is not None:
        hand_over(sandbox, user, recursive=True)


async def _fetch(core, uris, sandbox: Path, user: Optional[TaskUser] = None) -> str:
    """Fetch on a worker thread; the error text, or "" on success."""
    config = fetcher_config(core)
    try:
        await asyncio.get_running_loop().run_in_executor(
            None, _fetch_for, list(uris), sandbox, config, user)
    except FetchError as exc:
        return str(exc)
    except OSError as exc:  # the sandbox itself could not be written
        return f"cannot fetch into {sandbox}: {exc}"
    return ""


async def run_command_after_fetch(launcher: "Launcher", fid: str, info: pb.TaskInfo,
                                  sandbox: Path) -> None:
    """Fetch a command task's URIs, then spawn it (unless it was killed meanwhile)."""
    core = launcher.core
    key = (fid, info.task_id)
    task = core.tasks.get(key)
    problem = await _fetch(core, info.command.uris, sandbox,
                           task.user if task is not None else None)
    task = core.tasks.get(key)
    if task is None or task.state in TERMINAL:
        return
    if task.killing:
        core.status(fid, info.task_id, S.KILLED, task.kill_reason, "killed while fetching")
        return
    if problem:
        log.warning("task %s/%s: %s", fid, info.task_id, problem)
        core.status(fid, info.task_id, S.FAILED, S.FETCH_FAILED, problem)
        return
    launcher.spawn_command(fid, info)


async def start_executor_after_fetch(launcher: "Launcher", ex: Executor) -> None:
    """Open its user's socket, fetch an executor's URIs, then spawn it; on failure its tasks
    fail with the reason (CONTAINER_LAUNCH_FAILED or FETCH_FAILED)."""
    core = launcher.core
    problem, reason = "", S.FETCH_FAILED
    if ex.user is not None:
        try:
            if core.user_endpoint is None:
                raise OSError("this agent serves no per-user executor sockets")
            ex.endpoint = await core.user_endpoint(ex.user)
        except (OSError, SubstrateError) as exc:
            problem = f"cannot open the executor socket of user {ex.user.name!r}: {exc}"
            reason = S.CONTAINER_LAUNCH_FAILED
    if not problem and ex.info.command.uris:
        problem = await _fetch(core, ex.info.command.uris, ex.sandbox, ex.user)
    if core.executors.get(ex.key) is not ex or ex.closed:
        return  # forgotten (new agent id, agent stopping)
    if ex.shutting_down:
        del core.executors[ex.key]
        ex.close()
        return
    if problem:
        log.warning("executor %s: %s", ex.key, problem)
        del core.executors[ex.key]
        for tid in list(ex.tasks):
            core.status(ex.framework_id, tid, S.FAILED, reason, problem, ex.executor_id)
        ex.pending = []
        ex.close()
        call = pb.AgentCall(type=pb.AgentCall.EXECUTOR_EXITED)
        call.executor_exited.framework_id = ex.framework_id
        call.executor_exited.executor_id = ex.executor_id
        call.executor_exited.status = 1
        core.send(call)
        return
    launcher.spawn_executor(ex)
