"""An elected master that is still taking office holds the streams that reach it.

After a failover every agent follows the new leader at once, while the new leader is still
loading the registry. Refused, thousands of agents would back off (up to seconds) and come
back together; held, they are answered as soon as the master leads, or refused if it is
deposed first. Real gRPC streams against a real master server; the master's election is
steered through the service's own hooks. Also: ``offerpool master`` raises its soft limit of
open files (every agent holds a connection).
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import time

import grpc
import pytest

from substrate.master import Master, MasterConfig
from substrate.master.core import MasterCore
from substrate.v1 import pb, rpc

pytestmark = pytest.mark.timeout(120)


def registration() -> "pb.AgentCall":
    call = pb.AgentCall(type=pb.AgentCall.REGISTER)
    call.register.info.hostname = "h"
    call.register.info.resources.cpus = 1
    call.register.info.resources.mem = 256
    return call


async def until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)  # polling in-process state, not synchronizing on time


async def held_then(outcome: str) -> tuple:
    """An agent stream reaches a master taking office; it then leads or is deposed."""
    master = Master(http_port=None, config=MasterConfig())
    await master.start()
    service = master.service
    service.leading = False            # a standby ...
    service.taking_office()            # ... just elected, loading its registry
    channel = grpc.aio.insecure_channel(master.address)
    try:
        call = rpc.MasterStub(channel).Agent()
        await call.write(registration())
        await until(lambda: service.held_streams == 1)
        assert not service.leading and service.held_streams == 1   # held, not refused
        if outcome == "lead":
            core = MasterCore(config=master.config, epoch=7)
            master.use_core(core)
            service.lead(core)
        else:
            service.end_taking_office()  # deposed before taking office
        try:
            event = await asyncio.wait_for(call.read(), 30)
            return "event", event, service.core
        except grpc.aio.AioRpcError as exc:
            return "refused", exc.code(), service.core
    finally:
        await channel.close(None)
        await master.stop(0)


def test_a_registration_held_while_taking_office_is_answered_by_the_new_term():
    kind, event, core = asyncio.run(held_then("lead"))
    assert kind == "event" and event.type == pb.AgentEvent.REGISTERED
    assert event.epoch == 7 == core.epoch          # answered by the new term, not a stale one
    assert event.registered.agent_id in core.agents


def test_a_registration_held_while_taking_office_is_refused_if_deposed_first():
    kind, code, core = asyncio.run(held_then("deposed"))
    assert (kind, code) == ("refused", grpc.StatusCode.UNAVAILABLE)
    assert not core.agents


def test_offerpool_master_raises_its_open_files_soft_limit_to_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard limit of open files is already tiny here")
    low = 256

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, "-m", "substrate.cli", "master", "--port", "0",
                             "--http-port", "-1", "--ready-json"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, preexec_fn=lower)
    try:
        assert json.loads(proc.stdout.readline())["address"]   # serving
        with open(f"/proc/{proc.pid}/limits") as f:
            line = next(x for x in f if x.startswith("Max open files"))
        fields = line.split()
        want = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        assert fields[3] == want and fields[3] != str(low), line
    finally:
        proc.terminate()
        proc.wait(30)
