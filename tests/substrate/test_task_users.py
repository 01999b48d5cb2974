"""Tasks run as the OS user their framework names: real processes, real users, real sockets.

The agent runs in this process (as root); the test plays the master. Users ``nobody`` and
``daemon`` exist on every Debian system.
"""
from __future__ import annotations

import asyncio
import functools
import os
import pwd
import tarfile
from pathlib import Path

import grpc
import pytest

import substrate
from substrate.agent import gc as sandbox_gc
from substrate.agent.users import UserRefused, resolve
from substrate.v1 import pb, rpc

from .agent_harness import EXECUTOR_PROGRAM, FRAMEWORK_ID, Harness, command_task, run
from .isolation_helpers import cgroups_usable
from .task_user_helpers import (
    as_user, can_connect, interpreter_unreachable, open_dir, users_skip_reason,
)

S = pb.TaskStatus
pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(bool(users_skip_reason()), reason=users_skip_reason() or "-")]
NOBODY = pwd.getpwnam("nobody").pw_uid if not users_skip_reason() else -1
__all__ = ["open_dir"]   # the fixture, imported for pytest


def owner(path: Path) -> str:
    return pwd.getpwuid(path.lstat().st_uid).pw_name


def out(h: Harness, name: str, fid: str = FRAMEWORK_ID) -> str:
    return (h.sandbox(name, fid) / "stdout").read_text()


def test_command_runs_as_the_framework_user_and_owns_its_sandbox(open_dir, monkeypatch):
    monkeypatch.setenv("OFFERPOOL_TOKEN", "the-agents-own-secret")

    async def body():
        async with Harness(open_dir) as h:
            h.run_tasks(command_task("who", "/usr/bin/id", shell=False, arguments=["-un"]),
                        command_task("home", 'echo "$HOME $USER"; id -G; touch mine; '
                                             'mkdir ro && touch ro/f && chmod 500 ro; '
                                             'echo "${OFFERPOOL_TOKEN:-no token}"'),
                        user="nobody")
            await h.expect_status("who", S.FINISHED)
            await h.expect_status("home", S.FINISHED)
            assert out(h, "who") == "nobody\n"
            home, groups, token = out(h, "home").splitlines()
            assert token == "no token"
            assert home == f"{pwd.getpwnam('nobody').pw_dir} nobody"
            assert groups.split() == [str(g) for g in
                                      os.getgrouplist("nobody", pwd.getpwnam("nobody").pw_gid)]
            box = h.sandbox("home")
            for path in (box, box / "stdout", box / "stderr", box / "mine", box / "ro"):
                assert owner(path) == "nobody", path
            assert {t["user"] for t in h.agent.snapshot()["tasks"]} <= {"nobody"}
            # The agent reads the user's files for operators ...
            read = functools.partial(substrate.read_agent_file, h.agent.address, FRAMEWORK_ID,
                                     "stdout", sandbox="who", timeout=20)
            assert await asyncio.get_running_loop().run_in_executor(None, read) == b"nobody\n"
            # ... and collects them, read-only directories included, once finished.
            removed = sandbox_gc.collect(h.config.work_dir, set(),
                                         sandbox_gc.GCPolicy(keep_seconds=0), usage=0.0)
            assert box in removed and not box.exists()
    run(body())


def test_a_user_cannot_write_into_other_sandboxes(open_dir):
    async def body():
        async with Harness(open_dir) as h:
            h.run_tasks(command_task("as-agent", "true"), fid="fw-agent")
            h.run_tasks(command_task("as-daemon", "true"), fid="fw-daemon", user="daemon")
            await h.expect_status("as-agent", S.FINISHED)
            await h.expect_status("as-daemon", S.FINISHED)
            targets = [h.sandbox("as-agent", "fw-agent"), h.sandbox("as-daemon", "fw-daemon")]
            line = "; ".join(f"echo x > {t}/intruder" for t in targets) + "; exit 0"
            h.run_tasks(command_task("intruder", line), fid="fw-nobody", user="nobody")
            await h.expect_status("intruder", S.FINISHED)
            err = (h.sandbox("intruder", "fw-nobody") / "stderr").read_text()
            assert err.count("Permission denied") == 2, err
            assert not any((t / "intruder").exists() for t in targets)
            assert owner(targets[1]) == "daemon" and owner(targets[0]) == "root"
    run(body())


def test_unknown_user_fails_the_task_and_launches_nothing(open_dir):
    async def body():
        async with Harness(open_dir) as h:
            h.run_tasks(command_task("t", "touch /tmp/should-not-run"),
                        user="no-such-user-xyz")
            st = await h.expect_status("t", S.FAILED)
            assert st.reason == S.CONTAINER_LAUNCH_FAILED
            assert "no-such-user-xyz" in st.message and "no such user" in st.message
            assert not h.sandbox("t").exists()
            assert h.agent.snapshot()["tasks"] == []
    run(body())


