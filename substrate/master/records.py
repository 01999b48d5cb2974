"""What the master remembers about agents, frameworks, tasks and offers.

Plain mutable records owned by :class:`substrate.master.core.MasterCore`; they hold wire
messages for task and executor infos (forwarded untouched) and plain values for the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from substrate.resources import Resources
from substrate.v1 import pb

#: How many state changes a task keeps in its history.
HISTORY_LIMIT = 32


@dataclass(eq=False)
class TaskRecord:
    framework_id: str
    task_id: str
    agent_id: str
    executor_id: str
    info: "pb.TaskInfo"
    resources: Resources
    state: int = pb.TaskStatus.STAGING
    reason: int = 0
    message: str = ""
    history: list = field(default_factory=list)  # [(state name, reason name, wall time, message)]

    def record(self, state: int, reason: int, message: str, when: float) -> None:
        self.state, self.reason, self.message = state, reason, message
        self.history.append((pb.TaskStatus.State.Name(state),
                             pb.TaskStatus.Reason.Name(reason), when, message))
        if len(self.history) > HISTORY_LIMIT:
            del self.history[0]


@dataclass(eq=False)
class ExecutorRecord:
    framework_id: str
    executor_id: str
    info: "pb.ExecutorInfo"
    resources: Resources


@dataclass(eq=False)
class AgentRecord:
    agent_id: str
    info: "pb.AgentInfo"
    total: Resources
    connected: bool = True
    reachable: bool = True
    draining: bool = False
    last_heartbeat: float = 0.0
    registered_at: float = 0.0
    tasks: dict = field(default_factory=dict)       # (framework_id, task_id) -> TaskRecord
    executors: dict = field(default_factory=dict)   # (framework_id, executor_id) -> ExecutorRecord
    offers: set = field(default_factory=set)        # offer ids


@dataclass(eq=False)
class FrameworkRecord:
    framework_id: str
    info: "pb.FrameworkInfo"
    connected: bool = True
    disconnected_at: Optional[float] = None
    failover_deadline: Optional[float] = None
    suppressed: bool = False
    subscribed_at: float = 0.0
    tasks: dict = field(default_factory=dict)       # task_id -> TaskRecord (not yet terminal)
    offers: set = field(default_factory=set)
    completed: list = field(default_factory=list)   # recent terminal TaskRecords
    status: Optional[dict] = None                   # latest PUBLISH_STATUS document
    status_time: float = 0.0                        # wall time it came
    removed_at: Optional[float] = None              # wall time of teardown, once removed

    @property
    def partition_aware(self) -> bool:
        return "PARTITION_AWARE" in self.info.capabilities


@dataclass(eq=False)
class OfferRecord:
    offer_id: str
    framework_id: str
    agent_id: str
    resources: Resources
    created: float
