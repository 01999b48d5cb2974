"""The substrate backend: dataflow tasks run in long-lived executor processes on a cluster.

:class:`ClusterBackend` is the :class:`~dataflow.tasks.TaskBackend` of ``master="local[N]"``,
``"local"`` and ``"HOST:PORT"``. It owns a ``substrate.SchedulerDriver`` whose
:class:`_OfferScheduler` takes offers and places queued tasks on executors: one
``python -m dataflow.executor`` process per cpu slot, created on the first offers and reused
for every later task (each dataflow task is one substrate task whose data is the signed
``Task.to_bytes()``). Results come back as the FINISHED status data, or as a reference to a
file in the executor's framework directory when they are too big for a status. With
``local[N]`` the backend also owns an embedded ``substrate.LocalCluster``.

Placement honours ``Task.preferred_locations`` (delay scheduling): a task goes to the executor
holding its input, else to one on the same agent; while a preferred executor is alive the task
waits for it up to :data:`LOCALITY_WAIT`, then runs anywhere. Offers are suppressed while no
task is queued and revived when one is. Every payload in either direction is HMAC-signed with a
per-Context secret, checked before anything is unpickled.

Failures: a task whose executor dies is reported as a failed attempt (the DAG scheduler retries
it); the executor is replaced on a later offer. Its cached partitions are simply gone (a later
read recomputes them), so no ExecutorLost is reported for it. Map outputs live in the framework
directory, so they survive their executor; only a lost agent loses them, reported as one
:class:`~dataflow.tasks.ExecutorLost` per location on that agent. The DAG scheduler decides what
to recompute; this module only reports.

Examples
--------
>>> parse_master("local[3]"), parse_master("local[*]")[0], parse_master("10.0.0.1:5050")
(('local', 3), 'local', ('remote', '10.0.0.1:5050'))
"""
from __future__ import annotations

import atexit
import itertools
import json
import logging
import math
import os
import queue
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import substrate

from .errors import BackendUnavailableError, DataflowError
from .executor import (
    ENV_BROADCAST_DIR,
    ENV_MEMORY,
    ENV_SECRET,
    sign,
    verify,
)
from .remote_fetch import parse_location
from .tasks import ExecutorLost, Task, TaskBackend, TaskEnded, TaskResult

log = logging.getLogger("dataflow.cluster")

_LOCAL = re.compile(r"^local(\[(\d+|\*)\])?$")
_HOSTPORT = re.compile(r"^[\w.\-]+:\d+$")
_ZK = re.compile(r"^zk://[\w.\-]+:\d+(,[\w.\-]+:\d+)*(/[\w.\-]+)+/?$")
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
REGISTER_TIMEOUT = 30.0


def parse_master(master: str) -> tuple[str, Any]:
    """``("local", slots)`` or ``("remote", "host:port")``; raises on anything else."""
    m = _LOCAL.match(master)
    if m:
        n = m.group(2)
        slots = os.cpu_count() or 1 if n in (None, "*") else int(n)
        if slots < 1:
            raise BackendUnavailableError(f"master {master!r} asks for no executors")
        return "local", slots
    if _HOSTPORT.match(master):
        return "remote", master
    if master.startswith("zk://"):
        # The substrate's driver finds and follows the leading master through ZooKeeper.
        if not _ZK.match(master):
            raise BackendUnavailableError(f"master {master!r}: expected "
                                          f"'zk://HOST:PORT[,HOST:PORT]/PATH'")
        return "remote", master
    raise BackendUnavailableError(f"unknown master {master!r}; expected 'inline', 'local', "
                                  f"'local[N]', 'HOST:PORT' or 'zk://...'")


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


