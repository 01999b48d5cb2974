"""The agent's brain: tasks, executors and status updates, between two thin gRPC edges.

This module owns what the agent *does* with events: launching command tasks and executors,
queueing tasks until their executor subscribes, kills and framework shutdowns, executor exits,
registration timeouts, and the at-least-once delivery of status updates (through the pure
:class:`~substrate.agent.status_updates.StatusUpdateManager`). It runs on one asyncio loop.

Its seams are deliberately plain, so tests drive it without a master:

* master -> agent: :meth:`AgentCore.handle_master_event` (one ``pb.AgentEvent`` at a time);
* agent -> master: :attr:`AgentCore.outbox` (an ``asyncio.Queue`` of ``pb.AgentCall``), filled
  only while registered on a live link; updates made while disconnected wait in the manager;
* executor <-> agent: :meth:`Launcher.executor_subscribe`, :meth:`AgentCore.executor_call`,
  and each executor's event queue, drained by the gRPC service in :mod:`substrate.agent.daemon`.

It also decides *when* to checkpoint (soon after each change, throttled by the cost of the
last write); what a checkpoint holds is :mod:`substrate.agent.checkpoint`'s business.

Process mechanics (sandboxes, spawning, group kills) are in :mod:`substrate.agent.processes`;
launching, killing and executor lifecycles are in :mod:`substrate.agent.launcher`; the records
and status helpers are in :mod:`substrate.agent.records`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Awaitable, Callable, Optional

from substrate.agent.config import AgentConfig
from substrate.agent.isolation import Isolator, select as select_isolator
from substrate.agent.launcher import Launcher
from substrate.agent.records import (
    TERMINAL, Executor, ExecutorKey, Task, TaskKey, executor_event, make_status,
)
from substrate.agent.status_updates import StatusUpdateManager
from substrate.agent.users import TaskUser
from substrate.convert import resources_to_pb
from substrate.resources import Resources
from substrate.v1 import pb

log = logging.getLogger(__name__)

#: Checkpoints are written at most this often (seconds): a burst of changes costs one write.
CHECKPOINT_INTERVAL = 0.05
# One UPDATE call carries statuses up to about this many bytes (a single larger one goes alone),
# so batches stay well inside the master's gRPC message limit.
UPDATE_BATCH_BYTES = 1024 * 1024
DEFAULT_HEARTBEAT = 15.0

S = pb.TaskStatus


class AgentCore:
    """Tasks, executors and status updates of one agent (see the module docstring).

    Parameters
    ----------
    config : AgentConfig
        Timing, sandbox root and payload limits.
    resources : Resources
        What this agent offers.
    clock : callable
        Monotonic clock for the status-update manager.
    isolator : Isolator or None
        What confines executors; None chooses one from ``config.isolation``.
    """

    def __init__(self, config: AgentConfig, resources: Resources,
                 clock: Callable[[], float] = time.monotonic,
                 isolator: Optional[Isolator] = None) -> None:
        self.config = config
        self.isolator = isolator if isolator is not None else select_isolator(
            config.isolation, config.isolation_poll_interval, config.cgroup_root)
        self.resources = resources
        self.address = ""
        self.executor_endpoint = ""     # "unix:<path>" where executors reach this agent
        # Opens (once) the socket where executors running as another user reach this agent
        # and returns its "unix:<path>"; set by the daemon, which owns the servers.
        self.user_endpoint: Optional[Callable[[TaskUser], Awaitable[str]]] = None
        self.agent_id = ""
        self.previous_agent_id = ""     # set after a reboot: the id whose tasks are gone
        # Writes the checkpoint (set by the daemon; None: no checkpointing, as in unit tests).
        self.checkpointer: Optional[Callable[[], None]] = None
        self._checkpoint_handle: Optional[asyncio.TimerHandle] = None
        self._last_checkpoint = float("-inf")
        self._checkpoint_cost = 0.0
        self.epoch = 0
        self.heartbeat_interval = DEFAULT_HEARTBEAT
        self.registered = asyncio.Event()
        self.outbox: asyncio.Queue[pb.AgentCall] = asyncio.Queue()
        self.on_shutdown: Optional[Callable[[], None]] = None
        self.connected = False
        self.tasks: dict[TaskKey, Task] = {}
        self.executors: dict[ExecutorKey, Executor] = {}
        self.frameworks: dict[str, pb.FrameworkInfo] = {}
        self.updates: StatusUpdateManager[pb.TaskStatus] = StatusUpdateManager(
            config.status_update_retry_initial, config.status_update_retry_max, clock)
        self._clock = clock
        self._flush_pending = False
        self._retry_handle: Optional[asyncio.TimerHandle] = None
        self._retry_at: Optional[float] = None
        self._heartbeat_handle: Optional[asyncio.TimerHandle] = None
        self._closed = False
        self.launcher = Launcher(self)

    # ------------------------------------------------------------------ master link seam

    def agent_info(self) -> pb.AgentInfo:
        """This agent as it presents itself to the master and to its executors."""
        info = pb.AgentInfo(id=self.agent_id, hostname=self.config.hostname,
                            address=self.address, isolation=self.isolator.kind)
        resources_to_pb(self.resources, info.resources)
        info.attributes.update(self.config.attributes)
        return info

    def registration_call(self) -> pb.AgentCall:
        """REGISTER (no id yet) or REREGISTER with every task, executor and framework known."""
        if not self.agent_id:
            call = pb.AgentCall(type=pb.AgentCall.REGISTER, epoch=self.epoch)
            call.register.info.CopyFrom(self.agent_info())
            call.register.previous_agent_id = self.previous_agent_id
            return call
        call = pb.AgentCall(type=pb.AgentCall.REREGISTER, epoch=self.epoch)
        reg = call.register
        reg.info.CopyFrom(self.agent_info())
        for (fid, _), task in self.tasks.items():
            state = reg.tasks.add(framework_id=fid)
            state.info.CopyFrom(task.info)
            if task.latest is not None:
                state.latest.CopyFrom(task.latest)
            else:
                state.latest.CopyFrom(make_status(self.agent_id, fid, task.info.task_id,
                                                  S.STAGING, executor_id=task.executor_id,
                                                  uuid=b""))
        for (fid, _), ex in self.executors.items():
            reg.executors.add(framework_id=fid).info.CopyFrom(ex.info)
        reg.frameworks.extend(self.frameworks.values())
        return call

    def link_lost(self) -> None:
        """The master stream broke: stop sending; updates wait in the manager for the next link."""
        self.connected = False
        self._cancel_timers()
        while not self.outbox.empty():
            self.outbox.get_nowait()

    def send(self, call: pb.AgentCall) -> None:
        """Queue a call for the master; dropped while not registered on a live link."""
        if self.connected and not self._closed:
            call.epoch = self.epoch
            self.outbox.put_nowait(call)

    def handle_master_event(self, event: pb.AgentEvent) -> None:
        """Apply one event from the master. Events of an older epoch are dropped."""
        if event.epoch < self.epoch:
            log.info("dropping %s from old epoch %d (current %d)",
                     pb.AgentEvent.Type.Name(event.type), event.epoch, self.epoch)
            return
        self.epoch = event.epoch
        kind = event.type
        E = pb.AgentEvent
        if kind == E.REGISTERED:
            self._on_registered(event.registered)
        elif kind == E.RUN_TASKS:
            self.launcher.run_tasks(event.run_tasks.framework, event.run_tasks.tasks)
        elif kind == E.KILL_TASK:
            kill = event.kill_task
            self.launcher.kill_task(
                kill.framework_id, kill.task_id,
                kill.grace_period_seconds if kill.HasField("grace_period_seconds") else None,
                kill.reason or S.TASK_KILLED)
        elif kind == E.ACKNOWLEDGE:
            self._on_acknowledge(event.acknowledge)
        elif kind == E.MESSAGE:
            self._on_master_message(event.message)
        elif kind == E.SHUTDOWN_FRAMEWORK:
            self.launcher.shutdown_framework(event.shutdown_framework.framework_id)
        elif kind == E.PING:
            self.send(pb.AgentCall(type=pb.AgentCall.HEARTBEAT))
        elif kind == E.SHUTDOWN:
            log.warning("the master asked this agent to shut down")
            if self.on_shutdown is not None:
                self.on_shutdown()
        else:
            log.warning("ignoring agent event of unknown type %d", kind)

    def _on_registered(self, reg: "pb.AgentEvent.Registered") -> None:
        if self.agent_id and reg.agent_id != self.agent_id:
            log.warning("master gave a new id %s (was %s): killing everything of the old one",
                        reg.agent_id, self.agent_id)
            self.launcher.wipe()
        self.agent_id = reg.agent_id
        self.previous_agent_id = ""
        self.checkpoint_soon()
        self.heartbeat_interval = reg.heartbeat_interval_seconds or DEFAULT_HEARTBEAT
        self.connected = True
        self.registered.set()
        self._schedule_heartbeat()
        statuses = self.updates.resend_all()
        self._send_statuses(statuses)
        self._rearm_retry()
        log.info("registered as %s (epoch %d, %d updates resent)",
                 self.agent_id, self.epoch, len(statuses))

    def _on_acknowledge(self, ack_event: "pb.AgentEvent.Acknowledge") -> None:
        fid = ack_event.framework_id
        forward: dict[ExecutorKey, list[pb.Ack]] = {}
        next_head = False
        for ack in ack_event.acks:
            if ack.agent_id and self.agent_id and ack.agent_id != self.agent_id:
                continue
            key = (fid, ack.task_id)
            done = self.updates.acknowledge(key, ack.uuid)
            if done is None:
                continue    # unknown or old uuid: a duplicate, harmless
            if done.terminal:
                self.tasks.pop(key, None)
                self.checkpoint_soon()
            elif key in self.updates:
                next_head = True    # the task's next update is now outstanding
            status = done.payload
            if status.source == S.EXECUTOR and status.executor_id:
                forward.setdefault((fid, status.executor_id), []).append(ack)
        for ex_key, acks in forward.items():
            ex = self.executors.get(ex_key)
            if ex is not None:
                ex.add_acks(acks)
        if next_head:
            self.schedule_flush()

    def _on_master_message(self, msg: "pb.AgentEvent.Message") -> None:
        ex = self.executors.get((msg.framework_id, msg.executor_id))
        if ex is None:
            log.info("dropping message for unknown executor %s/%s",
                     msg.framework_id, msg.executor_id)
            return
        if len(msg.data) > self.config.max_payload_bytes:
            log.warning("dropping message of %d bytes for %s/%s: above the %d-byte limit",
                        len(msg.data), msg.framework_id, msg.executor_id,
                        self.config.max_payload_bytes)
            return
        ev = executor_event(pb.ExecutorEvent.MESSAGE)
        ev.message.data = msg.data
        ex.push(ev)

    # ------------------------------------------------------------------ status updates

    def update(self, status: pb.TaskStatus) -> bool:
        """Record a new status (agent- or executor-made) and queue it for the master.

        Returns False when it was ignored: the task is already terminal.
        """
        key = (status.framework_id, status.task_id)
        task = self.tasks.get(key)
        if task is not None and task.state in TERMINAL:
            log.debug("ignoring %s for terminal task %s", S.State.Name(status.state), key)
            return False
        terminal = status.state in TERMINAL
        if not self.updates.add(key, status.uuid, terminal, status):
            return False
        if task is not None:
            task.state = status.state
            task.latest = status
            if terminal:
                if task.kill_timer is not None:
                    task.kill_timer.cancel()
                    task.kill_timer = None
                if task.executor_id:
                    ex = self.executors.get((key[0], task.executor_id))
                    if ex is not None:
                        ex.tasks.discard(task.info.task_id)
        self.schedule_flush()
        self.checkpoint_soon()
        return True

    def status(self, framework_id: str, task_id: str, state: int, reason: int = 0,
               message: str = "", executor_id: str = "") -> None:
        """Make an agent-sourced status for a task and :meth:`update` it."""
        self.update(make_status(self.agent_id, framework_id, task_id, state, reason, message,
                                executor_id))

    def schedule_flush(self) -> None:
        """Send due updates soon, once per loop iteration, so they travel in one batch."""
        if not self._flush_pending and not self._closed:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if not self.connected or self._closed:
            return
        self._send_statuses(self.updates.due())
        self._rearm_retry()

    def _send_statuses(self, statuses: list[pb.TaskStatus]) -> None:
        batch: list[pb.TaskStatus] = []
        size = 0
        for st in statuses:
            if batch and size + len(st.data) > UPDATE_BATCH_BYTES:
                self._send_update_call(batch)
                batch, size = [], 0
            batch.append(st)
            size += len(st.data) + 128
        if batch:
            self._send_update_call(batch)

    def _send_update_call(self, statuses: list[pb.TaskStatus]) -> None:
        call = pb.AgentCall(type=pb.AgentCall.UPDATE)
        call.update.statuses.extend(statuses)
        self.send(call)

    def _rearm_retry(self) -> None:
        deadline = self.updates.next_deadline()
        if deadline == self._retry_at and self._retry_handle is not None:
            return
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        self._retry_at = deadline
        if deadline is not None and self.connected:
            delay = max(0.0, deadline - self._clock())
            self._retry_handle = asyncio.get_running_loop().call_later(delay, self._retry_fire)

    def _retry_fire(self) -> None:
        self._retry_handle = None
        self._retry_at = None
        self._flush()

    def _schedule_heartbeat(self) -> None:
        if self._heartbeat_handle is not None:
            self._heartbeat_handle.cancel()
        self._heartbeat_handle = asyncio.get_running_loop().call_later(
            self.heartbeat_interval, self._heartbeat)

    def _heartbeat(self) -> None:
        self._heartbeat_handle = None
        if self.connected and not self._closed:
            self.send(pb.AgentCall(type=pb.AgentCall.HEARTBEAT))
            self._schedule_heartbeat()

    def _cancel_timers(self) -> None:
        for handle in (self._retry_handle, self._heartbeat_handle):
            if handle is not None:
                handle.cancel()
        self._retry_handle = self._heartbeat_handle = None
        self._retry_at = None

    # ------------------------------------------------------------------ executor seam

    def executor_call(self, ex: Executor, call: pb.ExecutorCall) -> None:
        """Apply one call from a subscribed executor's stream."""
        if call.type == pb.ExecutorCall.UPDATE:
            for st in call.update.statuses:
                self._executor_update(ex, st)
        elif call.type == pb.ExecutorCall.MESSAGE:
            data = call.message.data
            if len(data) > self.config.max_payload_bytes:
                self.executor_error(ex, f"framework message of {len(data)} bytes refused: the "
                                        f"limit is {self.config.max_payload_bytes} bytes")
                return
            out = pb.AgentCall(type=pb.AgentCall.MESSAGE)
            out.message.framework_id, out.message.executor_id = ex.framework_id, ex.executor_id
            out.message.data = data
            self.send(out)
        elif call.type == pb.ExecutorCall.SUBSCRIBE:
            log.debug("ignoring a repeated SUBSCRIBE from %s", ex.key)
        else:
            self.executor_error(ex, f"unknown executor call type {call.type}")

    def _executor_update(self, ex: Executor, st: pb.TaskStatus) -> None:
        # An update that will never reach the master is acknowledged back at once, so the
        # executor does not keep (and resend) it forever.
        task = self.tasks.get((ex.framework_id, st.task_id))
        if task is None or task.executor_id != ex.executor_id:
            log.info("executor %s sent an update for unknown task %r", ex.key, st.task_id)
            return self._release(ex, st)
        if len(st.data) > self.config.max_payload_bytes:
            self.executor_error(ex, f"status update for task {st.task_id!r} refused: data of "
                                    f"{len(st.data)} bytes exceeds the limit of "
                                    f"{self.config.max_payload_bytes} bytes")
            return self._release(ex, st)
        if st.state == S.UNKNOWN or st.state not in S.State.values():
            self.executor_error(ex, f"status update for task {st.task_id!r} refused: bad state")
            return self._release(ex, st)
        if not st.uuid:
            st.uuid = os.urandom(16)
        elif self.updates.has((ex.framework_id, st.task_id), st.uuid):
            return   # a resend after the executor reconnected
        st.framework_id, st.executor_id = ex.framework_id, ex.executor_id
        st.agent_id = self.agent_id
        st.source = S.EXECUTOR
        if task.killing and st.state == S.KILLED and not st.reason:
            st.reason = task.kill_reason    # e.g. AGENT_DRAINING, which only the agent knows
        if not st.timestamp:
            st.timestamp = time.time()
        if not self.update(st):
            self._release(ex, st)

    def _release(self, ex: Executor, st: pb.TaskStatus) -> None:
        if st.uuid:
            ex.add_acks([pb.Ack(agent_id=self.agent_id, task_id=st.task_id, uuid=st.uuid)])

    def executor_error(self, ex: Executor, message: str) -> None:
        """Tell an executor that something it sent was refused."""
        log.warning("executor %s: %s", ex.key, message)
        ev = executor_event(pb.ExecutorEvent.ERROR)
        ev.error.message = message
        ex.push(ev)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_soon(self) -> None:
        """Write the checkpoint shortly (at most every :data:`CHECKPOINT_INTERVAL` seconds)."""
        if self.checkpointer is None or self._checkpoint_handle is not None or self._closed:
            return
        # Never spend more than about a tenth of the loop's time on checkpoints, however
        # many tasks there are: the interval grows with the cost of the last write.
        interval = max(CHECKPOINT_INTERVAL, 10 * self._checkpoint_cost)
        delay = max(0.0, self._last_checkpoint + interval - self._clock())
        self._checkpoint_handle = asyncio.get_running_loop().call_later(
            delay, self.checkpoint_now)

    def checkpoint_now(self) -> None:
        """Write the checkpoint at once (a failed write is logged; the agent goes on)."""
        if self._checkpoint_handle is not None:
            self._checkpoint_handle.cancel()
            self._checkpoint_handle = None
        if self.checkpointer is None:
            return
        started = self._last_checkpoint = self._clock()
        try:
            self.checkpointer()
        except OSError:
            log.exception("cannot write the agent checkpoint")
        self._checkpoint_cost = max(0.0, self._clock() - started)

    # ------------------------------------------------------------------ inspection and end

    def snapshot(self) -> dict:
        """A JSON-able picture of executors, tasks and pending updates."""
        return {
            "agent_id": self.agent_id,
            "address": self.address,
            "hostname": self.config.hostname,
            "connected": self.connected,
            "epoch": self.epoch,
            "resources": self.resources.to_dict(),
            "isolation": self.isolator.describe(),
            "frameworks": sorted(self.frameworks),
            "executors": [
                {"framework_id": ex.framework_id, "executor_id": ex.executor_id,
                 "pid": ex.proc.pid if ex.proc else None, "subscribed": ex.subscribed,
                 "sandbox": str(ex.sandbox), "tasks": sorted(ex.tasks),
                 "user": ex.user.name if ex.user is not None else "",
                 "container": _container_view(ex.proc)}
                for ex in self.executors.values()
            ],
            "tasks": [
                {"framework_id": fid, "task_id": tid, "executor_id": t.executor_id,
                 "state": S.State.Name(t.state),
                 "pid": t.proc.pid if t.proc is not None else None,
                 "user": t.user.name if t.user is not None else "",
                 "container": _container_view(t.proc)}
                for (fid, tid), t in self.tasks.items()
            ],
            "pending_status_updates": len(self.updates),
        }

    def close(self) -> None:
        """Stop timers and sending; executors' queues are closed so their streams end."""
        if self._checkpoint_handle is not None:
            self.checkpoint_now()
        self._closed = True
        self.connected = False
        self._cancel_timers()
        for ex in self.executors.values():
            ex.close()



def _container_view(proc) -> Optional[dict]:
    """The container of a live child, for the snapshot (None once released or unisolated)."""
    container = getattr(proc, "container", None)
    if container is None or proc.exited.done():
        return None
    return container.describe()
