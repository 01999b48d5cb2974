"""Handlers for the calls a subscribed scheduler makes (everything but SUBSCRIBE).

Each handler validates before it changes anything. Problems with the call as a whole raise
:class:`substrate.errors.InvalidRequest` (the service answers with an ERROR event); problems
with one task of a LAUNCH give that task ERROR or DROPPED with a reason, and the rest go on.
"""
from __future__ import annotations

import time
from typing import Callable

from substrate.errors import InvalidRequest
from substrate.master import validation
from substrate.framework_status import parse_status
from substrate.master.core import TERMINAL, MasterCore, State
from substrate.master.records import ExecutorRecord, FrameworkRecord, TaskRecord
from substrate.resources import Resources
from substrate.v1 import pb


def handle_call(core: MasterCore, framework_id: str, call: "pb.Call") -> None:
    """Dispatch one call from the scheduler of ``framework_id``."""
    fw = core.frameworks.get(framework_id)
    if fw is None:
        raise InvalidRequest(f"framework {framework_id} is not subscribed")
    if call.framework_id and call.framework_id != framework_id:
        raise InvalidRequest("a call names another framework than its subscription")
    handler = _HANDLERS.get(call.type)
    if handler is None:
        raise InvalidRequest(f"unsupported call type {call.type}")
    handler(core, fw, call)


def _status(task_id: str, agent_id: str, fw: FrameworkRecord, state: int, reason: int,
            message: str) -> "pb.TaskStatus":
    return pb.TaskStatus(task_id=task_id, agent_id=agent_id, state=state, reason=reason,
                         source=State.MASTER, message=message, timestamp=time.time(),
                         framework_id=fw.framework_id)


def _accept(core: MasterCore, fw: FrameworkRecord, call: "pb.Call") -> None:
    accept = call.accept
    refuse = validation.check_refuse_seconds(accept.filters, core.config.refuse_seconds)
    tasks = [t for op in accept.operations if op.type == pb.Call.Operation.LAUNCH for t in op.tasks]
    if any(op.type != pb.Call.Operation.LAUNCH for op in accept.operations):
        raise InvalidRequest("only LAUNCH operations are supported")
    problem = ""
    offers = []
    seen = set()
    for offer_id in accept.offer_ids:
        offer = core.offers.get(offer_id)
        if offer_id in seen:
            problem = f"offer {offer_id} appears twice"
        elif offer is None:
            problem = f"offer {offer_id} is unknown, already used or rescinded"
        elif offer.framework_id != fw.framework_id:
            problem = f"offer {offer_id} belongs to another framework"
        else:
            offers.append(offer)
        seen.add(offer_id)
    if not accept.offer_ids:
        problem = "an ACCEPT must name at least one offer"
    if len({o.agent_id for o in offers}) > 1:
        problem = "offers from more than one agent in one ACCEPT"
    if problem:
        # Mesos semantics: the valid offers are returned to the pool and every task of the
        # call is dropped with INVALID_OFFERS, so the scheduler learns of each one.
        for offer in offers:
            core.remove_offer(offer.offer_id)
            core.allocator.recover(offer.framework_id, offer.agent_id, offer.resources)
        core.allocation_pending = True
        state = State.DROPPED if fw.partition_aware else State.LOST
        for task in tasks:
            core.counters["tasks_invalid"] += 1
            core.send_status(fw.framework_id, _status(
                task.task_id, task.agent_id, fw, state, State.INVALID_OFFERS, problem))
        if not tasks:
            raise InvalidRequest(problem)
        return
    agent_id = offers[0].agent_id
    agent = core.agents[agent_id]
    available = Resources()
    for offer in offers:
        core.remove_offer(offer.offer_id)
        available = available + offer.resources
    launched = []
    batch_ids = set()
    for task in tasks:
        try:
            res = validation.check_task(task, agent_id, core.config.max_payload)
            if task.task_id in fw.tasks or task.task_id in batch_ids:
                raise InvalidRequest(f"task id {task.task_id} is already in use")
            need = res
            executor_id = ""
            if task.HasField("executor"):
                executor_id = task.executor.executor_id
                known = agent.executors.get((fw.framework_id, executor_id))
                if known is None:
                    need = need + validation.check_resources("executor", task.executor.resources)
                elif known.info.command != task.executor.command:
                    raise InvalidRequest(
                        f"executor {executor_id} is already running with another command")
            if not available.contains(need):
                raise InvalidRequest(
                    f"task {task.task_id} needs {need} but the offers hold only {available}")
        except InvalidRequest as exc:
            core.counters["tasks_invalid"] += 1
            core.send_status(fw.framework_id, _status(
                task.task_id, task.agent_id, fw, State.ERROR, State.TASK_INVALID, str(exc)))
            continue
        available = available - need
        batch_ids.add(task.task_id)
        if executor_id and (fw.framework_id, executor_id) not in agent.executors:
            ex_res = need - res
            agent.executors[(fw.framework_id, executor_id)] = ExecutorRecord(
                fw.framework_id, executor_id, task.executor, ex_res)
        record = TaskRecord(fw.framework_id, task.task_id, agent_id, executor_id, task, res)
        record.record(State.STAGING, 0, "", time.time())
        fw.tasks[task.task_id] = record
        agent.tasks[(fw.framework_id, task.task_id)] = record
        launched.append(task)
    if launched:
        core.counters["tasks_launched"] += len(launched)
        core.to_agent(agent_id, pb.AgentEvent(
            type=pb.AgentEvent.RUN_TASKS,
            run_tasks=pb.AgentEvent.RunTasks(framework=fw.info, tasks=launched)))
    if not available.is_empty():
        core.allocator.recover(fw.framework_id, agent_id, available, refuse)
        core.allocation_pending = True


