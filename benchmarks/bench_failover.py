"""Master failover time: from SIGKILL of the leading master to a fully re-registered cluster.

A real ZooKeeper and two real ``offerpool master --zk`` processes; ``--agents`` simulated
agents, lightweight clients multiplexed on one asyncio loop in this process, each with its own
real gRPC ``Master.Agent`` stream on a connection of its own, following the leader
through ZooKeeper like real agents do; one real scheduler driver (``zk://``) that launches
``--tasks`` tasks, which the simulated agents report RUNNING. Then the leader is killed and
we time:

- **election**: SIGKILL → the standby has taken office (ZooKeeper must first expire the dead
  leader's session: this part is the session timeout, ``--session-timeout``);
- **re-registration**: new leader in office → every agent re-registered with its tasks (the
  new leader rebuilds all tasks from them);
- **total**: SIGKILL → fully re-registered cluster, and the scheduler re-subscribed.

Run: ``python benchmarks/bench_failover.py [--agents 1000] [--tasks 10000] [--repeat 3]``
"""
from __future__ import annotations

import argparse
import faulthandler
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from substrate import (  # noqa: E402
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo,
    TaskState,
)
from substrate.detector import LeaderDetector, MasterLocator  # noqa: E402
from substrate.v1 import pb, rpc  # noqa: E402
from tests.zookeeper import ZooKeeperServer, available  # noqa: E402

#: The real agent's reconnection backoff (``substrate.agent``): first delay and default cap.
FIRST_BACKOFF, MAX_BACKOFF = 0.05, 2.0
#: A registration unanswered this long is retried on a fresh connection (grpc.aio in this
#: process sometimes never completes an operation; such retries are counted and printed).
REGISTER_DEADLINE = 2.0
ERRORS: dict = {}  # exception name -> count, for the current run
TASK = Resources(cpus=1, mem=32)


class SimAgent:
    """One simulated agent: registers, reports launched tasks RUNNING, re-registers them."""

    __slots__ = ("index", "agent_id", "epoch", "tasks", "cpus", "phase")

    def __init__(self, index: int, cpus: float) -> None:
        self.index, self.cpus = index, cpus
        self.phase = "start"  # what it waits on (printed when a run stalls)
        self.agent_id, self.epoch = "", 0
        self.tasks: dict = {}  # task id -> (framework id, TaskInfo)

    def registration(self) -> "pb.AgentCall":
        kind = pb.AgentCall.REREGISTER if self.agent_id else pb.AgentCall.REGISTER
        call = pb.AgentCall(type=kind, epoch=self.epoch)
        info = call.register.info
        info.id, info.hostname = self.agent_id, f"sim-{self.index}"
        info.address = f"127.0.0.1:{20000 + self.index}"
        info.resources.cpus, info.resources.mem = self.cpus, self.cpus * TASK.mem
        for tid, (fid, task) in self.tasks.items():
            call.register.tasks.add(info=task, framework_id=fid, latest=pb.TaskStatus(
                task_id=tid, state=pb.TaskStatus.RUNNING, framework_id=fid,
                agent_id=self.agent_id))
        return call


class StalledCall(Exception):
    """A registration not answered within ``REGISTER_DEADLINE``."""


class LeaderChanged(Exception):
    """The leader changed while a stream operation was pending."""


