"""The pure status-update manager: ordering, acknowledgement, retries, forgetting, resending."""
from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from substrate.agent.status_updates import StatusUpdateManager

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(initial: float = 10.0, maximum: float = 80.0) -> tuple[StatusUpdateManager, Clock]:
    clock = Clock()
    return StatusUpdateManager(initial, maximum, clock), clock


def test_only_the_head_is_sent_and_order_is_kept():
    m, clock = make()
    key = ("fw", "t")
    for i, terminal in enumerate([False, False, True]):
        assert m.add(key, bytes([i]), terminal, f"s{i}")
    assert m.due() == ["s0"]
    assert m.due() == []
    assert m.acknowledge(key, b"\x00").terminal is False
    assert m.due() == ["s1"]
    assert m.acknowledge(key, b"\x01") is not None
    assert m.due() == ["s2"]
    assert m.pending(key) == ["s2"]


def test_streams_of_different_tasks_are_independent():
    m, _ = make()
    m.add(("fw", "a"), b"a1", False, "a1")
    m.add(("fw", "a"), b"a2", False, "a2")
    m.add(("fw", "b"), b"b1", False, "b1")
    assert sorted(m.due()) == ["a1", "b1"]
    assert sorted(uuid for _, uuid in m.outstanding()) == [b"a1", b"b1"]


def test_retry_schedule_doubles_and_is_capped():
    m, clock = make(initial=10, maximum=40)
    m.add(("fw", "t"), b"u", False, "s")
    sends = []
    start = clock.now
    for _ in range(400):
        if m.due():
            sends.append(clock.now - start)
        clock.now += 1
    gaps = [b - a for a, b in zip(sends, sends[1:])]
    assert sends[0] == 0
    assert gaps[:4] == [10, 20, 40, 40]
    assert all(g == 40 for g in gaps[2:])


def test_next_deadline_follows_the_schedule():
    m, clock = make(initial=10, maximum=40)
    assert m.next_deadline() is None
    m.add(("fw", "t"), b"u", False, "s")
    assert m.next_deadline() == clock.now
    m.due()
    assert m.next_deadline() == clock.now + 10
    m.acknowledge(("fw", "t"), b"u")
    assert m.next_deadline() is None


def test_wrong_and_duplicate_acks_are_ignored():
    m, _ = make()
    key = ("fw", "t")
    m.add(key, b"u1", False, "s1")
    m.add(key, b"u2", True, "s2")
    assert m.acknowledge(key, b"u2") is None       # not the head
    assert m.acknowledge(key, b"nope") is None
    assert m.acknowledge(("fw", "other"), b"u1") is None
    assert m.acknowledge(key, b"u1") is not None
    assert m.acknowledge(key, b"u1") is None       # duplicate
    assert m.pending(key) == ["s2"]


def test_forgotten_after_terminal_ack_and_nothing_after_terminal():
    m, _ = make()
    key = ("fw", "t")
    m.add(key, b"u1", True, "done")
    assert not m.add(key, b"u2", False, "late")   # a task has exactly one terminal update
    assert not m.add(key, b"u1", True, "dup")
    acked = m.acknowledge(key, b"u1")
    assert acked is not None and acked.terminal and acked.payload == "done"
    assert key not in m and len(m) == 0
    assert m.due() == [] and m.next_deadline() is None


def test_duplicate_uuid_is_not_queued_twice():
    m, _ = make()
    key = ("fw", "t")
    assert m.add(key, b"u1", False, "s1")
    assert not m.add(key, b"u1", False, "s1 again")
    assert m.has(key, b"u1") and not m.has(key, b"u2")
    assert m.pending(key) == ["s1"]


def test_resend_all_sends_every_head_and_restarts_timers():
    m, clock = make(initial=10, maximum=80)
    for t in "abc":
        m.add(("fw", t), t.encode() + b"1", False, t + "1")
        m.add(("fw", t), t.encode() + b"2", False, t + "2")
    m.due()
    clock.now += 35
    assert sorted(m.resend_all()) == ["a1", "b1", "c1"]
    assert m.due() == []
    clock.now += 10
    assert sorted(m.due()) == ["a1", "b1", "c1"]


def test_remove_framework_and_clear():
    m, _ = make()
    m.add(("fw1", "t"), b"1", False, "x")
    m.add(("fw2", "t"), b"2", False, "y")
    assert m.remove_framework("fw1") == 1
    assert m.due() == ["y"]
    m.clear()
    assert len(m) == 0 and m.due() == [] and m.next_deadline() is None


