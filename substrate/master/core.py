"""The master's state machine: agents, frameworks, offers and tasks, with no I/O.

Events come in as method calls (an agent registered, a scheduler sent a call, time passed);
what must be sent goes into :attr:`MasterCore.outbox` as ``(kind, target, message)`` tuples,
which the gRPC service (:mod:`substrate.master.service`) delivers. Time comes from an
injected clock, so the fault tests drive timeouts without sleeping. The allocator decides
who is offered what; the scheduler-call handlers live in :mod:`substrate.master.calls`.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional

from substrate.allocator import Allocator
from substrate.convert import resources_to_pb
from substrate.errors import InvalidRequest
from substrate.master import agent_lifecycle, validation
from substrate.master.registry import InMemoryRegistry, Registry
from substrate.master.records import (
    AgentRecord, ExecutorRecord, FrameworkRecord, OfferRecord, TaskRecord,
)
from substrate.resources import Resources
from substrate.v1 import pb

log = logging.getLogger("substrate.master")

State = pb.TaskStatus
TERMINAL = frozenset({State.FINISHED, State.FAILED, State.KILLED, State.ERROR, State.LOST,
                      State.DROPPED, State.GONE, State.GONE_BY_OPERATOR})
COMPLETED_LIMIT = 1000
#: Removed frameworks the dashboard still shows (with their last status).
COMPLETED_FRAMEWORKS = 50


@dataclass
class MasterConfig:
    """Timing and limits of a master. Defaults follow what Mesos settled on."""

    agent_heartbeat_interval: float = 15.0
    agent_max_missed_heartbeats: int = 5
    framework_heartbeat_interval: float = 15.0
    offer_timeout: Optional[float] = 60.0
    refuse_seconds: float = 5.0
    allocation_interval: float = 1.0
    max_payload: int = validation.DEFAULT_MAX_PAYLOAD
    min_allocatable: Resources = Resources(cpus=0.01, mem=32)
    #: Per-role limits on what the role's frameworks may hold (zero scalars: unlimited).
    quota: dict[str, Resources] = field(default_factory=dict)
    #: After a master failover: how long admitted agents have to re-register before the
    #: registry forgets them (Mesos: at least 10 minutes).
    agent_reregister_timeout: float = 600.0
    #: After a master failover: the least time a framework that was connected gets to
    #: re-subscribe, whatever its own (possibly zero) failover timeout.
    framework_reregister_grace: float = 30.0


class MasterCore:
    """All master state and its transitions.

    Parameters
    ----------
    clock : callable
        Monotonic time in seconds.
    config : MasterConfig
    epoch : int
        This leader's epoch, stamped on every message it sends.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 config: Optional[MasterConfig] = None, epoch: Optional[int] = None,
                 master_id: str = "", new_id: Optional[Callable[[str], str]] = None,
                 registry: Optional[Registry] = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # Failover deadlines cross processes in the registry, so they are wall-clock times.
        self.wall_clock = wall_clock
        self.registry: Registry = registry or InMemoryRegistry()
        # Ids are random by default (unique across master failovers); tests inject a counter.
        self.new_id = new_id or (lambda prefix: f"{prefix}-{uuid.uuid4().hex[:12]}")
        self.config = config or MasterConfig()
        self.epoch = epoch if epoch is not None else self.registry.next_epoch()
        self.master_id = master_id or f"master-{uuid.uuid4().hex[:8]}"
        self.allocator = Allocator(clock, min_allocatable=self.config.min_allocatable,
                                   default_refuse_seconds=self.config.refuse_seconds)
        for role, limit in self.config.quota.items():
            self.allocator.set_quota(role, limit)
        # Agents marked unreachable (id -> when), to recognise them when they come back, and
        # agents being drained (id -> kill grace period, None: the agent's own).
        self.unreachable: dict[str, float] = {}
        self.draining: dict[str, Optional[float]] = {}
        self.agents: dict[str, AgentRecord] = {}
        self.frameworks: dict[str, FrameworkRecord] = {}
        self.offers: dict[str, OfferRecord] = {}
        self.completed_frameworks: deque[FrameworkRecord] = deque(maxlen=COMPLETED_FRAMEWORKS)
        self.outbox: list[tuple[str, str, object]] = []
        self.allocation_pending = False
        self.counters = {"offers_made": 0, "offers_rescinded": 0, "tasks_launched": 0,
                         "tasks_invalid": 0, "status_updates": 0, "invalid_calls": 0}
        self._next_offer = 0
        self._last_framework_heartbeat = clock()
        # Agents the registry admitted under an earlier leader that have not re-registered
        # with this one yet: agent id -> monotonic deadline.
        self.recovering: dict[str, float] = {}

    # ------------------------------------------------------------------ failover
    def recover(self) -> None:
        """Take over the registry's facts after a master (re)start.

        Frameworks come back disconnected, with the failover deadline their previous leader
        stored, or (if they were connected) their failover timeout counted from now, at least
        :attr:`MasterConfig.framework_reregister_grace`. Admitted agents get
        :attr:`MasterConfig.agent_reregister_timeout` to re-register; their tasks come back
        with them. Role weights and quota are applied to the allocator.
        """
        now, wall = self.clock(), self.wall_clock()
        for role, weight in self.registry.weights().items():
            self.allocator.set_weight(role, weight)
        for role, quota in self.registry.quotas().items():
            self.allocator.set_quota(role, Resources.from_dict(quota))
        for fid, rec in self.registry.frameworks().items():
            if fid in self.frameworks:
                continue
            info = pb.FrameworkInfo(id=fid, name=rec.get("name", ""),
                                    role=rec.get("role") or "*",
                                    weight=float(rec.get("weight") or 1.0),
                                    failover_timeout=float(rec.get("failover_timeout") or 0.0))
            fw = FrameworkRecord(fid, info, connected=False, disconnected_at=now)
            deadline = rec.get("deadline")
            if deadline is None:
                remaining = max(info.failover_timeout, self.config.framework_reregister_grace)
                self.registry.set_failover_deadline(fid, wall + remaining)
            else:
                remaining = float(deadline) - wall
            fw.failover_deadline = now + max(0.0, remaining)
            self.frameworks[fid] = fw
            self.allocator.add_framework(fid, info.role, info.weight)
            self.allocator.deactivate_framework(fid)
        for agent_id in self.registry.agent_ids():
            if agent_id not in self.agents:
                self.recovering[agent_id] = now + self.config.agent_reregister_timeout
        log.info("recovered %d frameworks and %d admitted agents (epoch %d)",
                 len(self.frameworks), len(self.recovering), self.epoch)

    def set_role_weight(self, role: str, weight: Optional[float]) -> None:
        """Set (None: reset) a role's weight, durably."""
        self.allocator.set_weight(role, 1.0 if weight is None else weight)
        self.registry.set_weight(role, weight)
        self.allocation_pending = True

    def set_role_quota(self, role: str, quota: Optional[Resources]) -> None:
        """Set (None: remove) a role's quota, durably."""
        self.allocator.set_quota(role, quota)
        self.registry.set_quota(role, None if quota is None else quota.to_dict())
        self.allocation_pending = True

    # ------------------------------------------------------------------ sending
    def event(self, kind: int, **fields: object) -> "pb.Event":
        return pb.Event(type=kind, epoch=self.epoch, **fields)

    def to_framework(self, framework_id: str, event: "pb.Event") -> None:
        fw = self.frameworks.get(framework_id)
        if fw is not None and fw.connected:
            self.outbox.append(("framework", framework_id, event))

    def to_agent(self, agent_id: str, event: "pb.AgentEvent") -> None:
        agent = self.agents.get(agent_id)
        if agent is not None and agent.connected:
            event.epoch = self.epoch
            self.outbox.append(("agent", agent_id, event))

    def send_status(self, framework_id: str, status: "pb.TaskStatus") -> None:
        self.to_framework(framework_id, self.event(
            pb.Event.UPDATE, update=pb.Event.Update(statuses=[status])))

    def master_status(self, task: TaskRecord, state: int, reason: int, message: str) -> "pb.TaskStatus":
        """A status the master itself makes (no uuid: nothing to acknowledge)."""
        return pb.TaskStatus(task_id=task.task_id, state=state, reason=reason,
                             source=State.MASTER, message=message, agent_id=task.agent_id,
                             executor_id=task.executor_id, timestamp=time.time(),
                             framework_id=task.framework_id)

    # ------------------------------------------------------------------ agents
    def agent_register(self, call: "pb.AgentCall") -> str:
        """Admit an agent (REGISTER) or take it back (REREGISTER); returns its id."""
        reg = call.register
        total = validation.check_resources("agent resources", reg.info.resources)
        now = self.clock()
        agent_id = reg.info.id
        rebooted_from = ""
        if call.type == pb.AgentCall.REREGISTER and agent_id:
            validation.check_id("agent id", agent_id)
        else:
            if reg.previous_agent_id:
                validation.check_id("previous agent id", reg.previous_agent_id)
                rebooted_from = reg.previous_agent_id
            agent_id = self.new_id("agent")
        old = self.agents.get(agent_id)
        was_unreachable = self.unreachable.pop(agent_id, None) is not None
        if old is not None:
            self._detach_agent(old)
        self.recovering.pop(agent_id, None)
        info = pb.AgentInfo()
        info.CopyFrom(reg.info)
        info.id = agent_id
        agent = AgentRecord(agent_id, info, total, last_heartbeat=now, registered_at=now)
        self.agents[agent_id] = agent
        self.registry.admit_agent(agent_id, info.hostname)
        if rebooted_from:
            agent_lifecycle.agent_rebooted(self, rebooted_from)
        used: dict[str, Resources] = {}
        for ex in reg.executors:
            fid = ex.framework_id or ex.info.framework_id
            if fid in self.frameworks:
                res = validation.check_resources("executor resources", ex.info.resources)
                agent.executors[(fid, ex.info.executor_id)] = ExecutorRecord(
                    fid, ex.info.executor_id, ex.info, res)
                used[fid] = used.get(fid, Resources()) + res
        ended: set = set()      # reported terminal: their final update is on its way
        for ts in reg.tasks:
            fw = self.frameworks.get(ts.framework_id)
            if ts.latest.state in TERMINAL:
                ended.add((ts.framework_id, ts.info.task_id))
                continue
            if fw is None:
                # Its framework is gone (removed while the agent was away): kill it there,
                # once the agent's new stream is open.
                self.outbox.append(("agent_after_register", agent_id, pb.AgentEvent(
                    type=pb.AgentEvent.SHUTDOWN_FRAMEWORK, epoch=self.epoch,
                    shutdown_framework=pb.AgentEvent.ShutdownFramework(
                        framework_id=ts.framework_id))))
                continue
            task = fw.tasks.get(ts.info.task_id)
            prior = task.state if task is not None else None
            res = validation.check_resources("task resources", ts.info.resources)
            if task is None:
                task = TaskRecord(ts.framework_id, ts.info.task_id, agent_id,
                                  ts.info.executor.executor_id if ts.info.HasField("executor") else "",
                                  ts.info, res)
                fw.tasks[task.task_id] = task
            task.agent_id = agent_id
            agent_lifecycle.reported_task(self, agent_id, task, prior, ts.latest, was_unreachable)
            agent.tasks[(fw.framework_id, task.task_id)] = task
            used[fw.framework_id] = used.get(fw.framework_id, Resources()) + res
        self.allocator.add_agent(agent_id, total, used)
        # Tasks placed here that the agent no longer has (it restarted, or never got them).
        missing = list(old.tasks.values()) if old is not None else []
        if was_unreachable:
            missing += [t for fw in self.frameworks.values() for t in fw.tasks.values()
                        if t.agent_id == agent_id]
        agent_lifecycle.forget_missing(self, agent, missing, ended)
        if agent_id in self.draining:
            agent.draining = True
            self.allocator.deactivate_agent(agent_id)
            for event in [agent_lifecycle.kill_event(t.framework_id, t.task_id,
                                                     State.AGENT_DRAINING, self.draining[agent_id])
                          for t in agent.tasks.values() if t.state not in TERMINAL]:
                event.epoch = self.epoch
                self.outbox.append(("agent_after_register", agent_id, event))
        self.allocation_pending = True
        return agent_id

    def agent_heartbeat(self, agent_id: str) -> None:
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.last_heartbeat = self.clock()

    def agent_disconnected(self, agent_id: str) -> None:
        """The agent's stream broke: no more offers of it; it has until the heartbeat
        timeout to come back before its tasks are declared unreachable or lost."""
        agent = self.agents.get(agent_id)
        if agent is None or not agent.connected:
            return
        agent.connected = False
        self.allocator.deactivate_agent(agent_id)
        for offer_id in list(agent.offers):
            self.rescind(offer_id)

    def _detach_agent(self, agent: AgentRecord) -> None:
        """Forget an agent record before it is replaced by a re-registration."""
        for offer_id in list(agent.offers):
            self.rescind(offer_id)
        if agent.reachable:
            self.allocator.remove_agent(agent.agent_id)
        for key, task in list(agent.tasks.items()):
            fw = self.frameworks.get(task.framework_id)
            if fw is not None and task.state in TERMINAL:
                fw.tasks.pop(task.task_id, None)

    def mark_unreachable(self, agent: AgentRecord) -> None:
        """Missed too many heartbeats: tasks become UNREACHABLE (partition-aware frameworks)
        or LOST (others), resources are freed and every framework is told the agent is lost."""
        if not agent.reachable:
            return
        agent.reachable = False
        agent.connected = False
        for offer_id in list(agent.offers):
            self.rescind(offer_id)
        self.allocator.remove_agent(agent.agent_id)
        for (fid, tid), task in list(agent.tasks.items()):
            fw = self.frameworks.get(fid)
            if fw is None:
                continue
            state = State.UNREACHABLE if fw.partition_aware else State.LOST
            task.record(state, State.AGENT_UNREACHABLE, "agent missed its heartbeats", time.time())
            self.send_status(fid, self.master_status(task, state, State.AGENT_UNREACHABLE,
                                                     f"agent {agent.agent_id} is unreachable"))
            if state in TERMINAL:
                self._forget_task(task)
        agent.executors.clear()
        agent_lifecycle.remember_unreachable(self, agent.agent_id)
        for fid in self.frameworks:
            self.to_framework(fid, self.event(pb.Event.FAILURE, failure=pb.Event.Failure(
                agent_id=agent.agent_id)))
        del self.agents[agent.agent_id]
        self.registry.remove_agent(agent.agent_id)
        log.warning("agent %s unreachable", agent.agent_id)

    # ------------------------------------------------------------------ status updates
    def agent_update(self, agent_id: str, statuses) -> None:
        acks_for_gone: list = []
        for status in statuses:
            self.counters["status_updates"] += 1
            validation.cap_status_data(status, self.config.max_payload)
            fw = self.frameworks.get(status.framework_id)
            if fw is None:
                if status.uuid:
                    acks_for_gone.append((status.framework_id, pb.Ack(
                        agent_id=agent_id, task_id=status.task_id, uuid=status.uuid)))
                continue
            task = fw.tasks.get(status.task_id)
            if task is not None and task.agent_id == agent_id:
                if task.state not in TERMINAL or status.state in TERMINAL:
                    task.record(status.state, status.reason, status.message, status.timestamp)
                if status.state in TERMINAL:
                    self._forget_task(task)
            status.agent_id = agent_id
            self.send_status(fw.framework_id, status)
        for fid, ack in acks_for_gone:
            # The framework is gone: acknowledge for it so the agent stops retrying.
            self.to_agent(agent_id, pb.AgentEvent(
                type=pb.AgentEvent.ACKNOWLEDGE,
                acknowledge=pb.AgentEvent.Acknowledge(framework_id=fid, acks=[ack])))

    def forget_task(self, task: TaskRecord) -> None:
        """A task reached a terminal state: free its resources, keep it in recent history."""
        self._forget_task(task)

    def drain_agent(self, agent_id: str, grace: Optional[float] = None,
                    reactivate: bool = False) -> int:
        """Operator: drain an agent (see :mod:`substrate.master.agent_lifecycle`) or end a
        drain; returns how many tasks were told to die."""
        if reactivate:
            agent_lifecycle.reactivate(self, agent_id)
            return 0
        return agent_lifecycle.drain(self, agent_id, grace)

    def _forget_task(self, task: TaskRecord) -> None:
        """A task reached a terminal state: free its resources, keep it in recent history."""
        fw = self.frameworks.get(task.framework_id)
        agent = self.agents.get(task.agent_id)
        if agent is not None and agent.tasks.pop((task.framework_id, task.task_id), None):
            if agent.reachable:
                self.allocator.recover(task.framework_id, task.agent_id, task.resources)
                self.allocation_pending = True
        if fw is not None and fw.tasks.get(task.task_id) is task:
            del fw.tasks[task.task_id]
            fw.completed.append(task)
            if len(fw.completed) > COMPLETED_LIMIT:
                del fw.completed[: len(fw.completed) - COMPLETED_LIMIT]

    def agent_executor_exited(self, agent_id: str, msg: "pb.AgentCall.ExecutorExited") -> None:
        agent = self.agents.get(agent_id)
        if agent is None:
            return
        ex = agent.executors.pop((msg.framework_id, msg.executor_id), None)
        if ex is not None and msg.framework_id in self.frameworks:
            self.allocator.recover(msg.framework_id, agent_id, ex.resources)
            self.allocation_pending = True
        self.to_framework(msg.framework_id, self.event(pb.Event.FAILURE, failure=pb.Event.Failure(
            agent_id=agent_id, executor_id=msg.executor_id, status=msg.status)))

    def agent_message(self, agent_id: str, msg: "pb.AgentCall.Message") -> None:
        validation.check_payload("framework message", msg.data, self.config.max_payload)
        self.to_framework(msg.framework_id, self.event(pb.Event.MESSAGE, message=pb.Event.Message(
            agent_id=agent_id, executor_id=msg.executor_id, data=msg.data)))

    # ------------------------------------------------------------------ offers
    def allocate(self) -> None:
        """Turn the allocator's decisions into offers, one OFFERS event per framework."""
        self.allocation_pending = False
        batches: dict[str, list] = {}
        now = self.clock()
        for fid, aid, res in self.allocator.allocate():
            agent, fw = self.agents.get(aid), self.frameworks.get(fid)
            if agent is None or fw is None:
                continue
            self._next_offer += 1
            offer_id = f"{self.master_id}-o{self._next_offer}"
            self.offers[offer_id] = OfferRecord(offer_id, fid, aid, res, now)
            agent.offers.add(offer_id)
            fw.offers.add(offer_id)
            offer = pb.Offer(id=offer_id, framework_id=fid, agent_id=aid,
                             hostname=agent.info.hostname, agent_address=agent.info.address,
                             executor_ids=[eid for (f, eid) in agent.executors if f == fid])
            offer.attributes.update(agent.info.attributes)
            resources_to_pb(res, offer.resources)
            batches.setdefault(fid, []).append(offer)
            self.counters["offers_made"] += 1
        for fid, offers in batches.items():
            self.to_framework(fid, self.event(pb.Event.OFFERS, offers=pb.Event.Offers(offers=offers)))

    def remove_offer(self, offer_id: str) -> Optional[OfferRecord]:
        offer = self.offers.pop(offer_id, None)
        if offer is None:
            return None
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.offers.discard(offer_id)
        fw = self.frameworks.get(offer.framework_id)
        if fw is not None:
            fw.offers.discard(offer_id)
        return offer

    def rescind(self, offer_id: str, refuse_seconds: Optional[float] = None) -> None:
        offer = self.remove_offer(offer_id)
        if offer is None:
            return
        self.counters["offers_rescinded"] += 1
        if offer.agent_id in self.agents and self.agents[offer.agent_id].reachable:
            self.allocator.recover(offer.framework_id, offer.agent_id, offer.resources,
                                   refuse_seconds)
        self.allocation_pending = True
        self.to_framework(offer.framework_id, self.event(
            pb.Event.RESCIND, rescind=pb.Event.Rescind(offer_id=offer_id)))

    # ------------------------------------------------------------------ time
    def tick(self) -> None:
        """Advance timers: unreachable agents, failover deadlines, offer timeouts, heartbeats."""
        now = self.clock()
        timeout = self.config.agent_heartbeat_interval * self.config.agent_max_missed_heartbeats
        for agent in list(self.agents.values()):
            if now - agent.last_heartbeat > timeout:
                self.mark_unreachable(agent)
        # Oldest first: deadlines were set in order with one timeout, so the first one not
        # due ends the scan (a tick must not walk 10,000 recovering agents every second).
        while self.recovering:
            agent_id, deadline = next(iter(self.recovering.items()))
            if now < deadline:
                break
            log.warning("agent %s did not re-register after the failover", agent_id)
            del self.recovering[agent_id]
            self.registry.remove_agent(agent_id)
        for fw in list(self.frameworks.values()):
            if not fw.connected and fw.failover_deadline is not None and now >= fw.failover_deadline:
                log.info("framework %s did not fail over in time; removing it", fw.framework_id)
                self.remove_framework(fw.framework_id)
        if self.config.offer_timeout is not None:
            for offer in list(self.offers.values()):
                if now - offer.created >= self.config.offer_timeout:
                    self.rescind(offer.offer_id)
        if now - self._last_framework_heartbeat >= self.config.framework_heartbeat_interval:
            self._last_framework_heartbeat = now
            for fid in self.frameworks:
                self.to_framework(fid, self.event(pb.Event.HEARTBEAT))
        wake = self.allocator.next_wakeup()
        if wake is not None and wake <= now:
            self.allocation_pending = True

    # ------------------------------------------------------------------ frameworks
    def framework_subscribe(self, info: "pb.FrameworkInfo") -> str:
        validation.check_framework_info(info)
        now = self.clock()
        fid = info.id
        fw = self.frameworks.get(fid) if fid else None
        if fid and fw is None:
            # An id we do not know: a framework removed after its failover timeout, or one
            # from before a master failover that the registry does not hold. Refuse it.
            raise InvalidRequest(f"framework {fid} is unknown (removed or never registered)")
        if fw is not None:
            if fw.connected:
                self.outbox.append(("close_framework", fid, self.event(
                    pb.Event.ERROR, error=pb.Event.Error(
                        message="framework failed over to a new scheduler", fatal=True))))
            fw.info.CopyFrom(info)
            fw.connected, fw.disconnected_at, fw.failover_deadline = True, None, None
            self.registry.set_failover_deadline(fid, None)
            self.allocator.activate_framework(fid)
        else:
            fid = self.new_id("fw")
            stored = pb.FrameworkInfo()
            stored.CopyFrom(info)
            stored.id = fid
            stored.role = info.role or "*"
            stored.weight = info.weight or 1.0
            fw = FrameworkRecord(fid, stored, subscribed_at=now)
            self.frameworks[fid] = fw
            self.registry.add_framework(fid, stored.name, stored.role, stored.weight,
                                        stored.failover_timeout)
            self.allocator.add_framework(fid, stored.role, stored.weight)
        self.allocation_pending = True
        return fid

    def framework_disconnected(self, framework_id: str) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is None or not fw.connected:
            return
        fw.connected = False
        fw.disconnected_at = self.clock()
        fw.failover_deadline = fw.disconnected_at + fw.info.failover_timeout
        self.registry.set_failover_deadline(framework_id,
                                            self.wall_clock() + fw.info.failover_timeout)
        self.allocator.deactivate_framework(framework_id)
        for offer_id in list(fw.offers):
            self.rescind(offer_id)
        log.info("framework %s disconnected; it has %.1f s to fail over", framework_id,
                 fw.info.failover_timeout)
        if fw.info.failover_timeout <= 0:
            self.remove_framework(framework_id)

    def remove_framework(self, framework_id: str) -> None:
        """Teardown: kill its tasks and executors everywhere, free everything it held."""
        fw = self.frameworks.get(framework_id)
        if fw is None:
            return
        for offer_id in list(fw.offers):
            self.remove_offer(offer_id)
        agents_with_work = set()
        for task in list(fw.tasks.values()):
            agents_with_work.add(task.agent_id)
            agent = self.agents.get(task.agent_id)
            if agent is not None:
                agent.tasks.pop((framework_id, task.task_id), None)
            task.record(State.KILLED, State.FRAMEWORK_REMOVED, "framework removed", time.time())
        for agent in self.agents.values():
            for key in [k for k in agent.executors if k[0] == framework_id]:
                agents_with_work.add(agent.agent_id)
                del agent.executors[key]
        for aid in agents_with_work:
            self.to_agent(aid, pb.AgentEvent(
                type=pb.AgentEvent.SHUTDOWN_FRAMEWORK,
                shutdown_framework=pb.AgentEvent.ShutdownFramework(framework_id=framework_id)))
        self.allocator.remove_framework(framework_id)
        fw.connected, fw.removed_at = False, time.time()
        self.completed_frameworks.append(fw)
        del self.frameworks[framework_id]
        self.registry.remove_framework(framework_id)
        self.allocation_pending = True
