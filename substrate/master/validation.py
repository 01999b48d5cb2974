"""Validation of everything a client sends the master: ids, resources, sizes, framework infos.

Each check raises :class:`substrate.errors.InvalidRequest` with a message a user can act on.
The master calls these before any state changes, so one bad client cannot corrupt or crash it.
"""
from __future__ import annotations

import math

from substrate.convert import resources_from_pb
from substrate.errors import InvalidRequest
from substrate.resources import Resources
from substrate.v1 import pb

MAX_ID_LENGTH = 255
#: Default cap on opaque payloads (task data, messages, status data), in bytes.
DEFAULT_MAX_PAYLOAD = 4 * 1024 * 1024
_FORBIDDEN_ID_CHARS = frozenset("/\\\x00")


def check_id(kind: str, value: str) -> str:
    """An id must be non-empty, short, printable and never usable as a path component."""
    if not value:
        raise InvalidRequest(f"{kind} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRequest(f"{kind} is longer than {MAX_ID_LENGTH} characters")
    if value == "." or ".." in value:
        raise InvalidRequest(f"{kind} {value!r} must not be '.' or contain '..'")
    if any(c in _FORBIDDEN_ID_CHARS for c in value) or not value.isprintable():
        raise InvalidRequest(f"{kind} {value!r} contains a path separator or unprintable character")
    return value


def check_payload(kind: str, data: bytes, cap: int) -> None:
    if len(data) > cap:
        raise InvalidRequest(f"{kind} is {len(data)} bytes, over the cap of {cap} bytes")


def cap_status_data(status: "pb.TaskStatus", cap: int) -> None:
    """Drop an oversized status ``data`` (saying so in its message) instead of the update.

    Refusing the whole update would make the agent resend it forever and lose the state
    change; the state is what matters, the data is the framework's opaque extra.
    """
    if len(status.data) > cap:
        size = len(status.data)
        status.data = b""
        status.message = (f"{status.message} [status data of {size} bytes dropped: over the "
                          f"cap of {cap} bytes]").strip()


def check_resources(kind: str, msg: "pb.Resources") -> Resources:
    """Convert wire resources, refusing negative, NaN and infinite values."""
    try:
        return resources_from_pb(msg)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{kind}: {exc}") from None


def check_framework_info(info: "pb.FrameworkInfo") -> None:
    if not info.name:
        raise InvalidRequest("framework name must not be empty")
    if len(info.name) > MAX_ID_LENGTH:
        raise InvalidRequest("framework name is too long")
    if info.role and info.role != "*":
        check_id("role", info.role)
    if info.id:
        check_id("framework id", info.id)
    if not math.isfinite(info.weight) or info.weight < 0:
        raise InvalidRequest(f"framework weight must be finite and positive, got {info.weight}")
    if not math.isfinite(info.failover_timeout) or info.failover_timeout < 0:
        raise InvalidRequest(
            f"failover_timeout must be finite and non-negative, got {info.failover_timeout}")


def check_refuse_seconds(filters: "pb.Filters", default: float) -> float:
    if not filters.HasField("refuse_seconds"):
        return default
    value = filters.refuse_seconds
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest(f"refuse_seconds must be finite and non-negative, got {value}")
    return value


def check_task(task: "pb.TaskInfo", agent_id: str, max_payload: int) -> Resources:
    """Validate one task of a LAUNCH; return its own resources (executor's not included)."""
    check_id("task id", task.task_id)
    if task.agent_id != agent_id:
        raise InvalidRequest(
            f"task {task.task_id} names agent {task.agent_id!r} but the offer is on {agent_id!r}")
    has_executor, has_command = task.HasField("executor"), task.HasField("command")
    if has_executor == has_command:
        raise InvalidRequest(f"task {task.task_id} must have exactly one of executor or command")
    if has_executor:
        check_id("executor id", task.executor.executor_id)
        if not task.executor.command.value:
            raise InvalidRequest(f"executor {task.executor.executor_id} has no command")
        check_resources(f"executor {task.executor.executor_id} resources", task.executor.resources)
        check_payload("executor data", task.executor.data, max_payload)
    elif not task.command.value:
        raise InvalidRequest(f"task {task.task_id} has an empty command")
    check_payload(f"task {task.task_id} data", task.data, max_payload)
    res = check_resources(f"task {task.task_id} resources", task.resources)
    if res.is_empty() and not has_executor:
        raise InvalidRequest(f"task {task.task_id} asks for no resources")
    return res