async def _unless(op, follow: asyncio.Future, deadline: Optional[float] = None):
    """Await a stream operation unless the leader changes first.

    ``call.cancel()`` (done when ``follow`` fires) does not always complete a pending
    ``write`` or ``read`` of grpc.aio: with hundreds of streams on one loop some never
    return, and the agent would wait forever. So the operation is raced against ``follow``
    (and ``deadline``) and abandoned if the leader changes first.
    """
    task = asyncio.ensure_future(op)
    done, _ = await asyncio.wait({task, follow}, timeout=deadline,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return task.result()
    task.cancel()
    if follow in done:
        raise LeaderChanged()
    raise StalledCall()


class Fleet:
    """All simulated agents on this loop, sharing one leader detector."""

    def __init__(self, n: int, cpus: float, locator: MasterLocator) -> None:
        self.agents = [SimAgent(i, cpus) for i in range(n)]
        self.locator = locator
        self.registered: dict = {}     # epoch -> count
        self.full: dict = {}           # epoch -> asyncio.Event (all agents registered)
        self.full_at: dict = {}        # epoch -> monotonic time
        self.tasks: dict = {}          # epoch -> tasks re-registered
        self.first_at: dict = {}       # epoch -> monotonic time of its first REGISTERED

    def event(self, epoch: int) -> asyncio.Event:
        return self.full.setdefault(epoch, asyncio.Event())

    async def run_agent(self, agent: SimAgent) -> None:
        """Like a real agent's link: a connection of its own per attempt, closed after it,
        exponential backoff between failed attempts, and a move as soon as the leader
        changes."""
        backoff, last = FIRST_BACKOFF, ""
        while True:
            agent.phase = "resolve"
            target = await self.locator.resolve(60)
            if target != last:  # a new leader: the backoff grown against the old one is moot
                backoff, last = FIRST_BACKOFF, target
            # A distinct channel argument per agent: gRPC would otherwise share one TCP
            # connection between all channels to the same target.
            channel = grpc.aio.insecure_channel(target, options=[
                ("offerpool.bench.agent", agent.index)])
            follow = asyncio.ensure_future(self.locator.wait_changed(target))
            try:
                call = rpc.MasterStub(channel).Agent()
                follow.add_done_callback(lambda f, c=call: f.cancelled() or c.cancel())
                answered = False  # REGISTERED received on this stream
                agent.phase = f"write {target}"
                await _unless(call.write(agent.registration()), follow, REGISTER_DEADLINE)
                while True:
                    agent.phase = f"read {target}"
                    ev = await _unless(call.read(), follow,
                                       None if answered else REGISTER_DEADLINE)
                    if ev is grpc.aio.EOF:
                        break
                    if ev.epoch < agent.epoch:
                        continue
                    agent.epoch = ev.epoch
                    if ev.type == pb.AgentEvent.REGISTERED:
                        answered, backoff = True, FIRST_BACKOFF
                        agent.agent_id = ev.registered.agent_id
                        count = self.registered.get(ev.epoch, 0) + 1
                        self.registered[ev.epoch] = count
                        if count == 1:
                            self.first_at[ev.epoch] = time.monotonic()
                        self.tasks[ev.epoch] = self.tasks.get(ev.epoch, 0) + len(agent.tasks)
                        if count == len(self.agents):
                            self.full_at[ev.epoch] = time.monotonic()
                            self.event(ev.epoch).set()
                    elif ev.type == pb.AgentEvent.RUN_TASKS:
                        fid = ev.run_tasks.framework.id
                        update = pb.AgentCall(type=pb.AgentCall.UPDATE, epoch=agent.epoch)
                        for task in ev.run_tasks.tasks:
                            agent.tasks[task.task_id] = (fid, task)
                            update.update.statuses.add(
                                task_id=task.task_id, state=pb.TaskStatus.RUNNING,
                                source=pb.TaskStatus.AGENT, agent_id=agent.agent_id,
                                framework_id=fid, uuid=os.urandom(16), timestamp=time.time())
                        await _unless(call.write(update), follow)
            except (grpc.RpcError, asyncio.CancelledError, Exception) as exc:
                # (a stream cancelled under a pending write raises grpc's own usage errors)
                if asyncio.current_task().cancelling():
                    follow.cancel()
                    await channel.close(None)
                    raise  # the benchmark is over
                key = type(exc).__name__
                ERRORS[key] = ERRORS.get(key, 0) + 1
            # (not awaited: closing waits for the calls that grpc may never complete)
            asyncio.ensure_future(channel.close(None))
            if not follow.done():
                # the master went away: retry after a backoff, or at once on a new leader
                agent.phase = "backoff"
                await asyncio.wait({follow}, timeout=backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            follow.cancel()


class Launcher(Scheduler):
    """Launches ``total`` tasks (one cpu each); prints when all run and when re-subscribed."""

    def __init__(self, total: int) -> None:
        self.total, self.next, self.running = total, 0, set()

    def resource_offers(self, driver, offers):
        for offer in offers:
            free, batch = offer.resources, []
            while self.next < self.total and free.contains(TASK):
                free = free - TASK
                batch.append(TaskInfo(f"t{self.next}", offer.agent_id, TASK,
                                      command=CommandInfo("true", shell=True)))
                self.next += 1
            if batch:
                driver.launch_tasks(offer.id, batch, Filters(refuse_seconds=600))
            else:
                driver.decline_offer(offer.id, Filters(refuse_seconds=600))

    def status_update(self, driver, status):
        if status.state == TaskState.RUNNING and status.task_id not in self.running:
            self.running.add(status.task_id)
            if len(self.running) == self.total:
                print("running", flush=True)


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
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "substrate.cli", "master", "--port", "0",
                             "--http-port", "-1", "--zk", url, "--zk-session-timeout",
                             str(session_timeout), "--agent-heartbeat", "60",
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
                  workdir: str) -> dict:
    url = zk.url("bench")
    log = open(os.path.join(workdir, "masters.log"), "a")
    first, first_addr = start_master(url, session_timeout, log)
    detector = LeaderDetector(url).start()
    await asyncio.get_running_loop().run_in_executor(None, detector.wait_leader, 60)
    second, _ = start_master(url, session_timeout, log)
    locator = MasterLocator(url, detector=detector)
    cpus = max(1, -(-tasks // agents))
    fleet = Fleet(agents, float(cpus), locator)
    runners = [asyncio.ensure_future(fleet.run_agent(a)) for a in fleet.agents]
    sched = None
    try:
        leader = detector.leader.address
        assert leader == first_addr
        t = time.monotonic()
        await asyncio.wait_for(fleet.event(1).wait(), 600)
        setup_register = time.monotonic() - t
        sched = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--scheduler", url,
                                  str(tasks)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=dict(os.environ, PYTHONPATH=ROOT))
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sched.stdout.readline)
        if line.strip() != "running":
            raise RuntimeError(f"the scheduler did not get its tasks running: {line!r}")
        epoch = (await get_state(leader))["epoch"]
        _say(f"{agents} agents registered, {tasks} tasks running at epoch {epoch}; killing the leader")

        t0 = time.monotonic()
        first.send_signal(signal.SIGKILL)
        while True:  # the standby takes office
            new = detector.leader
            if new is not None and new.address != leader:
                break
            await asyncio.sleep(0.005)  # polling the detector's view
        _say(f"new leader {new.address}")
        while not fleet.event(epoch + 1).is_set():
            try:
                await asyncio.wait_for(fleet.event(epoch + 1).wait(), 5)
            except asyncio.TimeoutError:
                print(f"  ... {fleet.registered.get(epoch + 1, 0)} of {agents} agents "
                      f"re-registered", file=sys.stderr, flush=True)
                late = [a for a in fleet.agents if a.epoch <= epoch]
                phases: dict = {}
                for a in late:
                    phases[a.phase] = phases.get(a.phase, 0) + 1
                print(f"  ... errors {ERRORS}; not re-registered: {phases}; agent indexes "
                      f"{[a.index for a in late][:20]}", file=sys.stderr, flush=True)
        t_full = fleet.full_at[epoch + 1]
        while not all(f["connected"] for f in (await get_state(new.address))["frameworks"]):
            await asyncio.sleep(0.02)  # polling the new leader's view of the scheduler
        t_sched = time.monotonic()
        st = await get_state(new.address)
        n_tasks = sum(len(f["tasks"]) for f in st["frameworks"])
        stalled = ERRORS.get("StalledCall", 0)
        ERRORS.clear()
        if len(st["agents"]) != agents or n_tasks != tasks:
            raise RuntimeError(f"new leader has {len(st['agents'])} agents, {n_tasks} tasks")
        return {"setup_register": setup_register, "total": t_full - t0,
                "scheduler": t_sched - t0, "tasks_reregistered": fleet.tasks[epoch + 1],
                "stalled": stalled,
                # the new leader's first REGISTERED: it is in office (election, bounded below
                # by the session timeout); from there to the last one: re-registration
                "election": fleet.first_at[epoch + 1] - t0,
                "reregistration": t_full - fleet.first_at[epoch + 1]}
    finally:
        if sched is not None and sched.poll() is None:
            sched.kill()
            sched.wait()
        for r in runners:
            r.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        detector.close()
        for p in (first, second):
            if p.poll() is None:
                p.kill()
            p.wait()
        log.close()


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--scheduler":
        scheduler_main(sys.argv[2], int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--session-timeout", type=float, default=2.0)
    args = ap.parse_args()
    if not available():
        print("needs ZooKeeper (Debian package `zookeeper`) and java", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that ZooKeeper is stopped
    faulthandler.register(signal.SIGUSR1)
    zk = ZooKeeperServer().start(timeout=300)
    workdir = tempfile.mkdtemp(prefix="bench-failover-")
    results = []
    try:
        for _ in range(args.repeat):
            results.append(asyncio.run(one_run(zk, args.agents, args.tasks,
                                               args.session_timeout, workdir)))
            r = results[-1]
            print(f"  run: election {r['election']:.2f} s + re-registration "
                  f"{r['reregistration']:.2f} s = {r['total']:.2f} s; scheduler back "
                  f"{r['scheduler']:.2f} s; {r['tasks_reregistered']} tasks re-registered; "
                  f"{r['stalled']} stalled registration attempts retried",
                  flush=True)
    finally:
        zk.stop()
    med = {k: statistics.median(r[k] for r in results)
           for k in ("total", "scheduler", "setup_register", "election", "reregistration")}
    load = os.getloadavg()
    print(f"\ncommand: python benchmarks/bench_failover.py --agents {args.agents} "
          f"--tasks {args.tasks} --repeat {args.repeat} --session-timeout {args.session_timeout}")
    print(f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cpus, "
          f"Python {platform.python_version()}, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print()
    print("| agents | tasks | ZK session timeout | SIGKILL → new leader in office | "
          "→ all agents re-registered (re-registration alone) | → scheduler re-subscribed | "
          "goal 5 s / total |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.agents:,} | {args.tasks:,} | {args.session_timeout:g} s | "
          f"{med['election']:.2f} s | {med['total']:.2f} s ({med['reregistration']:.2f} s) | "
          f"{med['scheduler']:.2f} s | {5.0 / med['total']:.2f}× |")
    print(f"\n(medians of {args.repeat}; first registration of all agents on a fresh leader: "
          f"{med['setup_register']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
