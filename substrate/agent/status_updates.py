"""The agent's at-least-once status-update manager: a pure state machine.

This module owns the delivery rules for task status updates between an agent and the master:

* one FIFO stream per ``(framework_id, task_id)``; updates of a task are delivered in order;
* only the *head* of each stream is outstanding: it is (re)sent until the master forwards the
  scheduler's acknowledgement for exactly its uuid, then the next update becomes the head;
* retries back off from ``retry_initial`` doubling up to ``retry_max``;
* an acknowledgement for an unknown or old uuid is ignored, so duplicates are harmless;
* after a *terminal* update is acknowledged the task's stream is forgotten;
* after a reconnection every outstanding head is resent at once (:meth:`resend_all`).

It does no I/O and reads time only from the injected clock: events go in (:meth:`add`,
:meth:`acknowledge`), actions come out (the payloads returned by :meth:`due` and
:meth:`resend_all`, to be sent by the caller). Payloads are opaque to it; the agent stores
``pb.TaskStatus`` messages. Sending, batching and timers belong to :mod:`substrate.agent.core`.
"""
from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, Iterator, Optional, TypeVar

P = TypeVar("P")
Key = tuple[str, str]  # (framework_id, task_id)


@dataclass
class _Entry(Generic[P]):
    uuid: bytes
    terminal: bool
    payload: P


@dataclass
class _Stream(Generic[P]):
    entries: deque = field(default_factory=deque)
    deadline: float = 0.0     # when the head is to be (re)sent next
    backoff: float = 0.0      # the wait after the next send
    generation: int = 0       # invalidates stale heap entries


@dataclass(frozen=True)
class Acked(Generic[P]):
    """The result of an acknowledgement that matched a stream's head."""

    payload: P
    terminal: bool
    """True when the task is now forgotten (its terminal update was acknowledged)."""