def test_root_is_refused_unless_the_agent_allows_it(open_dir):
    async def body():
        async with Harness(open_dir / "a") as h:
            h.run_tasks(command_task("t", "/usr/bin/id", shell=False, arguments=["-un"]),
                        user="root")
            st = await h.expect_status("t", S.FAILED)
            assert st.reason == S.TASK_UNAUTHORIZED and "root" in st.message
            assert not h.sandbox("t").exists()
        async with Harness(open_dir / "b", allow_root_tasks=True) as h:
            h.run_tasks(command_task("t", "/usr/bin/id", shell=False, arguments=["-un"]),
                        user="root")
            await h.expect_status("t", S.FINISHED)
            assert out(h, "t") == "root\n"
    run(body())


def test_an_agent_that_is_not_root_cannot_switch_users():
    # resolve() is what the launcher asks; here it runs in a process that is 'nobody'.
    def probe() -> int:
        try:
            resolve("daemon", allow_root=False)
            return 1
        except UserRefused as exc:
            if "cannot switch users" not in str(exc) or "'daemon'" not in str(exc):
                return 2
        if resolve("nobody", allow_root=False) is not None:   # its own user: no switch
            return 3
        try:
            resolve("root", allow_root=True)
            return 4
        except UserRefused:
            return 0
    assert as_user("nobody", probe) == 0


@pytest.mark.parametrize("isolation", ["posix", "cgroups"])
def test_user_switch_inside_a_container(open_dir, isolation):
    if isolation == "cgroups" and cgroups_usable():
        pytest.skip(cgroups_usable())

    async def body():
        async with Harness(open_dir, isolation=isolation) as h:
            h.run_tasks(command_task("t", "id -un; cat /proc/self/cgroup; ulimit -c"),
                        user="nobody")
            await h.expect_status("t", S.FINISHED)
            lines = out(h, "t").splitlines()
            assert lines[0] == "nobody"
            assert lines[-1] == "0"         # the prelude's rlimit survived the switch
            if isolation == "cgroups":      # entered before the switch, as root
                assert any("offerpool-" in line for line in lines[1:-1]), lines
    run(body())


def test_fetched_files_belong_to_the_user(open_dir):
    src = open_dir / "src"
    src.mkdir()
    script = src / "hello.sh"
    script.write_text("#!/bin/sh\necho fetched; id -un\n")
    (src / "data").mkdir()
    (src / "data" / "x.txt").write_text("x")
    with tarfile.open(src / "bundle.tar.gz", "w:gz") as tf:
        tf.add(src / "data", arcname="data")

    async def body():
        async with Harness(open_dir) as h:
            task = command_task("t", "./hello.sh && echo more > data/y.txt")
            task.command.uris.add(value=f"file://{script}", executable=True)
            task.command.uris.add(value=f"file://{src / 'bundle.tar.gz'}", extract=True)
            h.run_tasks(task, user="nobody")
            await h.expect_status("t", S.FINISHED)
            box = h.sandbox("t")
            assert out(h, "t") == "fetched\nnobody\n"
            for path in (box / "hello.sh", box / "bundle.tar.gz", box / "data",
                         box / "data" / "x.txt", box / "data" / "y.txt"):
                assert owner(path) == "nobody", path
    run(body())


def test_executor_of_another_user_gets_a_socket_only_that_user_reaches(open_dir):
    async def body():
        async with Harness(open_dir, executor_registration_timeout=60.0) as h:
            task = pb.TaskInfo(task_id="t", agent_id="agent-1")
            task.executor.executor_id = "sh-ex"
            task.executor.command.value = "env > env.txt; exec sleep 60"
            task.executor.command.shell = True
            h.run_tasks(task, user="nobody")
            env = await _executor_env(h, "sh-ex")
            endpoint = env["SUBSTRATE_AGENT_ENDPOINT"]
            own_sock = endpoint[len("unix:"):]
            main_sock = h.agent.executor_endpoint[len("unix:"):]
            assert own_sock != main_sock and f"/users/{NOBODY}/" in own_sock
            assert env["HOME"] == pwd.getpwnam("nobody").pw_dir
            # The file system: nobody reaches its own socket, not the agent's; others neither.
            assert as_user("nobody", can_connect(own_sock)) == 0
            assert as_user("nobody", can_connect(main_sock)) == 13
            assert as_user("daemon", can_connect(own_sock)) == 13
            # The agent: the token works through nobody's socket only.
            sub = pb.ExecutorCall(type=pb.ExecutorCall.SUBSCRIBE)
            sub.subscribe.framework_id, sub.subscribe.executor_id = FRAMEWORK_ID, "sh-ex"
            sub.subscribe.token = env["SUBSTRATE_EXECUTOR_TOKEN"]
            first = await _first_event(h.agent.executor_endpoint, sub)
            assert first.type == pb.ExecutorEvent.ERROR
            assert "socket of the user" in first.error.message
            first = await _first_event(endpoint, sub)
            assert first.type == pb.ExecutorEvent.SUBSCRIBED
            h.shutdown_framework()
            await h.expect_status("t", S.KILLED)
    run(body())


