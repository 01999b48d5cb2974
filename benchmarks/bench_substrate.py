"""Substrate speed: task round trips per second and time to the first RUNNING task.

Round trip = a task launched on an offer → FINISHED reported by its (reused) executor →
acknowledged by the scheduler, through an embedded cluster of 2 agents. The scheduler keeps
every offer busy (tasks of 0.01 cpu), so this measures the pipeline's throughput.

Run: ``python benchmarks/bench_substrate.py [--tasks 20000] [--repeat 3]``
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
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


def round_trips(total: int, processes: bool) -> float:
    with LocalCluster(agents=2, cpus=1, mem=1024, processes=processes) as cluster:
        warm = Flood(200)
        driver = SchedulerDriver(warm, FrameworkInfo(name="warm-up"), cluster.master).start()
        warm.done.wait(60)
        driver.stop()
        sched = Flood(total)
        driver = SchedulerDriver(sched, FrameworkInfo(name="bench"), cluster.master)
        t0 = time.perf_counter()
        driver.start()
        if not sched.done.wait(600):
            raise RuntimeError(f"only {sched.finished} of {total} tasks finished")
        elapsed = time.perf_counter() - t0
        driver.stop()
    return total / elapsed


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
    print()
    print(f"| embedded cluster, 2 agents | round trips/s (median of {args.repeat}) | vs goal 1,000/s "
          "| LocalCluster() → first RUNNING |")
    print("| --- | --- | --- | --- |")
    for mode, rate, start in rows:
        print(f"| {mode} | {rate:,.0f} | {rate / 1000:.2f}× | {start * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
