"""Faults between agent, master and framework on real processes: a dropped acknowledgement
(retried, the duplicate harmless), an executor flooding messages (rate limited while the
master keeps serving others), a task that ignores SIGTERM (SIGKILLed after the grace)."""
from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from substrate import FrameworkInfo, LocalCluster, Reason, SchedulerDriver, TaskState
from substrate.master import MasterConfig
from substrate.ratelimit import TokenBucket

from .cluster_helpers import Recorder, start
from .test_agent_recovery import checkpoint, eventually, wait_armed

pytestmark = pytest.mark.timeout(120)

MESSAGE_RATE = 10.0


@pytest.fixture(scope="module")
def cluster():
    options = {"status_update_retry_initial": 0.3, "executor_message_rate": MESSAGE_RATE,
               "executor_shutdown_grace": 0.5}
    config = MasterConfig(agent_heartbeat_interval=0.5, agent_max_missed_heartbeats=20)
    with LocalCluster(agents=1, cpus=4, mem=2048, processes=True, master_config=config,
                      agent_options=options) as c:
        yield c


class DropsFirstFinishedAck(Recorder):
    """Acknowledges every update by hand, except the first FINISHED of each task."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped: set = set()

    def status_update(self, driver, status):
        super().status_update(driver, status)
        if status.state == TaskState.FINISHED and status.task_id not in self.dropped:
            self.dropped.add(status.task_id)
            return
        if status.uuid:
            driver.acknowledge_status_update(status)


def test_a_dropped_acknowledgement_is_retried_and_the_duplicate_is_harmless(cluster):
    rec = DropsFirstFinishedAck()
    driver = SchedulerDriver(rec, FrameworkInfo(name="forgetful"), cluster.master,
                             implicit_acknowledgements=False)
    driver.start()
    driver.wait_registered(timeout=20)
    try:
        rec.submit(driver, "t1", payload=b"true")
        rec.wait(lambda: sum(s.task_id == "t1" and s.state == TaskState.FINISHED
                             for s in rec.statuses) >= 2, what="FINISHED resent after no ack")
        finished = [s for s in rec.statuses if s.task_id == "t1" and s.state == TaskState.FINISHED]
        assert len({s.uuid for s in finished}) == 1      # the same update, retried
        # The second copy was acknowledged: the agent forgets the task and stops resending.
        eventually(lambda: not checkpoint(cluster).get("tasks")
                   and not checkpoint(cluster).get("updates"), what="agent forgot t1")
        fw = next(f for f in cluster.state()["frameworks"] if f["id"] == driver.framework_id)
        assert [t["id"] for t in fw["completed_tasks"]] == ["t1"]   # recorded once
        assert fw["tasks"] == []
    finally:
        driver.stop()


def test_an_update_the_master_could_not_deliver_is_retried_until_acknowledged(cluster):
    rec = Recorder()
    driver = start(cluster.master, rec, failover_timeout=60)
    fid = driver.framework_id
    rec.submit(driver, "late", payload=b"until [ -e go ]; do sleep 0.05; done")
    rec.wait_state("late", TaskState.RUNNING)
    driver.abort()                      # the scheduler is away: its updates go nowhere
    sandbox = os.path.join(cluster.work_dir, "agent0", "sandboxes", fid, "late")
    open(os.path.join(sandbox, "go"), "w").close()
    eventually(lambda: any(t["state"] == TaskState.FINISHED
                           for t in checkpoint(cluster).get("tasks", [])),
               what="FINISHED made while the scheduler was away")
    rec2 = Recorder()
    again = start(cluster.master, rec2, failover_timeout=60, id=fid)
    try:
        finished = rec2.wait_state("late", TaskState.FINISHED)
        assert finished.uuid                # the agent's own update, resent (not reconciliation)
        eventually(lambda: not checkpoint(cluster).get("tasks"), what="agent forgot 'late'")
    finally:
        again.stop()


def test_a_flooding_executor_is_rate_limited_and_the_master_stays_responsive(cluster):
    flood, calm = Recorder(), Recorder()
    d_flood = start(cluster.master, flood, name="flood")
    d_calm = start(cluster.master, calm, name="calm")
    try:
        launched = time.monotonic()
        flood.submit(d_flood, "f", kind="executor", payload=b"flood:20000")
        flood.wait(lambda: len(flood.messages) > 0, what="first flood message")
        for i in range(3):     # another framework's work goes through meanwhile
            calm.submit(d_calm, f"c{i}", payload=b"true")
            calm.wait_state(f"c{i}", TaskState.FINISHED)
        assert cluster.state()["frameworks"]
        # Unlimited, 4 bursts' worth would arrive in a blink; limited it takes >= 3 seconds.
        flood.wait(lambda: len(flood.messages) >= 4 * MESSAGE_RATE, what="more flood messages")
        with flood.cond:
            received = len(flood.messages)
        elapsed = time.monotonic() - launched
        # A token bucket never lets more than burst + rate * elapsed through.
        assert received <= MESSAGE_RATE + MESSAGE_RATE * elapsed, (received, elapsed)
        assert flood.latest["f"].state == TaskState.RUNNING   # its FINISHED waits in line
    finally:
        d_flood.stop()
        d_calm.stop()


def test_a_task_that_ignores_sigterm_is_sigkilled_after_the_grace_period(cluster):
    rec = Recorder()
    driver = start(cluster.master, rec)
    try:
        rec.submit(driver, "deaf", payload=b"trap '' TERM; echo armed; sleep 60")
        rec.wait_state("deaf", TaskState.RUNNING)
        wait_armed(cluster, driver.framework_id, "deaf")
        driver.kill_task("deaf")
        killed = rec.wait_state("deaf", TaskState.KILLED)
        assert killed.reason == Reason.TASK_KILLED and "SIGKILL" in killed.message
    finally:
        driver.stop()


@settings(max_examples=200, deadline=None)
@given(rate=st.floats(0.5, 1000), burst=st.floats(1, 1000),
       steps=st.lists(st.tuples(st.floats(0, 5), st.integers(1, 20)), max_size=60))
def test_token_bucket_never_exceeds_burst_plus_rate_times_elapsed(rate, burst, steps):
    now = [0.0]
    bucket = TokenBucket(rate, burst, clock=lambda: now[0])
    done = 0.0
    for pause, cost in steps:
        now[0] += pause
        wait = bucket.take(cost)
        assert wait >= 0
        now[0] += wait          # the caller honours the wait before acting
        done += cost
        # By the time it acts, the caller has spent no more than the bucket's capacity plus
        # what accrued since the start.
        assert done <= burst + rate * now[0] + 1e-6 * (1 + done)


def test_token_bucket_refuses_bad_parameters():
    for rate, burst in ((0, 1), (1, 0), (float("inf"), 1), (1, float("nan"))):
        with pytest.raises(ValueError):
            TokenBucket(rate, burst)

