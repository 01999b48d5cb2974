"""The executor side of the substrate: the :class:`Executor` callbacks and its driver.

A framework's executor program subclasses :class:`Executor` and runs an
:class:`ExecutorDriver`. The driver owns the connection to the agent that started the process
(its endpoint, ids and secret token come from ``SUBSTRATE_*`` environment variables): it
subscribes, runs the gRPC I/O on its own thread and event loop, calls the executor's callbacks
one at a time on a second thread, batches outgoing status updates, and keeps every update until
the agent reports it acknowledged (resending them after a reconnection). The agent is reached
over the local channel the agent names (a Unix socket). When the agent dies, the executor and
its tasks keep running and the driver keeps trying to re-subscribe, so a restarted agent takes
them back; if the agent is gone for longer than ``SUBSTRATE_RECOVERY_TIMEOUT`` seconds (set by
the agent, ``--executor-recovery-timeout``; 10 when unset) the driver gives up with a non-zero
exit code, so a dead agent leaves no executor behind for long.

What a task means, and how to run it, is the framework's business; the agent's rules (tokens,
payload limits, at-least-once delivery to the master) are in :mod:`substrate.agent`.
"""
from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
import traceback
from typing import Any, Mapping, Optional

import grpc

from substrate.convert import (
    agent_from_pb, executor_from_pb, framework_from_pb, status_to_pb, task_from_pb,
)
from substrate.errors import ConnectionLost, InvalidRequest, SubstrateError
from substrate.types import AgentInfo, ExecutorInfo, FrameworkInfo, Source, TaskInfo, TaskState
from substrate.types import TaskStatus
from substrate.v1 import pb, rpc

log = logging.getLogger(__name__)

#: Exit codes of :meth:`ExecutorDriver.join`.
EXIT_OK, EXIT_AGENT_LOST, EXIT_REFUSED = 0, 1, 2
_REQUIRED_ENV = ("SUBSTRATE_AGENT_ENDPOINT", "SUBSTRATE_AGENT_ID", "SUBSTRATE_FRAMEWORK_ID",
                 "SUBSTRATE_EXECUTOR_ID", "SUBSTRATE_EXECUTOR_TOKEN")
_BATCH_BYTES = 1024 * 1024
#: Longest an update waits while the callback thread is still launching a batch of tasks.
LAUNCH_BATCH_DELAY = 0.005


class Executor:
    """Callbacks of a framework's executor; override the ones you need.

    All callbacks run one at a time on the driver's callback thread. A callback that blocks
    delays the next one, but never the driver's network I/O (acknowledgements keep flowing).

    Examples
    --------
    >>> class Echo(Executor):
    ...     def launch_task(self, driver, task):
    ...         driver.update(task.task_id, TaskState.RUNNING)
    ...         driver.update(task.task_id, TaskState.FINISHED, data=task.data)
    >>> Echo().framework_message(None, b"ignored by default")
    """

    def registered(self, driver: "ExecutorDriver", executor_info: ExecutorInfo,
                   framework_info: FrameworkInfo, agent_info: AgentInfo) -> None:
        """The agent accepted this executor (called once, before any task)."""

    def launch_task(self, driver: "ExecutorDriver", task: TaskInfo) -> None:
        """Run ``task``; report its progress with :meth:`ExecutorDriver.update`.

        An exception raised here is reported as the task's FAILED status with the traceback.
        """

    def kill_task(self, driver: "ExecutorDriver", task_id: str) -> None:
        """Stop a task. The default reports it KILLED at once."""
        driver.update(task_id, TaskState.KILLED, "killed by the executor's default kill_task")

    def framework_message(self, driver: "ExecutorDriver", data: bytes) -> None:
        """An opaque message from the framework's scheduler."""

    def shutdown(self, driver: "ExecutorDriver") -> None:
        """The agent asked this executor to end; the driver stops after this returns."""

    def error(self, driver: "ExecutorDriver", message: str) -> None:
        """Something went wrong: a refused update or message, or the agent was lost."""
        log.error("executor error: %s", message)


