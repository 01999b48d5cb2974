"""Substrate speed: task round trips per second and time to the first RUNNING task.

Round trip = a task launched on an offer → FINISHED reported by its (reused) executor →
acknowledged by the scheduler, through an embedded cluster of 2 agents. The scheduler keeps
every offer busy (tasks of 0.01 cpu), so this measures the pipeline's throughput.

The same round trips are also measured with security on (in-process master and agents): every
RPC authenticated with a token, mutual TLS on scheduler↔master and agent↔master, and an ACL
policy, next to the plaintext figure of the same run.

Run: ``python benchmarks/bench_substrate.py [--tasks 20000] [--repeat 3]``
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

from substrate import (
    CommandInfo, Executor, ExecutorDriver, ExecutorInfo, Filters, FrameworkInfo, LocalCluster,
    Resources, Scheduler, SchedulerDriver, TaskInfo, TaskState,
)

TASK = Resources(cpus=0.01, mem=1)
EXECUTOR = ExecutorInfo(executor_id="bench", command=CommandInfo(
    sys.executable, [os.path.abspath(__file__), "--executor"]), resources=Resources(cpus=0.1, mem=32))


class FinishAtOnce(Executor):
    def launch_task(self, driver: ExecutorDriver, task: TaskInfo) -> None:
        driver.update(task.task_id, TaskState.FINISHED)


class Flood(Scheduler):
    """Launch ``total`` tiny tasks as fast as offers allow; time until all are finished."""

    def __init__(self, total: int) -> None:
        self.total, self.next, self.finished = total, 0, 0
        self.done = threading.Event()
        self.started = 0.0
        self.first_running = threading.Event()

    def resource_offers(self, driver: SchedulerDriver, offers: list) -> None:
        for offer in offers:
            free = offer.resources
            if EXECUTOR.executor_id not in offer.executor_ids:
                free = free - EXECUTOR.resources
            batch = []
            while self.next < self.total and free.contains(TASK):
                free = free - TASK
                batch.append(TaskInfo(task_id=f"t{self.next}", agent_id=offer.agent_id,
                                      resources=TASK, executor=EXECUTOR))
                self.next += 1
            if batch:
                driver.launch_tasks(offer.id, batch, Filters(refuse_seconds=0))
            else:
                driver.decline_offer(offer.id, Filters(refuse_seconds=0 if self.next < self.total else 60))

    def status_update(self, driver: SchedulerDriver, status) -> None:
        if status.state == TaskState.FINISHED:
            self.finished += 1
            if self.finished == self.total:
                self.done.set()


def timed_flood(master: str, total: int, credentials=None) -> float:
    """Round trips per second of ``total`` one-task launches to FINISHED, after a warm-up."""
    def driver(sched: Flood, name: str) -> SchedulerDriver:
        return SchedulerDriver(sched, FrameworkInfo(name=name), master,
                               credentials=credentials)

    warm = Flood(200)
    d = driver(warm, "warm-up").start()
    warm.done.wait(60)
    d.stop()
    sched = Flood(total)
    d = driver(sched, "bench")
    t0 = time.perf_counter()
    d.start()
    if not sched.done.wait(600):
        raise RuntimeError(f"only {sched.finished} of {total} tasks finished")
    elapsed = time.perf_counter() - t0
    d.stop()
    return total / elapsed


def round_trips(total: int, processes: bool) -> float:
    with LocalCluster(agents=2, cpus=1, mem=1024, processes=processes) as cluster:
        return timed_flood(cluster.master, total)


@contextlib.contextmanager
def secured_cluster(agents: int = 2):
    """Master and agents on one background loop with tokens, mutual TLS and an ACL policy;
    yields the scheduler's :class:`substrate.Credentials` and the master's address."""
    from substrate import Credentials
    from substrate.agent import Agent, AgentConfig
    from substrate.aio_loops import start_loop_thread
    from substrate.master import Master
    from substrate.security import Policy, ServerSecurity
    from substrate.security.certs import init_ca
    from substrate.security.tokens import CredentialStore, add_principal

    with tempfile.TemporaryDirectory(prefix="bench-sec-") as tmp:
        certs = init_ca(os.path.join(tmp, "certs"))
        path = os.path.join(tmp, "credentials.json")
        agent_token = add_principal(path, "agent", "agent")
        bench_token = add_principal(path, "bench", "framework")
        policy = Policy.from_dict({
            "register_frameworks": [{"principals": ["bench"], "roles": ["*"]}],
            # the executors run as the agent's own user (no user named): the policy counts
            # that as root, which "*" never matches, so root is named
            "run_tasks": [{"principals": ["bench"], "users": ["*", "root"]}],
            "register_agents": [{"principals": ["agent"]}]})

        def creds(principal: str, token: str) -> Credentials:
            return Credentials(principal, token, ca=certs["ca"], cert=certs["client"],
                               key=certs["client_key"])

        def security() -> ServerSecurity:
            return ServerSecurity(CredentialStore.load(path), policy, certs["server"],
                                  certs["server_key"], certs["ca"],
                                  client=creds("agent", agent_token))

        loop, thread = start_loop_thread("bench-secured-cluster")
        started: list = []

        async def start() -> str:
            master = Master("127.0.0.1", 0, None, None, security())
            await master.start()
            started.append(master)
            for i in range(agents):
                agent = Agent(AgentConfig(
                    master=master.address, work_dir=os.path.join(tmp, f"agent{i}"),
                    resources=Resources(cpus=1, mem=1024, disk=1024), hostname=f"bench-{i}"),
                    security())
                await agent.start()
                started.append(agent)
            await asyncio.gather(*(asyncio.wait_for(a.registered.wait(), 30)
                                   for a in started[1:]))
            return master.address

        async def stop() -> None:
            for daemon in reversed(started):
                await daemon.stop()

        address = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
        try:
            yield creds("bench", bench_token), address
        finally:
            asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)


def secured_round_trips(total: int) -> float:
    with secured_cluster() as (creds, master):
        return timed_flood(master, total, credentials=creds)


class FirstRunning(Scheduler):
    def __init__(self) -> None:
        self.running = threading.Event()
        self.launched = False

    def resource_offers(self, driver: SchedulerDriver, offers: list) -> None:
        if not self.launched:
            self.launched = True
            offer = offers[0]
            driver.launch_tasks(offer.id, [TaskInfo(task_id="first", agent_id=offer.agent_id,
                                                    resources=TASK, command=CommandInfo("sleep 5", shell=True))])

    def status_update(self, driver: SchedulerDriver, status) -> None:
        if status.state == TaskState.RUNNING:
            self.running.set()


def first_running(processes: bool) -> float:
    t0 = time.perf_counter()
    with LocalCluster(agents=2, processes=processes) as cluster:
        sched = FirstRunning()
        driver = SchedulerDriver(sched, FrameworkInfo(name="first"), cluster.master).start()
        if not sched.running.wait(60):
            raise RuntimeError("no task reached RUNNING")
        elapsed = time.perf_counter() - t0
        driver.stop()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--executor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.executor:
        return ExecutorDriver(FinishAtOnce()).run()
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, Python {platform.python_version()}")
    rows = []
    for processes in (False, True):
        mode = "master+agents as processes" if processes else "master+agents in-process"
        rates = [round_trips(args.tasks, processes) for _ in range(args.repeat)]
        starts = [first_running(processes) for _ in range(args.repeat)]
        rows.append((mode, statistics.median(rates), statistics.median(starts)))
    plain, secured = [], []
    for _ in range(args.repeat):  # interleaved, so both see the same machine load
        plain.append(round_trips(args.tasks, False))
        secured.append(secured_round_trips(args.tasks))
    print()
    print(f"| in-process master+agents, 2 agents | round trips/s (median of {args.repeat}) "
          "| vs plaintext |")
    print("| --- | --- | --- |")
    p, q = statistics.median(plain), statistics.median(secured)
    print(f"| plaintext, no authentication | {p:,.0f} | 1.00× |")
    print(f"| tokens + mutual TLS + ACL policy | {q:,.0f} | {q / p:.2f}× |")
    print()
    print(f"| embedded cluster, 2 agents | round trips/s (median of {args.repeat}) | vs goal 1,000/s "
          "| LocalCluster() → first RUNNING |")
    print("| --- | --- | --- | --- |")
    for mode, rate, start in rows:
        print(f"| {mode} | {rate:,.0f} | {rate / 1000:.2f}× | {start * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
