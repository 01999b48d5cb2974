"""The scheduler side of the public API: the :class:`Scheduler` callbacks and its driver.

A framework subclasses :class:`Scheduler` and hands it to a :class:`SchedulerDriver`, which
keeps one stream to the master on a thread of its own (so it never blocks a notebook kernel),
converts wire messages into the dataclasses of :mod:`substrate.types`, invokes the callbacks
one at a time on that thread, acknowledges status updates after ``status_update`` returns,
reconciles after every (re)subscription, and fails over to a new stream when the old one
breaks. Every driver method is thread-safe.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Iterable, Optional, Sequence, Union

import grpc

from substrate import convert
from substrate.aio_loops import new_loop, start_loop_thread
from substrate.errors import ConnectionLost, InvalidRequest, SubscriptionError, SubstrateError
from substrate.security.client import Credentials
from substrate.types import Filters, FrameworkInfo, Offer, TaskInfo, TaskStatus
from substrate.v1 import pb, rpc

log = logging.getLogger("substrate.scheduler")

#: How long an idle framework asks not to be offered declined resources again.
IDLE_REFUSE_SECONDS = 300.0

_STOP = object()


class Scheduler:
    """Callbacks of a framework's scheduler; every one is optional.

    The defaults do the right thing for an idle framework: offers are declined with a long
    filter and further offers are suppressed until the framework calls
    :meth:`SchedulerDriver.revive_offers`.
    """

    def registered(self, driver: "SchedulerDriver", framework_id: str, master_id: str) -> None:
        """The first subscription succeeded."""

    def reregistered(self, driver: "SchedulerDriver", master_id: str) -> None:
        """The driver subscribed again after losing its stream (same framework id)."""

    def disconnected(self, driver: "SchedulerDriver") -> None:
        """The stream to the master broke; the driver is reconnecting."""

    def resource_offers(self, driver: "SchedulerDriver", offers: list[Offer]) -> None:
        """New offers. Default: decline them for a long time and suppress further offers."""
        driver.decline_offer([o.id for o in offers], Filters(refuse_seconds=IDLE_REFUSE_SECONDS))
        driver.suppress_offers()

    def offer_rescinded(self, driver: "SchedulerDriver", offer_id: str) -> None:
        """An offer is no longer valid."""

    def status_update(self, driver: "SchedulerDriver", status: TaskStatus) -> None:
        """A task changed state (delivered at least once: be idempotent)."""

    def framework_message(self, driver: "SchedulerDriver", agent_id: str, executor_id: str,
                          data: bytes) -> None:
        """An executor sent a message."""

    def agent_lost(self, driver: "SchedulerDriver", agent_id: str) -> None:
        """An agent became unreachable; its tasks are reported separately."""

    def executor_lost(self, driver: "SchedulerDriver", agent_id: str, executor_id: str,
                      status: int) -> None:
        """An executor process exited."""

    def error(self, driver: "SchedulerDriver", message: str) -> None:
        """The master refused a call, or ended the subscription (then the driver stops)."""


class SchedulerDriver:
    """Connects a :class:`Scheduler` to a master at ``"host:port"``.

    Parameters
    ----------
    scheduler : Scheduler
    framework : FrameworkInfo
        Set ``framework.id`` to fail over to an existing framework.
    master : str
        ``"host:port"`` of the master, or ``"zk://host:port[,host:port]/path"`` to find the
        leading master through ZooKeeper and follow it when the leader changes.
    implicit_acknowledgements : bool
        Acknowledge each status update after ``status_update`` returns (default).
    reconnect_timeout : float
        How long to keep trying to re-subscribe after the stream breaks.
    credentials : Credentials, optional
        Principal, token and TLS files (default: the ``OFFERPOOL_*`` environment variables).
        A wrong, missing or expired token, or a role or user the master's ACL refuses, ends
        the driver with :class:`~substrate.errors.AuthenticationError` or
        :class:`~substrate.errors.AccessDenied` (raised by :meth:`wait_registered`).
    share_credentials : bool
        Copy the credentials' ``OFFERPOOL_*`` variables into the environment of the executors
        this driver launches (unless a task sets them), so they can read files from other
        agents (dataflow's shuffle does).

    Examples
    --------
    >>> from substrate import LocalCluster, Scheduler, SchedulerDriver, FrameworkInfo
    >>> with LocalCluster(agents=1) as cluster:
    ...     driver = SchedulerDriver(Scheduler(), FrameworkInfo(name="idle"), cluster.master)
    ...     _ = driver.start()
    ...     fid = driver.wait_registered(timeout=10)
    ...     driver.stop()
    >>> fid.startswith("fw-")
    True
    """

    def __init__(self, scheduler: Scheduler, framework: FrameworkInfo, master: str, *,
                 implicit_acknowledgements: bool = True, reconnect_timeout: float = 60.0,
                 credentials: Optional[Credentials] = None,
                 share_credentials: bool = True) -> None:
        self.credentials = Credentials.resolve(credentials)
        self.credentials.check_target(master)
        self._executor_env = self.credentials.environment() if share_credentials else {}
        self.scheduler = scheduler
        self.framework = framework
        self.master = master
        self.implicit_acknowledgements = implicit_acknowledgements
        self.reconnect_timeout = reconnect_timeout
        self.framework_id: str = framework.id
        self.master_id = ""
        self.dashboard_url = ""
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._queue: Optional[asyncio.Queue] = None
        self._registered = threading.Event()
        self._stopped = threading.Event()
        self._error: Optional[SubstrateError] = None
        self._acks: list = []
        self._teardown = False
        self._subscriptions = 0
        self._seen_epoch = 0  # highest leader epoch seen (master HA)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "SchedulerDriver":
        """Start the driver thread and subscribe. Returns immediately."""
        if self._thread is not None:
            raise SubstrateError("driver already started")

        def main(loop: asyncio.AbstractEventLoop) -> None:
            try:
                loop.run_until_complete(self._run())
            finally:
                self._stopped.set()
                self._registered.set()  # wake anyone waiting for a registration that won't come

        self._loop = new_loop()
        self._queue = asyncio.Queue()
        _, self._thread = start_loop_thread("scheduler-driver", main, self._loop)
        return self

    def wait_registered(self, timeout: Optional[float] = None) -> str:
        """Block until subscribed; return the framework id."""
        if not self._registered.wait(timeout):
            raise ConnectionLost(f"not subscribed to {self.master} within {timeout} s")
        if self._error is not None and (not self.framework_id or not self._subscriptions):
            raise self._error
        if not self.framework_id:
            raise ConnectionLost("driver stopped before subscribing")
        return self.framework_id

    def stop(self, failover: bool = False) -> None:
        """Stop the driver. Without ``failover`` the framework is torn down (its tasks are
        killed); with it the master keeps them for ``failover_timeout`` seconds."""
        if self._loop is None or self._stopped.is_set():
            return
        self._teardown = not failover
        if self._teardown and self.framework_id:
            self._send(pb.Call(type=pb.Call.TEARDOWN))
        self._put(_STOP)
        self.join(timeout=10)

    def abort(self) -> None:
        """Drop the connection without telling the master (as a crashed scheduler would)."""
        self.stop(failover=True)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the driver to stop; True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def run(self) -> None:
        """Start and block until the driver stops; raises the fatal error if there was one."""
        self.start()
        self.join()
        if self._error is not None:
            raise self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopped.is_set()

    # ------------------------------------------------------------------ calls
    def launch_tasks(self, offer_ids: Union[str, Sequence[str]], tasks: Iterable[TaskInfo],
                     filters: Optional[Filters] = None) -> None:
        """Accept offers (all on one agent) with one LAUNCH; unused resources are declined."""
        ids = [offer_ids] if isinstance(offer_ids, str) else list(offer_ids)
        call = pb.Call(type=pb.Call.ACCEPT)
        call.accept.offer_ids.extend(ids)
        op = call.accept.operations.add(type=pb.Call.Operation.LAUNCH)
        for task in tasks:
            msg = op.tasks.add()
            convert.task_to_pb(task, msg)
            if self._executor_env and msg.HasField("executor"):
                env = msg.executor.command.environment
                for key, value in self._executor_env.items():
                    if key not in env:
                        env[key] = value
        _set_filters(call.accept.filters, filters)
        self._send(call)

    accept_offers = launch_tasks

    def decline_offer(self, offer_ids: Union[str, Sequence[str]],
                      filters: Optional[Filters] = None) -> None:
        ids = [offer_ids] if isinstance(offer_ids, str) else list(offer_ids)
        call = pb.Call(type=pb.Call.DECLINE)
        call.decline.offer_ids.extend(ids)
        _set_filters(call.decline.filters, filters)
        self._send(call)

    def revive_offers(self) -> None:
        """Clear filters and ask for offers again (undoes :meth:`suppress_offers`)."""
        self._send(pb.Call(type=pb.Call.REVIVE))

    def suppress_offers(self) -> None:
        """Stop receiving offers until :meth:`revive_offers`."""
        self._send(pb.Call(type=pb.Call.SUPPRESS))

    def kill_task(self, task_id: str, agent_id: str = "") -> None:
        self._send(pb.Call(type=pb.Call.KILL, kill=pb.Call.Kill(task_id=task_id, agent_id=agent_id)))

    def acknowledge_status_update(self, status: TaskStatus) -> None:
        """Acknowledge one update (only needed with ``implicit_acknowledgements=False``)."""
        if status.uuid:
            self._ack(pb.Ack(agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid))

    def reconcile_tasks(self, tasks: Iterable[Union[str, TaskStatus]] = ()) -> None:
        """Ask for the latest state of the given tasks, or of every task when none are given."""
        call = pb.Call(type=pb.Call.RECONCILE)
        for item in tasks:
            if isinstance(item, TaskStatus):
                call.reconcile.tasks.add(task_id=item.task_id, agent_id=item.agent_id)
            else:
                call.reconcile.tasks.add(task_id=item)
        self._send(call)

    def send_framework_message(self, agent_id: str, executor_id: str, data: bytes) -> None:
        self._send(pb.Call(type=pb.Call.MESSAGE, message=pb.Call.Message(
            agent_id=agent_id, executor_id=executor_id, data=bytes(data))))

    def publish_status(self, status: dict) -> None:
        """Publish the framework's progress (a small JSON-able dict) to the master.

        The master keeps the latest document and shows it on its dashboard and in ``/state``;
        a ``"metrics"`` object of ``{name: number}`` is exported on ``/metrics`` as
        ``offerpool_framework_<name>`` (names ending in ``_total`` are counters), and
        ``"kind"`` picks the dashboard's view (``"dataflow"``, ``"genetic"``, or a raw
        listing). Raises :class:`~substrate.errors.InvalidRequest` for a document that is not
        JSON-able, holds NaN or infinities, or is over the master's cap (64 KiB).

        Examples
        --------
        >>> driver = SchedulerDriver(Scheduler(), FrameworkInfo(name="x"), "127.0.0.1:1")
        >>> try:
        ...     driver.publish_status({"kind": "training", "metrics": {"loss": float("nan")}})
        ... except InvalidRequest as exc:
        ...     print(str(exc).split(":")[0])
        the framework status is not JSON-able
        """
        from substrate.framework_status import MAX_STATUS_BYTES
        try:
            text = json.dumps(status, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"the framework status is not JSON-able: {exc}") from None
        if not isinstance(status, dict):
            raise InvalidRequest("the framework status must be a dict")
        if len(text.encode()) > MAX_STATUS_BYTES:
            raise InvalidRequest(f"the framework status is {len(text.encode())} bytes, over "
                                 f"the cap of {MAX_STATUS_BYTES}")
        self._send(pb.Call(type=pb.Call.PUBLISH_STATUS, status=pb.FrameworkStatus(json=text)))

    # ------------------------------------------------------------------ internals
    def _put(self, item: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            raise ConnectionLost("the scheduler driver is not running")
        if threading.current_thread() is self._thread:
            self._queue.put_nowait(item)  # type: ignore[union-attr]
        else:
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, item)  # type: ignore[union-attr]
            except RuntimeError:
                raise ConnectionLost("the scheduler driver has stopped") from None

    def _send(self, call: "pb.Call") -> None:
        self._put(call)

    def _ack(self, ack: "pb.Ack") -> None:
        # Acks are batched: many updates arrive together and one call carries all their acks.
        def add() -> None:
            if not self._acks:
                self._loop.call_soon(self._flush_acks)  # type: ignore[union-attr]
            self._acks.append(ack)
        if threading.current_thread() is self._thread:
            add()
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(add)

    def _flush_acks(self) -> None:
        if self._acks:
            acks, self._acks = self._acks, []
            self._queue.put_nowait(pb.Call(  # type: ignore[union-attr]
                type=pb.Call.ACKNOWLEDGE, acknowledge=pb.Call.Acknowledge(acks=acks)))

    async def _run(self) -> None:
        from substrate.driver_stream import run_scheduler_stream
        await run_scheduler_stream(self)

    def _fatal(self, message: str) -> None:
        self._error = SubscriptionError(message)


def _set_filters(msg: "pb.Filters", filters: Optional[Filters]) -> None:
    if filters is not None and filters.refuse_seconds is not None:
        msg.refuse_seconds = float(filters.refuse_seconds)
