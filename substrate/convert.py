"""The edge between wire messages (``substrate.v1``) and the public dataclasses.

Only the drivers and the daemons call these functions; frameworks never see protobufs.
Conversions from the wire validate resources (finite, non-negative), so a bad message
raises :class:`substrate.errors.InvalidRequest` instead of reaching any state.
"""
from __future__ import annotations

from substrate.resources import Resources
from substrate.uris import FetchURI
from substrate.types import (
    AgentInfo, CommandInfo, ExecutorInfo, FrameworkInfo, Offer, Reason, Source, TaskInfo,
    TaskState, TaskStatus,
)
from substrate.v1 import pb


def resources_to_pb(res: Resources, out: "pb.Resources | None" = None) -> "pb.Resources":
    msg = out if out is not None else pb.Resources()
    msg.cpus, msg.mem, msg.disk, msg.gpus = res.cpus, res.mem, res.disk, res.gpus
    for begin, end in res.ports:
        msg.ports.add(begin=begin, end=end)
    return msg


def resources_from_pb(msg: "pb.Resources") -> Resources:
    return Resources(msg.cpus, msg.mem, msg.disk, msg.gpus,
                     tuple((r.begin, r.end) for r in msg.ports))


def command_to_pb(cmd: CommandInfo, out: "pb.CommandInfo") -> None:
    out.value = cmd.value
    out.arguments.extend(cmd.arguments)
    out.shell = cmd.shell
    out.environment.update(cmd.environment)
    for uri in cmd.uris:
        out.uris.add(value=uri.value, sha256=uri.sha256, extract=uri.extract, cache=uri.cache,
                     executable=uri.executable, output_file=uri.output_file)


def command_from_pb(msg: "pb.CommandInfo") -> CommandInfo:
    uris = [FetchURI(u.value, u.sha256, u.extract, u.cache, u.executable, u.output_file)
            for u in msg.uris]
    return CommandInfo(msg.value, list(msg.arguments), msg.shell, dict(msg.environment), uris)


def executor_to_pb(ex: ExecutorInfo, out: "pb.ExecutorInfo") -> None:
    out.executor_id = ex.executor_id
    out.name = ex.name
    command_to_pb(ex.command, out.command)
    resources_to_pb(ex.resources, out.resources)
    out.data = ex.data


def executor_from_pb(msg: "pb.ExecutorInfo") -> ExecutorInfo:
    return ExecutorInfo(msg.executor_id, command_from_pb(msg.command), msg.name,
                        resources_from_pb(msg.resources), msg.data)


def task_to_pb(task: TaskInfo, out: "pb.TaskInfo | None" = None) -> "pb.TaskInfo":
    msg = out if out is not None else pb.TaskInfo()
    msg.task_id, msg.name, msg.agent_id, msg.data = task.task_id, task.name, task.agent_id, task.data
    resources_to_pb(task.resources, msg.resources)
    if task.executor is not None:
        executor_to_pb(task.executor, msg.executor)
    if task.command is not None:
        command_to_pb(task.command, msg.command)
    msg.labels.update(task.labels)
    return msg


def task_from_pb(msg: "pb.TaskInfo") -> TaskInfo:
    return TaskInfo(
        task_id=msg.task_id, agent_id=msg.agent_id, resources=resources_from_pb(msg.resources),
        name=msg.name,
        executor=executor_from_pb(msg.executor) if msg.HasField("executor") else None,
        command=command_from_pb(msg.command) if msg.HasField("command") else None,
        data=msg.data, labels=dict(msg.labels),
    )


def status_from_pb(msg: "pb.TaskStatus") -> TaskStatus:
    return TaskStatus(
        task_id=msg.task_id, state=TaskState(msg.state), reason=Reason(msg.reason),
        source=Source(msg.source), message=msg.message, data=msg.data, agent_id=msg.agent_id,
        executor_id=msg.executor_id, timestamp=msg.timestamp, uuid=msg.uuid,
        framework_id=msg.framework_id,
    )


def status_to_pb(st: TaskStatus, out: "pb.TaskStatus | None" = None) -> "pb.TaskStatus":
    msg = out if out is not None else pb.TaskStatus()
    msg.task_id, msg.state, msg.reason, msg.source = st.task_id, int(st.state), int(st.reason), int(st.source)
    msg.message, msg.data, msg.agent_id, msg.executor_id = st.message, st.data, st.agent_id, st.executor_id
    msg.timestamp, msg.uuid, msg.framework_id = st.timestamp, st.uuid, st.framework_id
    return msg


def offer_from_pb(msg: "pb.Offer") -> Offer:
    return Offer(msg.id, msg.framework_id, msg.agent_id, msg.hostname,
                 resources_from_pb(msg.resources), list(msg.executor_ids),
                 dict(msg.attributes), msg.agent_address)


def framework_to_pb(info: FrameworkInfo, out: "pb.FrameworkInfo | None" = None) -> "pb.FrameworkInfo":
    msg = out if out is not None else pb.FrameworkInfo()
    msg.id, msg.name, msg.role, msg.weight = info.id, info.name, info.role, info.weight
    msg.failover_timeout, msg.user, msg.principal, msg.hostname = (
        info.failover_timeout, info.user, info.principal, info.hostname)
    msg.capabilities.extend(info.capabilities)
    return msg


def framework_from_pb(msg: "pb.FrameworkInfo") -> FrameworkInfo:
    return FrameworkInfo(msg.name, msg.role or "*", msg.weight or 1.0, msg.failover_timeout,
                         msg.user, msg.principal, list(msg.capabilities), msg.hostname, msg.id)


def agent_from_pb(msg: "pb.AgentInfo") -> AgentInfo:
    return AgentInfo(msg.id, msg.hostname, resources_from_pb(msg.resources),
                     dict(msg.attributes), msg.address)
