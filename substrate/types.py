"""The plain dataclasses frameworks see: offers, tasks, statuses, executors, frameworks.

These mirror ``substrate.v1`` messages but are ordinary Python objects, so frameworks never
touch protobuf classes. Conversion to and from the wire lives in :mod:`substrate.convert`.
Enum values equal the wire numbers.
"""
from __future__ import annotations

import enum
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

from substrate.resources import Resources
from substrate.uris import FetchURI


class TaskState(enum.IntEnum):
    """The life of a task. Terminal states never change again."""

    UNKNOWN = 0
    STAGING = 1
    STARTING = 2
    RUNNING = 3
    KILLING = 4
    FINISHED = 5
    FAILED = 6
    KILLED = 7
    ERROR = 8
    LOST = 9
    DROPPED = 10
    UNREACHABLE = 11
    GONE = 12
    GONE_BY_OPERATOR = 13

    @property
    def is_terminal(self) -> bool:
        """True for states a task never leaves."""
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({
    TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED, TaskState.ERROR, TaskState.LOST,
    TaskState.DROPPED, TaskState.GONE, TaskState.GONE_BY_OPERATOR,
})


class Reason(enum.IntEnum):
    """Why a task reached its state (``REASON_UNSPECIFIED`` when nothing special)."""

    REASON_UNSPECIFIED = 0
    COMMAND_EXECUTOR_FAILED = 1
    EXECUTOR_TERMINATED = 2
    EXECUTOR_UNREGISTERED = 3
    EXECUTOR_REGISTRATION_TIMEOUT = 4
    AGENT_DISCONNECTED = 5
    AGENT_REMOVED = 6
    AGENT_UNREACHABLE = 7
    AGENT_RESTARTED = 8
    AGENT_UNKNOWN = 9
    FRAMEWORK_REMOVED = 10
    INVALID_OFFERS = 11
    TASK_INVALID = 12
    TASK_UNKNOWN = 13
    TASK_UNAUTHORIZED = 14
    TASK_KILLED_DURING_LAUNCH = 15
    RECONCILIATION = 16
    RESOURCES_UNKNOWN = 17
    MASTER_DISCONNECTED = 18
    CONTAINER_LAUNCH_FAILED = 19
    CONTAINER_LIMITATION_MEMORY = 20
    CONTAINER_LIMITATION = 21
    TASK_KILLED = 22
    EXECUTOR_SHUTDOWN = 23
    AGENT_DRAINING = 140
    AGENT_REBOOTED = 141
    FETCH_FAILED = 180


class Source(enum.IntEnum):
    """Which component produced a status update."""

    SOURCE_UNSPECIFIED = 0
    MASTER = 1
    AGENT = 2
    EXECUTOR = 3


@dataclass
class CommandInfo:
    """A program to run: ``value`` with ``arguments``, or a shell line when ``shell``.

    ``uris`` are fetched into the sandbox by the agent before the program starts.
    """

    value: str
    arguments: list[str] = field(default_factory=list)
    shell: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    uris: list[FetchURI] = field(default_factory=list)


@dataclass
class ExecutorInfo:
    """A framework's long-running executor process, reused by the tasks sent to it."""

    executor_id: str
    command: CommandInfo
    name: str = ""
    resources: Resources = field(default_factory=Resources)
    data: bytes = b""

    @classmethod
    def for_python_module(cls, executor_id: str, module: str, *, name: str = "",
                          resources: Optional[Resources] = None,
                          environment: Optional[dict[str, str]] = None,
                          data: bytes = b"") -> "ExecutorInfo":
        """An executor running ``python -m module`` with this interpreter and import path.

        ``PYTHONPATH`` carries the directory holding ``module``'s top-level package, then this
        process's ``sys.path``, then any inherited ``PYTHONPATH``, so the executor imports the
        same code as the driver on this machine. The driver's own modules and the files it
        ships (:mod:`substrate.shipping`) are added as ``uris``, fetched into the sandbox.

        Examples
        --------
        >>> info = ExecutorInfo.for_python_module("e1", "json.tool", name="demo")
        >>> info.command.arguments
        ['-m', 'json.tool']
        """
        spec = importlib.util.find_spec(module.split(".")[0])
        roots: list[str] = []
        if spec is not None and spec.submodule_search_locations:
            roots = [os.path.dirname(loc) for loc in spec.submodule_search_locations]
        elif spec is not None and spec.origin:
            roots = [os.path.dirname(spec.origin)]
        inherited = os.environ.get("PYTHONPATH", "").split(os.pathsep)
        path = list(dict.fromkeys(p for p in roots + sys.path + inherited if p))
        env = {"PYTHONPATH": os.pathsep.join(path), **(environment or {})}
        info = cls(executor_id, CommandInfo(sys.executable, ["-m", module], environment=env),
                   name, resources if resources is not None else Resources(), data)
        from substrate.shipping import ship_with  # the driver's own code and files, if any
        return ship_with(info)


@dataclass
class TaskInfo:
    """A task to launch on an offer's agent: in ``executor`` or as a plain ``command``."""

    task_id: str
    agent_id: str
    resources: Resources
    name: str = ""
    executor: Optional[ExecutorInfo] = None
    command: Optional[CommandInfo] = None
    data: bytes = b""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskStatus:
    """A status update for a task. ``uuid`` is empty when nothing is to be acknowledged."""

    task_id: str
    state: TaskState
    reason: Reason = Reason.REASON_UNSPECIFIED
    source: Source = Source.SOURCE_UNSPECIFIED
    message: str = ""
    data: bytes = b""
    agent_id: str = ""
    executor_id: str = ""
    timestamp: float = 0.0
    uuid: bytes = b""
    framework_id: str = ""


@dataclass
class Offer:
    """Resources of one agent offered to one framework until accepted, declined or rescinded."""

    id: str
    framework_id: str
    agent_id: str
    hostname: str
    resources: Resources
    executor_ids: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    agent_address: str = ""


@dataclass
class FrameworkInfo:
    """Who a framework is, and how it wants to be treated.

    ``failover_timeout`` (seconds) is how long the master keeps its tasks after its scheduler
    disconnects; ``weight`` is its DRF weight within its ``role``. ``user`` is the OS user its
    executors and command tasks run as on agents that run as root (empty: the agent's own
    user; ``root`` only where the agent allows it).
    """

    name: str
    role: str = "*"
    weight: float = 1.0
    failover_timeout: float = 0.0
    user: str = ""
    principal: str = ""
    capabilities: list[str] = field(default_factory=list)
    hostname: str = ""
    id: str = ""


@dataclass
class AgentInfo:
    """An agent as the master knows it."""

    id: str
    hostname: str
    resources: Resources
    attributes: dict[str, str] = field(default_factory=dict)
    address: str = ""


@dataclass
class Filters:
    """How long the declined resources should not be offered again (default 5 s)."""

    refuse_seconds: Optional[float] = None
