"""Records of submitted drivers: one JSON file each under ``<state_dir>/drivers/``.

The submitting process writes its driver's record at every change of state (atomically:
temporary file and rename); ``offerpool status`` and ``offerpool logs`` only read them.

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

STATES = ("PENDING", "RUNNING", "RELAUNCHING", "FINISHED", "FAILED", "KILLED")


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
                  submitter_pid=os.getpid(), state_dir=state_dir)
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
        return self.state in ("FINISHED", "FAILED", "KILLED")

    def submitter_alive(self) -> bool:
        """Whether the process that submitted (and watches) this driver still runs."""
        try:
            os.kill(self.submitter_pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


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