class ExecutorDriver:
    """Connects an :class:`Executor` to its agent.

    Parameters
    ----------
    executor : Executor
        The callbacks.
    environ : mapping, optional
        Where to read ``SUBSTRATE_AGENT_ENDPOINT``, ``SUBSTRATE_AGENT_ID``,
        ``SUBSTRATE_FRAMEWORK_ID``, ``SUBSTRATE_EXECUTOR_ID``, ``SUBSTRATE_EXECUTOR_TOKEN``
        (required; the agent sets them) and ``SUBSTRATE_SANDBOX``,
        ``SUBSTRATE_RECOVERY_TIMEOUT``, ``SUBSTRATE_MAX_PAYLOAD_BYTES`` and
        ``SUBSTRATE_HARD_EXIT_GRACE`` (optional; see :meth:`join`).

    Raises
    ------
    SubstrateError
        When a required variable is missing (the program was not started by an agent).

    Examples
    --------
    >>> ExecutorDriver(Executor(), environ={})
    Traceback (most recent call last):
    ...
    substrate.errors.SubstrateError: ExecutorDriver: SUBSTRATE_AGENT_ENDPOINT is not set; an executor program must be started by a substrate agent

    An executor program ends with::

        sys.exit(ExecutorDriver(MyExecutor()).run())
    """

    def __init__(self, executor: Executor, environ: Mapping[str, str] = os.environ) -> None:
        for name in _REQUIRED_ENV:
            if not environ.get(name):
                raise SubstrateError(f"ExecutorDriver: {name} is not set; an executor program "
                                     f"must be started by a substrate agent")
        self.executor = executor
        self.endpoint = environ["SUBSTRATE_AGENT_ENDPOINT"]
        self.agent_id = environ["SUBSTRATE_AGENT_ID"]
        self.framework_id = environ["SUBSTRATE_FRAMEWORK_ID"]
        self.executor_id = environ["SUBSTRATE_EXECUTOR_ID"]
        self._token = environ["SUBSTRATE_EXECUTOR_TOKEN"]
        self.sandbox = environ.get("SUBSTRATE_SANDBOX", os.getcwd())
        # Files kept here outlive this executor; other agents' executors read them with
        # substrate.read_agent_file(agent_address, framework_id, relative path).
        self.framework_dir = environ.get("SUBSTRATE_FRAMEWORK_DIR", self.sandbox)
        self.agent_address = environ.get("SUBSTRATE_AGENT_ADDRESS", self.endpoint)
        try:
            self.recovery_timeout = float(environ.get("SUBSTRATE_RECOVERY_TIMEOUT", "10"))
            self.max_payload_bytes = int(environ.get("SUBSTRATE_MAX_PAYLOAD_BYTES",
                                                     str(4 * 1024 * 1024)))
            self.hard_exit_grace = float(environ.get("SUBSTRATE_HARD_EXIT_GRACE", "5"))
        except ValueError as exc:
            raise SubstrateError(f"ExecutorDriver: bad SUBSTRATE_* value: {exc}") from None
        self._lock = threading.Lock()
        self._outgoing: list[Any] = []          # pb.TaskStatus or bytes (a message), in order
        self._unacked: dict[bytes, pb.TaskStatus] = {}
        self._callbacks: "queue.SimpleQueue[Optional[tuple]]" = queue.SimpleQueue()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._wake: Optional[asyncio.Event] = None
        self._io_thread: Optional[threading.Thread] = None
        self._cb_thread: Optional[threading.Thread] = None
        self._done = threading.Event()
        self._exit_code = EXIT_OK
        self._stopping = False
        self._registered_once = False
        self._wake_pending = False      # a wake-up of the writer is on its way
        self._batching = False          # the callback thread is running a LAUNCH batch
        self._flush_timer: Optional[asyncio.TimerHandle] = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect to the agent in the background; callbacks start after SUBSCRIBED."""
        if self._io_thread is not None:
            raise SubstrateError("ExecutorDriver already started")
        self._cb_thread = threading.Thread(target=self._callback_loop, daemon=True,
                                           name="substrate-executor-callbacks")
        self._io_thread = threading.Thread(target=self._io_thread_main, daemon=True,
                                           name="substrate-executor-io")
        self._cb_thread.start()
        self._io_thread.start()

    def stop(self) -> None:
        """Send what is queued, close the connection; :meth:`join` then returns 0."""
        self._finish(EXIT_OK)

    def join(self, timeout: Optional[float] = None) -> int:
        """Wait for the driver to end and return its exit code.

        0: stopped or shut down by the agent; 1: the agent was lost for longer than the
        recovery timeout; 2: the agent refused the subscription. Raises :class:`TimeoutError`
        when ``timeout`` passes first.

        After an agent loss the process is expected to exit with the code; if it is still
        alive ``SUBSTRATE_HARD_EXIT_GRACE`` seconds later (default 5; negative disables) the
        driver ends it with ``os._exit(1)``, so a vanished agent leaves no executor behind.
        """
        if not self._done.wait(timeout):
            raise TimeoutError("the executor driver is still running")
        return self._exit_code

    def run(self) -> int:
        """:meth:`start`, then :meth:`join`; returns the exit code (0 on a clean shutdown)."""
        self.start()
        return self.join()

    # ------------------------------------------------------------------ sending (any thread)

    def send_status_update(self, status: TaskStatus) -> None:
        """Queue a status update for the agent; fills uuid, timestamp, ids and source.

        Thread-safe. The update is kept until the agent reports it acknowledged.

        Raises
        ------
        InvalidRequest
            When ``status.data`` is larger than the agent accepts.
        """
        if len(status.data) > self.max_payload_bytes:
            raise InvalidRequest(f"status data of {len(status.data)} bytes exceeds the agent's "
                                 f"limit of {self.max_payload_bytes} bytes")
        msg = status_to_pb(status)
        msg.uuid = status.uuid or os.urandom(16)
        msg.timestamp = status.timestamp or time.time()
        msg.agent_id, msg.framework_id = self.agent_id, self.framework_id
        msg.executor_id, msg.source = self.executor_id, int(Source.EXECUTOR)
        with self._lock:
            self._unacked[msg.uuid] = msg
            self._enqueue(msg)

    def update(self, task_id: str, state: TaskState, message: str = "", data: bytes = b"") -> None:
        """Shorthand for :meth:`send_status_update` with a new :class:`TaskStatus`."""
        self.send_status_update(TaskStatus(task_id=task_id, state=TaskState(state),
                                           message=message, data=data))

    def send_framework_message(self, data: bytes) -> None:
        """Send opaque bytes to the framework's scheduler (best effort). Thread-safe."""
        if len(data) > self.max_payload_bytes:
            raise InvalidRequest(f"message of {len(data)} bytes exceeds the agent's limit of "
                                 f"{self.max_payload_bytes} bytes")
        with self._lock:
            self._enqueue(bytes(data))

    def _enqueue(self, item: Any) -> None:
        # Caller holds the lock. One wake-up per batch: while the callback thread runs a LAUNCH
        # batch, the writer is woken by a short timer or at the batch's end instead, so the
        # updates of many tasks travel in one message.
        if self._done.is_set():
            raise ConnectionLost("the executor driver has stopped")
        self._outgoing.append(item)
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            try:
                self._loop.call_soon_threadsafe(
                    self._arm_flush if self._batching else self._wake_now)
            except RuntimeError:   # the I/O loop closed an instant ago
                raise ConnectionLost("the executor driver has stopped") from None

    def _wake_now(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _arm_flush(self) -> None:
        if self._flush_timer is None and self._loop is not None:
            self._flush_timer = self._loop.call_later(LAUNCH_BATCH_DELAY, self._flush_fire)

    def _flush_fire(self) -> None:
        self._flush_timer = None
        self._wake_now()

    # ------------------------------------------------------------------ callback thread

    def _callback_loop(self) -> None:
        while True:
            item = self._callbacks.get()
            if item is None:
                return
            name, args = item
            if name == "__finish__":
                self._finish(*args)
            elif name == "__launch__":
                self._launch_batch(args[0])
            else:
                self._invoke(name, *args)

    def _invoke(self, name: str, *args: Any) -> None:
        try:
            getattr(self.executor, name)(self, *args)
        except Exception:
            text = traceback.format_exc()
            log.error("executor callback %s raised:\n%s", name, text)
            if name == "launch_task":
                self._report_crash(args[0], text)

    def _launch_batch(self, tasks: list[TaskInfo]) -> None:
        with self._lock:
            self._batching = True
        try:
            for task in tasks:
                self._invoke("launch_task", task)
        finally:
            with self._lock:
                self._batching = False
                flush = bool(self._outgoing) and self._loop is not None
            if flush:
                try:
                    self._loop.call_soon_threadsafe(self._wake_now)  # type: ignore[union-attr]
                except RuntimeError:
                    pass    # the I/O loop is gone

    def _report_crash(self, task: TaskInfo, text: str) -> None:
        try:
            self.update(task.task_id, TaskState.FAILED, f"launch_task raised:\n{text}"[-4000:])
        except SubstrateError:
            pass

    def _call(self, name: str, *args: Any) -> None:
        self._callbacks.put((name, args))

    def _finish(self, code: int) -> None:
        """Flush what is queued, then end the I/O loop with ``code`` (idempotent)."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            if code != EXIT_OK or self._exit_code == EXIT_OK:
                self._exit_code = code
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:
                pass
        elif self._io_thread is None:
            self._done.set()

    # ------------------------------------------------------------------ I/O thread

    def _io_thread_main(self) -> None:
        try:
            asyncio.run(self._io_main())
        except Exception:
            log.exception("executor driver I/O failed")
            self._exit_code = EXIT_AGENT_LOST
        finally:
            self._callbacks.put(None)
            self._done.set()
            if self._exit_code == EXIT_AGENT_LOST and self.hard_exit_grace >= 0:
                # Fail-safe against orphans: a program that does not end after its agent is
                # gone (a stuck callback, a non-daemon thread) is ended by the driver.
                timer = threading.Timer(self.hard_exit_grace, os._exit, (EXIT_AGENT_LOST,))
                timer.daemon = True
                timer.start()

    async def _io_main(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.call_soon(self._wake.set)   # anything queued before start()
        lost_since: Optional[float] = None
        backoff = 0.02
        while not self._stopping:
            try:
                subscribed = await self._session()
            except _Refused as exc:
                self._call("error", str(exc))
                self._exit_code = EXIT_REFUSED
                return
            if subscribed:
                lost_since, backoff = None, 0.02
            if self._stopping:
                return
            now = time.monotonic()
            lost_since = lost_since if lost_since is not None else now
            if now - lost_since >= self.recovery_timeout:
                log.error("agent at %s lost for %g s; giving up", self.endpoint,
                          self.recovery_timeout)
                self._call("error", f"lost the agent at {self.endpoint}")
                self._exit_code = EXIT_AGENT_LOST
                return
            self._wake.clear()
            try:   # sleep out the backoff, but wake at once for stop()
                await asyncio.wait_for(self._wake.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, 1.0)

    async def _session(self) -> bool:
        """One connection: subscribe, then pump both ways. True if it got SUBSCRIBED."""
        limit = max(64 * 1024 * 1024, 4 * self.max_payload_bytes + 1024 * 1024)
        options = [("grpc.max_receive_message_length", limit),
                   ("grpc.max_send_message_length", limit)]
        subscribed = False
        async with grpc.aio.insecure_channel(self.endpoint, options=options) as channel:
            call = rpc.AgentStub(channel).Executor()
            try:
                first = pb.ExecutorCall(type=pb.ExecutorCall.SUBSCRIBE)
                first.subscribe.framework_id = self.framework_id
                first.subscribe.executor_id = self.executor_id
                first.subscribe.token = self._token
                await call.write(first)
                event = await call.read()
                if event is grpc.aio.EOF:
                    return False
                if event.type == pb.ExecutorEvent.ERROR:
                    raise _Refused(event.error.message)
                if event.type != pb.ExecutorEvent.SUBSCRIBED:
                    raise _Refused(f"protocol error: expected SUBSCRIBED, got {event.type}")
                subscribed = True
                self._on_subscribed(event.subscribed)
                await self._pump(call)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                    raise _Refused(exc.details() or "subscription refused") from None
                log.info("agent stream broke: %s", exc.code())
            return subscribed

    def _on_subscribed(self, sub: "pb.ExecutorEvent.Subscribed") -> None:
        with self._lock:  # resend everything unacknowledged, in order, ahead of the rest
            messages = [m for m in self._outgoing if isinstance(m, bytes)]
            self._outgoing = list(self._unacked.values()) + messages
        self._wake.set()  # type: ignore[union-attr]
        if not self._registered_once:
            self._registered_once = True
            self._call("registered", executor_from_pb(sub.executor),
                       framework_from_pb(sub.framework), agent_from_pb(sub.agent))

    async def _pump(self, call) -> None:
        """Read events and write batches until the stream ends or the driver stops."""
        reader = asyncio.ensure_future(self._reader(call))
        writer = asyncio.ensure_future(self._writer(call))
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        if writer in done and not reader.done():
            # Stopping: we half-closed; the agent ends the stream once it has read everything.
            try:
                await asyncio.wait_for(asyncio.shield(reader), 2.0)
            except asyncio.TimeoutError:
                pass
        for job in (reader, writer):
            job.cancel()
        await asyncio.gather(reader, writer, return_exceptions=True)

    async def _reader(self, call) -> None:
        try:
            while True:
                event = await call.read()
                if event is grpc.aio.EOF:
                    return
                self._dispatch(event)
        except grpc.RpcError as exc:
            log.info("agent stream broke: %s", exc.code())

    async def _writer(self, call) -> None:
        wake = self._wake
        assert wake is not None
        try:
            while True:
                with self._lock:
                    items, self._outgoing = self._outgoing, []
                    stopping = self._stopping
                    self._wake_pending = False
                    if not items:
                        wake.clear()
                for out in _batches(items):
                    await call.write(out)
                if stopping and not items:
                    await call.done_writing()
                    return
                if not items:
                    await wake.wait()
        except (grpc.RpcError, asyncio.CancelledError):
            pass

    def _dispatch(self, event: pb.ExecutorEvent) -> None:
        kind = event.type
        E = pb.ExecutorEvent
        if kind == E.LAUNCH:
            self._call("__launch__", [task_from_pb(t) for t in event.launch.tasks])
        elif kind == E.KILL:
            self._call("kill_task", event.kill.task_id)
        elif kind == E.ACKNOWLEDGED:
            with self._lock:
                for ack in event.acknowledged.acks:
                    self._unacked.pop(ack.uuid, None)
        elif kind == E.MESSAGE:
            self._call("framework_message", event.message.data)
        elif kind == E.SHUTDOWN:
            self._call("shutdown")
            self._call("__finish__", EXIT_OK)
        elif kind == E.ERROR:
            self._call("error", event.error.message)

    # ------------------------------------------------------------------ inspection

    @property
    def unacknowledged(self) -> int:
        """How many sent status updates the agent has not acknowledged yet."""
        with self._lock:
            return len(self._unacked)


class _Refused(SubstrateError):
    """The agent refused this executor (fatal: no retry)."""


def _batches(items: list[Any]):
    """Group consecutive statuses into UPDATE calls (about 1 MiB each); messages go alone."""
    statuses: list[pb.TaskStatus] = []
    size = 0
    for item in items:
        if isinstance(item, bytes):
            if statuses:
                yield _update_call(statuses)
                statuses, size = [], 0
            call = pb.ExecutorCall(type=pb.ExecutorCall.MESSAGE)
            call.message.data = item
            yield call
            continue
        if statuses and size + len(item.data) > _BATCH_BYTES:
            yield _update_call(statuses)
            statuses, size = [], 0
        statuses.append(item)
        size += len(item.data) + 128
    if statuses:
        yield _update_call(statuses)


def _update_call(statuses: list[pb.TaskStatus]) -> pb.ExecutorCall:
    call = pb.ExecutorCall(type=pb.ExecutorCall.UPDATE)
    call.update.statuses.extend(statuses)
    return call


__all__ = ["Executor", "ExecutorDriver", "EXIT_OK", "EXIT_AGENT_LOST", "EXIT_REFUSED"]
