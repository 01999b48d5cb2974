"""The master's gRPC edge: scheduler and agent streams in, the core's outbox out.

All state lives in :class:`~substrate.master.core.MasterCore` and is touched only from the
event loop that runs this service, so no locks are needed. Each connected scheduler or agent
has an outgoing queue; after every event the outbox is drained into those queues, and an
allocation is scheduled on the loop when the core asks for one (allocation happens on events;
the periodic tick only catches expiring timers).
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import AsyncIterator, Awaitable, Callable, Optional

import grpc
from google.protobuf.message import DecodeError

from substrate.errors import AccessDenied, AuthenticationError, InvalidRequest
from substrate.master.calls import handle_call
from substrate.master.core import MasterCore
from substrate.master.state_view import state_snapshot
from substrate.security import master_checks
from substrate.security.server import ServerSecurity
from substrate.v1 import pb, rpc

log = logging.getLogger("substrate.master")

_CLOSE = object()
#: How long a stream that reaches an elected master still taking office waits for it, s.
OFFICE_WAIT = 30.0


class _Conn:
    """One open stream: its outgoing queue and a generation number."""

    __slots__ = ("queue", "generation")

    def __init__(self, generation: int) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.generation = generation


class MasterService(rpc.MasterServicer):
    """Serves ``substrate.v1.Master`` for one :class:`MasterCore`."""

    def __init__(self, core: MasterCore, security: Optional[ServerSecurity] = None) -> None:
        self.core = core
        self.security = security or ServerSecurity()
        self.frameworks: dict[str, _Conn] = {}
        self.agents: dict[str, _Conn] = {}
        self._generation = 0
        self._allocation_scheduled = False
        self._tick_task: Optional[asyncio.Task] = None
        self.dashboard_url = ""
        # Master HA: a standby (or deposed) master serves no streams. ``on_stale`` is set by
        # an elected master; a client that has seen a newer epoch than ours proves that we
        # were deposed, and we step down at once.
        self.leading = True
        self.on_stale: Optional[Callable[[], None]] = None
        # Elected but still taking office (loading the registry): resolves True once leading,
        # False if deposed first. Streams that arrive meanwhile wait for it instead of being
        # refused, so that thousands of agents following the new leader do not all back off
        # (up to seconds) and come back together just after it took office.
        self.office: Optional[asyncio.Future] = None
        self.held_streams = 0   # streams waiting for it now

    # ------------------------------------------------------------------ plumbing
    def start_timers(self) -> None:
        self._tick_task = asyncio.get_running_loop().create_task(self._ticker())

    async def close(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
        for conn in list(self.frameworks.values()) + list(self.agents.values()):
            conn.queue.put_nowait(_CLOSE)

    def lead(self, core: MasterCore) -> None:
        """Serve ``core`` (this master was elected)."""
        self.core = core
        self.leading = True
        self.start_timers()
        self.flush()
        self.end_taking_office()

    def taking_office(self) -> None:
        """This master was elected and prepares to lead: hold new streams until it does."""
        if self.office is None or self.office.done():
            self.office = asyncio.get_running_loop().create_future()

    def end_taking_office(self) -> None:
        """Release the held streams: served if we now lead, refused otherwise."""
        office, self.office = self.office, None
        if office is not None and not office.done():
            office.set_result(self.leading)

    async def _serving(self) -> bool:
        """True when this master leads, after waiting out a term of office being taken."""
        office = self.office
        if not self.leading and office is not None:
            self.held_streams += 1
            try:
                await asyncio.wait_for(asyncio.shield(office), OFFICE_WAIT)
            except asyncio.TimeoutError:
                pass
            finally:
                self.held_streams -= 1
        return self.leading

    def step_down(self, placeholder: MasterCore) -> None:
        """Stop serving: close every stream without telling the old core (which must not
        touch the registry or anyone again) and keep ``placeholder`` for ``/state``."""
        from substrate.master.registry import InMemoryRegistry

        self.leading = False
        self.end_taking_office()
        if self._tick_task is not None:
            self._tick_task.cancel()
            self._tick_task = None
        old, self.core = self.core, placeholder
        old.registry = InMemoryRegistry()  # fence: a deposed core writes nowhere durable
        old.outbox.clear()
        conns = list(self.frameworks.values()) + list(self.agents.values())
        self.frameworks.clear()
        self.agents.clear()
        for conn in conns:
            conn.queue.put_nowait(_CLOSE)

    def _stale(self, epoch: int) -> bool:
        """True (and step down) when a client has seen a newer leader epoch than ours."""
        if epoch > self.core.epoch and self.on_stale is not None:
            log.warning("a client has seen epoch %d > ours (%d): we were deposed",
                        epoch, self.core.epoch)
            self.on_stale()
            return True
        return False

    async def _ticker(self) -> None:
        cfg = self.core.config
        period = max(0.01, min(cfg.allocation_interval, cfg.agent_heartbeat_interval / 2,
                               cfg.framework_heartbeat_interval / 2))
        while True:
            await asyncio.sleep(period)
            try:
                self.core.tick()
            except Exception:  # a timer bug must not stop the master
                log.exception("master tick failed")
            self.flush()

    def flush(self) -> None:
        """Deliver the core's outbox; schedule an allocation if one is pending."""
        core = self.core
        out, core.outbox = core.outbox, []
        for kind, target, message in out:
            if kind == "framework":
                conn = self.frameworks.get(target)
                if conn is not None:
                    conn.queue.put_nowait(message)
            elif kind in ("agent", "agent_after_register"):
                conn = self.agents.get(target)
                if conn is not None:
                    conn.queue.put_nowait(message)
            elif kind == "close_framework":
                conn = self.frameworks.pop(target, None)
                if conn is not None:
                    if message is not None:
                        conn.queue.put_nowait(message)
                    conn.queue.put_nowait(_CLOSE)
        if core.allocation_pending and not self._allocation_scheduled:
            self._allocation_scheduled = True
            asyncio.get_running_loop().call_soon(self._allocate)

    def _allocate(self) -> None:
        self._allocation_scheduled = False
        try:
            self.core.allocate()
        except Exception:
            log.exception("allocation failed")
        self.flush()

    async def _pump(self, conn: _Conn, table: dict, key: str,
                    on_disconnect: Callable[[str], None], reading: Awaitable[None]
                    ) -> AsyncIterator[object]:
        """Yield a stream's outgoing messages while ``reading`` consumes its incoming ones;
        when the stream ends, tell the core, unless a newer stream has replaced this one."""
        reader = asyncio.get_running_loop().create_task(reading)
        try:
            while True:
                item = await conn.queue.get()
                if item is _CLOSE:
                    break
                yield item
        finally:
            reader.cancel()
            if table.get(key) is conn:
                del table[key]
                on_disconnect(key)
                self.flush()

    def _next_generation(self) -> int:
        self._generation += 1
        return self._generation

    # ------------------------------------------------------------------ schedulers
    async def Scheduler(self, request_iterator: AsyncIterator["pb.Call"],
                        context: grpc.aio.ServicerContext) -> AsyncIterator["pb.Event"]:
        try:
            first = await request_iterator.__anext__()
        except (StopAsyncIteration, grpc.RpcError, asyncio.CancelledError):
            return
        except DecodeError as exc:   # bytes that are no Call: a clear refusal, not UNKNOWN
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed Call: {exc}")
        if not await self._serving() or self._stale(first.epoch):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not the leading master")
            return
        core = self.core
        if first.type != pb.Call.SUBSCRIBE:
            yield core.event(pb.Event.ERROR, error=pb.Event.Error(
                message="the first call must be SUBSCRIBE", call_type=first.type, fatal=True))
            return
        try:
            info = first.subscribe.framework_info
            master_checks.check_subscribe(self.security, core.frameworks,
                                          self.security.principal(context), info)
        except (AccessDenied, AuthenticationError) as exc:
            core.counters["invalid_calls"] += 1
            log.warning("refused a subscription: %s", exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            return
        try:
            fid = core.framework_subscribe(info)
        except InvalidRequest as exc:
            core.counters["invalid_calls"] += 1
            yield core.event(pb.Event.ERROR, error=pb.Event.Error(
                message=str(exc), call_type=pb.Call.SUBSCRIBE, fatal=True))
            return
        self.flush()  # a replaced scheduler's stream is closed by the outbox first
        conn = _Conn(self._next_generation())
        self.frameworks[fid] = conn   # events from now on queue behind SUBSCRIBED
        # Confirm only what a successor would know: a leader that dies right after
        # SUBSCRIBED must not leave a framework its successor calls unknown.
        try:
            if not core.registry.settled(0.0):
                if not await asyncio.get_running_loop().run_in_executor(
                        None, core.registry.settled, 10.0):
                    log.warning("the registry did not confirm framework %s in time", fid)
        except asyncio.CancelledError:   # the scheduler went away meanwhile
            if self.frameworks.get(fid) is conn:
                del self.frameworks[fid]
                core.framework_disconnected(fid)
                self.flush()
            raise
        if not self.leading or self.core is not core:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not the leading master")
        cfg = core.config
        yield core.event(pb.Event.SUBSCRIBED, subscribed=pb.Event.Subscribed(
            framework_id=fid, heartbeat_interval_seconds=cfg.framework_heartbeat_interval,
            master_id=core.master_id, dashboard_url=self.dashboard_url))
        async for item in self._pump(conn, self.frameworks, fid, core.framework_disconnected,
                                     self._read_calls(fid, conn, request_iterator)):
            yield item

    async def _read_calls(self, fid: str, conn: _Conn,
                          request_iterator: AsyncIterator["pb.Call"]) -> None:
        core = self.core
        try:
            async for call in request_iterator:
                if self.frameworks.get(fid) is not conn:
                    return
                if self._stale(call.epoch):
                    return
                try:
                    handle_call(core, fid, call)
                except InvalidRequest as exc:
                    core.counters["invalid_calls"] += 1
                    conn.queue.put_nowait(core.event(pb.Event.ERROR, error=pb.Event.Error(
                        message=str(exc), call_type=call.type)))
                except Exception as exc:  # never let one client's call take the master down
                    log.exception("call %s from %s failed", call.type, fid)
                    conn.queue.put_nowait(core.event(pb.Event.ERROR, error=pb.Event.Error(
                        message=f"internal error: {type(exc).__name__}: {exc}",
                        call_type=call.type)))
                self.flush()
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        except DecodeError as exc:
            log.warning("malformed call from %s: %s", fid, exc)
            conn.queue.put_nowait(core.event(pb.Event.ERROR, error=pb.Event.Error(
                message=f"malformed Call: {exc}", fatal=True)))
        except Exception:
            log.exception("scheduler stream of %s failed", fid)
        if self.frameworks.get(fid) is conn:
            conn.queue.put_nowait(_CLOSE)

    # ------------------------------------------------------------------ agents
    async def Agent(self, request_iterator: AsyncIterator["pb.AgentCall"],
                    context: grpc.aio.ServicerContext) -> AsyncIterator["pb.AgentEvent"]:
        try:
            first = await request_iterator.__anext__()
        except (StopAsyncIteration, grpc.RpcError, asyncio.CancelledError):
            return
        except DecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed AgentCall: {exc}")
        if not await self._serving() or self._stale(first.epoch):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not the leading master")
            return
        if first.type not in (pb.AgentCall.REGISTER, pb.AgentCall.REREGISTER):
            return
        core = self.core
        try:
            self.security.authorize(self.security.principal(context), "register_agents")
        except (AccessDenied, AuthenticationError) as exc:
            log.warning("refused agent registration: %s", exc)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            return
        try:
            aid = core.agent_register(first)
        except InvalidRequest as exc:
            log.warning("refused agent registration: %s", exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        old = self.agents.get(aid)
        if old is not None:
            old.queue.put_nowait(_CLOSE)
        conn = _Conn(self._next_generation())
        self.agents[aid] = conn
        yield pb.AgentEvent(type=pb.AgentEvent.REGISTERED, epoch=core.epoch,
                            registered=pb.AgentEvent.Registered(
                                agent_id=aid, master_id=core.master_id,
                                heartbeat_interval_seconds=core.config.agent_heartbeat_interval))
        self.flush()
        async for item in self._pump(conn, self.agents, aid, core.agent_disconnected,
                                     self._read_agent(aid, conn, request_iterator)):
            yield item

    async def _read_agent(self, aid: str, conn: _Conn,
                          request_iterator: AsyncIterator["pb.AgentCall"]) -> None:
        core = self.core
        try:
            async for call in request_iterator:
                if self.agents.get(aid) is not conn or aid not in core.agents:
                    break
                if self._stale(call.epoch):
                    break
                if call.epoch > core.epoch:
                    log.warning("agent %s has seen a newer master epoch", aid)
                try:
                    core.agent_heartbeat(aid)  # any traffic proves the agent alive
                    if call.type == pb.AgentCall.UPDATE:
                        core.agent_update(aid, call.update.statuses)
                    elif call.type == pb.AgentCall.MESSAGE:
                        core.agent_message(aid, call.message)
                    elif call.type == pb.AgentCall.EXECUTOR_EXITED:
                        core.agent_executor_exited(aid, call.executor_exited)
                except InvalidRequest as exc:
                    log.warning("bad call from agent %s: %s", aid, exc)
                except Exception:
                    log.exception("call from agent %s failed", aid)
                self.flush()
        except (grpc.RpcError, asyncio.CancelledError):
            pass
        except DecodeError as exc:
            log.warning("malformed call from agent %s: %s", aid, exc)
        except Exception:
            log.exception("agent stream of %s failed", aid)
        if self.agents.get(aid) is conn:
            conn.queue.put_nowait(_CLOSE)

    # ------------------------------------------------------------------ operator
    async def DrainAgent(self, request: "pb.DrainAgentRequest",
                         context: grpc.aio.ServicerContext) -> "pb.DrainAgentResponse":
        if not self.leading:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not the leading master")
        try:
            self.security.authorize(self.security.principal(context), "drain_agents")
        except (AccessDenied, AuthenticationError) as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        grace = (request.grace_period_seconds if request.HasField("grace_period_seconds")
                 else None)
        try:
            killed = self.core.drain_agent(request.agent_id, grace, request.reactivate)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self.flush()
        agent = self.core.agents.get(request.agent_id)
        return pb.DrainAgentResponse(agent_id=request.agent_id,
                                     draining=bool(agent is not None and agent.draining),
                                     tasks_killed=killed)

    # ------------------------------------------------------------------ state
    async def GetState(self, request: "pb.StateRequest",
                       context: grpc.aio.ServicerContext) -> "pb.StateResponse":
        try:
            self.security.authorize(self.security.principal(context), "view_state")
        except (AccessDenied, AuthenticationError) as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        state = state_snapshot(self.core)
        state["leading"] = self.leading
        return pb.StateResponse(json=json.dumps(state))

    async def Teardown(self, request: "pb.TeardownRequest",
                       context: grpc.aio.ServicerContext) -> "pb.TeardownResponse":
        if not self.leading:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not the leading master")
        fw = self.core.frameworks.get(request.framework_id)
        if fw is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"framework {request.framework_id!r} is unknown")
        try:
            master_checks.check_teardown(self.security, self.security.principal(context), fw)
        except (AccessDenied, AuthenticationError) as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
        self.core.outbox.append(("close_framework", fw.framework_id, None))
        self.core.remove_framework(fw.framework_id)
        self.flush()
        return pb.TeardownResponse()
