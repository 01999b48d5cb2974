"""A real agent with real executor processes (tests/substrate/executor_program.py), the test
playing the master through the agent's event seam: launch, reuse, kill, executor death, tokens,
framework shutdown, registration timeout, messages, at-least-once delivery, identity changes."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import (  # noqa: E402
    S, Harness, command_task, executor_task, pid_alive, run, wait_until,
)

from substrate.v1 import pb, rpc  # noqa: E402

pytestmark = pytest.mark.timeout(60)
AC = pb.AgentCall


def executor_pid(h: Harness, executor_id: str = "ex-1") -> int:
    executors = h.agent.snapshot()["executors"]
    return next(e["pid"] for e in executors if e["executor_id"] == executor_id)


async def ask(h: Harness, data: bytes) -> bytes:
    h.message(data)
    call = await h.expect_call(AC.MESSAGE)
    assert (call.message.framework_id, call.message.executor_id) == ("fw-1", "ex-1")
    return call.message.data


def test_tasks_run_in_one_reused_executor_and_are_forgotten_after_ack(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.run_tasks(executor_task("t1"))
            running = await h.expect_status("t1", S.RUNNING)
            assert running.source == S.EXECUTOR and running.executor_id == "ex-1"
            assert running.agent_id == "agent-1" and len(running.uuid) == 16
            done = await h.expect_status("t1", S.FINISHED)
            pid = int(done.data)
            assert pid == executor_pid(h)
            await wait_until(lambda: "t1" not in h.task_states(), what="t1 forgotten")
            assert h.agent.snapshot()["pending_status_updates"] == 0
            sandbox = h.sandbox("ex-1")
            assert (sandbox / "registered").read_text() == "ex-1 test-framework agent-1\n"
            # the executor learned about the acknowledgements (ACKNOWLEDGED precedes MESSAGE)
            assert await ask(h, b"unacked?") == b"unacked:0"

            h.run_tasks(executor_task("t2"))
            again = await h.expect_status("t2", S.FINISHED)
            assert int(again.data) == pid                      # same executor process
            assert len(h.agent.snapshot()["executors"]) == 1
    run(main())


def test_many_tasks_are_batched(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            ids = [f"b{i}" for i in range(60)]
            h.run_tasks(*(executor_task(t) for t in ids))
            for t in ids:
                await h.expect_status(t, S.FINISHED)
            updates = [c for c in h.calls if c.type == AC.UPDATE]
            assert len(h.statuses) >= 120
            assert len(updates) < len(h.statuses) / 3          # many statuses per call
    run(main())


def test_kill_executor_task_and_failed_task(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.run_tasks(executor_task("hang", b"hang"), executor_task("bad", b"fail"))
            await h.expect_status("hang", S.RUNNING)
            failed = await h.expect_status("bad", S.FAILED)
            assert failed.message == "asked to fail"
            h.kill("hang")
            killed = await h.expect_status("hang", S.KILLED)
            assert killed.source == S.EXECUTOR
    run(main())


def test_executor_killed_fails_its_tasks_and_is_reported(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.run_tasks(executor_task("h1", b"hang"), executor_task("h2", b"hang"))
            await h.expect_status("h1", S.RUNNING)
            await h.expect_status("h2", S.RUNNING)
            pid = executor_pid(h)
            os.kill(pid, signal.SIGKILL)
            for tid in ("h1", "h2"):
                st = await h.expect_status(tid, S.FAILED)
                assert st.reason == S.EXECUTOR_TERMINATED and st.source == S.AGENT
                assert "SIGKILL" in st.message
            exited = await h.expect_call(AC.EXECUTOR_EXITED)
            info = exited.executor_exited
            assert (info.executor_id, info.status) == ("ex-1", -9)
            assert h.agent.snapshot()["executors"] == []
            # the next task for ex-1 starts a fresh executor
            h.run_tasks(executor_task("h3"))
            st = await h.expect_status("h3", S.FINISHED)
            assert int(st.data) != pid
            # an executor that exits by itself mid-task
            h.run_tasks(executor_task("boom", b"exit:7", executor_id="ex-2"))
            st = await h.expect_status("boom", S.FAILED)
            assert st.reason == S.EXECUTOR_TERMINATED and "exited with status 7" in st.message
            exited = await h.expect_call(AC.EXECUTOR_EXITED)
            assert exited.executor_exited.status == 7
    run(main())


def test_wrong_token_and_unknown_executor_are_refused(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.run_tasks(executor_task("hang", b"hang"))
            await h.expect_status("hang", S.RUNNING)
            assert h.agent.executor_endpoint.startswith("unix:")
            sock = Path(h.agent.executor_endpoint[len("unix:"):])
            assert sock.parent.stat().st_mode & 0o777 == 0o700
            async with grpc.aio.insecure_channel(h.agent.executor_endpoint) as channel:
                for executor_id, token in (("ex-1", "not-the-token"), ("ex-9", "x")):
                    call = rpc.AgentStub(channel).Executor()
                    sub = pb.ExecutorCall(type=pb.ExecutorCall.SUBSCRIBE)
                    sub.subscribe.framework_id, sub.subscribe.executor_id = "fw-1", executor_id
                    sub.subscribe.token = token
                    await call.write(sub)
                    event = await call.read()
                    assert event.type == pb.ExecutorEvent.ERROR and "refused" in event.error.message
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await call.read()
                    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            # Over TCP even the right token is refused: executors use the local socket only.
            token = h.agent.core.executors[("fw-1", "ex-1")].token
            async with grpc.aio.insecure_channel(h.agent.address) as channel:
                call = rpc.AgentStub(channel).Executor()
                sub = pb.ExecutorCall(type=pb.ExecutorCall.SUBSCRIBE)
                sub.subscribe.framework_id, sub.subscribe.executor_id = "fw-1", "ex-1"
                sub.subscribe.token = token
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await call.write(sub)   # the refusal may come before the write is done
                    await call.read()
                assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert "local Unix socket" in info.value.details()
            # the real executor is undisturbed
            h.kill("hang")
            await h.expect_status("hang", S.KILLED)
    run(main())


def test_shutdown_framework_stops_executors_and_kills_tasks(tmp_path):
    async def main():
        async with Harness(tmp_path, executor_shutdown_grace=1.0) as h:
            h.run_tasks(executor_task("e1", b"hang"),
                        executor_task("e2", b"hang", executor_id="stubborn",
                                      env={"IGNORE_SHUTDOWN": "1"}),
                        command_task("c1", "exec sleep 30"))
            for tid in ("e1", "e2", "c1"):
                await h.expect_status(tid, S.RUNNING)
            pids = [executor_pid(h, "ex-1"), executor_pid(h, "stubborn")]
            h.shutdown_framework()
            for tid in ("e1", "e2", "c1"):
                st = await h.expect_status(tid, S.KILLED)
                assert st.reason == S.FRAMEWORK_REMOVED
            polite = await h.expect_call(AC.EXECUTOR_EXITED,
                                         where=lambda c: c.executor_exited.executor_id == "ex-1")
            assert polite.executor_exited.status == 0
            assert (h.sandbox("ex-1") / "shutdown-called").exists()
            forced = await h.expect_call(
                AC.EXECUTOR_EXITED, where=lambda c: c.executor_exited.executor_id == "stubborn")
            assert forced.executor_exited.status == -9
            await wait_until(lambda: not any(pid_alive(p) for p in pids), what="executors gone")
            assert not [s for s in h.statuses if s.reason == S.EXECUTOR_TERMINATED]
    run(main())


def test_registration_timeout(tmp_path):
    async def main():
        async with Harness(tmp_path, executor_registration_timeout=0.5) as h:
            h.run_tasks(executor_task("t", program=["/bin/sh", "-c", "exec sleep 30"]))
            st = await h.expect_status("t", S.FAILED)
            assert st.reason == S.EXECUTOR_REGISTRATION_TIMEOUT
            exited = await h.expect_call(AC.EXECUTOR_EXITED)
            assert exited.executor_exited.status == -9
    run(main())


def test_invalid_executor_ids_and_missing_programs(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.run_tasks(executor_task("t1", executor_id=".."),
                        executor_task("t2", executor_id="a/b"),
                        executor_task("t3", program=["/no/such/executor"], executor_id="ex-x"))
            for tid in ("t1", "t2"):
                st = await h.expect_status(tid, S.ERROR)
                assert st.reason == S.TASK_INVALID
            st = await h.expect_status("t3", S.FAILED)
            assert st.reason == S.CONTAINER_LAUNCH_FAILED and "No such file" in st.message
            assert not (Path(h.config.work_dir) / "sandboxes" / "a").exists()
    run(main())


def test_framework_messages_both_ways_and_payload_limit(tmp_path):
    async def main():
        async with Harness(tmp_path, max_payload_bytes=1000) as h:
            h.run_tasks(executor_task("big", b"big"))
            st = await h.expect_status("big", S.FINISHED)
            assert "refused" in st.message and "1000 bytes" in st.message and not st.data
            assert await ask(h, b"hi") == b"echo:hi"
            h.message(b"x" * 2000)                      # above the limit: dropped
            h.message(b"ping", executor_id="nobody")    # no such executor: dropped
            assert await ask(h, b"after") == b"echo:after"
    run(main())


def test_updates_are_resent_until_acknowledged_in_order(tmp_path):
    async def main():
        async with Harness(tmp_path, auto_ack=False, status_update_retry_initial=0.2,
                           status_update_retry_max=0.4) as h:
            h.run_tasks(executor_task("t"))
            first = await h.expect_status("t", S.RUNNING)
            again = await h.expect_status("t", S.RUNNING)      # resent: no ack yet
            assert again.uuid == first.uuid
            assert not [s for s in h.statuses if s.state == S.FINISHED]   # head only
            wrong = pb.TaskStatus()
            wrong.CopyFrom(first)
            wrong.uuid = b"0" * 16
            h.ack(wrong)                                       # ignored
            await h.expect_status("t", S.RUNNING)
            h.ack(first)
            done = await h.expect_status("t", S.FINISHED)
            h.ack(first)                                       # duplicate: harmless
            # a reconnection resends every unacknowledged update at once
            h.agent.core.link_lost()
            h.register(epoch=2)
            resend = h.agent.outbox.get_nowait()               # queued by REGISTERED itself
            assert [s.uuid for s in resend.update.statuses] == [done.uuid]
            h.ack(done)
            await wait_until(lambda: "t" not in h.task_states(), what="t forgotten")
            assert h.agent.snapshot()["pending_status_updates"] == 0
    run(main())


def test_old_epochs_are_dropped_and_a_new_identity_kills_everything(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.register(epoch=5)
            h.run_tasks(command_task("old-epoch", "true"), epoch=4)
            h.run_tasks(executor_task("hang", b"hang"), epoch=5)
            await h.expect_status("hang", S.RUNNING)
            assert "old-epoch" not in h.task_states()
            pid = executor_pid(h)
            reregister = h.agent.core.registration_call()
            assert reregister.type == AC.REREGISTER and reregister.register.info.id == "agent-1"
            assert [t.info.task_id for t in reregister.register.tasks] == ["hang"]
            assert reregister.register.tasks[0].latest.state == S.RUNNING
            assert [e.info.executor_id for e in reregister.register.executors] == ["ex-1"]
            h.agent.core.link_lost()
            h.register(agent_id="agent-2", epoch=6)
            assert h.agent.agent_id == "agent-2"
            await wait_until(lambda: not pid_alive(pid), what="old executor killed")
            assert h.agent.snapshot()["tasks"] == [] and h.agent.snapshot()["executors"] == []
            h.run_tasks(command_task("new", "true"), epoch=6)
            st = await h.expect_status("new", S.FINISHED)
            assert st.agent_id == "agent-2"
            assert not [s for s in h.statuses if s.task_id == "hang" and s.state != S.RUNNING]
    run(main())


def test_stop_shuts_executors_down(tmp_path):
    async def main():
        h = Harness(tmp_path)
        async with h:
            h.run_tasks(executor_task("hang", b"hang"))
            await h.expect_status("hang", S.RUNNING)
            pid = executor_pid(h)
        assert not pid_alive(pid)
        assert (h.sandbox("ex-1") / "shutdown-called").exists()
    run(main())


def test_executor_exits_by_itself_when_its_agent_is_gone(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.run_tasks(executor_task("hang", b"hang", env={"SUBSTRATE_RECOVERY_TIMEOUT": "0.5"}))
            await h.expect_status("hang", S.RUNNING)
            proc = h.agent.core.executors[("fw-1", "ex-1")].proc
            await h.agent.stop(kill_executors=False)      # as if the agent had died
            assert await asyncio.wait_for(proc.wait(), 15) == 1
    run(main())
