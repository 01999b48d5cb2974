"""Master failover time: from SIGKILL of the leading master to a fully re-registered cluster.

A real ZooKeeper and two real ``offerpool master --zk`` processes; ``--agents`` simulated
agents, lightweight clients spread over worker processes (``--agents-per-worker``, see
``failover_fleet.py``), each agent with its own real gRPC ``Master.Agent`` stream (on a
connection of its own, or with ``--channel per-worker`` on one connection per worker process),
following the leader through ZooKeeper like real agents do; one real scheduler driver
(``zk://``) in a process of its own that launches ``--tasks`` tasks, which the simulated agents
report RUNNING. Then the leader is killed and we time:

- **election**: SIGKILL → the new leader's first REGISTERED (ZooKeeper must first expire the
  dead leader's session: this part is bounded below by ``--session-timeout``; then the
  standby loads the registry and claims the next epoch);
- **re-registration**: first → last agent re-registered with its tasks (the new leader
  rebuilds all tasks from them);
- **total**: SIGKILL → fully re-registered cluster; and SIGKILL → scheduler re-subscribed.

The worker processes run at ``--worker-nice`` (19 by default): on a small machine the
simulated fleet shares the cores with the master it measures, and should not starve it.

Run: ``python benchmarks/bench_failover.py [--agents 1000] [--tasks 10000] [--repeat 3]``
(``--agents 10000`` needs about 2 GB of memory for the simulated fleet)
"""
from __future__ import annotations

import argparse
import faulthandler
import asyncio
import json
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Optional
import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from substrate import (  # noqa: E402
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo,
    TaskState,
)
from substrate.detector import LeaderDetector  # noqa: E402
from substrate.v1 import pb, rpc  # noqa: E402
from tests.zookeeper import ZooKeeperServer, available  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from failover_fleet import TASK_MEM, raise_fd_limit, worker_main  # noqa: E402

TASK = Resources(cpus=1, mem=TASK_MEM)


