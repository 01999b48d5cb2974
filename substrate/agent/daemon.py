"""The agent daemon's edges: its gRPC servers, its link to the master, ``main``.

This module owns I/O only. Executors reach the agent over a Unix domain socket in the work dir
(``run/executors.sock``, the same path across agent restarts; executors running as another OS
user get a socket of that user's, see :mod:`substrate.agent.sockets`); the TCP server serves the
master's and operators' calls (ReadFile) and refuses executor streams. The executor service
authenticates each executor's SUBSCRIBE, rate-limits what it sends and pumps its stream in both
directions. At start the agent reads its checkpoint and recovers the executors a previous run
left behind (:mod:`substrate.agent.recovery`). The master link opens ``Master.Agent``, registers
(or re-registers), feeds every event to :meth:`AgentCore.handle_master_event`, drains
:attr:`AgentCore.outbox`, and reconnects with capped exponential backoff forever while executors
keep running. Everything the agent decides is in :mod:`substrate.agent.core` and
:mod:`substrate.agent.launcher`.
"""
from __future__ import annotations


import asyncio
import contextlib
import logging
import os
import signal
from typing import Callable, Optional

import grpc

from substrate.agent import checkpoint, files
from substrate.agent import gc as sandbox_gc
from substrate.agent.config import AgentConfig
from substrate.agent.core import AgentCore
from substrate.agent.records import ExecutorKey, executor_event
from substrate.agent.recovery import recover
from substrate.agent.resources_probe import probe
from substrate.agent.sockets import ExecutorSockets
from substrate.detector import MasterLocator
from substrate.errors import (
    AccessDenied, AuthenticationError, ClusterError, ConnectionLost, InvalidRequest,
)
from substrate.ratelimit import TokenBucket
from substrate.security.client import Credentials
from substrate.security.server import ServerSecurity
from substrate.v1 import pb, rpc

log = logging.getLogger(__name__)
_FIRST_BACKOFF = 0.05


class _LeaderMoved(Exception):
    """The leading master changed while a stream operation was pending."""


async def _unless_moved(op, follow: Optional["asyncio.Future"]):
    """Await a stream operation, giving it up if ``follow`` (a change of leader) fires first.

    Cancelling the call when the leader changes does not always complete an operation
    grpc.aio has pending (seen with many streams per process, a write queued on a channel
    to the dead master): the link would then wait forever. Racing the two cannot hang.
    """
    if follow is None:
        return await op
    task = asyncio.ensure_future(op)
    try:
        done, _ = await asyncio.wait({task, follow}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    raise _LeaderMoved()


#: Channel closings in progress (asyncio keeps only weak references to tasks).
_CLOSING: set = set()


async def _close_quietly(channel) -> None:
    with contextlib.suppress(Exception):
        await channel.close(None)


class _ExecutorService(rpc.AgentServicer):
    """``Agent.Executor`` (one bidirectional stream per executor process) and ``ReadFile``.

    ``local`` is True on the Unix-socket servers; executor streams arriving over TCP are
    refused, so the executor channel is reachable only from this host, by the user whose
    socket it is (``uid``; None: the agent's own).
    """

    def __init__(self, core: AgentCore, security: ServerSecurity, local: bool,
                 limits: "dict[ExecutorKey, tuple[TokenBucket, TokenBucket]]",
                 uid: Optional[int] = None) -> None:
        self.core = core
        self.security = security
        self.local = local
        self.limits = limits
        self.uid = uid

    async def Executor(self, request_iterator, context):  # noqa: N802 (gRPC method name)
        if not self.local:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "executors reach their agent over its local Unix socket only")
        first = await context.read()
        if first is grpc.aio.EOF or first.type != pb.ExecutorCall.SUBSCRIBE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first call on an executor stream must be SUBSCRIBE")
        ex, error = self.core.launcher.executor_subscribe(first.subscribe, self.uid)
        if ex is None:
            log.warning("%s (from %s)", error, context.peer())
            refusal = executor_event(pb.ExecutorEvent.ERROR)
            refusal.error.message = error
            await context.write(refusal)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, error)
        session = ex.session
        reader = asyncio.ensure_future(self._read(context, ex, session))
        try:
            while True:
                while ex.events and ex.session == session:
                    await context.write(ex.events.popleft())
                if ex.session != session or ex.closed or reader.done():
                    break
                ex.wake.clear()
                await ex.wake.wait()
        finally:
            reader.cancel()

    async def ReadFile(self, request, context):  # noqa: N802 (gRPC method name)
        try:
            framework = self.core.frameworks.get(request.framework_id)
            self.security.authorize(self.security.principal(context), "read_sandboxes",
                                    framework.principal if framework is not None else "")
        except (AccessDenied, AuthenticationError) as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        try:
            path = files.resolve(self.core.config.work_dir, request)
            area = str(files.area_of(self.core.config.work_dir, request))
            for chunk in files.read_chunks(path, request.offset, request.length, area):
                await context.write(chunk)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except FileNotFoundError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no such file: {exc}")
        except OSError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot read: {exc}")

    def _buckets(self, ex: Executor) -> "tuple[TokenBucket, TokenBucket]":
        buckets = self.limits.get(ex.key)
        if buckets is None:
            if len(self.limits) > 2 * len(self.core.executors) + 64:
                # Forget the buckets of executors that are gone (kept across re-subscriptions
                # only, so a reconnecting executor cannot reset its own limit).
                for key in [k for k in self.limits if k not in self.core.executors]:
                    del self.limits[key]
            cfg = self.core.config
            buckets = (TokenBucket(cfg.executor_message_rate, max(1.0, cfg.executor_message_rate)),
                       TokenBucket(cfg.executor_update_rate, max(1.0, cfg.executor_update_rate)))
            self.limits[ex.key] = buckets
        return buckets

    async def _read(self, context, ex: Executor, session: int) -> None:
        messages, updates = self._buckets(ex)
        try:
            while ex.session == session and not ex.closed:
                call = await context.read()
                if call is grpc.aio.EOF:
                    break
                if call.type == pb.ExecutorCall.MESSAGE:
                    wait = messages.take(1)
                elif call.type == pb.ExecutorCall.UPDATE:
                    wait = updates.take(len(call.update.statuses))
                else:
                    wait = 0.0
                if wait > 0:
                    # Over its rate: stop reading this stream for a while. gRPC flow control
                    # then holds the executor back; nothing it sent is lost.
                    await asyncio.sleep(wait)
                self.core.executor_call(ex, call)
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("executor %s: bad call", ex.key)
        finally:
            ex.wake.set()   # let the writer notice the stream is over