def test_rejects_bad_retry_settings():
    with pytest.raises(ValueError):
        StatusUpdateManager(0, 10)
    with pytest.raises(ValueError):
        StatusUpdateManager(10, 5)


KEYS = [("fw", "t0"), ("fw", "t1"), ("fw2", "t0")]
INITIAL, MAXIMUM = 4.0, 20.0


class ManagerMachine(RuleBasedStateMachine):
    """Model: per task a list of (uuid, terminal, payload) and the time each head is due."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.m: StatusUpdateManager = StatusUpdateManager(INITIAL, MAXIMUM, self.clock)
        self.model: dict = {k: [] for k in KEYS}
        self.terminated: set = set()         # keys whose terminal update was queued
        self.forgotten: set = set()
        self.counter = 0
        self.last_sent: dict = {}            # key -> (time, interval) of head sends
        self.head_since: dict = {}           # key -> when its current head became the head

    def _fresh(self) -> bytes:
        self.counter += 1
        return self.counter.to_bytes(4, "big")

    @rule(key=st.sampled_from(KEYS), terminal=st.booleans())
    def add(self, key, terminal):
        uuid = self._fresh()
        ok = self.m.add(key, uuid, terminal, (key, uuid))
        if key in self.forgotten:             # forgotten: a new add starts a fresh stream
            self.forgotten.discard(key)
            self.terminated.discard(key)
        if key in self.terminated:
            assert not ok
            return
        assert ok
        if not self.model[key]:
            self.last_sent.pop(key, None)
            self.head_since[key] = self.clock.now
        self.model[key].append((uuid, terminal))
        if terminal:
            self.terminated.add(key)

    @rule(key=st.sampled_from(KEYS))
    def duplicate_add(self, key):
        if self.model[key]:
            uuid = self.model[key][-1][0]
            assert not self.m.add(key, uuid, False, "dup")

    @rule(key=st.sampled_from(KEYS), which=st.integers(0, 3))
    def ack(self, key, which):
        queue = self.model[key]
        if not queue:
            assert self.m.acknowledge(key, b"zz") is None
            return
        uuid = queue[min(which, len(queue) - 1)][0]
        result = self.m.acknowledge(key, uuid)
        if uuid != queue[0][0]:
            assert result is None                    # only the head can be acknowledged
            return
        assert result is not None and result.payload == (key, uuid)
        _, terminal = queue.pop(0)
        assert result.terminal == terminal
        self.last_sent.pop(key, None)
        self.head_since[key] = self.clock.now
        if terminal:
            self.forgotten.add(key)
            assert key not in self.m
        assert self.m.acknowledge(key, uuid) is None  # duplicates are harmless

    @rule(dt=st.sampled_from([0.0, 1.0, 3.9, 4.0, 7.5, 16.0, 25.0]))
    def tick(self, dt):
        self.clock.now += dt
        sent = self.m.due()
        keys = [p[0] for p in sent]
        assert len(keys) == len(set(keys))           # at most one per task
        for key, uuid in sent:
            assert self.model[key] and self.model[key][0][0] == uuid   # exactly the head
            prev = self.last_sent.get(key)
            if prev is not None:
                at, interval = prev
                assert self.clock.now >= at + interval   # never early
                interval = min(interval * 2, MAXIMUM)
            else:
                interval = INITIAL
            self.last_sent[key] = (self.clock.now, interval)
        following = self.m.next_deadline()
        assert following is None or following > self.clock.now   # nothing overdue is left

    @precondition(lambda self: any(self.model.values()))
    @rule()
    def reconnect(self):
        sent = self.m.resend_all()
        heads = {(k, q[0][0]) for k, q in self.model.items() if q}
        assert set(sent) == heads
        for key, _ in sent:
            self.last_sent[key] = (self.clock.now, INITIAL)

    @invariant()
    def outstanding_is_exactly_the_heads(self):
        heads = {(k, q[0][0]) for k, q in self.model.items() if q}
        assert set(self.m.outstanding()) == heads
        assert len(self.m) == len(heads)

    @invariant()
    def next_deadline_matches_the_model(self):
        expected = []
        for key, queue in self.model.items():
            if queue:
                sent = self.last_sent.get(key)
                expected.append(sent[0] + sent[1] if sent else self.head_since[key])
        assert self.m.next_deadline() == (min(expected) if expected else None)


ManagerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                            deadline=None)
TestManagerStateMachine = ManagerMachine.TestCase
