"""What the master does with an agent's tasks when the agent comes back, reboots or is drained.

Pure functions over :class:`~substrate.master.core.MasterCore` (no I/O; messages go to its
outbox), called by the core when an agent (re-)registers and by the operator's drain call:

* **partition healed**: an agent that was marked unreachable re-registers. Tasks of
  ``PARTITION_AWARE`` frameworks (reported UNREACHABLE meanwhile) are RUNNING again and the
  framework is told so; tasks of other frameworks were already reported LOST, so the master
  has the agent kill them (they end KILLED with reason ``AGENT_UNREACHABLE``).
* **agent came back without a task** (it restarted and the task died, or a launch never
  reached it): the task is LOST (GONE for partition-aware frameworks).
* **host rebooted**: the agent registers anew naming its previous id; every task of that id is
  GONE (``AGENT_REBOOTED``) and the old agent is removed.
* **drain**: no new offers of the agent, outstanding offers rescinded, every task killed with a
  grace period (reason ``AGENT_DRAINING``); the drain survives the agent's re-registration
  until an operator reactivates the agent.
"""
from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Iterable, Optional

from substrate.errors import InvalidRequest
from substrate.master import validation
from substrate.types import TERMINAL_STATES
from substrate.v1 import pb

if TYPE_CHECKING:
    from substrate.master.core import MasterCore
    from substrate.master.records import AgentRecord, TaskRecord

log = logging.getLogger("substrate.master")
State = pb.TaskStatus
TERMINAL = frozenset(int(s) for s in TERMINAL_STATES)
#: How many unreachable agents are remembered (to recognise them when they come back).
UNREACHABLE_LIMIT = 10_000


def kill_event(framework_id: str, task_id: str, reason: int,
               grace: Optional[float] = None) -> pb.AgentEvent:
    event = pb.AgentEvent(type=pb.AgentEvent.KILL_TASK)
    event.kill_task.framework_id, event.kill_task.task_id = framework_id, task_id
    event.kill_task.reason = reason
    if grace is not None:
        event.kill_task.grace_period_seconds = grace
    return event


def remember_unreachable(core: "MasterCore", agent_id: str) -> None:
    core.unreachable[agent_id] = core.clock()
    while len(core.unreachable) > UNREACHABLE_LIMIT:
        del core.unreachable[next(iter(core.unreachable))]


def reported_task(core: "MasterCore", agent_id: str, task: "TaskRecord", prior: Optional[int],
                  latest: pb.TaskStatus, was_unreachable: bool) -> None:
    """Bring one task a re-registering agent reported into the master's view."""
    fw = core.frameworks[task.framework_id]
    now = time.time()
    if was_unreachable and prior is None and not fw.partition_aware:
        # Reported LOST when the agent went away; the framework has moved on. Kill it there.
        task.record(State.KILLING, State.AGENT_UNREACHABLE,
                    "its agent came back after being unreachable", now)
    if (task.state == State.KILLING and latest.state not in TERMINAL
            and agent_id not in core.draining):   # a drain asks again with its grace period
        # Being killed and still running there (the agent re-registered before confirming):
        # ask again; a kill is idempotent on the agent.
        event = kill_event(task.framework_id, task.task_id, task.reason)
        event.epoch = core.epoch
        core.outbox.append(("agent_after_register", agent_id, event))
        return
    state = latest.state or State.RUNNING
    task.record(state, latest.reason, "re-registered", now)
    if prior == State.UNREACHABLE:
        core.send_status(task.framework_id, core.master_status(
            task, state, State.REASON_UNSPECIFIED, f"agent {agent_id} is reachable again"))


