"""Child processes: sandboxes, output capture, exit codes, kills of whole process groups,
and command tasks run by a real agent (RUNNING, then FINISHED / FAILED / KILLED)."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_harness import S, Harness, command_task, pid_alive, run, wait_until  # noqa: E402

from substrate.agent.processes import (  # noqa: E402
    command_argv, describe_exit, is_safe_id, sandbox_path, spawn,
)
from substrate.errors import InvalidRequest  # noqa: E402
from substrate.v1 import pb  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def shell(line: str) -> pb.CommandInfo:
    return pb.CommandInfo(value=line, shell=True)


def test_ids_that_could_escape_never_become_paths(tmp_path):
    for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", "../x"]:
        assert not is_safe_id(bad)
        with pytest.raises(InvalidRequest):
            sandbox_path(tmp_path, "fw", bad)
        with pytest.raises(InvalidRequest):
            sandbox_path(tmp_path, bad, "task")
    assert sandbox_path(tmp_path, "fw", "t.1") == tmp_path / "sandboxes" / "fw" / "t.1"


def test_argv_and_exit_descriptions():
    assert command_argv(pb.CommandInfo(value="echo hi", shell=True)) == ["/bin/sh", "-c", "echo hi"]
    assert command_argv(pb.CommandInfo(value="prog", arguments=["-x", "1"])) == ["prog", "-x", "1"]
    assert describe_exit(0) == "exited with status 0"
    assert describe_exit(-signal.SIGTERM) == "killed by signal SIGTERM"


def test_spawn_runs_in_sandbox_with_output_captured_and_own_group(tmp_path):
    async def main():
        box = tmp_path / "box"
        env = dict(os.environ, GREETING="hello")
        proc = spawn(shell('echo "$GREETING from $(pwd)"; echo oops >&2; exit 3'), box, env)
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
        assert os.getsid(proc.pid) == proc.pid
        assert await asyncio.wait_for(proc.wait(), 10) == 3
        assert (box / "stdout").read_text() == f"hello from {box}\n"
        assert (box / "stderr").read_text() == "oops\n"
    run(main())


def test_spawn_failure_raises_os_error(tmp_path):
    async def main():
        with pytest.raises(FileNotFoundError):
            spawn(pb.CommandInfo(value="/no/such/program"), tmp_path / "box", os.environ)
    run(main())


def test_terminate_within_grace(tmp_path):
    async def main():
        proc = spawn(shell("exec sleep 30"), tmp_path / "box", os.environ)
        start = time.monotonic()
        code = await proc.terminate(grace=5.0)
        assert code == -signal.SIGTERM
        assert time.monotonic() - start < 4.0
    run(main())


def test_sigterm_ignoring_group_is_sigkilled_with_its_grandchild(tmp_path):
    async def main():
        box = tmp_path / "box"
        line = ("trap '' TERM; sleep 60 & echo $! > gc.tmp; mv gc.tmp gc.pid; "
                "while true; do wait; done")
        proc = spawn(shell(line), box, os.environ)
        await wait_until(lambda: (box / "gc.pid").exists(), what="the grandchild")
        grandchild = int((box / "gc.pid").read_text())
        assert os.getpgid(grandchild) == proc.pgid
        start = time.monotonic()
        code = await proc.terminate(grace=0.5)
        assert code == -signal.SIGKILL
        assert time.monotonic() - start >= 0.5
        await wait_until(lambda: not pid_alive(grandchild), what="the grandchild to die")
    run(main())


# ------------------------------------------------------------------ command tasks via the agent

def test_command_tasks_report_running_and_exit_states(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.run_tasks(command_task("ok", "echo out; pwd"),
                        command_task("bad", "exit 3"),
                        command_task("sig", "kill -9 $$"))
            for tid in ("ok", "bad", "sig"):
                running = await h.expect_status(tid, S.RUNNING)
                assert running.source == S.AGENT and running.agent_id == "agent-1"
                assert len(running.uuid) == 16 and running.framework_id == "fw-1"
            done = await h.expect_status("ok", S.FINISHED)
            assert done.message == "exited with status 0"
            assert (h.sandbox("ok") / "stdout").read_text() == f"out\n{h.sandbox('ok')}\n"
            bad = await h.expect_status("bad", S.FAILED)
            assert (bad.reason, bad.message) == (S.COMMAND_EXECUTOR_FAILED, "exited with status 3")
            sig = await h.expect_status("sig", S.FAILED)
            assert sig.message == "killed by signal SIGKILL"
    run(main())


def test_command_task_spawn_failure(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.run_tasks(command_task("nope", "/no/such/program", shell=False))
            st = await h.expect_status("nope", S.FAILED)
            assert st.reason == S.CONTAINER_LAUNCH_FAILED
            assert "No such file" in st.message
    run(main())


def test_kill_command_task_with_grace_and_escalation(tmp_path):
    async def main():
        async with Harness(tmp_path, executor_shutdown_grace=0.5) as h:
            stubborn = "trap '' TERM; touch ready; while true; do sleep 1; done"
            h.run_tasks(command_task("polite", "exec sleep 30"), command_task("stubborn", stubborn))
            await h.expect_status("polite", S.RUNNING)
            await h.expect_status("stubborn", S.RUNNING)
            await wait_until(lambda: (h.sandbox("stubborn") / "ready").exists(), what="trap")
            h.kill("polite")
            h.kill("stubborn")
            polite = await h.expect_status("polite", S.KILLED)
            assert polite.reason == S.TASK_KILLED and "SIGTERM" in polite.message
            stubborn = await h.expect_status("stubborn", S.KILLED)
            assert stubborn.reason == S.TASK_KILLED and "SIGKILL" in stubborn.message
            # killing a task that is already terminal does nothing; an unknown one is DROPPED
            h.kill("polite")
            h.kill("ghost")
            ghost = await h.expect_status("ghost", S.DROPPED)
            assert ghost.reason == S.TASK_UNKNOWN
            assert not [s for s in h.statuses if s.task_id == "polite" and s.state == S.KILLED][1:]
    run(main())


def test_invalid_ids_are_refused_with_task_invalid(tmp_path):
    async def main():
        async with Harness(tmp_path) as h:
            h.run_tasks(command_task("../evil", "touch pwned"), command_task("..", "true"),
                        command_task("a\\b", "true"))
            for tid in ("../evil", "..", "a\\b"):
                st = await h.expect_status(tid, S.ERROR)
                assert st.reason == S.TASK_INVALID
            h.run_tasks(command_task("fine", "true"), fid="../fw")
            st = await h.expect_status("fine", S.ERROR)
            assert st.reason == S.TASK_INVALID and "framework" in st.message
            assert not list((Path(h.config.work_dir)).rglob("pwned"))
            assert not (Path(h.config.work_dir) / "evil").exists()
    run(main())