class Agent:
    """An agent daemon: runs tasks and executors for the master, inside a running asyncio loop.

    Parameters
    ----------
    config : AgentConfig
        Where the master is, what to offer, timings.
    security : ServerSecurity, optional
        Credentials, ACLs and TLS of the agent's server, and (``security.client``) what it
        presents to the master (``offerpool agent`` fills it from ``OFFERPOOL_*`` variables);
        default: none, which only a loopback ``config.host`` allows.

    Examples
    --------
    The embedded cluster starts agents like this (a master must be listening on ``master``)::

        agent = Agent(AgentConfig(master="127.0.0.1:5050", work_dir="/tmp/agent0"))
        await agent.start()
        await asyncio.wait_for(agent.registered.wait(), 20)
        print(agent.agent_id, agent.address, agent.snapshot()["tasks"])
        await agent.stop()
    """

    def __init__(self, config: AgentConfig, security: Optional[ServerSecurity] = None) -> None:
        self.config = config.validate()
        self.security = security or ServerSecurity()
        self.credentials = self.security.client or Credentials()
        resources = config.resources if config.resources is not None else probe(config.work_dir)
        self.core = AgentCore(config, resources)
        self.core.on_shutdown = self._shutdown_requested
        self.stopped = asyncio.Event()
        self.recovery = ""
        self._server: Optional[grpc.aio.Server] = None
        self._sockets: Optional[ExecutorSockets] = None
        self._lock_fd: Optional[int] = None
        self._link: Optional[asyncio.Task] = None
        self._stopping = False
        self._stop_job: Optional[asyncio.Task] = None
        #: Shared leader detection (many simulated agents in one process share one).
        self.locator: Optional[MasterLocator] = None

    # ------------------------------------------------------------------ public surface

    @property
    def address(self) -> str:
        """``host:port`` of the agent's own gRPC server (empty before :meth:`start`)."""
        return self.core.address

    @property
    def executor_endpoint(self) -> str:
        """``unix:<path>`` where this agent's executors reach it (empty before :meth:`start`)."""
        return self.core.executor_endpoint

    @property
    def agent_id(self) -> str:
        """The id the master gave this agent (empty before registration)."""
        return self.core.agent_id

    @property
    def registered(self) -> asyncio.Event:
        """Set once the master has registered this agent."""
        return self.core.registered

    @property
    def outbox(self) -> "asyncio.Queue[pb.AgentCall]":
        """Calls waiting for the master link (read it directly when ``config.master`` is empty)."""
        return self.core.outbox

    def handle_master_event(self, event: pb.AgentEvent) -> None:
        """Apply one event as if the master had sent it (the master link calls this)."""
        self.core.handle_master_event(event)

    def snapshot(self) -> dict:
        """A JSON-able view: agent id, resources, executors, tasks with their states."""
        return self.core.snapshot()

    async def start(self) -> None:
        """Recover from the checkpoint, start the executors' Unix socket and the TCP server on
        ``config.host:config.port``, then the master link.

        Raises
        ------
        ClusterError
            When a server cannot listen or the checkpoint cannot be read.
        """
        if self._server is not None:
            raise ClusterError("agent already started")
        cfg = self.config
        os.makedirs(cfg.work_dir, exist_ok=True)
        self._lock_fd = checkpoint.lock_work_dir(cfg.work_dir)
        try:
            await self._start(cfg)
        except BaseException:
            if self._server is not None:
                await self._server.stop(0)
            if self._sockets is not None:
                await self._sockets.stop(0)
            self._server = self._sockets = None
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    async def _start(self, cfg: AgentConfig) -> None:
        self.security.check_bind(cfg.host, "agent")
        if cfg.master and not cfg.master.startswith("zk://"):   # zk: checked per leader
            self.credentials.check_target(cfg.master)
        boot_id = checkpoint.read_boot_id(cfg.boot_id_file)
        self.recovery = recover(self.core, checkpoint.load(cfg.work_dir), cfg.recover, boot_id)
        log.info("%s", self.recovery)
        core = self.core
        core.checkpointer = lambda: checkpoint.write(cfg.work_dir, checkpoint.capture(core, boot_id))
        limit = cfg.grpc_message_limit
        options = [("grpc.max_receive_message_length", limit),
                   ("grpc.max_send_message_length", limit)]
        limits: dict = {}
        self._sockets = ExecutorSockets(
            checkpoint.socket_path(os.path.abspath(cfg.work_dir)), options,
            lambda uid: _ExecutorService(core, self.security, True, limits, uid))
        core.executor_endpoint = await self._sockets.start()
        core.user_endpoint = self._sockets.for_user
        for ex in list(core.executors.values()):    # recovered executors of other users
            if ex.user is not None:
                try:
                    await self._sockets.for_user(ex.user)
                except ClusterError as exc:
                    log.error("executor %s cannot reconnect: %s", ex.key, exc)
        # Executors never reach this server (see above), so every call on it carries a token.
        self._server = grpc.aio.server(options=options, interceptors=self.security.interceptors())
        rpc.add_AgentServicer_to_server(_ExecutorService(core, self.security, False, limits),
                                        self._server)
        bind = f"{self.config.host}:{self.config.port}"
        try:
            port = self.security.add_port(self._server, bind)
        except RuntimeError as exc:
            raise ClusterError(f"agent cannot listen on {bind}: {exc}") from None
        await self._server.start()
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = self.config.hostname
        self.core.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        log.info("agent serving executors on %s, the master and operators on %s",
                 core.executor_endpoint, core.address)
        core.checkpoint_now()
        if self.config.master:
            self._link = asyncio.ensure_future(self._master_link())
        self._gc = asyncio.ensure_future(sandbox_gc.run_periodically(self.core))

    async def stop(self, kill_executors: bool = True) -> None:
        """Leave the master, optionally shut every executor down, stop the server."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        if getattr(self, "_gc", None) is not None:
            self._gc.cancel()
        try:
            if self._link is not None:
                self._link.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._link
            self.core.link_lost()
            if kill_executors:
                await self.core.launcher.shutdown_all(self.config.executor_shutdown_grace)
            self.core.close()
            if kill_executors:   # otherwise the containers stay, holding what still runs
                await self.core.isolator.close()
            if self._server is not None:
                await self._server.stop(0.2)
            if self._sockets is not None:
                await self._sockets.stop(0.2)
        finally:
            self._release_lock()
            self.stopped.set()

    def _shutdown_requested(self) -> None:
        if self._stop_job is None:
            self._stop_job = asyncio.ensure_future(self.stop(kill_executors=True))

    # ------------------------------------------------------------------ master link

    async def _master_link(self) -> None:
        limit = self.config.grpc_message_limit
        options = [("grpc.max_receive_message_length", limit),
                   ("grpc.max_send_message_length", limit)]
        locator = self.locator or MasterLocator(self.config.master)
        try:
            await self._link_loop(locator, options)
        finally:
            if self.locator is None:
                await asyncio.get_running_loop().run_in_executor(None, locator.close)

    async def _link_loop(self, locator: MasterLocator, options: list) -> None:
        backoff, last_target = _FIRST_BACKOFF, ""
        while not self._stopping:
            channel = None
            follow = None
            try:
                # zk:// masters: register with whoever leads, and move when that changes.
                target = await locator.resolve(timeout=5.0)
                if target != last_target:
                    # A new leader (that may not have taken office yet): retry it at the
                    # first backoff, not at one grown against the master that died.
                    backoff, last_target = _FIRST_BACKOFF, target
                channel = self.credentials.aio_channel(target, options)
                call = rpc.MasterStub(channel).Agent(metadata=self.credentials.metadata)
                if locator.is_zk:
                    follow = asyncio.ensure_future(locator.wait_changed(target))
                    follow.add_done_callback(lambda f, c=call: f.cancelled() or c.cancel())
                await _unless_moved(call.write(self.core.registration_call()), follow)
                writer = asyncio.ensure_future(self._drain_outbox(call))
                try:
                    while True:
                        event = await _unless_moved(call.read(), follow)
                        if event is grpc.aio.EOF:
                            log.warning("the master closed the agent stream")
                            break
                        backoff = _FIRST_BACKOFF
                        self.core.handle_master_event(event)
                finally:
                    writer.cancel()
            except (asyncio.CancelledError, _LeaderMoved):
                if follow is None or not follow.done() or follow.cancelled():
                    if follow is not None:
                        follow.cancel()
                    raise
                log.info("the leading master changed; re-registering")
            except ConnectionLost as exc:
                log.info("no leading master yet (%s); retrying in %.2f s", exc, backoff)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    # Keep retrying (an operator may fix the credentials file) but say why.
                    log.error("the master %s refused this agent: %s", self.config.master,
                              exc.details() if hasattr(exc, "details") else code)
                log.info("master %s unreachable (%s); retrying in %.2f s",
                         self.config.master, code, backoff)
            except Exception:
                log.exception("master link failed; retrying in %.2f s", backoff)
            finally:
                self.core.link_lost()
                if channel is not None:
                    # Not awaited: closing waits for calls that grpc.aio may never complete.
                    closing = asyncio.ensure_future(_close_quietly(channel))
                    _CLOSING.add(closing)
                    closing.add_done_callback(_CLOSING.discard)
            try:
                if self._stopping:
                    break
                if follow is not None and follow.done() and not follow.cancelled():
                    backoff = _FIRST_BACKOFF  # a new leader: go there at once
                    continue
                # Backoff between attempts (not synchronisation); a new leader ends it early,
                # so that a failover is not stretched by a backoff grown against the old one.
                if follow is not None:
                    await asyncio.wait({follow}, timeout=backoff)
                else:
                    await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max(self.config.reconnect_backoff_max, _FIRST_BACKOFF))
            finally:
                if follow is not None:
                    follow.cancel()

    async def _drain_outbox(self, call) -> None:
        outbox = self.core.outbox
        try:
            while True:
                await call.write(await outbox.get())
        except (asyncio.CancelledError, grpc.RpcError):
            pass
        except Exception:
            log.exception("writing to the master failed")


def main(config: AgentConfig, ready: "Callable[[Agent], None] | None" = None,
         security: Optional[ServerSecurity] = None) -> int:
    """Run an agent until SIGINT/SIGTERM or the master's SHUTDOWN; returns the exit code.

    ``ready``, if given, is called with the agent once the master has registered it.

    Examples
    --------
    ``offerpool agent --master host:5050`` calls ``main(AgentConfig(master="host:5050"))``.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):   # before start: no window without them
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        agent = Agent(config, security)
        await agent.start()
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(agent.stopped.wait())]
        if ready is not None:
            registered = asyncio.ensure_future(agent.registered.wait())
            await asyncio.wait([registered, *waits], return_when=asyncio.FIRST_COMPLETED)
            registered.cancel()
            if agent.registered.is_set() and not stop.is_set():
                ready(agent)
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        await agent.stop(kill_executors=True)
        return 0

    return asyncio.run(run())