def forget_missing(core: "MasterCore", agent: "AgentRecord", candidates: Iterable["TaskRecord"],
                   ended: "set[tuple[str, str]]") -> None:
    """Tasks the master placed on ``agent`` that it did not report back: LOST (or GONE).

    Tasks in ``ended`` were reported in a terminal state; the update saying how they ended
    follows the registration, so they are left for it.
    """
    for task in list(candidates):
        fw = core.frameworks.get(task.framework_id)
        key = (task.framework_id, task.task_id)
        if (fw is None or task.state in TERMINAL or fw.tasks.get(task.task_id) is not task
                or key in agent.tasks or key in ended):
            continue
        if task.state == State.STAGING:
            # Never reported by the agent: the launch itself was lost (a master failover or a
            # lost message), so the scheduler may simply launch it again.
            state = State.DROPPED if fw.partition_aware else State.LOST
            reason = State.RECONCILIATION
            message = (f"agent {agent.agent_id} re-registered without this task "
                       f"(its launch was lost)")
        else:
            state = State.GONE if fw.partition_aware else State.LOST
            reason = State.AGENT_RESTARTED
            message = f"agent {agent.agent_id} re-registered without this task"
        task.record(state, reason, message, time.time())
        core.send_status(fw.framework_id, core.master_status(task, state, reason, message))
        core.forget_task(task)


def agent_rebooted(core: "MasterCore", old_id: str) -> None:
    """The host of agent ``old_id`` rebooted: its tasks are GONE, the old agent removed."""
    old = core.agents.pop(old_id, None)
    core.unreachable.pop(old_id, None)
    core.draining.pop(old_id, None)
    if old is not None:
        for offer_id in list(old.offers):
            core.rescind(offer_id)
        if old.reachable:
            core.allocator.remove_agent(old_id)
            core.allocation_pending = True
        core.registry.remove_agent(old_id)
    message = f"the host of agent {old_id} rebooted"
    for fw in list(core.frameworks.values()):
        for task in [t for t in fw.tasks.values() if t.agent_id == old_id]:
            if task.state in TERMINAL:
                continue
            task.record(State.GONE, State.AGENT_REBOOTED, message, time.time())
            core.send_status(fw.framework_id,
                             core.master_status(task, State.GONE, State.AGENT_REBOOTED, message))
            core.forget_task(task)
        if old is not None:
            core.to_framework(fw.framework_id, core.event(
                pb.Event.FAILURE, failure=pb.Event.Failure(agent_id=old_id)))
    log.warning("agent %s came back as a new agent after a reboot", old_id)


def drain(core: "MasterCore", agent_id: str, grace: Optional[float]) -> int:
    """Start draining ``agent_id``; returns how many tasks were told to die.

    Raises
    ------
    InvalidRequest
        Unknown agent, or a grace period that is not a finite non-negative number.
    """
    validation.check_id("agent id", agent_id)
    if grace is not None and (not math.isfinite(grace) or grace < 0):
        raise InvalidRequest(f"grace period must be finite and >= 0, got {grace!r}")
    agent = core.agents.get(agent_id)
    if agent is None:
        raise InvalidRequest(f"no agent {agent_id!r}")
    core.draining[agent_id] = grace
    if not agent.draining:
        agent.draining = True
        if agent.reachable and agent.connected:
            core.allocator.deactivate_agent(agent_id)
        for offer_id in list(agent.offers):
            core.rescind(offer_id)
    log.info("draining agent %s (grace %s)", agent_id, grace)
    return kill_all(core, agent, grace)


def kill_all(core: "MasterCore", agent: "AgentRecord", grace: Optional[float]) -> int:
    killed = 0
    for task in list(agent.tasks.values()):
        if task.state in TERMINAL:
            continue
        if task.state != State.KILLING:
            task.record(State.KILLING, State.AGENT_DRAINING, "the agent is draining", time.time())
        core.to_agent(agent.agent_id, kill_event(task.framework_id, task.task_id,
                                                 State.AGENT_DRAINING, grace))
        killed += 1
    return killed


def reactivate(core: "MasterCore", agent_id: str) -> None:
    """End a drain: the agent is offered again."""
    validation.check_id("agent id", agent_id)
    agent = core.agents.get(agent_id)
    if agent is None:
        raise InvalidRequest(f"no agent {agent_id!r}")
    core.draining.pop(agent_id, None)
    if agent.draining:
        agent.draining = False
        if agent.reachable and agent.connected:
            core.allocator.activate_agent(agent_id)
            core.allocation_pending = True
