"""The substrate backend: dataflow tasks run in long-lived executor processes on a cluster.

:class:`ClusterBackend` is the :class:`~dataflow.tasks.TaskBackend` of ``master="local[N]"``,
``"local"`` and ``"HOST:PORT"``. It owns a ``substrate.SchedulerDriver`` whose scheduler
(:class:`~dataflow.placement._OfferScheduler`) takes offers and places queued tasks on
executors: one ``python -m dataflow.executor`` process per cpu slot, created on the first
offers and reused for every later task (each dataflow task is one substrate task whose data is
the signed ``Task.to_bytes()``). Results come back as the FINISHED status data, or as a
reference to a file in the executor's framework directory when they are too big for a status.
With ``local[N]`` the backend also owns an embedded ``substrate.LocalCluster``.

Placement (:mod:`dataflow.placement`) honours ``Task.preferred_locations`` (delay
scheduling): a task goes to the executor holding its input, else to one on the same agent;
while a preferred executor is alive the task waits for it up to ``LOCALITY_WAIT``, then runs
anywhere. Offers are suppressed while no task is queued and revived when one is. Every payload
in either direction is HMAC-signed with a per-Context secret, checked before anything is
unpickled.

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
import logging
import math
import os
import queue
import re
import secrets
import threading
import time
from collections import deque
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
from .placement import (
    EXECUTOR_RESOURCES,
    SLOT_RESOURCES,
    _OfferScheduler,
    _Pending,
    _Running,
    _State,
)
from .tasks import ExecutorLost, Task, TaskBackend, TaskEnded, TaskResult

log = logging.getLogger("dataflow.cluster")

_LOCAL = re.compile(r"^local(\[(\d+|\*)\])?$")
_HOSTPORT = re.compile(r"^[\w.\-]+:\d+$")
REGISTER_TIMEOUT = 30.0
#: How long the master keeps our executors when the stream to it breaks: a transient break
#: (a loaded machine, a master failover) re-subscribes and goes on; a driver that died for
#: good (a killed kernel) has its executors killed at this deadline.
FAILOVER_TIMEOUT = 20.0


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
        try:
            return "remote", substrate.check_master_address(master)
        except substrate.InvalidRequest as exc:
            raise BackendUnavailableError(f"master {master!r}: {exc}; expected "
                                          f"'zk://HOST:PORT[,HOST:PORT]/PATH'") from None
    raise BackendUnavailableError(f"unknown master {master!r}; expected 'inline', 'local', "
                                  f"'local[N]', 'HOST:PORT' or 'zk://...'")


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
            self.scheduler, substrate.FrameworkInfo(name=f"dataflow: {app_name}"[:200],
                                                   failover_timeout=FAILOVER_TIMEOUT), address)
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
