"""Records of submitted drivers: one JSON file each under ``<state_dir>/drivers/``.

The submitting process writes its driver's record at every change of state (atomically:
temporary file and rename). The record names that process (pid and start time, so a reused pid
is not mistaken for it): when it is gone and the record is not in a final state, nobody will
ever finish the record, so :meth:`DriverRecord.settle` (called by ``offerpool status``) marks it
``LOST`` — the driver went with its submitter (a client-mode driver is killed with its parent,
a cluster-mode driver's framework is torn down when its scheduler disconnects).

Examples
--------
>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> rec = DriverRecord.new("job.py", ["1"], mode="client", master="h:1", state_dir=d)
>>> rec.update(state="RUNNING", pid=42)
>>> [(r.script, r.state, r.pid) for r in list_records(d)]
[('job.py', 'RUNNING', 42)]
"""
from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import psutil

STATES = ("PENDING", "RUNNING", "RELAUNCHING", "FINISHED", "FAILED", "KILLED", "LOST")
TERMINAL = ("FINISHED", "FAILED", "KILLED", "LOST")


def process_start(pid: int) -> float:
    """When process ``pid`` started (seconds since the epoch); 0.0 when there is no such
    process, -1.0 when it exists but its start is hidden. Zombies count as gone: a dead
    submitter nobody reaped must not look alive.

    Examples
    --------
    >>> process_start(os.getpid()) > 0
    True
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return 0.0
        return proc.create_time()
    except psutil.AccessDenied:
        return -1.0          # it exists, but we may not see when it started
    except (psutil.NoSuchProcess, ValueError):
        return 0.0


@dataclass
class DriverRecord:
    """What is known about one submitted driver."""

    id: str
    script: str
    args: list[str]
    mode: str                      # "client" or "cluster"
    master: str
    state: str = "PENDING"
    attempts: int = 0
    max_retries: int = 0
    pid: int = 0                   # client mode: the driver process
    submitter_pid: int = 0
    submitter_start: float = 0.0   # the submitter's start time: tells a reused pid apart
    detached: bool = False
    submitter_log: str = ""        # detached: the submitting process's own output
    exit_code: Optional[int] = None
    message: str = ""
    task_id: str = ""              # cluster mode: the current attempt's task
    framework_id: str = ""
    agent_address: str = ""
    sandbox: str = ""
    stdout: str = ""               # client mode: where the driver's output was copied
    stderr: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    state_dir: str = ""

    @classmethod
    def new(cls, script: str, args: list[str], *, mode: str, master: str,
            state_dir: str, max_retries: int = 0) -> "DriverRecord":
        rid = time.strftime("driver-%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        rec = cls(rid, script, list(args), mode, master, max_retries=max_retries,
                  submitter_pid=os.getpid(), submitter_start=process_start(os.getpid()),
                  state_dir=state_dir)
        rec.save()
        return rec

    @property
    def path(self) -> str:
        return os.path.join(self.state_dir, "drivers", f"{self.id}.json")

    def log_path(self, stream: str) -> str:
        """Where client mode copies the driver's ``stdout`` or ``stderr``."""
        return os.path.join(self.state_dir, "drivers", f"{self.id}.{stream}")

    def update(self, **changes) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        self.updated = time.time()
        self.save()

    def save(self) -> None:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        data = asdict(self)
        data.pop("state_dir")
        fd, tmp = tempfile.mkstemp(prefix=".rec-", dir=directory)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def submitter_alive(self) -> bool:
        """Whether the process that submitted (and watches) this driver still runs."""
        started = process_start(self.submitter_pid) if self.submitter_pid > 0 else 0.0
        if not started:
            return False
        if started < 0:
            return True
        # Start times are computed from boot time and clock ticks: equal for the same
        # process, different for a later one that reuses the pid.
        return not self.submitter_start or abs(started - self.submitter_start) < 0.05

    def settle(self) -> "DriverRecord":
        """This record, marked ``LOST`` (and saved) if its submitter died before finishing it.

        Examples
        --------
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> rec = DriverRecord.new("job.py", [], mode="client", master="", state_dir=d)
        >>> rec.update(state="RUNNING", submitter_start=1.0)   # "our" pid, but another start
        >>> rec.settle().state
        'LOST'
        """
        if self.terminal or self.submitter_alive():
            return self
        # It may have written its final state just before exiting: the file, read now that
        # the submitter is known dead, is the last word.
        fresh = find_record(self.state_dir, self.id) or self
        if fresh.terminal:
            return fresh
        fresh.update(state="LOST", message=f"the submitter (pid {fresh.submitter_pid}) died "
                     f"while the driver was {fresh.state}; the driver was stopped with it")
        return fresh


def list_records(state_dir: str) -> list[DriverRecord]:
    """Every record under ``state_dir``, oldest first; unreadable files are skipped."""
    directory = os.path.join(state_dir, "drivers")
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            with open(os.path.join(directory, name)) as f:
                data = json.load(f)
            found.append(DriverRecord(**data, state_dir=state_dir))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(found, key=lambda r: r.created)


def find_record(state_dir: str, key: str) -> Optional[DriverRecord]:
    """The record whose id or current task id is ``key``."""
    for rec in list_records(state_dir):
        if key in (rec.id, rec.task_id):
            return rec
    return None