def test_a_restarted_agent_serves_its_recovered_executors_users_again(open_dir):
    async def body():
        first = Harness(open_dir, executor_registration_timeout=60.0)
        await first.__aenter__()
        try:
            task = pb.TaskInfo(task_id="t", agent_id="agent-1")
            task.executor.executor_id = "sh-ex"
            task.executor.command.value = "env > env.txt; exec sleep 60"
            task.executor.command.shell = True
            first.run_tasks(task, user="nobody")
            env = await _executor_env(first, "sh-ex")
        finally:
            await first.agent.stop(kill_executors=False)
        sock = Path(env["SUBSTRATE_AGENT_ENDPOINT"][len("unix:"):])
        assert not sock.exists() or as_user("nobody", can_connect(str(sock))) != 0
        async with Harness(open_dir, executor_registration_timeout=60.0) as h:
            assert "1 executors adopted" in h.agent.recovery
            assert as_user("nobody", can_connect(str(sock))) == 0
            sub = pb.ExecutorCall(type=pb.ExecutorCall.SUBSCRIBE)
            sub.subscribe.framework_id, sub.subscribe.executor_id = FRAMEWORK_ID, "sh-ex"
            sub.subscribe.token = env["SUBSTRATE_EXECUTOR_TOKEN"]
            assert (await _first_event(f"unix:{sock}", sub)).type == pb.ExecutorEvent.SUBSCRIBED
            h.shutdown_framework()
            await h.expect_status("t", S.KILLED)
    run(body())


async def _executor_env(h: Harness, executor_id: str) -> dict:
    """The environment a shell 'executor' wrote to its sandbox once it started."""
    env_file = h.sandbox(executor_id) / "env.txt"
    deadline = asyncio.get_running_loop().time() + 20
    while not (env_file.exists() and "SUBSTRATE_EXECUTOR_TOKEN" in env_file.read_text()):
        assert asyncio.get_running_loop().time() < deadline, "executor never started"
        await asyncio.sleep(0.02)   # another process's file: nothing announces it
    assert owner(env_file) == "nobody"
    return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)


async def _first_event(endpoint: str, call: pb.ExecutorCall) -> pb.ExecutorEvent:
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stream = rpc.AgentStub(channel).Executor()
        await stream.write(call)
        event = await stream.read()
        stream.cancel()
        return event


def test_python_executor_runs_as_the_user(open_dir):
    why = interpreter_unreachable("nobody")
    if why:
        pytest.skip(f"the executor program needs this interpreter: {why}")

    async def body():
        async with Harness(open_dir) as h:
            from .agent_harness import executor_task
            h.run_tasks(executor_task("t"), user="nobody")
            st = await h.expect_status("t", S.FINISHED, timeout=60)
            assert st.source == S.EXECUTOR
            # Written by the executor itself once subscribed through nobody's socket.
            assert owner(h.sandbox("ex-1") / "registered") == "nobody"
    assert EXECUTOR_PROGRAM.exists()
    run(body(), timeout=90)


def test_a_file_swapped_for_a_link_after_the_check_is_not_read(tmp_path):
    # A task's user owns its sandbox and may swap a checked file for a link before the read.
    from substrate.agent import files
    from substrate.errors import InvalidRequest

    area = tmp_path / "box"
    (area / "sub").mkdir(parents=True)
    (area / "f").write_text("mine")
    (area / "sub" / "passwd").write_text("mine too")
    checked = [area / "f", area / "sub" / "passwd"]
    assert [b"".join(c.data for c in files.read_chunks(p, 0, -1, str(area)))
            for p in checked] == [b"mine", b"mine too"]
    (area / "f").unlink()
    (area / "f").symlink_to("/etc/passwd")
    (area / "sub" / "passwd").unlink()
    (area / "sub").rmdir()
    (area / "sub").symlink_to("/etc")
    for path in checked:
        with pytest.raises(InvalidRequest):
            list(files.read_chunks(path, 0, -1, str(area)))


def test_framework_user_through_a_real_master(open_dir):
    """The public API end to end: FrameworkInfo(user=...) reaches the agent through the
    master; the refusal of an unknown user reaches the scheduler as TASK_FAILED."""
    from substrate import LocalCluster, TaskState

    from .cluster_helpers import Recorder, start

    with LocalCluster(agents=1, cpus=2, mem=512, work_dir=str(open_dir / "cluster"),
                      http=False) as cluster:
        for user, expected in (("nobody", TaskState.FINISHED), ("no-such-user-xyz",
                                                                TaskState.FAILED)):
            rec = Recorder()
            driver = start(cluster.master, rec, user=user)
            try:
                rec.submit(driver, "who", kind="command", payload=b"id -un")
                status = rec.wait_state("who", expected)
                if user == "nobody":
                    out_file = (Path(cluster.work_dir) / "agent0" / "sandboxes" /
                                driver.framework_id / "who" / "stdout")
                    assert out_file.read_text() == "nobody\n" and owner(out_file) == "nobody"
                else:
                    assert status.reason.name == "CONTAINER_LAUNCH_FAILED"
                    assert user in status.message
            finally:
                driver.stop()