class Workers:
    """The worker processes that run the simulated agents (see :mod:`failover_fleet`)."""

    def __init__(self, url: str, agents: int, per_worker: int, cpus: float,
                 nice: int, shared_channel: bool) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process using gRPC
        n = max(1, -(-agents // per_worker))
        self.procs, self.conns = [], []
        for w in range(n):
            first, last = agents * w // n, agents * (w + 1) // n
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, daemon=True, args=(
                child, url, first, last - first, cpus, nice, shared_channel))
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)
        self.ready = 0
        self.full: dict = {}      # epoch -> {worker: (first_at, full_at, tasks, errors)}
        self.replies: list = []   # status replies being collected
        self.complete: list = []  # epochs at which every agent registered, in order
        self._changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        for w, conn in enumerate(self.conns):
            loop.add_reader(conn.fileno(), self._on_message, w, conn)

    def _on_message(self, w: int, conn) -> None:
        try:
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "ready":
                    self.ready += 1
                elif msg[0] == "full":
                    _, epoch, first_at, full_at, tasks, errors = msg
                    self.full.setdefault(epoch, {})[w] = (first_at, full_at, tasks, errors)
                    if len(self.full[epoch]) == len(self.conns):
                        self.complete.append(epoch)
                elif msg[0] == "status":
                    self.replies.append(msg[1:])
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            self.replies.append(({}, {"worker exited": 1}, {}))
        self._changed.set()

    async def _until(self, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the simulated agents' workers did not answer")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def wait_ready(self, timeout: float) -> None:
        await self._until(lambda: self.ready == len(self.conns), timeout)

    async def status(self, epoch: int) -> tuple:
        """(agents registered at ``epoch``, what the others wait on, errors), over all."""
        self.replies = []
        for conn in self.conns:
            conn.send(("status", epoch))
        await self._until(lambda: len(self.replies) >= len(self.conns), 30)
        count, phases, errors = 0, {}, {}
        for registered, ph, err in self.replies:
            count += registered.get(epoch, 0)
            for table, part in ((phases, ph), (errors, err)):
                for k, v in part.items():
                    table[k] = table.get(k, 0) + v
        return count, phases, errors

    def summary(self, epoch: int) -> tuple:
        """(first REGISTERED, last REGISTERED, tasks re-registered, errors) at ``epoch``."""
        parts = self.full[epoch].values()
        errors: dict = {}
        for *_, err in parts:
            for k, v in err.items():
                errors[k] = errors.get(k, 0) + v
        return (min(p[0] for p in parts), max(p[1] for p in parts), sum(p[2] for p in parts),
                errors)

    def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for conn in self.conns:
            try:
                loop.remove_reader(conn.fileno())
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
        for proc in self.procs:
            proc.join(40)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()


class Launcher(Scheduler):
    """Launches ``total`` tasks (one cpu each), again if one is lost (a leader that loses its
    session while launching); prints when all run and each time it re-subscribes."""

    def __init__(self, total: int) -> None:
        self.total, self.running = total, set()
        self.todo = [f"t{i}" for i in range(total)]

    def resource_offers(self, driver, offers):
        for offer in offers:
            free, batch = offer.resources, []
            while self.todo and free.contains(TASK):
                free = free - TASK
                batch.append(TaskInfo(self.todo.pop(), offer.agent_id, TASK,
                                      command=CommandInfo("true", shell=True)))
            if batch:
                driver.launch_tasks(offer.id, batch, Filters(refuse_seconds=600))
            else:
                driver.decline_offer(offer.id, Filters(refuse_seconds=600))

    def reregistered(self, driver, master_id):
        # (the benchmark reads this instead of polling the master's /state, which would cost
        # the master it measures a JSON dump of the whole cluster each time)
        print(f"resubscribed {time.monotonic()!r}", flush=True)
        if len(self.running) < self.total:
            # A failover while launching: RUNNING updates the simulated agents sent to the
            # dead leader are gone (they do not retry them as real agents do), so ask.
            driver.reconcile_tasks()

    def status_update(self, driver, status):
        if status.state == TaskState.RUNNING:
            if status.task_id not in self.running:
                self.running.add(status.task_id)
                if len(self.running) == self.total:
                    print("running", flush=True)
        elif status.state in (TaskState.LOST, TaskState.DROPPED, TaskState.GONE,
                              TaskState.FAILED, TaskState.ERROR, TaskState.KILLED):
            self.running.discard(status.task_id)
            self.todo.append(status.task_id)
            driver.revive_offers()


def scheduler_main(url: str, total: int) -> None:
    """The scheduler runs in a process of its own (grpc.aio and a second event loop with
    thousands of streams do not share a process well)."""
    driver = SchedulerDriver(Launcher(total), FrameworkInfo(name="bench", failover_timeout=3600),
                             url)
    driver.start()
    sys.stdin.read()
    driver.stop(failover=True)


def _say(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def start_master(url: str, session_timeout: float, log) -> tuple:
    # (agent heartbeat 600 s: the simulated agents send none, and the set-up of 100,000 tasks
    # can take minutes; they must not be found unreachable meanwhile)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "substrate.cli", "master", "--port", "0",
                             "--http-port", "-1", "--zk", url, "--zk-session-timeout",
                             str(session_timeout), "--agent-heartbeat", "600",
                             "--ready-json"], stdout=subprocess.PIPE, stderr=log, text=True,
                            env=env)
    info = json.loads(proc.stdout.readline())
    return proc, info["address"]


async def get_state(address: str) -> dict:
    # grpc.aio, like the fleet: the synchronous stack and grpc.aio in one process can stall
    async with grpc.aio.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", 256 << 20)]) as channel:
        reply = await rpc.MasterStub(channel).GetState(pb.StateRequest(), timeout=60)
        return json.loads(reply.json)


