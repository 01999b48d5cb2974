"""ExecutorDriver in this process against a real agent: callbacks, updates from many threads,
acknowledgements, reconnection with resend, shutdown, refusal, and giving up on a lost agent."""
from __future__ import annotations

import asyncio
import queue
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import S, Harness, executor_task, run, wait_until  # noqa: E402

from substrate import Executor, ExecutorDriver, SubstrateError, TaskState  # noqa: E402
from substrate.executor import EXIT_AGENT_LOST, EXIT_OK, EXIT_REFUSED  # noqa: E402
from substrate.v1 import pb  # noqa: E402

pytestmark = pytest.mark.timeout(60)
EXECUTOR_ID = "in-proc"


class Recorder(Executor):
    """Records every callback (from the driver's callback thread) in a queue."""

    def __init__(self) -> None:
        self.events: "queue.Queue[tuple]" = queue.Queue()
        self.threads: set[int] = set()

    def _note(self, *event) -> None:
        self.threads.add(threading.get_ident())
        self.events.put(event)

    def registered(self, driver, executor_info, framework_info, agent_info):
        self._note("registered", executor_info, framework_info, agent_info)

    def launch_task(self, driver, task):
        self._note("launch", task)
        if task.data == b"raise":
            raise RuntimeError("launch went wrong")

    def kill_task(self, driver, task_id):
        self._note("kill", task_id)
        super().kill_task(driver, task_id)

    def framework_message(self, driver, data):
        self._note("message", data)

    def shutdown(self, driver):
        self._note("shutdown")

    def error(self, driver, message):
        self._note("error", message)

    async def next(self, timeout: float = 10.0) -> tuple:
        return await asyncio.to_thread(self.events.get, True, timeout)


def slot(h: Harness, *task_ids: str, token: str = "") -> dict:
    """Make the agent expect an executor (whose own process never subscribes) and return the
    environment an executor process would get, so this test process can be that executor."""
    sleeper = ["/bin/sh", "-c", "exec sleep 60"]
    h.run_tasks(*(executor_task(t, b"raise" if t.startswith("raise") else b"",
                                executor_id=EXECUTOR_ID, program=sleeper) for t in task_ids))
    ex = h.agent.core.executors[("fw-1", EXECUTOR_ID)]
    return {
        "SUBSTRATE_AGENT_ENDPOINT": h.agent.executor_endpoint, "SUBSTRATE_AGENT_ID": "agent-1",
        "SUBSTRATE_FRAMEWORK_ID": "fw-1", "SUBSTRATE_EXECUTOR_ID": EXECUTOR_ID,
        "SUBSTRATE_EXECUTOR_TOKEN": token or ex.token, "SUBSTRATE_SANDBOX": str(ex.sandbox),
        "SUBSTRATE_RECOVERY_TIMEOUT": "0.5", "SUBSTRATE_HARD_EXIT_GRACE": "-1",
    }


def test_missing_environment_is_a_clear_substrate_error():
    with pytest.raises(SubstrateError, match="SUBSTRATE_AGENT_ENDPOINT is not set"):
        ExecutorDriver(Executor(), environ={})
    env = {"SUBSTRATE_AGENT_ENDPOINT": "x:1", "SUBSTRATE_AGENT_ID": "a",
           "SUBSTRATE_FRAMEWORK_ID": "f", "SUBSTRATE_EXECUTOR_ID": "e"}
    with pytest.raises(SubstrateError, match="SUBSTRATE_EXECUTOR_TOKEN"):
        ExecutorDriver(Executor(), environ=env)


def test_callbacks_updates_acks_kill_messages_and_shutdown(tmp_path):
    async def main():
        async with Harness(tmp_path, executor_shutdown_grace=0.3) as h:
            rec = Recorder()
            driver = ExecutorDriver(rec, environ=slot(h, "t1", "raise-1"))
            driver.start()
            kind, ex_info, fw_info, agent_info = await rec.next()
            assert kind == "registered"
            assert (ex_info.executor_id, fw_info.name, fw_info.id) == (
                EXECUTOR_ID, "test-framework", "fw-1")
            assert (agent_info.id, agent_info.hostname, agent_info.resources.cpus) == (
                "agent-1", "test-host", 4)
            launched = {(await rec.next())[1].task_id, (await rec.next())[1].task_id}
            assert launched == {"t1", "raise-1"}
            crashed = await h.expect_status("raise-1", S.FAILED)
            assert "launch went wrong" in crashed.message

            driver.update("t1", TaskState.RUNNING, message="going")
            st = await h.expect_status("t1", S.RUNNING)
            assert (st.source, st.executor_id, st.message, len(st.uuid)) == (
                S.EXECUTOR, EXECUTOR_ID, "going", 16)
            await wait_until(lambda: driver.unacknowledged == 0, what="acks reach the driver")

            h.kill("t1")
            assert await rec.next() == ("kill", "t1")
            await h.expect_status("t1", S.KILLED)

            h.message(b"to-executor", executor_id=EXECUTOR_ID)
            assert await rec.next() == ("message", b"to-executor")
            driver.send_framework_message(b"to-scheduler")
            call = await h.expect_call(pb.AgentCall.MESSAGE)
            assert call.message.data == b"to-scheduler"

            h.shutdown_framework()
            assert await rec.next() == ("shutdown",)
            assert await asyncio.to_thread(driver.join, 10) == EXIT_OK
            assert len(rec.threads) == 1            # callbacks ran serially on one thread
    run(main())


