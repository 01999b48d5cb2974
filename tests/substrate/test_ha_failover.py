"""Master failover on real processes and a real ZooKeeper: the leader killed with SIGKILL
mid-launch, a scheduler that never comes back, a stale offer, a leader whose session expires
while it is frozen (and which then runs on, deposed), and a single master with a SQLite
registry that restarts and answers lost launches through reconciliation."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from substrate import (
    CommandInfo, Filters, FrameworkInfo, Reason, Resources, Scheduler, SchedulerDriver, TaskInfo,
    TaskState, TaskStatus,
)
from substrate.detector import LeaderDetector
from tests.substrate.ha_helpers import (
    Proc, start_agent, start_master, state, wait_for, wait_leader_other_than,
)
from tests.zookeeper import zookeeper  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

RELAUNCH = {TaskState.LOST, TaskState.DROPPED, TaskState.UNKNOWN, TaskState.GONE}


def assert_launched_once(markers, ids) -> None:
    """Each task wrote its marker exactly once. RUNNING is reported when the shell starts,
    before its ``echo`` lands, so wait for the files first."""
    wait_for(lambda: all((markers / tid).exists() and (markers / tid).read_text().strip()
                         for tid in ids), 30, "every task's marker")
    for tid in ids:
        assert len((markers / tid).read_text().split()) == 1, tid


class Launcher(Scheduler):
    """Launches each task id it is given once per report that the task is gone; a launched
    task appends its pid to ``markers/<task id>`` so a double launch shows as two lines."""

    def __init__(self, task_ids: list, markers: str) -> None:
        self.cond = threading.Condition()
        self.queue = list(task_ids)
        self.markers = markers
        self.latest: dict = {}
        self.placed: dict = {}
        self.updates: list = []
        self.offers_seen: list = []
        self.on_launch = None

    def resource_offers(self, driver, offers):
        with self.cond:
            self.offers_seen.extend(o.id for o in offers)
            for offer in offers:
                free, batch = offer.resources, []
                while self.queue and free.contains(Resources(cpus=0.1, mem=16)):
                    tid = self.queue.pop(0)
                    free = free - Resources(cpus=0.1, mem=16)
                    cmd = f"echo $$ >> {self.markers}/{tid}; exec sleep 600"
                    batch.append(TaskInfo(tid, offer.agent_id, Resources(cpus=0.1, mem=16),
                                          command=CommandInfo(cmd, shell=True)))
                    self.placed[tid] = offer.agent_id
                if batch:
                    driver.launch_tasks(offer.id, batch, Filters(refuse_seconds=0.2))
                else:
                    driver.decline_offer(offer.id, Filters(refuse_seconds=0.2))
            hook, self.on_launch = self.on_launch, None
        if hook is not None:
            hook()

    def status_update(self, driver, status):
        with self.cond:
            self.updates.append(status)
            self.latest[status.task_id] = status
            if status.state in RELAUNCH and status.task_id in self.placed \
                    and status.reason != Reason.INVALID_OFFERS:
                del self.placed[status.task_id]
                self.queue.append(status.task_id)
                driver.revive_offers()
            self.cond.notify_all()

    def reconcile(self, driver) -> None:
        """Explicit reconciliation of every task not known to be running."""
        with self.cond:
            unsure = [TaskStatus(t, TaskState.STAGING, agent_id=a) for t, a in self.placed.items()
                      if t not in self.latest or self.latest[t].state != TaskState.RUNNING]
        if unsure:
            driver.reconcile_tasks(unsure)

    def wait(self, predicate, timeout: float = 60.0, what: str = "", driver=None) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}: "
                                         f"{ {k: v.state.name for k, v in self.latest.items()} }")
                self.cond.wait(min(left, 0.5))
                if driver is not None:  # a scheduler reconciles until every task is known
                    self.cond.release()
                    try:
                        self.reconcile(driver)
                    finally:
                        self.cond.acquire()


def _ids(prefix: str, n: int) -> list:
    return [f"{prefix}{i}" for i in range(n)]


@pytest.fixture
def cluster(zookeeper, tmp_path):  # noqa: F811
    """Two masters contending under a fresh path, two agents following the leader."""
    url = zookeeper.url("failover")
    procs = []
    try:
        a = start_master(url, str(tmp_path), "master-a")
        procs.append(a)
        detector = LeaderDetector(url).start()
        wait_for(lambda: detector.leader is not None and detector.leader.address == a.address
                 and state(a.address)["leading"], 60, "master A to lead")
        b = start_master(url, str(tmp_path), "master-b")
        procs.append(b)
        agents = [start_agent(url, str(tmp_path / f"agent{i}"), f"host-{i}") for i in range(2)]
        procs.extend(agents)
        wait_for(lambda: len(state(a.address)["agents"]) == 2, 60, "agents to register")
        yield {"url": url, "a": a, "b": b, "agents": agents, "detector": detector,
               "dir": tmp_path}
        detector.close()
    finally:
        for p in reversed(procs):
            p.terminate()


def test_leader_killed_mid_launch_new_leader_reconciles_no_task_runs_twice(cluster):
    markers = cluster["dir"] / "markers"
    markers.mkdir()
    ids = _ids("t", 12)
    sched = Launcher(ids, str(markers))
    a, b = cluster["a"], cluster["b"]
    sched.on_launch = lambda: a.signal(signal.SIGKILL)  # right after the first ACCEPT is sent
    driver = SchedulerDriver(sched, FrameworkInfo(name="mid-launch", failover_timeout=120),
                             cluster["url"])
    driver.start()
    try:
        driver.wait_registered(timeout=60)
        a.proc.wait(30)
        stale_offer = sched.offers_seen[0]
        new = wait_leader_other_than(cluster["detector"], a.address, 60)
        assert new == b.address
        sched.wait(lambda: all(t in sched.latest and sched.latest[t].state == TaskState.RUNNING
                               for t in ids), 90, "every task running", driver=driver)
        leader_state = state(b.address)
        assert leader_state["epoch"] >= 2
        running = [t["id"] for f in leader_state["frameworks"] for t in f["tasks"]
                   if t["state"] == "RUNNING"]
        assert sorted(running) == sorted(ids)
        assert_launched_once(markers, ids)
        # An offer made by the dead leader is refused cleanly by the new one.
        driver.launch_tasks(stale_offer, [TaskInfo("stale", "x", Resources(cpus=0.1, mem=16),
                                                   command=CommandInfo("true", shell=True))])
        sched.wait(lambda: "stale" in sched.latest, 30, "the stale offer's answer")
        assert sched.latest["stale"].state == TaskState.LOST
        assert sched.latest["stale"].reason == Reason.INVALID_OFFERS
        assert not (markers / "stale").exists()
    finally:
        driver.stop()


SCHEDULER_PROGRAM = """
import json, sys
from tests.substrate.cluster_helpers import Recorder, start
from substrate import TaskState
rec = Recorder()
driver = start(sys.argv[1], rec, name="mortal", failover_timeout=float(sys.argv[3]))
rec.submit(driver, "doomed", payload=("echo $$ > " + sys.argv[2] + "; exec sleep 600").encode())
rec.wait_state("doomed", TaskState.RUNNING, timeout=60)
print(json.dumps({"framework_id": driver.framework_id}), flush=True)
sys.stdin.read()
"""


def test_scheduler_that_never_returns_has_its_tasks_killed_at_the_deadline_across_failover(
        cluster):
    a, b = cluster["a"], cluster["b"]
    pidfile = cluster["dir"] / "doomed.pid"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    sched = subprocess.Popen([sys.executable, "-c", SCHEDULER_PROGRAM, cluster["url"],
                              str(pidfile), "15"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        fid = json.loads(sched.stdout.readline())["framework_id"]
        # RUNNING is reported when the shell starts, a moment before it writes its pid.
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "the task's pid")
        task_pid = int(pidfile.read_text())
        sched.kill()                       # the scheduler dies and never comes back
        sched.wait(20)
        wait_for(lambda: not _framework(state(a.address), fid)["connected"], 30,
                 "the leader to see the scheduler gone")
        a.signal(signal.SIGKILL)           # and then the leader dies too
        wait_leader_other_than(cluster["detector"], a.address, 60)
        wait_for(lambda: _framework(state(b.address), fid)["tasks"], 60,
                 "the task to come back with its agent")
        fw = _framework(state(b.address), fid)
        assert not fw["connected"] and 0 < fw["failover_deadline_in"] <= 15
        assert psutil.pid_exists(task_pid)  # not before its deadline
        wait_for(lambda: _gone(task_pid), 60, "the task to be killed at the deadline")
        wait_for(lambda: _framework(state(b.address), fid, None) is None, 30,
                 "the framework to be removed")
    finally:
        if sched.poll() is None:
            sched.kill()


def _framework(st: dict, fid: str, default: object = KeyError):
    for fw in st["frameworks"]:
        if fw["id"] == fid:
            return fw
    if default is KeyError:
        raise KeyError(fid)
    return default


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_frozen_leader_loses_its_session_steps_down_and_its_messages_are_ignored(cluster):
    a, b = cluster["a"], cluster["b"]
    markers = cluster["dir"] / "markers"
    markers.mkdir()
    sched = Launcher(["steady"], str(markers))
    driver = SchedulerDriver(sched, FrameworkInfo(name="steady", failover_timeout=120),
                             cluster["url"])
    driver.start()
    try:
        driver.wait_registered(timeout=60)
        sched.wait(lambda: "steady" in sched.latest
                   and sched.latest["steady"].state == TaskState.RUNNING, 60, "steady running")
        agent_id = sched.placed["steady"]
        epoch_a = state(a.address)["epoch"]
        a.signal(signal.SIGSTOP)  # frozen: its ZooKeeper session expires, B takes over
        wait_leader_other_than(cluster["detector"], a.address, 60)
        wait_for(lambda: agent_id in [x["id"] for x in state(b.address)["agents"]]
                 and _framework(state(b.address), driver.framework_id)["connected"], 60,
                 "agent and scheduler to follow the new leader")
        epoch_b = state(b.address)["epoch"]
        assert epoch_b > epoch_a
        # Frozen for longer than its agent timeout (5 x 1 s): when it runs again, the deposed
        # leader holds a stale world (broken streams, overdue timers) until it learns that
        # its session is gone. None of that may reach anyone or B's registry.
        time.sleep(5)  # the fault being injected is the length of the freeze
        a.signal(signal.SIGCONT)
        wait_for(lambda: state(a.address)["leading"] is False, 60, "A to step down")
        wait_for(lambda: state(a.address)["epoch"] == 0, 30, "A back to standby")
        assert state(b.address)["leading"] and state(b.address)["epoch"] == epoch_b
        # Nothing was lost: the task runs, the scheduler heard no LOST, the registry that B
        # keeps in ZooKeeper still admits the agent.
        assert sched.latest["steady"].state == TaskState.RUNNING
        assert not [u for u in sched.updates if u.state in RELAUNCH]
        b_agents = state(b.address)["agents"]
        assert [x["tasks"] for x in b_agents if x["id"] == agent_id] == [1]
        from kazoo.client import KazooClient
        from substrate.detector import parse_zk_url
        hosts, path = parse_zk_url(cluster["url"])
        zk = KazooClient(hosts)
        zk.start(timeout=20)
        try:
            assert zk.exists(f"{path}/registry/agents/{agent_id}")
            assert zk.exists(f"{path}/registry/frameworks/{driver.framework_id}")
        finally:
            zk.stop()
            zk.close()
        # The CLI follows the leader too.
        out = subprocess.run([sys.executable, "-m", "substrate.cli", "status", "--master",
                              cluster["url"]], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ,
                                      PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
        assert out.returncode == 0, out.stderr
        assert f"(epoch {epoch_b})" in out.stdout and "steady" in out.stdout
    finally:
        driver.stop()


def test_single_master_with_sqlite_registry_restarts_and_reconciles_lost_launches(tmp_path):
    db = tmp_path / "registry.db"
    master = Proc(["master", "--port", "0", "--http-port", "-1", "--registry", f"sqlite:{db}",
                   "--agent-heartbeat", "1"], log_path=str(tmp_path / "m1.log"))
    address = master.address
    agent = start_agent(address, str(tmp_path / "agent"), "host-0")
    markers = tmp_path / "markers"
    markers.mkdir()
    ids = _ids("s", 6)
    sched = Launcher(ids, str(markers))
    sched.on_launch = lambda: master.signal(signal.SIGKILL)
    driver = SchedulerDriver(sched, FrameworkInfo(name="sqlite", failover_timeout=120), address)
    restarted = None
    try:
        driver.start()
        driver.wait_registered(timeout=60)
        master.proc.wait(30)
        port = address.rsplit(":", 1)[1]
        restarted = Proc(["master", "--port", port, "--http-port", "-1", "--registry",
                          f"sqlite:{db}", "--agent-heartbeat", "1"],
                         log_path=str(tmp_path / "m2.log"))
        sched.wait(lambda: all(t in sched.latest and sched.latest[t].state == TaskState.RUNNING
                               for t in ids), 90, "every task running", driver=driver)
        st = state(address)
        assert st["epoch"] == 2
        assert [f["id"] for f in st["frameworks"]] == [driver.framework_id]
        assert_launched_once(markers, ids)
    finally:
        driver.stop()
        agent.terminate()
        master.kill()
        if restarted is not None:
            restarted.terminate()


class _KillOnSubscribe(Scheduler):
    """SIGKILLs the leader the moment it confirms the subscription."""

    def __init__(self, leader: Proc) -> None:
        self.leader = leader
        self.events: list = []
        self.cond = threading.Condition()

    def registered(self, driver, framework_id, master_id):
        self.leader.signal(signal.SIGKILL)
        self._note("registered")

    def reregistered(self, driver, master_id):
        self._note("reregistered")

    def error(self, driver, message):
        self._note(f"error: {message}")

    def _note(self, what: str) -> None:
        with self.cond:
            self.events.append(what)
            self.cond.notify_all()


def test_a_subscription_confirmed_by_a_leader_that_dies_at_once_survives_it(cluster):
    """SUBSCRIBED is sent only once the registry holds the framework: the next leader knows
    it, instead of refusing it as unknown."""
    sched = _KillOnSubscribe(cluster["a"])
    driver = SchedulerDriver(sched, FrameworkInfo(name="quick", failover_timeout=60),
                             cluster["url"])
    try:
        driver.start()
        fid = driver.wait_registered(timeout=60)
        with sched.cond:
            assert sched.cond.wait_for(lambda: len(sched.events) >= 2, 60), sched.events
        assert sched.events[:2] == ["registered", "reregistered"], sched.events
        new = wait_leader_other_than(cluster["detector"], cluster["a"].address, 60)
        assert [f["id"] for f in state(new)["frameworks"]] == [fid]
    finally:
        driver.stop()
