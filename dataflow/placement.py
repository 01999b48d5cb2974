"""Where dataflow tasks run: the substrate callbacks that turn offers into executor launches.

:class:`_OfferScheduler` is the ``substrate.Scheduler`` of :class:`~dataflow.cluster_backend.
ClusterBackend`. It holds no state of its own beyond counters: the queue of pending tasks, the
running ones and the live executors are the backend's :class:`_State`, guarded by the backend's
lock (the callbacks run on the driver's thread, the DAG scheduler calls the backend from its
own). It places queued tasks on offers (one ``python -m dataflow.executor`` per cpu slot, reused
for every later task; delay scheduling for locality), turns terminal statuses into raw events on
the backend's queue, and reports the map-output locations of a lost agent. What those events
mean for the job is the DAG scheduler's business.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import substrate

from .executor import sign
from .remote_fetch import parse_location
from .tasks import Task

if TYPE_CHECKING:
    from .cluster_backend import ClusterBackend

log = logging.getLogger("dataflow.cluster")

EXECUTOR_RESOURCES = substrate.Resources(cpus=0.1, mem=64)
#: Tasks an executor holds at once; more would queue the next task behind the running one
#: (no offer round trip between them) but a task that kills its executor would then take the
#: queued one down too, and the in-process cluster is CPU-bound anyway (measured: no gain).
DEPTH = 1
TASK_RESOURCES = substrate.Resources(cpus=0.8, mem=128)
SLOT_RESOURCES = EXECUTOR_RESOURCES
for _ in range(DEPTH):
    SLOT_RESOURCES = SLOT_RESOURCES + TASK_RESOURCES
#: How long a task waits for a busy executor holding its input before going elsewhere.
LOCALITY_WAIT = 0.2
#: A declined offer may come back this soon (new work revives earlier anyway).
DECLINE_SECONDS = 1.0


@dataclass
class _Exec:
    executor_id: str
    agent_id: str
    agent_address: str
    location: str
    tasks: set = field(default_factory=set)   # substrate task ids running or queued there
    pid: int = 0


@dataclass
class _Pending:
    stid: str
    task: Task | None             # None: a warm-up that only starts the executor
    data: bytes
    prefs: tuple = ()
    queued_at: float = 0.0


@dataclass
class _Running:
    task_id: int | None
    executor_id: str
    agent_id: str
    agent_address: str
    item: _Pending | None = None
    started: bool = False


@dataclass
class _State:
    pending: deque = field(default_factory=deque)
    running: dict = field(default_factory=dict)          # stid -> _Running
    by_task: dict = field(default_factory=dict)          # dataflow task id -> stid
    executors: dict = field(default_factory=dict)        # executor id -> _Exec
    killed: set = field(default_factory=set)
    locations: dict = field(default_factory=dict)        # agent id -> set of locations
    outstanding: int = 0
    suppressed: bool = False
    declined: bool = False    # an offer was declined (filtered) while tasks were queued
    requeued: set = field(default_factory=set)          # dataflow task ids put back once



class _OfferScheduler(substrate.Scheduler):
    """The substrate callbacks of :class:`ClusterBackend` (they run on the driver's thread)."""

    def __init__(self, backend: ClusterBackend) -> None:
        self.b = backend
        self.changed = threading.Condition(backend._lock)
        self.results_deleted = 0
        self._exec_ids = itertools.count()
        self._timer: threading.Timer | None = None
        self.broadcasts_sent = 0

    # -- offers ---------------------------------------------------------------------------
    def resource_offers(self, driver: substrate.SchedulerDriver, offers: list) -> None:
        b = self.b
        with b._lock:
            st = b._state
            for offer in offers:
                batch = self._place(offer) if st.pending else []
                if batch:
                    driver.launch_tasks(offer.id, batch)
                else:
                    st.declined = st.declined or bool(st.pending)
                    driver.decline_offer(offer.id, substrate.Filters(
                        refuse_seconds=DECLINE_SECONDS if st.pending else 300.0))
            if not st.pending and not st.suppressed:
                st.suppressed = True
                driver.suppress_offers()

    def _place(self, offer: substrate.Offer) -> list:
        b, st = self.b, self.b._state
        free = offer.resources
        batch: list[substrate.TaskInfo] = []
        if b.max_executors is not None and len(st.executors) >= b.max_executors:
            st.pending = deque(p for p in st.pending if p.task is not None)  # no more warm-ups
        mine = [e for e in st.executors.values() if e.agent_id == offer.agent_id]
        while st.pending:
            open_ = [e for e in mine if len(e.tasks) < DEPTH]
            ex = min(open_, key=lambda e: len(e.tasks)) if open_ else None
            if ex is not None and free.contains(TASK_RESOURCES):
                item = self._pick(ex)
                if item is None:
                    mine.remove(ex)  # nothing it may run now: look at the other executors
                    continue
            elif (b.max_executors is None or len(st.executors) < b.max_executors) and \
                    free.contains(SLOT_RESOURCES):
                ex = self._new_executor(offer)
                mine.append(ex)
                free = free - EXECUTOR_RESOURCES
                item = self._pick(ex, fresh=True)
                if item is None:  # the new executor starts with a warm-up instead
                    item = _Pending(f"warm-{next(b._ids)}", None, b"")
            else:
                break
            free = free - TASK_RESOURCES
            ex.tasks.add(item.stid)
            task_id = item.task.task_id if item.task is not None else None
            st.running[item.stid] = _Running(task_id, ex.executor_id, ex.agent_id,
                                             ex.agent_address, item)
            info = substrate.ExecutorInfo(
                executor_id=ex.executor_id, name=b._executor_info.name,
                command=b._executor_info.command, resources=EXECUTOR_RESOURCES)
            batch.append(substrate.TaskInfo(
                task_id=item.stid, agent_id=offer.agent_id, resources=TASK_RESOURCES,
                name=f"dataflow {item.stid}", executor=info, data=item.data))
        return batch

    def _pick(self, ex: _Exec, fresh: bool = False) -> _Pending | None:
        """The first queued task preferring this executor, else this agent, else the oldest
        one that may run anywhere (delay scheduling: a task whose preferred executor is alive
        waits for it up to :data:`LOCALITY_WAIT`). Warm-ups go to new executors only."""
        st = self.b._state
        if fresh:
            for i, item in enumerate(st.pending):
                if item.task is None:
                    del st.pending[i]
                    return item
        same_agent = anywhere = None
        now = time.monotonic()
        for i, item in enumerate(st.pending):
            if item.task is None:
                continue
            if ex.location in item.prefs:
                anywhere = same_agent = i
                break
            if same_agent is None and any(parse_location(p)[1] == ex.agent_address
                                          for p in item.prefs):
                same_agent = i
            if anywhere is None and (now - item.queued_at >= LOCALITY_WAIT
                                     or not self._waits_for_executor(item)):
                anywhere = i
        i = same_agent if same_agent is not None else anywhere
        if i is None:
            self._arm_locality_timer()
            return None
        item = st.pending[i]
        del st.pending[i]
        return item

    def _waits_for_executor(self, item: _Pending) -> bool:
        live = {e.location for e in self.b._state.executors.values()}
        return any(p in live for p in item.prefs)

    def _arm_locality_timer(self) -> None:
        # caller holds the lock; offers come on events only, so make one after the wait
        if self._timer is None:
            self._timer = threading.Timer(LOCALITY_WAIT, self._locality_expired)
            self._timer.daemon = True
            self._timer.start()

    def _locality_expired(self) -> None:
        with self.b._lock:
            self._timer = None
            if self.b._stopped or not self.b._state.pending:
                return
            self.b._state.suppressed = self.b._state.declined = False
        try:
            self.b.driver.revive_offers()
        except substrate.SubstrateError:
            pass

    def _new_executor(self, offer: substrate.Offer) -> _Exec:
        from .remote_fetch import make_location
        b = self.b
        eid = f"df-{next(self._exec_ids)}"
        ex = _Exec(eid, offer.agent_id, offer.agent_address,
                   make_location(eid, offer.agent_address, offer.framework_id))
        b._state.executors[eid] = ex
        b._state.locations.setdefault(offer.agent_id, set()).add(ex.location)
        return ex

    # -- statuses -------------------------------------------------------------------------
    def status_update(self, driver: substrate.SchedulerDriver,
                      status: substrate.TaskStatus) -> None:
        b = self.b
        with b._lock:
            st = b._state
            if status.state == substrate.TaskState.RUNNING:
                run = st.running.get(status.task_id)
                if run is not None:
                    run.started = True
            if not status.state.is_terminal:
                return
            run = st.running.pop(status.task_id, None)
            if run is None:
                return  # a duplicate delivery
            ex = st.executors.get(run.executor_id)
            if ex is not None:
                ex.tasks.discard(status.task_id)
            killed = status.task_id in st.killed
            st.killed.discard(status.task_id)
            finished = status.state == substrate.TaskState.FINISHED
            if not finished and not killed and ex is not None:
                # the executor is dead or broken: never give it work again
                st.executors.pop(run.executor_id, None)
            if run.task_id is None or killed:
                self._after_change(driver)
                return
            if not finished and not run.started and run.task_id not in st.requeued \
                    and run.item is not None:
                # it was only queued behind the task that took its executor down: run it
                # elsewhere without counting a failure (once; RUNNING may have been lost)
                st.requeued.add(run.task_id)
                item = run.item
                again = _Pending(f"t{run.task_id}-{next(b._ids)}", item.task, item.data,
                                 item.prefs, item.queued_at)
                st.by_task[run.task_id] = again.stid
                st.pending.appendleft(again)
                self._after_change(driver)
                return
            if st.by_task.get(run.task_id) == status.task_id:
                del st.by_task[run.task_id]
            st.outstanding -= 1
            if finished:
                b._events.put(("ok", run.task_id, status.data, run))
            else:
                b._events.put(("failed", run.task_id,
                               f"task {status.state.name}: {status.message or status.reason.name}",
                               run))
            self._after_change(driver)

    def _after_change(self, driver: substrate.SchedulerDriver) -> None:
        # caller holds the lock
        st = self.b._state
        if st.pending and (st.suppressed or st.declined):
            # an offer may have raced ahead of the status that freed its executor: clear the
            # filter it was declined with instead of waiting it out
            st.suppressed = st.declined = False
            driver.revive_offers()
        self.changed.notify_all()

    def executor_lost(self, driver: substrate.SchedulerDriver, agent_id: str, executor_id: str,
                      status: int) -> None:
        with self.b._lock:
            self.b._state.executors.pop(executor_id, None)
            self._after_change(driver)

    def agent_lost(self, driver: substrate.SchedulerDriver, agent_id: str) -> None:
        b = self.b
        with b._lock:
            st = b._state
            for eid in [e.executor_id for e in st.executors.values() if e.agent_id == agent_id]:
                del st.executors[eid]
            for location in st.locations.pop(agent_id, ()):  # their map outputs are gone too
                b._events.put(("lost", location))
            self._after_change(driver)

    def framework_message(self, driver: substrate.SchedulerDriver, agent_id: str,
                          executor_id: str, data: bytes) -> None:
        kind, body = data[:1], data[1:]
        if kind == b"P":
            info = json.loads(body)
            with self.b._lock:
                ex = self.b._state.executors.get(executor_id)
                if ex is not None:
                    ex.pid = int(info["pid"])
                self.changed.notify_all()
        elif kind == b"r":
            with self.b._lock:
                self.results_deleted += 1
                self.changed.notify_all()
        elif kind == b"B":
            self.broadcasts_sent += 1
            driver.send_framework_message(agent_id, executor_id,
                                          self._broadcast_reply(int(body)))

    def _broadcast_reply(self, bid: int) -> bytes:
        path = os.path.join(self.b.work_dir, "broadcast", f"broadcast_{bid}")
        head = b"B" + str(bid).encode() + b"\0"
        try:
            with open(path, "rb") as f:
                return head + b"1" + sign(self.b.secret, f.read())
        except OSError:
            return head + b"0"

    def error(self, driver: substrate.SchedulerDriver, message: str) -> None:
        log.error("substrate master: %s", message)
