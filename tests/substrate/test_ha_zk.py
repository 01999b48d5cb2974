"""ZooKeeper edges of master HA on a real ZooKeeper: the registry, its fencing, leader
election with real session expiry, and leader detection."""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings

from substrate.detector import LeaderDetector, MasterLocator, parse_zk_url
from substrate.errors import InvalidRequest
from substrate.master import Master, MasterConfig
from substrate.master.registry import InMemoryRegistry
from substrate.master.zk import ZkRegistry
from tests.substrate.ha_helpers import LoopThread
from tests.substrate.test_ha_core import _ops, apply, view
from tests.zookeeper import zookeeper  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(120)


def kazoo(server):
    from kazoo.client import KazooClient
    client = KazooClient(server.hosts, timeout=10)
    client.start(timeout=20)
    return client


@pytest.fixture(scope="module")
def zk_client(zookeeper):  # noqa: F811
    client = kazoo(zookeeper)
    yield client
    client.stop()
    client.close()


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
def test_zookeeper_registry_reloaded_equals_the_in_memory_one(zookeeper, zk_client, ops):  # noqa: F811
    _, path = parse_zk_url(zookeeper.url("reg"))
    model, reg = InMemoryRegistry(), ZkRegistry(zk_client, path).load()
    reg.next_epoch()
    model.next_epoch()
    apply(model, ops)
    apply(reg, ops)
    reg.flush()
    assert reg.failed_writes == 0
    again = ZkRegistry(zk_client, path).load()
    assert view(again) == view(model)
    assert again.next_epoch() == model.next_epoch()


def test_a_deposed_leaders_registry_writes_are_refused(zookeeper, zk_client):  # noqa: F811
    _, path = parse_zk_url(zookeeper.url("fence"))
    old = ZkRegistry(zk_client, path).load()
    first = old.next_epoch()
    old.admit_agent("a1", "h1")
    old.flush()
    new = ZkRegistry(zk_client, path).load()
    assert new.next_epoch() == first + 1
    old.remove_agent("a1")
    old.add_framework("fw-x", "x", "*", 1.0, 5.0)
    old.flush()
    assert old.failed_writes == 2
    assert ZkRegistry(zk_client, path).load().agents() == {"a1": "h1"}
    assert ZkRegistry(zk_client, path).load().frameworks() == {}


class DeferredReads(ZkRegistry):
    """A registry whose background hostname reads start only when the test says so."""

    def _read_hostnames(self, names: list) -> None:
        self.deferred = names

    def read_now(self) -> None:
        ZkRegistry._read_hostnames(self, self.deferred)


def test_reregistrations_before_the_hostnames_are_read_write_only_what_changed(
        zookeeper, zk_client):  # noqa: F811
    _, path = parse_zk_url(zookeeper.url("lazy"))
    old = ZkRegistry(zk_client, path).load()
    old.next_epoch()
    for i in range(4):
        old.admit_agent(f"a{i}", f"h{i}")
    old.flush()
    new = DeferredReads(zk_client, path).load()
    new.next_epoch()
    assert sorted(new.agent_ids()) == ["a0", "a1", "a2", "a3"]   # what recovery needs
    new.admit_agent("a0", "h0")          # same host: nothing to write
    new.admit_agent("a1", "h1-moved")    # moved: written once its stored host is read
    new.admit_agent("a1", "h1-again")    # ... with the latest one
    new.remove_agent("a2")               # deleted at once
    assert not new.wait_loaded(0)
    new.read_now()
    new.flush()
    assert new.failed_writes == 0
    assert new.agents() == {"a0": "h0", "a1": "h1-again", "a3": "h3"}
    assert ZkRegistry(zk_client, path).load().agents() == new.agents()
    assert zk_client.get(f"{path}/registry/agents/a0")[1].version == 0   # never rewritten
    assert zk_client.get(f"{path}/registry/agents/a1")[1].version == 1   # written once


def test_bad_zookeeper_urls_are_clear_errors():
    for url in ("zk://", "zk://h:1", "zk://h/x", "zk://h:1/a b"):
        with pytest.raises(InvalidRequest):
            MasterLocator(url)


def test_session_expiry_deposes_the_leader_and_elects_the_other(zookeeper):  # noqa: F811
    url = zookeeper.url("expiry")
    lt = LoopThread()
    cfg = MasterConfig(agent_heartbeat_interval=1.0)
    a = Master(http_port=None, config=cfg, zk=url, zk_session_timeout=1.0)
    b = Master(http_port=None, config=cfg, zk=url, zk_session_timeout=1.0)
    detector = LeaderDetector(url).start()
    try:
        lt.run(a.start())
        lt.run(a.leadership.wait_elected(30))
        lt.run(b.start())
        assert detector.wait_leader(30).address == a.address
        epoch_a = lt.call(lambda: a.core.epoch)
        assert lt.call(lambda: (a.leading, b.leading)) == (True, False)
        # A real expiry: another client takes over A's session and closes it.
        from kazoo.client import KazooClient
        thief = KazooClient(zookeeper.hosts, client_id=a.leadership.contender.client.client_id,
                            timeout=5)
        thief.start(timeout=20)
        thief.stop()
        thief.close()
        lt.run(b.leadership.wait_elected(30))
        assert lt.call(lambda: b.core.epoch) > epoch_a
        _wait(lambda: detector.leader and detector.leader.address == b.address)
        _wait(lambda: not lt.call(lambda: a.leading))
        # A stood down and contends again, behind B.
        _wait(lambda: lt.call(lambda: a.leadership.contender.node is not None))
        assert lt.call(lambda: a.core.epoch) == 0
    finally:
        detector.close()
        lt.run(a.stop())
        lt.run(b.stop())
        lt.stop()


def _wait(predicate, timeout: float = 30.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)  # polling another thread's state; the predicate decides


def test_a_leader_shown_a_newer_epoch_steps_down_and_contends_again(zookeeper):  # noqa: F811
    import grpc

    from substrate.v1 import pb, rpc

    url = zookeeper.url("stale")
    lt = LoopThread()
    a = Master(http_port=None, config=MasterConfig(), zk=url, zk_session_timeout=2.0)
    try:
        lt.run(a.start())
        lt.run(a.leadership.wait_elected(30))
        epoch = lt.call(lambda: a.core.epoch)

        async def register_with_newer_epoch():
            async with grpc.aio.insecure_channel(a.address) as channel:
                call = rpc.MasterStub(channel).Agent()
                await call.write(pb.AgentCall(type=pb.AgentCall.REGISTER, epoch=epoch + 1))
                try:
                    await call.read()
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                return None

        assert asyncio.run(register_with_newer_epoch()) == grpc.StatusCode.UNAVAILABLE
        # It stood down, resigned its place and, alone, is elected again with a new epoch.
        lt.run(a.leadership.wait_elected(30))
        _wait(lambda: lt.call(lambda: a.core.epoch) > epoch)
        assert lt.call(lambda: a.leadership.terms) == 2
    finally:
        lt.run(a.stop())
        lt.stop()
