"""The scheduler driver's stream to the master: subscribe, dispatch events, fail over.

Runs on the driver's own event loop (see :class:`substrate.scheduler.SchedulerDriver`).
Owns reconnection with capped backoff, the epoch check (events from an older leader epoch
are dropped), implicit acknowledgements and the implicit reconciliation after every
subscription. Callbacks are invoked here, one at a time.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, AsyncIterator

import grpc

from substrate import convert
from substrate.detector import MasterLocator
from substrate.errors import ConnectionLost
from substrate.security.client import security_error
from substrate.v1 import pb, rpc

if TYPE_CHECKING:
    from substrate.scheduler import SchedulerDriver

log = logging.getLogger("substrate.scheduler")

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


class _Fatal(Exception):
    pass


async def run_scheduler_stream(driver: "SchedulerDriver") -> None:
    """Keep a subscription alive until the driver stops or the master refuses it."""
    locator = MasterLocator(driver.master)
    try:
        await _run(driver, locator)
    finally:
        await asyncio.get_running_loop().run_in_executor(None, locator.close)


async def _run(driver: "SchedulerDriver", locator: MasterLocator) -> None:
    from substrate.scheduler import _STOP

    backoff = 0.05
    lost_at = None
    epoch = 0
    while True:
        channel = None
        stop_requested = False
        try:
            # zk:// masters: whoever leads now (waiting a little for an election).
            target = await locator.resolve(timeout=min(5.0, driver.reconnect_timeout))
            channel = driver.credentials.aio_channel(target, CHANNEL_OPTIONS)
            stop_requested, epoch = await _session(driver, channel, epoch, locator, target)
            backoff = 0.05
            lost_at = None
        except _Fatal as exc:
            log.warning("the master at %s ended the subscription: %s", driver.master, exc)
            driver._fatal(str(exc))
            _callback(driver, "error", str(exc))
            stop_requested = True
        except (grpc.RpcError, ConnectionError, ConnectionLost) as exc:
            refused = security_error(exc, f"the master at {driver.master}") \
                if isinstance(exc, grpc.RpcError) else None
            if refused is not None:  # wrong credentials or ACL: retrying cannot help
                driver._error = refused
                _callback(driver, "error", str(refused))
                stop_requested = True
            # A warning: a break is survivable only within the framework's failover timeout,
            # and when it is not, this line says why the driver went away.
            log.warning("scheduler stream to %s broke: %s", driver.master,
                        exc.details() if isinstance(exc, grpc.aio.AioRpcError) else exc)
        finally:
            if channel is not None:
                await channel.close(grace=None)
        if stop_requested:
            return
        # Drain a stop request that arrived while disconnected.
        while not driver._queue.empty():
            if driver._queue.get_nowait() is _STOP:
                return
        now = time.monotonic()
        if lost_at is None:
            lost_at = now
            if driver.framework_id and driver._subscriptions:
                _callback(driver, "disconnected")
        if now - lost_at > driver.reconnect_timeout:
            driver._fatal(f"lost the master at {driver.master} for over "
                          f"{driver.reconnect_timeout} s")
            _callback(driver, "error", f"cannot reach the master at {driver.master}")
            return
        try:
            item = await asyncio.wait_for(driver._queue.get(), backoff)
            if item is _STOP:
                return
            # Calls made while disconnected are dropped, as with a lost network message;
            # the subscription's reconciliation recovers the task states.
        except asyncio.TimeoutError:
            pass
        backoff = min(backoff * 2, 1.0)


async def _session(driver: "SchedulerDriver", channel: grpc.aio.Channel, epoch: int,
                   locator: MasterLocator, target: str) -> tuple[bool, int]:
    """One subscription; returns (stop requested, highest epoch seen)."""
    from substrate.scheduler import _STOP

    stub = rpc.MasterStub(channel)
    info = convert.framework_to_pb(driver.framework)
    info.id = driver.framework_id
    state = {"stop": False, "epoch": max(epoch, driver._seen_epoch), "moved": False}

    async def calls() -> AsyncIterator["pb.Call"]:
        # Every call carries the newest epoch seen: a deposed master that gets one learns
        # it was deposed and refuses it.
        yield pb.Call(type=pb.Call.SUBSCRIBE, epoch=state["epoch"],
                      subscribe=pb.Call.Subscribe(framework_info=info))
        while True:
            item = await driver._queue.get()
            if item is _STOP:
                state["stop"] = True
                return
            item.framework_id = driver.framework_id
            if item.type == pb.Call.TEARDOWN:
                # The master ends the stream once it has removed the framework; re-subscribing
                # then would only be refused ("framework unknown").
                state["stop"] = True
            item.epoch = state["epoch"]
            yield item

    stream = stub.Scheduler(calls(), metadata=driver.credentials.metadata)

    async def follow_leader() -> None:
        await locator.wait_changed(target)
        state["moved"] = True
        stream.cancel()  # the leader changed: subscribe with the new one

    watcher = asyncio.ensure_future(follow_leader()) if locator.is_zk else None
    try:
        async for event in stream:
            if event.epoch < state["epoch"]:
                if event.type == pb.Event.SUBSCRIBED:
                    raise ConnectionError(f"{target} is a deposed leader (epoch {event.epoch})")
                continue  # a deposed leader's message
            state["epoch"] = driver._seen_epoch = event.epoch
            _dispatch(driver, event)
    except asyncio.CancelledError:
        if not state["moved"]:
            raise
        raise ConnectionError("the leading master changed") from None
    except grpc.aio.AioRpcError:
        if state["stop"]:
            return True, state["epoch"]
        raise
    finally:
        stream.cancel()
        if watcher is not None:
            watcher.cancel()
    if state["moved"]:
        raise ConnectionError("the leading master changed")
    return state["stop"], state["epoch"]


def _dispatch(driver: "SchedulerDriver", event: "pb.Event") -> None:
    kind = event.type
    if kind == pb.Event.UPDATE:
        for msg in event.update.statuses:
            status = convert.status_from_pb(msg)
            _callback(driver, "status_update", status)
            if driver.implicit_acknowledgements and status.uuid:
                driver.acknowledge_status_update(status)
    elif kind == pb.Event.OFFERS:
        offers = [convert.offer_from_pb(o) for o in event.offers.offers]
        _callback(driver, "resource_offers", offers)
    elif kind == pb.Event.SUBSCRIBED:
        first = not driver._subscriptions
        driver._subscriptions += 1
        driver.framework_id = event.subscribed.framework_id
        driver.framework.id = driver.framework_id
        driver.master_id = event.subscribed.master_id
        driver.dashboard_url = event.subscribed.dashboard_url
        driver._registered.set()
        if first:
            _callback(driver, "registered", driver.framework_id, driver.master_id)
        else:
            _callback(driver, "reregistered", driver.master_id)
        driver.reconcile_tasks()  # implicit reconciliation after every subscription
    elif kind == pb.Event.RESCIND:
        _callback(driver, "offer_rescinded", event.rescind.offer_id)
    elif kind == pb.Event.MESSAGE:
        m = event.message
        _callback(driver, "framework_message", m.agent_id, m.executor_id, m.data)
    elif kind == pb.Event.FAILURE:
        f = event.failure
        if f.executor_id:
            _callback(driver, "executor_lost", f.agent_id, f.executor_id, f.status)
        else:
            _callback(driver, "agent_lost", f.agent_id)
    elif kind == pb.Event.ERROR:
        if event.error.fatal:
            raise _Fatal(event.error.message)
        _callback(driver, "error", event.error.message)


def _callback(driver: "SchedulerDriver", name: str, *args: object) -> None:
    try:
        getattr(driver.scheduler, name)(driver, *args)
    except Exception:
        # A framework bug must not kill the driver thread; it is logged with its traceback.
        log.exception("scheduler callback %s raised", name)