async def one_run(zk: ZooKeeperServer, agents: int, tasks: int, session_timeout: float,
                  workdir: str, per_worker: int, nice: int, shared_channel: bool,
                  profile: str = "") -> dict:
    url = zk.url("bench")
    log = open(os.path.join(workdir, "masters.log"), "a")
    first, first_addr = start_master(url, session_timeout, log)
    detector = LeaderDetector(url).start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, detector.wait_leader, 60)
    second, _ = start_master(url, session_timeout, log)
    leading = standby = first
    cpus = max(1, -(-tasks // agents))
    t = time.monotonic()
    workers = Workers(url, agents, per_worker, float(cpus), nice, shared_channel)
    sched = spy = None
    try:
        await workers.wait_ready(300)
        await wait_registered(workers, 1, agents, 900)
        setup_register = time.monotonic() - t
        sched = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--scheduler", url,
                                  str(tasks)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=dict(os.environ, PYTHONPATH=ROOT))
        while True:  # (it re-subscribes if the leader lost its session meanwhile)
            line = await asyncio.wait_for(
                loop.run_in_executor(None, sched.stdout.readline), 600)
            if line.strip() == "running":
                break
            if not line.startswith("resubscribed "):
                raise RuntimeError(f"the scheduler did not get its tasks running: {line!r}")
        # The leader now (a loaded machine may have cost the first one its session).
        leader = detector.leader.address
        leading, standby = (first, second) if leader == first_addr else (second, first)
        epoch = (await get_state(leader))["epoch"]
        _say(f"{agents} agents in {len(workers.procs)} worker processes registered, "
             f"{tasks} tasks running at epoch {epoch}; killing the leader")
        if profile:
            # (sampling only the thread that holds the GIL: what the master computes)
            spy = subprocess.Popen(["py-spy", "record", "--pid", str(standby.pid), "--rate",
                                    "200", "--nonblocking", "--gil", "--format", "raw", "-o",
                                    profile], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)

        claimed = watch_epoch(zk, url, epoch + 1)
        t0 = time.monotonic()
        leading.send_signal(signal.SIGKILL)
        while True:  # the standby takes office
            new = detector.leader
            if new is not None and new.address != leader:
                break
            await asyncio.sleep(0.005)  # polling the detector's view
        _say(f"new leader {new.address}")
        final = await wait_registered(workers, epoch + 1, agents, 900)
        if final != epoch + 1:
            _say(f"the new leader lost its ZooKeeper session during re-registration; all "
                 f"agents re-registered at epoch {final}")
        first_at, t_full, n_rereg, errors = workers.summary(final)
        t_epoch = await loop.run_in_executor(None, claimed.wait_time, 60)
        t_sched = 0.0
        while t_sched < t0:  # (skipping a re-subscription during the set-up)
            line = await asyncio.wait_for(
                loop.run_in_executor(None, sched.stdout.readline), 600)
            if line.strip() == "running":
                continue
            if not line.startswith("resubscribed "):
                raise RuntimeError(f"the scheduler did not re-subscribe: {line!r}")
            t_sched = float(line.split()[1])
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            spy = None
        st = await get_state(detector.leader.address)
        n_tasks = sum(len(f["tasks"]) for f in st["frameworks"])
        n_agents = sum(a["connected"] for a in st["agents"])
        before = (workers.summary(epoch)[3].get("StalledCall", 0)
                  if epoch in workers.complete else 0)
        if n_agents != agents or n_tasks != tasks:
            raise RuntimeError(f"new leader has {n_agents} agents connected, {n_tasks} tasks")
        return {"setup_register": setup_register, "total": t_full - t0,
                "scheduler": t_sched - t0, "tasks_reregistered": n_rereg,
                "stalled": errors.get("StalledCall", 0) - before,
                # the new leader's first REGISTERED received; from there to the last one:
                # re-registration
                "election": first_at - t0, "reregistration": t_full - first_at,
                "epoch_claimed": t_epoch - t0, "terms": final - epoch}
    finally:
        if spy is not None:
            spy.kill()
        if sched is not None and sched.poll() is None:
            sched.kill()
            sched.wait()
        workers.stop()
        detector.close()
        for p in (first, second):
            if p.poll() is None:
                p.kill()
            p.wait()
        log.close()


class watch_epoch:
    """When the new leader claims ``epoch`` in ZooKeeper (``<path>/epoch``): it has been
    elected and is about to take office (what remains is building its core, milliseconds)."""

    def __init__(self, zk: ZooKeeperServer, url: str, epoch: int) -> None:
        from kazoo.client import KazooClient

        self.at: Optional[float] = None
        self.done = threading.Event()
        self.client = KazooClient(zk.hosts, timeout=10)
        self.client.start(timeout=20)
        path = url.split("/", 3)[3]

        def seen(data, stat):
            if data is not None and int(data.decode() or 0) >= epoch and self.at is None:
                self.at = time.monotonic()
                self.done.set()
                return False
            return None
        self.client.DataWatch(f"/{path}/epoch", seen)

    def wait_time(self, timeout: float) -> float:
        self.done.wait(timeout)
        self.client.stop()
        self.client.close()
        return self.at if self.at is not None else float("nan")


async def wait_registered(workers: Workers, epoch: int, agents: int, timeout: float) -> int:
    """Wait until every simulated agent is registered at ``epoch`` or a later one (a leader
    may lose its session under load and be replaced again); return that epoch. Say where the
    agents are every 5 s meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        done = [e for e in workers.complete if e >= epoch]
        if done:
            return done[0]
        try:
            await workers._until(lambda: any(e >= epoch for e in workers.complete), 5)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"agents not registered at epoch {epoch} in {timeout} s")
            count, phases, errors = await workers.status(epoch)
            _say(f"... {count} of {agents} agents registered at epoch {epoch}; errors "
                 f"{errors}; the others wait on: {phases}")


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--scheduler":
        scheduler_main(sys.argv[2], int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--session-timeout", type=float, default=2.0)
    ap.add_argument("--agents-per-worker", type=int, default=500,
                    help="simulated agents per worker process (default 500)")
    ap.add_argument("--channel", choices=("per-agent", "per-worker"), default="per-agent",
                    help="a gRPC channel (TCP connection) per simulated agent, as real agents "
                         "have, or one per worker process shared by its agents' streams")
    ap.add_argument("--worker-nice", type=int, default=19,
                    help="nice value of the worker processes (default 19: on a small machine "
                         "the simulated fleet would otherwise starve the master under test)")
    ap.add_argument("--profile", default="",
                    help="record the new leader with py-spy during failover into FILE "
                         "(collapsed stacks; one file per run, suffixed with the run number)")
    args = ap.parse_args()
    raise_fd_limit()
    if not available():
        print("needs ZooKeeper (Debian package `zookeeper`) and java", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that ZooKeeper is stopped
    faulthandler.register(signal.SIGUSR1)
    zk = ZooKeeperServer().start(timeout=300)
    workdir = tempfile.mkdtemp(prefix="bench-failover-")
    results = []
    try:
        for i in range(args.repeat):
            profile = f"{args.profile}.{i + 1}" if args.profile else ""
            results.append(asyncio.run(one_run(zk, args.agents, args.tasks,
                                               args.session_timeout, workdir,
                                               args.agents_per_worker, args.worker_nice,
                                               args.channel == "per-worker", profile)))
            r = results[-1]
            print(f"  run: epoch claimed by the new leader {r['epoch_claimed']:.2f} s; first "
                  f"agent re-registered {r['election']:.2f} s + re-registration "
                  f"{r['reregistration']:.2f} s = {r['total']:.2f} s; scheduler back "
                  f"{r['scheduler']:.2f} s; {r['tasks_reregistered']} tasks re-registered; "
                  f"{r['stalled']} stalled registration attempts retried"
                  + (f"; {r['terms']} new leader terms" if r['terms'] > 1 else ""),
                  flush=True)
    finally:
        zk.stop()
    med = {k: statistics.median(r[k] for r in results)
           for k in ("total", "scheduler", "setup_register", "election", "reregistration",
                     "epoch_claimed")}
    load = os.getloadavg()
    print(f"\ncommand: python benchmarks/bench_failover.py --agents {args.agents} "
          f"--tasks {args.tasks} --repeat {args.repeat} --session-timeout {args.session_timeout} "
          f"--agents-per-worker {args.agents_per_worker} --worker-nice {args.worker_nice} "
          f"--channel {args.channel}")
    print(f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cpus, "
          f"Python {platform.python_version()}, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print()
    print("| agents | tasks | ZK session timeout | SIGKILL → new leader claims its epoch | "
          "→ first agent re-registered | → all agents re-registered (re-registration alone) | "
          "→ scheduler re-subscribed | goal 5 s / total |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.agents:,} | {args.tasks:,} | {args.session_timeout:g} s | "
          f"{med['epoch_claimed']:.2f} s | {med['election']:.2f} s | {med['total']:.2f} s "
          f"({med['reregistration']:.2f} s) | {med['scheduler']:.2f} s | "
          f"{5.0 / med['total']:.2f}× |")
    print(f"\n(medians of {args.repeat}; first registration of all agents on a fresh leader: "
          f"{med['setup_register']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
