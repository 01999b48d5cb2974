"""What the agent remembers about a task and an executor, and small message helpers.

This module owns the in-memory records (:class:`Task`, :class:`Executor`) and the helpers that
make agent-sourced statuses and executor events. Behaviour lives in :mod:`substrate.agent.core`
and :mod:`substrate.agent.launcher`.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from substrate.agent.processes import ChildProcess
from substrate.agent.users import TaskUser
from substrate.types import TERMINAL_STATES
from substrate.v1 import pb

TaskKey = tuple[str, str]       # (framework_id, task_id)
ExecutorKey = tuple[str, str]   # (framework_id, executor_id)

#: Wire numbers of the terminal task states.
TERMINAL = frozenset(int(s) for s in TERMINAL_STATES)
#: How long acknowledgements for an executor are held to travel together (seconds) ...
ACK_DELAY = 0.02
#: ... unless this many are waiting.
ACK_BATCH = 1000
#: Wire numbers of the states a live task can be in.
ACTIVE = frozenset(pb.TaskStatus.State.values()) - TERMINAL - {pb.TaskStatus.UNKNOWN}


@dataclass
class Task:
    """A task the agent knows, until its terminal update is acknowledged."""

    info: pb.TaskInfo
    framework_id: str
    executor_id: str = ""                   # "" for a command task the agent runs itself
    state: int = pb.TaskStatus.STAGING
    latest: Optional[pb.TaskStatus] = None
    proc: Optional[ChildProcess] = None     # command tasks only (or an adopted process)
    killing: bool = False
    kill_reason: int = pb.TaskStatus.TASK_KILLED
    kill_timer: Optional[asyncio.TimerHandle] = None    # executor tasks: the kill's grace
    saved_info: str = ""                                # its info as checkpointed (cached)
    saved_latest: tuple = (None, "")                    # (latest, its checkpointed form)
    user: Optional[TaskUser] = None                     # None: the agent's own user


@dataclass
class Executor:
    """A running executor process and the stream of events waiting for it.

    ``events`` survives a broken executor stream: what could not be delivered waits for the
    executor to subscribe again. Each subscription bumps ``session``, which retires the
    writer of the previous stream.
    """

    framework_id: str
    executor_id: str
    info: pb.ExecutorInfo
    token: str
    sandbox: Path
    proc: Optional[ChildProcess] = None     # or an adopted one after an agent restart
    subscribed: bool = False
    shutting_down: bool = False
    closed: bool = False
    session: int = 0
    pending: list[pb.TaskInfo] = field(default_factory=list)   # waiting for SUBSCRIBE
    tasks: set[str] = field(default_factory=set)               # non-terminal task ids
    events: deque = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    registration_timer: Optional[asyncio.TimerHandle] = None
    acks: list = field(default_factory=list)                   # acknowledgements to forward
    ack_timer: Optional[asyncio.TimerHandle] = None
    user: Optional[TaskUser] = None     # who it runs as; None: the agent's own user
    endpoint: str = ""                  # its Unix socket when not the agent's main one

    @property
    def key(self) -> ExecutorKey:
        """``(framework_id, executor_id)``."""
        return (self.framework_id, self.executor_id)

    def push(self, event: pb.ExecutorEvent) -> None:
        """Queue an event for the executor's stream (after any acknowledgements held back)."""
        if not self.closed:
            if self.acks:
                self.flush_acks()
            self.events.append(event)
            self.wake.set()

    def add_acks(self, acks: list[pb.Ack]) -> None:
        """Forward acknowledgements soon, many per ACKNOWLEDGED event.

        The master forwards acks one scheduler call at a time; the executor only needs them to
        free its copies, so they are held for up to :data:`ACK_DELAY` seconds (or until any
        other event is pushed, which keeps the stream's order) and sent together.
        """
        if self.closed:
            return
        self.acks.extend(acks)
        if len(self.acks) >= ACK_BATCH:
            self.flush_acks()
        elif self.ack_timer is None:
            self.ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY, self.flush_acks)

    def flush_acks(self) -> None:
        """Queue one ACKNOWLEDGED event with every held acknowledgement."""
        if self.ack_timer is not None:
            self.ack_timer.cancel()
            self.ack_timer = None
        if self.acks and not self.closed:
            event = executor_event(pb.ExecutorEvent.ACKNOWLEDGED)
            event.acknowledged.acks.extend(self.acks)
            self.events.append(event)
            self.wake.set()
        self.acks = []

    def close(self) -> None:
        """End the executor's stream (its process is gone or the agent is stopping)."""
        self.closed = True
        self.wake.set()
        for timer in (self.registration_timer, self.ack_timer):
            if timer is not None:
                timer.cancel()
        self.registration_timer = self.ack_timer = None


def make_status(agent_id: str, framework_id: str, task_id: str, state: int, reason: int = 0,
                message: str = "", executor_id: str = "",
                uuid: Optional[bytes] = None) -> pb.TaskStatus:
    """An agent-sourced status with a fresh uuid (pass ``uuid=b""`` for an unacknowledged one).

    Examples
    --------
    >>> st = make_status("a1", "fw", "t1", pb.TaskStatus.FAILED, message="boom")
    >>> (st.source == pb.TaskStatus.AGENT, len(st.uuid), st.framework_id)
    (True, 16, 'fw')
    """
    return pb.TaskStatus(
        task_id=task_id, state=state, reason=reason, source=pb.TaskStatus.AGENT,
        message=message, agent_id=agent_id, executor_id=executor_id, timestamp=time.time(),
        uuid=os.urandom(16) if uuid is None else uuid, framework_id=framework_id,
    )


def executor_event(kind: int) -> pb.ExecutorEvent:
    """An empty executor event of the given type."""
    return pb.ExecutorEvent(type=kind)