class StatusUpdateManager(Generic[P]):
    """Per-task FIFO streams of status updates with acknowledgement and retries.

    Parameters
    ----------
    retry_initial : float
        Seconds between the first send of a head and its first retry.
    retry_max : float
        Cap of the doubling retry interval.
    clock : callable, optional
        Monotonic time source (default :func:`time.monotonic`); tests inject a fake one.

    Examples
    --------
    >>> now = [0.0]
    >>> m = StatusUpdateManager(retry_initial=10, retry_max=40, clock=lambda: now[0])
    >>> m.add(("fw", "t1"), b"u1", terminal=False, payload="RUNNING")
    True
    >>> m.add(("fw", "t1"), b"u2", terminal=True, payload="FINISHED")
    True
    >>> m.due()          # only the head of the stream is outstanding
    ['RUNNING']
    >>> m.due()          # not due again before the retry interval
    []
    >>> now[0] = 10.0; m.due()
    ['RUNNING']
    >>> m.acknowledge(("fw", "t1"), b"u2") is None   # not the head: ignored
    True
    >>> m.acknowledge(("fw", "t1"), b"u1").terminal
    False
    >>> m.due()
    ['FINISHED']
    >>> m.acknowledge(("fw", "t1"), b"u2").terminal  # forgotten
    True
    >>> len(m)
    0
    """

    def __init__(self, retry_initial: float = 10.0, retry_max: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if retry_initial <= 0 or retry_max < retry_initial:
            raise ValueError("need 0 < retry_initial <= retry_max")
        self.retry_initial = float(retry_initial)
        self.retry_max = float(retry_max)
        self._clock = clock
        self._streams: dict[Key, _Stream[P]] = {}
        self._heap: list[tuple[float, int, Key, int]] = []
        self._seq = itertools.count()

    # ------------------------------------------------------------------ events in

    def add(self, key: Key, uuid: bytes, terminal: bool, payload: P) -> bool:
        """Queue an update at the tail of its task's stream.

        Returns False (and queues nothing) for a duplicate uuid already in the stream, or when
        the stream already ends with a terminal update: a task has exactly one terminal update.
        A new head is due at once.
        """
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
        else:
            if stream.entries and stream.entries[-1].terminal:
                return False
            if any(e.uuid == uuid for e in stream.entries):
                return False
        stream.entries.append(_Entry(uuid, terminal, payload))
        if len(stream.entries) == 1:
            self._schedule(key, stream, self._clock(), self.retry_initial)
        return True

    def acknowledge(self, key: Key, uuid: bytes) -> Optional[Acked[P]]:
        """Apply an acknowledgement; None when it does not match the head (ignored)."""
        stream = self._streams.get(key)
        if stream is None or not stream.entries or stream.entries[0].uuid != uuid:
            return None
        head = stream.entries.popleft()
        if head.terminal or not stream.entries:
            del self._streams[key]
        else:
            self._schedule(key, stream, self._clock(), self.retry_initial)
        return Acked(head.payload, head.terminal)

    def remove_framework(self, framework_id: str) -> int:
        """Forget every stream of a framework; returns how many streams were dropped."""
        keys = [k for k in self._streams if k[0] == framework_id]
        for k in keys:
            del self._streams[k]
        return len(keys)

    def clear(self) -> None:
        """Forget everything (the agent was given a new identity)."""
        self._streams.clear()
        self._heap.clear()

    # ------------------------------------------------------------------ actions out

    def due(self, now: Optional[float] = None) -> list[P]:
        """Heads that are to be sent now, in deadline order; each is rescheduled with backoff."""
        now = self._clock() if now is None else now
        out: list[P] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, key, generation = heapq.heappop(heap)
            stream = self._streams.get(key)
            if stream is None or stream.generation != generation or not stream.entries:
                continue
            out.append(stream.entries[0].payload)
            self._schedule(key, stream, now + stream.backoff,
                           min(stream.backoff * 2, self.retry_max))
        return out

    def resend_all(self, now: Optional[float] = None) -> list[P]:
        """Every outstanding head, for a fresh connection; their retry timers restart."""
        now = self._clock() if now is None else now
        out: list[P] = []
        for key, stream in self._streams.items():
            out.append(stream.entries[0].payload)
            self._schedule(key, stream, now + self.retry_initial,
                           min(self.retry_initial * 2, self.retry_max))
        return out

    def next_deadline(self) -> Optional[float]:
        """When :meth:`due` will next return something (None: nothing outstanding)."""
        heap = self._heap
        while heap:
            _, _, key, generation = heap[0]
            stream = self._streams.get(key)
            if stream is not None and stream.generation == generation and stream.entries:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    # ------------------------------------------------------------------ inspection

    def __len__(self) -> int:
        """How many tasks have updates pending."""
        return len(self._streams)

    def __contains__(self, key: object) -> bool:
        return key in self._streams

    def pending(self, key: Key) -> list[P]:
        """The payloads queued for one task, head first."""
        stream = self._streams.get(key)
        return [e.payload for e in stream.entries] if stream else []

    def all_pending(self) -> Iterator[tuple[Key, P]]:
        """``(key, payload)`` of every queued update, each task's in order (for checkpoints)."""
        for key, stream in self._streams.items():
            for entry in stream.entries:
                yield key, entry.payload

    def outstanding(self) -> Iterator[tuple[Key, bytes]]:
        """``(key, uuid)`` of every stream head (the updates awaiting acknowledgement)."""
        for key, stream in self._streams.items():
            yield key, stream.entries[0].uuid

    def has(self, key: Key, uuid: bytes) -> bool:
        """True when ``uuid`` is queued (outstanding or waiting) for ``key``."""
        stream = self._streams.get(key)
        return stream is not None and any(e.uuid == uuid for e in stream.entries)

    # ------------------------------------------------------------------ internals

    def _schedule(self, key: Hashable, stream: _Stream[P], deadline: float, backoff: float) -> None:
        # A global sequence number, not a per-stream counter: a stream that is forgotten and
        # created again must not revive heap entries of its previous life.
        stream.generation = next(self._seq)
        stream.deadline = deadline
        stream.backoff = backoff
        heapq.heappush(self._heap, (deadline, stream.generation, key, stream.generation))  # type: ignore[arg-type]