class ClusterBackend(TaskBackend):
    """Runs tasks on substrate executors.

    Parameters
    ----------
    master : str
        ``"local"``, ``"local[N]"`` (an embedded cluster owned by the backend) or
        ``"HOST:PORT"`` of a running substrate master.
    work_dir : str
        The driver's work directory (broadcast values are written under it).
    memory_budget : int
        Merge budget of every executor's shuffle reads.
    app_name : str
        Framework name shown by the master.
    """

    def __init__(self, master: str, work_dir: str, memory_budget: int,
                 app_name: str = "dataflow") -> None:
        kind, arg = parse_master(master)
        self.work_dir = work_dir
        self.secret = secrets.token_bytes(32)
        self.cluster: substrate.LocalCluster | None = None
        self.max_executors: int | None = None
        self._lock = threading.Lock()
        self._state = _State()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._ids = itertools.count()
        self._stopped = False
        if kind == "local":
            self.max_executors = arg
            agents = min(arg, 2)
            per_agent = math.ceil(arg / agents)
            mem = per_agent * SLOT_RESOURCES.mem + 64
            self.cluster = substrate.LocalCluster(agents=agents, cpus=float(per_agent), mem=mem)
            self.cluster.start()
            address = self.cluster.master
        else:
            address = arg
        self._executor_info = self._make_executor_info(memory_budget)
        self.scheduler = _OfferScheduler(self)
        self.driver = substrate.SchedulerDriver(
            self.scheduler, substrate.FrameworkInfo(name=f"dataflow: {app_name}"[:200]), address)
        if self.max_executors is not None:  # start the processes now, in the background
            for _ in range(self.max_executors):
                self._state.pending.append(_Pending(f"warm-{next(self._ids)}", None, b""))
        atexit.register(self.stop)
        try:
            self.driver.start()
            self.framework_id = self.driver.wait_registered(timeout=REGISTER_TIMEOUT)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, substrate.SubstrateError):
                raise BackendUnavailableError(f"cannot reach the substrate master at "
                                              f"{address}: {exc}") from None
            raise

    # -- TaskBackend ----------------------------------------------------------------------
    @property
    def default_parallelism(self) -> int:  # type: ignore[override]
        if self.max_executors is not None:
            return self.max_executors
        with self._lock:
            return max(2, len(self._state.executors))

    def launch(self, task: Task) -> None:
        self._check()
        stid = f"t{task.task_id}-{next(self._ids)}"
        data = sign(self.secret, task.to_bytes())
        with self._lock:
            st = self._state
            st.pending.append(_Pending(stid, task, data, tuple(task.preferred_locations),
                                       time.monotonic()))
            st.by_task[task.task_id] = stid
            st.outstanding += 1
            revive, st.suppressed = st.suppressed, False
        if revive:
            self.driver.revive_offers()

    def kill(self, task_id: int) -> None:
        with self._lock:
            st = self._state
            stid = st.by_task.pop(task_id, None)
            if stid is None:
                return
            before = len(st.pending)
            st.pending = deque(p for p in st.pending if p.stid != stid)
            if len(st.pending) < before:
                st.outstanding -= 1
                return
            run = st.running.get(stid)
            if run is None or stid in st.killed:
                return
            st.killed.add(stid)
            st.outstanding -= 1
        self.driver.kill_task(stid, run.agent_id)

    def poll(self, timeout: float | None = None) -> list:
        if not self.driver.running and not self._stopped and self._events.empty():
            raise DataflowError(f"lost the substrate master at {self.driver.master}: the "
                                f"scheduler driver stopped; create a new Context")
        try:
            first = self._events.get(timeout=timeout) if timeout != 0 else \
                self._events.get_nowait()
        except queue.Empty:
            return []
        items = [first]
        while True:
            try:
                items.append(self._events.get_nowait())
            except queue.Empty:
                break
        return [self._resolve(item) for item in items]

    def has_pending(self) -> bool:
        with self._lock:
            return self._state.outstanding > 0 or not self._events.empty()

    def unpersist(self, rdd_id: int) -> None:
        self._broadcast_message(b"U" + str(rdd_id).encode())

    def drop_broadcast(self, broadcast_id: int) -> None:
        self._broadcast_message(b"D" + str(broadcast_id).encode())

    def stop(self) -> None:
        """Tear the framework down (its executors end) and stop an embedded cluster."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        try:
            self.driver.stop()
        except Exception as exc:  # noqa: BLE001 - already gone: nothing left to release
            log.debug("stopping the scheduler driver: %s", exc)
        if self.cluster is not None:
            self.cluster.stop()

    # -- inspection -----------------------------------------------------------------------
    def executor_pids(self) -> dict[str, int]:
        """Process ids of the live executors that have reported, by location."""
        with self._lock:
            return {e.location: e.pid for e in self._state.executors.values() if e.pid}

    def wait_executors(self, n: int, timeout: float = 30.0) -> dict[str, int]:
        """Block until ``n`` executors have reported their pids (tests and benchmarks)."""
        if not self.wait_for(lambda: len(self.executor_pids_locked()) >= n, timeout):
            raise DataflowError(f"only {len(self.executor_pids())} of {n} executors started "
                                f"within {timeout} s")
        return self.executor_pids()

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> bool:
        """Wait until ``predicate()`` (called with the backend's lock held) is true."""
        with self.scheduler.changed:
            return self.scheduler.changed.wait_for(predicate, timeout)

    def executor_pids_locked(self) -> dict[str, int]:
        return {e.location: e.pid for e in self._state.executors.values() if e.pid}

    # -- internals ------------------------------------------------------------------------
    def _check(self) -> None:
        if self._stopped:
            raise DataflowError("the substrate backend was stopped")

    def _make_executor_info(self, memory_budget: int) -> substrate.ExecutorInfo:
        env = {ENV_SECRET: self.secret.hex(), ENV_MEMORY: str(memory_budget),
               ENV_BROADCAST_DIR: self._broadcast_dir()}
        return substrate.ExecutorInfo.for_python_module(
            "", "dataflow.executor", name="dataflow executor", resources=EXECUTOR_RESOURCES,
            environment=env)

    def _broadcast_dir(self) -> str:
        """Where executors look for broadcast files before asking the driver for them."""
        return os.path.join(os.path.abspath(self.work_dir), "broadcast")

    def _broadcast_message(self, data: bytes) -> None:
        with self._lock:
            targets = [(e.agent_id, e.executor_id) for e in self._state.executors.values()]
        for agent_id, executor_id in targets:
            try:
                self.driver.send_framework_message(agent_id, executor_id, data)
            except substrate.SubstrateError:
                pass  # stopping: the executors go away anyway

    def _resolve(self, item: tuple) -> Any:
        """Turn a raw event from the driver thread into a TaskEnded / ExecutorLost."""
        kind = item[0]
        if kind == "lost":
            return ExecutorLost(item[1])
        _, task_id, payload, run = item
        if kind == "failed":
            return TaskEnded(task_id, _failure(task_id, "ExecutorLostError", payload, run))
        try:
            if payload[:1] == b"F":
                rel = payload[1:].decode()
                raw = substrate.read_agent_file(run.agent_address, self.framework_id, rel)
                self._tell(run, b"R" + rel.encode())
            else:
                raw = payload[1:]
            return TaskEnded(task_id, verify(self.secret, raw))
        except (substrate.SubstrateError, DataflowError) as exc:
            return TaskEnded(task_id, _failure(task_id, "ResultFetchError",
                                               f"could not get the result: {exc}", run))

    def _tell(self, run: _Running, data: bytes) -> None:
        try:
            self.driver.send_framework_message(run.agent_id, run.executor_id, data)
        except substrate.SubstrateError:
            pass


def _failure(task_id: int, error_type: str, message: str, run: _Running) -> bytes:
    return TaskResult(task_id, False, error_type=error_type,
                      error_message=f"{message} (executor {run.executor_id} on "
                                    f"{run.agent_address})",
                      executor_id=run.executor_id).to_bytes()


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
