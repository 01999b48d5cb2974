"""Cluster mode: the driver itself runs as a task on an agent (``submit --cluster``).

A small framework (``offerpool submit: SCRIPT``) launches one command task,
``python SCRIPT ARGS``, whose command lists as URIs the script, the ``--py-files``, the
``--files`` and the script's own modules found next to it (a static import scan), all served
by this process's file server and checked by sha256. The agent fetches them into the task's
sandbox; the driver then runs there with ``OFFERPOOL_MASTER`` and the shipped names in its
environment, so its own executors get the same code (:mod:`substrate.shipping`). When
supervised, a driver task that fails, is killed or is lost is launched again (a new task id per
attempt) up to the retry limit. This process stays until the driver ends (``submit --detach``
runs it in the background, :mod:`.detach`); when it dies, the master tears the framework down
and with it the driver task.
"""
from __future__ import annotations

import modulefinder
import os
import re
import signal
import sys
import threading
from typing import Callable, Optional, Sequence

from substrate.resources import Resources
from substrate.scheduler import Scheduler, SchedulerDriver
from substrate.shipping import ENV_FILES, ENV_PY_FILES, Shipment
from substrate.submit.client import check_inputs
from substrate.submit.records import DriverRecord
from substrate.submit.supervisor import Supervisor
from substrate.types import CommandInfo, Filters, FrameworkInfo, TaskInfo, TaskState, TaskStatus


def local_modules(script: str) -> list[str]:
    """Modules and packages next to ``script`` that it imports (directly or not).

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "helper.py"), "w").write("import json\\n")
    >>> _ = open(os.path.join(d, "job.py"), "w").write("import helper, os\\n")
    >>> [os.path.basename(p) for p in local_modules(os.path.join(d, "job.py"))]
    ['helper.py']
    """
    here = os.path.dirname(os.path.abspath(script))
    finder = modulefinder.ModuleFinder(path=[here])
    try:
        finder.run_script(script)
    except (SyntaxError, ImportError, OSError, ValueError):
        return []  # the driver itself will report the problem when it runs
    found = []
    for name, module in finder.modules.items():
        path = getattr(module, "__file__", None)
        if name == "__main__" or "." in name or not path:
            continue
        path = os.path.abspath(path)
        if os.path.dirname(path) != here and not path.startswith(here + os.sep):
            continue
        if os.path.basename(path) == "__init__.py":
            path = os.path.dirname(path)
        found.append(path)
    return sorted(set(found))


def exit_code_of(state: TaskState, message: str) -> int:
    """The driver's exit status from its final task status (128 + signal when killed).

    Examples
    --------
    >>> exit_code_of(TaskState.FAILED, "exited with status 3")
    3
    >>> exit_code_of(TaskState.KILLED, "killed by signal SIGKILL")
    137
    >>> exit_code_of(TaskState.LOST, "agent gone")
    1
    """
    found = re.search(r"exited with status (-?\d+)", message)
    if found:
        return int(found.group(1))
    found = re.search(r"killed by signal (SIG[A-Z0-9]+)", message)
    if found and found.group(1) in signal.Signals.__members__:
        return 128 + signal.Signals[found.group(1)].value
    return 0 if state == TaskState.FINISHED else 1