def _decline(core: MasterCore, fw: FrameworkRecord, call: "pb.Call") -> None:
    refuse = validation.check_refuse_seconds(call.decline.filters, core.config.refuse_seconds)
    for offer_id in call.decline.offer_ids:
        offer = core.offers.get(offer_id)
        if offer is None or offer.framework_id != fw.framework_id:
            continue  # declining a stale offer is harmless
        core.remove_offer(offer_id)
        core.allocator.recover(fw.framework_id, offer.agent_id, offer.resources, refuse)
    core.allocation_pending = True


def _revive(core: MasterCore, fw: FrameworkRecord, call: "pb.Call") -> None:
    fw.suppressed = False
    core.allocator.revive(fw.framework_id)
    core.allocation_pending = True


def _suppress(core: MasterCore, fw: FrameworkRecord, call: "pb.Call") -> None:
    fw.suppressed = True
    core.allocator.suppress(fw.framework_id)


def _kill(core: MasterCore, fw: FrameworkRecord, call: "pb.Call") -> None:
    task_id = call.kill.task_id
    validation.check_id("task id", task_id)
    task = fw.tasks.get(task_id)
    if task is None:
        state = State.UNKNOWN if fw.partition_aware else State.LOST
        core.send_status(fw.framework_id, _status(
            task_id, call.kill.agent_id, fw, state, State.TASK_UNKNOWN, "no such task"))
        return
    core.to_agent(task.agent_id, pb.AgentEvent(
        type=pb.AgentEvent.KILL_TASK,
        kill_task=pb.AgentEvent.KillTask(framework_id=fw.framework_id, task_id=task_id)))


def _acknowledge(core: MasterCore, fw: FrameworkRecord, call: "pb.Call") -> None:
    per_agent: dict[str, list] = {}
    for ack in call.acknowledge.acks:
        if not ack.uuid:
            raise InvalidRequest(f"acknowledgement of task {ack.task_id} has no uuid")
        if ack.agent_id in core.agents:
            per_agent.setdefault(ack.agent_id, []).append(ack)
    for agent_id, acks in per_agent.items():
        core.to_agent(agent_id, pb.AgentEvent(
            type=pb.AgentEvent.ACKNOWLEDGE,
            acknowledge=pb.AgentEvent.Acknowledge(framework_id=fw.framework_id, acks=acks)))


def _reconcile(core: MasterCore, fw: FrameworkRecord, call: "pb.Call") -> None:
    statuses = []
    if not call.reconcile.tasks:
        tasks = list(fw.tasks.values())
        for task in tasks:
            statuses.append(_latest(fw, task))
    else:
        for item in call.reconcile.tasks:
            if item.agent_id and item.agent_id in core.recovering:
                continue  # its agent may still re-register with it: no answer yet (Mesos)
            task = fw.tasks.get(item.task_id)
            if task is not None:
                statuses.append(_latest(fw, task))
                continue
            done = next((t for t in reversed(fw.completed) if t.task_id == item.task_id), None)
            if done is not None:
                statuses.append(_latest(fw, done))
            else:
                state = State.UNKNOWN if fw.partition_aware else State.LOST
                statuses.append(_status(item.task_id, item.agent_id, fw, state,
                                        State.RECONCILIATION, "task unknown to the master"))
    if statuses:
        core.to_framework(fw.framework_id, core.event(
            pb.Event.UPDATE, update=pb.Event.Update(statuses=statuses)))


def _latest(fw: FrameworkRecord, task: TaskRecord) -> "pb.TaskStatus":
    return pb.TaskStatus(task_id=task.task_id, agent_id=task.agent_id, state=task.state,
                         reason=State.RECONCILIATION, source=State.MASTER, message=task.message,
                         executor_id=task.executor_id, timestamp=time.time(),
                         framework_id=fw.framework_id)


def _message(core: MasterCore, fw: FrameworkRecord, call: "pb.Call") -> None:
    msg = call.message
    validation.check_payload("framework message", msg.data, core.config.max_payload)
    if msg.agent_id not in core.agents:
        raise InvalidRequest(f"agent {msg.agent_id} is unknown")
    core.to_agent(msg.agent_id, pb.AgentEvent(
        type=pb.AgentEvent.MESSAGE, message=pb.AgentEvent.Message(
            framework_id=fw.framework_id, executor_id=msg.executor_id, data=msg.data)))


def _teardown(core: MasterCore, fw: FrameworkRecord, call: "pb.Call") -> None:
    core.outbox.append(("close_framework", fw.framework_id, None))
    core.remove_framework(fw.framework_id)


def _publish_status(core: MasterCore, fw: FrameworkRecord, call: "pb.Call") -> None:
    fw.status = parse_status(call.status.json)
    fw.status_time = time.time()


_HANDLERS: dict[int, Callable[[MasterCore, FrameworkRecord, "pb.Call"], None]] = {
    pb.Call.ACCEPT: _accept,
    pb.Call.DECLINE: _decline,
    pb.Call.REVIVE: _revive,
    pb.Call.SUPPRESS: _suppress,
    pb.Call.KILL: _kill,
    pb.Call.ACKNOWLEDGE: _acknowledge,
    pb.Call.RECONCILE: _reconcile,
    pb.Call.MESSAGE: _message,
    pb.Call.TEARDOWN: _teardown,
    pb.Call.PUBLISH_STATUS: _publish_status,
}

__all__ = ["handle_call", "TERMINAL"]
