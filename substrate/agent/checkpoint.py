"""What an agent writes to its work dir so that a restarted agent can take its work back.

This module owns the checkpoint's format and its file I/O: the agent id, the host's boot id, the
frameworks, every executor (ids, info, secret token, pid and the pid's start time, so a recycled
pid is never mistaken for the executor, the OS user it runs as and its socket), every task the
agent still tracks, and the agent-made status updates not yet acknowledged. Updates that executors
made are not stored: an executor resends its unacknowledged updates when it re-subscribes.

The file is JSON with protobuf messages as base64 (never pickle: the agent does not unpickle),
written atomically (temporary file, fsync, rename) into ``work_dir/meta`` (mode 0700, the file
0600, since it holds executor tokens). Deciding what to do with a checkpoint is
:mod:`substrate.agent.recovery`'s job.

Examples
--------
>>> import tempfile, os
>>> d = tempfile.mkdtemp()
>>> write(d, {"version": VERSION, "agent_id": "a1", "executors": []})
>>> load(d)["agent_id"], oct(os.stat(checkpoint_path(d)).st_mode & 0o777)
('a1', '0o600')
>>> load(tempfile.mkdtemp()) is None
True
"""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, TypeVar

from substrate.errors import ClusterError
from substrate.v1 import pb

if TYPE_CHECKING:
    from substrate.agent.core import AgentCore

VERSION = 1
M = TypeVar("M")


def checkpoint_path(work_dir: "str | os.PathLike") -> Path:
    """``work_dir/meta/agent.json``."""
    return Path(work_dir) / "meta" / "agent.json"


def socket_path(work_dir: "str | os.PathLike") -> Path:
    """The executors' Unix socket: ``work_dir/run/executors.sock`` (stable across restarts)."""
    return Path(work_dir) / "run" / "executors.sock"


def private_dir(path: Path) -> Path:
    """Create ``path`` if needed and make it 0700 (only the agent's user may enter it)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def lock_work_dir(work_dir: "str | os.PathLike") -> int:
    """Take the work dir for this agent process; returns the lock's file descriptor.

    The lock (``flock`` on ``meta/lock``) is released by the kernel when the process dies,
    however it dies, so a restarted agent gets it back at once.

    Raises
    ------
    ClusterError
        When another live agent uses the same work dir (two agents would fight over the
        executors' socket and the checkpoint).
    """
    import fcntl

    path = private_dir(Path(work_dir) / "meta") / "lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ClusterError(f"another agent is running with the work dir {work_dir}") from None
    return fd


def read_boot_id(path: str) -> str:
    """The host's boot id (changes on every reboot); empty when the file cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def encode(message) -> str:
    return base64.b64encode(message.SerializeToString()).decode("ascii")


def decode(cls: "type[M]", text: str) -> M:
    msg = cls()
    msg.ParseFromString(base64.b64decode(text))
    return msg


def capture(core: "AgentCore", boot_id: str) -> dict:
    """The checkpoint of ``core`` as a JSON-able dict."""
    executors = []
    for ex in core.executors.values():
        pid = ex.proc.pid if ex.proc is not None else 0
        executors.append({
            "framework_id": ex.framework_id, "executor_id": ex.executor_id,
            "info": encode(ex.info), "token": ex.token, "sandbox": str(ex.sandbox),
            "pid": pid, "start_time": getattr(ex.proc, "start_time", "") if pid else "",
            "pending": [encode(t) for t in ex.pending],
            "user": ex.user.to_dict() if ex.user is not None else None,
            "endpoint": ex.endpoint,
        })
    tasks = []
    for (fid, _), task in core.tasks.items():
        if not task.saved_info:     # a task's info never changes: encode it once
            info = pb.TaskInfo()
            info.CopyFrom(task.info)
            info.data = b""     # the executor has it already; the master never needs it back
            task.saved_info = encode(info)
        pid = task.proc.pid if task.proc is not None else 0
        tasks.append({
            "framework_id": fid, "executor_id": task.executor_id, "info": task.saved_info,
            "state": task.state, "latest": _latest(task),
            "pid": pid, "start_time": getattr(task.proc, "start_time", "") if pid else "",
        })
    updates = [encode(st) for _, st in core.updates.all_pending()
               if st.source != pb.TaskStatus.EXECUTOR]
    return {
        "version": VERSION, "agent_id": core.agent_id, "boot_id": boot_id,
        "frameworks": [encode(f) for f in core.frameworks.values()],
        "executors": executors, "tasks": tasks, "updates": updates,
    }


def _latest(task) -> str:
    if task.latest is None:
        return ""
    if task.saved_latest[0] is not task.latest:    # encode each status once
        task.saved_latest = (task.latest, encode(_bare(task.latest)))
    return task.saved_latest[1]


def _bare(status: pb.TaskStatus) -> pb.TaskStatus:
    """``status`` without its data (results can be megabytes; re-registration needs none)."""
    return pb.TaskStatus(
        task_id=status.task_id, state=status.state, reason=status.reason, source=status.source,
        message=status.message, agent_id=status.agent_id, executor_id=status.executor_id,
        timestamp=status.timestamp, uuid=status.uuid, framework_id=status.framework_id)


def write(work_dir: "str | os.PathLike", state: dict) -> None:
    """Write ``state`` atomically (a reader sees the old or the new file, never a torn one)."""
    path = checkpoint_path(work_dir)
    private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(work_dir: "str | os.PathLike") -> Optional[dict]:
    """The last checkpoint, or None when there is none.

    Raises
    ------
    ClusterError
        When the file exists but cannot be understood (the agent then refuses to start rather
        than forget executors that may still be running).
    """
    path = checkpoint_path(work_dir)
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot read the agent checkpoint {path}: {exc}; remove it to "
                           f"start this agent afresh") from None
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise ClusterError(f"the agent checkpoint {path} has an unknown format; remove it to "
                           f"start this agent afresh")
    return state
