"""Sandbox garbage collection on real directories, with an injected clock."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, strategies as st

from substrate.agent.gc import GCPolicy, collect, plan

pytestmark = pytest.mark.timeout(60)
NOW = 1_000_000.0


def _sandbox(work, fw, name, age):
    box = work / "sandboxes" / fw / name
    box.mkdir(parents=True)
    for stream in ("stdout", "stderr"):
        (box / stream).write_text(f"{name} {stream}\n")
        os.utime(box / stream, (NOW - age, NOW - age))
    os.utime(box, (NOW - age, NOW - age))
    return box


def test_old_finished_sandbox_removed_recent_and_live_kept(tmp_path):
    old = _sandbox(tmp_path, "fw-1", "exec-old", age=7200)
    recent = _sandbox(tmp_path, "fw-1", "exec-recent", age=60)
    live = _sandbox(tmp_path, "fw-2", "exec-live", age=99_999)
    policy = GCPolicy(keep_seconds=3600, headroom=0.1)
    removed = collect(str(tmp_path), {("fw-2", "exec-live")}, policy, clock=lambda: NOW,
                      usage=0.0)
    assert removed == [old]
    assert not old.exists()
    assert (recent / "stdout").read_text() == "exec-recent stdout\n"
    assert live.exists()


def test_a_full_disk_shortens_retention_to_nothing(tmp_path):
    recent = _sandbox(tmp_path, "fw-1", "exec-recent", age=1)
    policy = GCPolicy(keep_seconds=3600, headroom=0.1)
    assert collect(str(tmp_path), set(), policy, clock=lambda: NOW, usage=0.5) == []
    assert collect(str(tmp_path), set(), policy, clock=lambda: NOW, usage=0.95) == [recent]
    assert not (tmp_path / "sandboxes" / "fw-1").exists()  # the emptied framework dir too


def test_a_late_write_keeps_a_sandbox(tmp_path):
    box = _sandbox(tmp_path, "fw-1", "exec", age=7200)
    os.utime(box / "stderr", (NOW - 10, NOW - 10))  # still being written to
    assert collect(str(tmp_path), set(), GCPolicy(keep_seconds=3600), clock=lambda: NOW,
                   usage=0.0) == []


@given(st.lists(st.floats(0, 1e6), max_size=20), st.floats(0, 1), st.floats(1, 1e5))
def test_plan_removes_exactly_the_sandboxes_past_the_age_limit(mtimes, usage, keep):
    policy = GCPolicy(keep_seconds=keep, headroom=0.1)
    names = [(f"s{i}", m) for i, m in enumerate(mtimes)]
    chosen = set(plan(names, now=1e6, policy=policy, disk_usage=usage))
    limit = policy.max_age(usage)
    assert chosen == {n for n, m in names if 1e6 - m >= limit}


def test_a_running_agent_collects_finished_sandboxes_only(tmp_path):
    import time

    from substrate import CommandInfo, FrameworkInfo, LocalCluster, SchedulerDriver, TaskState
    from tests.substrate.test_fetcher import _Launcher

    policy = GCPolicy(keep_seconds=0.0, headroom=0.0, interval=0.1)
    with LocalCluster(agents=1, cpus=2, mem=1024, work_dir=str(tmp_path),
                      agent_options={"sandbox_gc": policy}) as cluster:
        sched = _Launcher()
        driver = SchedulerDriver(sched, FrameworkInfo(name="gc-test"), cluster.master)
        driver.start()
        try:
            fid = driver.wait_registered(timeout=30)
            sched.add(driver, "long", CommandInfo("echo started; exec sleep 600", shell=True))
            sched.add(driver, "short", CommandInfo("echo done", shell=True))
            assert sched.wait("short").state == TaskState.FINISHED
            boxes = tmp_path / "agent0" / "sandboxes" / fid
            deadline = time.monotonic() + 30
            while (boxes / "short").exists():  # the collector runs every 0.1 s
                assert time.monotonic() < deadline, "finished sandbox never collected"
                time.sleep(0.05)
            assert (boxes / "long" / "stdout").exists()  # a running task's sandbox stays
        finally:
            driver.stop()
