"""``offerpool run``: run a shell command as N tasks and stream their output (DPark's drun).

A complete framework written only against the public ``substrate`` API: the scheduler packs
tasks onto offers, one reusable executor per agent runs each command in a child process and
streams its output back as framework messages, and the run ends when every task is terminal.
Output chunks are framed as ``task_id NUL stream NUL bytes`` — nothing is ever unpickled.

Examples
--------
>>> from substrate import LocalCluster
>>> from substrate.frameworks.run import run_command
>>> with LocalCluster(agents=1) as cluster:
...     result = run_command(["echo hello"], tasks=2, master=cluster.master, echo=False)
>>> result.exit_code, sorted(result.states.values())
(0, ['FINISHED', 'FINISHED'])
>>> result.output["run-0"]
b'hello\\n'
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

import substrate
from substrate import (
    Executor, ExecutorDriver, ExecutorInfo, Filters, FrameworkInfo, Resources,
    Scheduler, SchedulerDriver, TaskInfo, TaskState, TaskStatus,
)

EXECUTOR_ID = "run-executor"
EXECUTOR_RESOURCES = Resources(cpus=0.05, mem=32)


@dataclass
class RunResult:
    """Final states, captured output and the exit code (0 only if every task finished)."""

    states: dict[str, str] = field(default_factory=dict)
    output: dict[str, bytes] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        ok = self.states and all(s == "FINISHED" for s in self.states.values())
        return 0 if ok else 1


class RunScheduler(Scheduler):
    """Launches ``tasks`` copies of ``command`` and stops the driver when all are done."""

    def __init__(self, command: str, tasks: int, resources: Resources,
                 echo: Callable[[str], None]) -> None:
        self.command, self.resources, self.echo = command, resources, echo
        self.pending = [f"run-{i}" for i in range(tasks)]
        self.result = RunResult()
        self.total = tasks
        self.done = threading.Event()

    def resource_offers(self, driver: SchedulerDriver, offers: list) -> None:
        for offer in offers:
            free = offer.resources
            if EXECUTOR_ID not in offer.executor_ids:
                free = free - EXECUTOR_RESOURCES if free.contains(EXECUTOR_RESOURCES) else Resources()
            batch = []
            while self.pending and free.contains(self.resources) and not free.is_empty():
                task_id = self.pending.pop(0)
                free = free - self.resources
                batch.append(TaskInfo(task_id=task_id, agent_id=offer.agent_id,
                                      resources=self.resources, name=f"run {task_id}",
                                      executor=_executor_info(), data=self.command.encode()))
            if batch:
                driver.launch_tasks(offer.id, batch)
            else:
                driver.decline_offer(offer.id, Filters(refuse_seconds=5))
        if not self.pending:
            driver.suppress_offers()

    def framework_message(self, driver: SchedulerDriver, agent_id: str, executor_id: str,
                          data: bytes) -> None:
        task_id, stream, chunk = data.split(b"\0", 2)
        tid = task_id.decode()
        if stream == b"stdout":
            self.result.output[tid] = self.result.output.get(tid, b"") + chunk
        for line in chunk.decode(errors="replace").splitlines():
            self.echo(f"[{tid}] {line}" if stream == b"stdout" else f"[{tid} stderr] {line}")

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        if not status.state.is_terminal or status.task_id in self.result.states:
            return
        self.result.states[status.task_id] = status.state.name
        self.result.messages[status.task_id] = status.message
        self.echo(f"[{status.task_id}] {status.state.name}"
                  + (f": {status.message}" if status.message else ""))
        if len(self.result.states) == self.total:
            self.done.set()

    def error(self, driver: SchedulerDriver, message: str) -> None:
        self.echo(f"error from the master: {message}")


def _executor_info() -> ExecutorInfo:
    return ExecutorInfo.for_python_module(EXECUTOR_ID, "substrate.frameworks.run",
                                          name="offerpool run", resources=EXECUTOR_RESOURCES)


def run_command(command: list[str], tasks: int = 1, *, master: Optional[str] = None,
                cpus: float = 0.1, mem: float = 32, echo: bool = True,
                timeout: Optional[float] = None) -> RunResult:
    """Run ``command`` (joined as a shell line) as ``tasks`` tasks and wait for all of them.

    Without ``master`` an embedded cluster is started for the run.
    """
    if tasks < 1:
        raise substrate.InvalidRequest("the number of tasks must be at least 1")
    line = " ".join(command)
    printer = print if echo else (lambda _msg: None)
    if master is None:
        with substrate.LocalCluster(agents=2) as cluster:
            return run_command(command, tasks, master=cluster.master, cpus=cpus, mem=mem,
                               echo=echo, timeout=timeout)
    sched = RunScheduler(line, tasks, Resources(cpus=cpus, mem=mem), printer)
    driver = SchedulerDriver(sched, FrameworkInfo(name=f"offerpool run: {line}"[:200]), master)
    driver.start()
    try:
        finished = sched.done.wait(timeout)
    finally:
        driver.stop()
    if not finished:
        raise substrate.SubstrateError(f"tasks still running after {timeout} s")
    return sched.result


class RunExecutor(Executor):
    """Runs each task's shell line in the sandbox; streams its output back.

    The task sees ``OFFERPOOL_TASK_ID`` and ``OFFERPOOL_TASK_INDEX`` in its environment.
    """

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def launch_task(self, driver: ExecutorDriver, task: TaskInfo) -> None:
        threading.Thread(target=self._run, args=(driver, task), daemon=True).start()

    def kill_task(self, driver: ExecutorDriver, task_id: str) -> None:
        proc = self.procs.get(task_id)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its exit is then reported as KILLED
        elif proc is None:
            driver.update(task_id, TaskState.KILLED, "killed before it started")

    def shutdown(self, driver: ExecutorDriver) -> None:
        for task_id in list(self.procs):
            self.kill_task(driver, task_id)

    def _run(self, driver: ExecutorDriver, task: TaskInfo) -> None:
        index = task.task_id.rpartition("-")[2]
        env = dict(os.environ, OFFERPOOL_TASK_ID=task.task_id, OFFERPOOL_TASK_INDEX=index)
        try:
            proc = subprocess.Popen(task.data.decode(), shell=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, env=env)
        except OSError as exc:
            driver.update(task.task_id, TaskState.FAILED, f"could not start: {exc}")
            return
        self.procs[task.task_id] = proc
        driver.update(task.task_id, TaskState.RUNNING)
        pumps = [threading.Thread(target=_pump, args=(driver, task.task_id, name, pipe))
                 for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr))]
        for pump in pumps:
            pump.start()
        code = proc.wait()
        for pump in pumps:
            pump.join()
        if code == -signal.SIGKILL:
            driver.update(task.task_id, TaskState.KILLED, "killed on request")
        elif code == 0:
            driver.update(task.task_id, TaskState.FINISHED)
        else:
            driver.update(task.task_id, TaskState.FAILED, f"exited with status {code}")


def _pump(driver: ExecutorDriver, task_id: str, name: str, pipe) -> None:
    prefix = task_id.encode() + b"\0" + name.encode() + b"\0"
    while True:
        chunk = os.read(pipe.fileno(), 65536)
        if not chunk:
            break
        driver.send_framework_message(prefix + chunk)


if __name__ == "__main__":
    sys.exit(ExecutorDriver(RunExecutor()).run())
