"""Builders for driving :class:`MasterCore` directly with a fake clock."""
from __future__ import annotations

from substrate.master.core import MasterConfig, MasterCore
from substrate.v1 import pb


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_core(**config) -> tuple[MasterCore, FakeClock]:
    clock = FakeClock()
    cfg = MasterConfig(**{"agent_heartbeat_interval": 100.0, "agent_max_missed_heartbeats": 3,
                          **config})
    counter = iter(range(1, 1 << 30))
    return MasterCore(clock, cfg, master_id="m",
                      new_id=lambda prefix: f"{prefix}-{next(counter)}"), clock


def register_agent(core: MasterCore, cpus: float = 4, mem: float = 4096,
                   hostname: str = "h") -> str:
    call = pb.AgentCall(type=pb.AgentCall.REGISTER)
    call.register.info.hostname = hostname
    call.register.info.resources.cpus = cpus
    call.register.info.resources.mem = mem
    return core.agent_register(call)


def subscribe(core: MasterCore, name: str = "fw", *, role: str = "*", weight: float = 1.0,
              failover_timeout: float = 0.0, partition_aware: bool = False,
              framework_id: str = "") -> str:
    info = pb.FrameworkInfo(name=name, role=role, weight=weight, id=framework_id,
                            failover_timeout=failover_timeout)
    if partition_aware:
        info.capabilities.append("PARTITION_AWARE")
    return core.framework_subscribe(info)


def drain(core: MasterCore) -> list:
    out, core.outbox = core.outbox, []
    return out


def events(out: list, target: str, kind: int) -> list:
    return [m for k, t, m in out if k == "framework" and t == target and m.type == kind]


def agent_events(out: list, target: str, kind: int) -> list:
    return [m for k, t, m in out if k in ("agent", "agent_after_register") and t == target
            and m.type == kind]


def offers_for(core: MasterCore, fid: str) -> list:
    core.allocate()
    out = drain(core)
    return [o for ev in events(out, fid, pb.Event.OFFERS) for o in ev.offers.offers]


def command_task(task_id: str, agent_id: str, cpus: float = 1, mem: float = 128,
                 data: bytes = b"") -> "pb.TaskInfo":
    task = pb.TaskInfo(task_id=task_id, agent_id=agent_id, data=data)
    task.resources.cpus = cpus
    task.resources.mem = mem
    task.command.value = "true"
    return task


def accept_call(offer_ids: list, tasks: list, refuse: float | None = None) -> "pb.Call":
    call = pb.Call(type=pb.Call.ACCEPT)
    call.accept.offer_ids.extend(offer_ids)
    call.accept.operations.add(type=pb.Call.Operation.LAUNCH, tasks=tasks)
    if refuse is not None:
        call.accept.filters.refuse_seconds = refuse
    return call


def status(fid: str, task_id: str, state: int, uuid: bytes = b"u") -> "pb.TaskStatus":
    return pb.TaskStatus(framework_id=fid, task_id=task_id, state=state, uuid=uuid)
