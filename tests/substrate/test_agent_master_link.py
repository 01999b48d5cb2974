"""The agent's link to the master over real gRPC: registration, heartbeats, a broken stream and
re-registration with the unacknowledged updates resent, and a master that is not there."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import S, command_task, framework, run  # noqa: E402

from substrate.agent import Agent, AgentConfig  # noqa: E402
from substrate.resources import Resources  # noqa: E402
from substrate.v1 import pb, rpc  # noqa: E402

pytestmark = pytest.mark.timeout(60)
AC, AE = pb.AgentCall, pb.AgentEvent


class FakeMaster(rpc.MasterServicer):
    """Just enough of a master: records agent calls, sends what the test queues."""

    def __init__(self) -> None:
        self.calls: asyncio.Queue[pb.AgentCall] = asyncio.Queue()
        self.events: asyncio.Queue = asyncio.Queue()
        self.streams = 0

    async def Agent(self, request_iterator, context):  # noqa: N802
        self.streams += 1
        events: asyncio.Queue = asyncio.Queue()
        self.events = events

        async def read() -> None:
            async for call in request_iterator:
                await self.calls.put(call)

        reader = asyncio.ensure_future(read())
        try:
            while True:
                event = await events.get()
                if event is None:       # the test breaks the stream
                    return
                yield event
        finally:
            reader.cancel()

    async def next_call(self, kind: int, timeout: float = 10.0) -> pb.AgentCall:
        deadline = time.monotonic() + timeout
        while True:
            call = await asyncio.wait_for(self.calls.get(), deadline - time.monotonic())
            if call.type == kind:
                return call


def registered(agent_id: str, epoch: int, heartbeat: float = 30.0) -> pb.AgentEvent:
    ev = AE(type=AE.REGISTERED, epoch=epoch)
    ev.registered.agent_id = agent_id
    ev.registered.heartbeat_interval_seconds = heartbeat
    return ev


def config(tmp_path, master: str) -> AgentConfig:
    return AgentConfig(master=master, work_dir=str(tmp_path / "work"), hostname="h1",
                       resources=Resources(cpus=2, mem=512), reconnect_backoff_max=0.2,
                       attributes={"rack": "r1"}, executor_shutdown_grace=0.5)


def test_register_heartbeat_break_and_reregister(tmp_path):
    async def main():
        master = FakeMaster()
        server = grpc.aio.server()
        rpc.add_MasterServicer_to_server(master, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        agent = Agent(config(tmp_path, f"127.0.0.1:{port}"))
        try:
            await agent.start()
            first = await master.next_call(AC.REGISTER)
            info = first.register.info
            assert (info.id, info.hostname, info.address) == ("", "h1", agent.address)
            assert info.resources.cpus == 2 and dict(info.attributes) == {"rack": "r1"}
            await master.events.put(registered("a1", epoch=1, heartbeat=0.1))
            await asyncio.wait_for(agent.registered.wait(), 10)
            assert agent.agent_id == "a1"
            beat = await master.next_call(AC.HEARTBEAT)
            assert beat.epoch == 1

            run_tasks = AE(type=AE.RUN_TASKS, epoch=1)
            run_tasks.run_tasks.framework.CopyFrom(framework())
            run_tasks.run_tasks.tasks.append(command_task("t", "true"))
            await master.events.put(run_tasks)
            update = await master.next_call(AC.UPDATE)
            running = update.update.statuses[0]
            assert (running.task_id, running.state) == ("t", S.RUNNING)

            await master.events.put(None)                     # break the stream
            again = await master.next_call(AC.REREGISTER)
            assert again.register.info.id == "a1" and master.streams == 2
            assert [t.info.task_id for t in again.register.tasks] == ["t"]
            assert [f.id for f in again.register.frameworks] == ["fw-1"]
            await master.events.put(registered("a1", epoch=2))
            resent = await master.next_call(AC.UPDATE)
            assert [s.uuid for s in resent.update.statuses] == [running.uuid]

            stale = AE(type=AE.KILL_TASK, epoch=1)            # from the old epoch: dropped
            stale.kill_task.framework_id, stale.kill_task.task_id = "fw-1", "t"
            await master.events.put(stale)
            ack = AE(type=AE.ACKNOWLEDGE, epoch=2)
            ack.acknowledge.framework_id = "fw-1"
            ack.acknowledge.acks.add(agent_id="a1", task_id="t", uuid=running.uuid)
            await master.events.put(ack)
            finished = (await master.next_call(AC.UPDATE)).update.statuses[0]
            assert finished.state == S.FINISHED and finished.task_id == "t"
        finally:
            await agent.stop()
            await server.stop(0)
    run(main())


def test_master_not_there_keeps_retrying_then_stops_cleanly(tmp_path):
    async def main():
        with socket.socket() as s:                 # a port with nobody listening
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        agent = Agent(config(tmp_path, f"127.0.0.1:{port}"))
        await agent.start()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(agent.registered.wait(), 1.0)
        assert agent._link is not None and not agent._link.done()   # still trying
        assert agent.snapshot()["connected"] is False
        start = time.monotonic()
        await agent.stop()
        assert time.monotonic() - start < 5
        assert agent._link.done()
    run(main())


def test_master_shutdown_event_stops_the_agent(tmp_path):
    async def main():
        master = FakeMaster()
        server = grpc.aio.server()
        rpc.add_MasterServicer_to_server(master, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        agent = Agent(config(tmp_path, f"127.0.0.1:{port}"))
        try:
            await agent.start()
            await master.next_call(AC.REGISTER)
            await master.events.put(registered("a1", epoch=3))
            await asyncio.wait_for(agent.registered.wait(), 10)
            await master.events.put(AE(type=AE.SHUTDOWN, epoch=3))
            await asyncio.wait_for(agent.stopped.wait(), 10)
        finally:
            await agent.stop()
            await server.stop(0)
    run(main())


def test_main_runs_standalone_until_sigterm(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = ("import sys; from substrate.agent import AgentConfig, main; "
            f"sys.exit(main(AgentConfig(master='127.0.0.1:{port}', work_dir={str(tmp_path)!r})))")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        for line in proc.stderr:                    # wait for the agent to say it is serving
            if "serving executors" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_snapshot_is_json(tmp_path):
    async def main():
        agent = Agent(config(tmp_path, ""))
        await agent.start()
        try:
            snap = json.loads(json.dumps(agent.snapshot()))
            assert snap["resources"]["cpus"] == 2 and snap["tasks"] == []
            assert snap["address"] == agent.address
        finally:
            await agent.stop()
    run(main())


def test_resources_are_probed_when_not_configured(tmp_path):
    agent = Agent(AgentConfig(master="", work_dir=str(tmp_path)))
    res = agent.core.resources
    assert res.cpus == os.cpu_count() and res.mem > 0 and res.ports == ((31000, 32000),)
    assert res.gpus == 0