def test_updates_from_many_threads_arrive_in_order_once(tmp_path):
    async def main():
        async with Harness(tmp_path, executor_shutdown_grace=0.3) as h:
            tasks = [f"p{i}" for i in range(8)]
            rec = Recorder()
            driver = ExecutorDriver(rec, environ=slot(h, *tasks))
            driver.start()

            def worker(task_id: str) -> None:
                for i in range(40):
                    driver.update(task_id, TaskState.RUNNING, message=str(i))
                driver.update(task_id, TaskState.FINISHED)

            threads = [threading.Thread(target=worker, args=(t,)) for t in tasks]
            for t in threads:
                t.start()
            for t in tasks:
                await h.expect_status(t, S.FINISHED)
            for t in threads:
                t.join()
            for t in tasks:
                mine = [s for s in h.statuses if s.task_id == t]
                assert [s.message for s in mine[:-1]] == [str(i) for i in range(40)]
                assert mine[-1].state == S.FINISHED
            driver.stop()
            assert await asyncio.to_thread(driver.join, 10) == EXIT_OK
    run(main())


def test_unacknowledged_updates_are_resent_after_reconnect(tmp_path):
    async def main():
        async with Harness(tmp_path, auto_ack=False, executor_shutdown_grace=0.3) as h:
            rec = Recorder()
            driver = ExecutorDriver(rec, environ=slot(h, "t1"))
            driver.start()
            assert (await rec.next())[0] == "registered"
            driver.update("t1", TaskState.RUNNING)
            first = await h.expect_status("t1", S.RUNNING)
            ex = h.agent.core.executors[("fw-1", EXECUTOR_ID)]
            session = ex.session
            ex.session += 1            # the agent drops this stream, as after a network fault
            ex.wake.set()
            await wait_until(lambda: ex.session == session + 2, what="the driver to re-subscribe")
            driver.send_framework_message(b"marker")
            await h.expect_call(pb.AgentCall.MESSAGE, where=lambda c: c.message.data == b"marker")
            assert [s.uuid for s in h.statuses] == [first.uuid]   # resent, deduplicated by uuid
            assert driver.unacknowledged == 1
            h.ack(first)
            await wait_until(lambda: driver.unacknowledged == 0, what="the ack")
            assert [e for e in list(rec.events.queue) if e[0] == "registered"] == []
            driver.stop()
            assert await asyncio.to_thread(driver.join, 10) == EXIT_OK
    run(main())


def test_wrong_token_is_refused(tmp_path):
    async def main():
        async with Harness(tmp_path, executor_shutdown_grace=0.3) as h:
            rec = Recorder()
            driver = ExecutorDriver(rec, environ=slot(h, "t1", token="forged"))
            assert await asyncio.to_thread(driver.run) == EXIT_REFUSED
            kind, message = await rec.next()
            assert kind == "error" and "refused" in message
    run(main())


def test_driver_gives_up_when_the_agent_is_gone(tmp_path):
    async def main():
        h = Harness(tmp_path)
        async with h:
            rec = Recorder()
            driver = ExecutorDriver(rec, environ=slot(h, "t1"))
            driver.start()
            assert (await rec.next())[0] == "registered"
            await h.agent.stop(kill_executors=False)
            assert await asyncio.to_thread(driver.join, 10) == EXIT_AGENT_LOST
            kinds = [(await rec.next())[0] for _ in range(2)]
            assert "error" in kinds
            h.agent.core.executors[("fw-1", EXECUTOR_ID)].proc.kill()
    run(main())


def test_updates_the_agent_ignores_are_released(tmp_path):
    async def main():
        async with Harness(tmp_path, executor_shutdown_grace=0.3) as h:
            rec = Recorder()
            driver = ExecutorDriver(rec, environ=slot(h, "t1"))
            driver.start()
            assert (await rec.next())[0] == "registered"
            driver.update("t1", TaskState.FINISHED)
            await h.expect_status("t1", S.FINISHED)
            driver.update("t1", TaskState.FAILED)          # after a terminal state: ignored
            driver.update("no-such-task", TaskState.RUNNING)
            await wait_until(lambda: driver.unacknowledged == 0, what="ignored updates released")
            driver.send_framework_message(b"marker")
            await h.expect_call(pb.AgentCall.MESSAGE, where=lambda c: c.message.data == b"marker")
            assert [(s.task_id, s.state) for s in h.statuses] == [("t1", S.FINISHED)]
            driver.stop()
            assert await asyncio.to_thread(driver.join, 10) == EXIT_OK
    run(main())