class DriverScheduler(Scheduler):
    """Launches the driver task, relaunches it when supervised, records every change."""

    def __init__(self, make_command: Callable[[int], CommandInfo], resources: Resources,
                 supervisor: Supervisor, record: DriverRecord,
                 echo: Callable[[str], None]) -> None:
        self.make_command, self.resources = make_command, resources
        self.sup, self.record, self.echo = supervisor, record, echo
        self.pending = True
        self.done = threading.Event()
        self.final: Optional[str] = None

    def registered(self, driver: SchedulerDriver, framework_id: str, master_id: str) -> None:
        self.record.update(framework_id=framework_id)

    def resource_offers(self, driver: SchedulerDriver, offers: list) -> None:
        for offer in offers:
            if not (self.pending and offer.resources.contains(self.resources)):
                driver.decline_offer(offer.id, Filters(refuse_seconds=5))
                continue
            self.pending = False
            attempt = self.sup.started()
            task_id = f"{self.record.id}-{attempt}"
            self.record.update(task_id=task_id, sandbox=task_id, attempts=attempt,
                               agent_address=offer.agent_address, state="PENDING")
            driver.launch_tasks(offer.id, [TaskInfo(
                task_id=task_id, agent_id=offer.agent_id, resources=self.resources,
                name=f"driver {os.path.basename(self.record.script)}",
                command=self.make_command(attempt))])
            self.echo(f"driver task {task_id} on {offer.hostname} "
                      f"(offerpool logs {task_id})")
        if not self.pending:
            driver.suppress_offers()

    def status_update(self, driver: SchedulerDriver, status: TaskStatus) -> None:
        if status.task_id != self.record.task_id or self.done.is_set():
            return
        if status.state == TaskState.RUNNING:
            self.record.update(state="RUNNING")
            return
        if not status.state.is_terminal:
            return
        code = exit_code_of(status.state, status.message)
        if status.state != TaskState.FINISHED and code == 0:
            code = 1                  # ended otherwise than by finishing: never a success
        verdict = self.sup.ended(code)
        what = f"{status.state.name}" + (f": {status.message}" if status.message else "")
        if verdict == "relaunch":
            self.echo(f"driver task {status.task_id} {what}; relaunching")
            self.record.update(state="RELAUNCHING", message=what, exit_code=code)
            self.pending = True
            driver.revive_offers()
            return
        self.record.update(state=verdict, message=what, exit_code=code)
        self.echo(f"driver task {status.task_id} {what}")
        self.final = verdict
        self.done.set()

    def error(self, driver: SchedulerDriver, message: str) -> None:
        if self.done.is_set():   # already decided (finished, failed or killed on request)
            return
        self.echo(f"error from the master: {message}")
        self.record.update(state="FAILED", message=message)
        self.final = "FAILED"
        self.done.set()


def _sandbox_name(item) -> str:
    return item.name[:-4] if item.kind in ("pkg", "dir") else item.name


def run_cluster(script: str, args: Sequence[str], *, master: str, py_files: Sequence[str],
                files: Sequence[str], supervise: bool, max_retries: int, state_dir: str,
                cpus: float, mem: float, ship_host: str,
                echo: Callable[[str], None] = print, detached: bool = False,
                on_record: Optional[Callable[[DriverRecord], None]] = None) -> int:
    """Run the driver as a task on ``master``'s cluster; 0 when it finished.

    ``on_record`` is called with the driver's record as soon as it exists.
    """
    check_inputs(script, py_files, files)
    ship = Shipment(auto=False, host=ship_host)
    try:
        main = ship.add_file(script)
        code = [ship.add_py_file(p) for p in py_files]
        data = [ship.add_file(p) for p in files]
        listed = {i.source for i in code}
        for path in local_modules(script):
            if path not in listed:
                code.append(ship.add_py_file(path))
        record = DriverRecord.new(os.path.abspath(script), list(args), mode="cluster",
                                  master=master, state_dir=state_dir,
                                  max_retries=max_retries if supervise else 0)
        record.update(detached=detached)
        if on_record is not None:
            on_record(record)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                     if p and os.path.realpath(p) != os.path.dirname(main.source)]
        python_path = os.pathsep.join(dict.fromkeys([".", os.path.dirname(root), *inherited]))
        uris = ship.uris()

        def make_command(attempt: int) -> CommandInfo:
            env = {"OFFERPOOL_MASTER": master, "PYTHONPATH": python_path,
                   ENV_PY_FILES: ",".join(_sandbox_name(i) for i in code),
                   ENV_FILES: ",".join(_sandbox_name(i) for i in data),
                   "OFFERPOOL_SUBMISSION_ID": record.id,
                   "OFFERPOOL_SUBMIT_ATTEMPT": str(attempt), "PYTHONUNBUFFERED": "1"}
            return CommandInfo(sys.executable, [main.name, *args], environment=env,
                               uris=list(uris))

        sched = DriverScheduler(make_command, Resources(cpus=cpus, mem=mem),
                                Supervisor(supervise, max_retries), record, echo)
        name = f"offerpool submit: {os.path.basename(script)}"[:200]
        driver = SchedulerDriver(sched, FrameworkInfo(name=name), master)
        driver.start()
        try:
            sched.done.wait()
        except KeyboardInterrupt:
            sched.sup.killed = True
            sched.done.set()                      # later status updates change nothing
            if record.task_id:
                driver.kill_task(record.task_id)
            record.update(state="KILLED", message="killed on request")
            raise
        finally:
            driver.stop()
        return 0 if sched.final == "FINISHED" else 1
    finally:
        ship.close()
