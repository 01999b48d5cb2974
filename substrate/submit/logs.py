"""``offerpool logs ID``: a task's or a submitted driver's stdout/stderr, from wherever it ran.

``ID`` is a task id (found in the master's ``/state``, running or completed), or a submitted
driver's id or task id (found in the local driver records, which also cover frameworks the
master has since forgotten, and client-mode drivers whose output was copied locally). The
file is read through the agent's confined ``ReadFile`` RPC from the sandbox of the task — or
of its executor, whose log then holds the output of every task it ran. Following a supervised
cluster-mode driver moves on to each new attempt's task; a detached submission's own messages
are the ``submitter`` stream.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import grpc

from substrate.errors import ConnectionLost, InvalidRequest
from substrate.files import RemoteFileNotFound, iter_agent_file
from substrate.submit.records import find_record
from substrate.v1 import pb, rpc


@dataclass
class LogSource:
    """Where a task's logs are: an agent's sandbox, or local files (client-mode drivers)."""

    task_id: str
    agent_address: str = ""
    framework_id: str = ""
    sandbox: str = ""
    local_dir: str = ""             # <state_dir>/drivers, files <id>.stdout/stderr/submitter
    local_prefix: str = ""
    local: bool = False             # client mode: stdout and stderr are local files too
    terminal: Callable[[], bool] = lambda: True
    refresh: Optional[Callable[[], "LogSource"]] = None   # a driver's current attempt

    def read(self, stream: str, offset: int) -> bytes:
        """Bytes of ``stream`` from ``offset`` (empty when there are none yet)."""
        if self.local or stream == "submitter":
            if not self.local_dir:
                raise InvalidRequest(f"{self.task_id} is not a submitted driver: it has no "
                                     f"submitter log")
            path = os.path.join(self.local_dir, f"{self.local_prefix}.{stream}")
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    return f.read()
            except FileNotFoundError:
                return b""
        if not self.agent_address:
            return b""                  # a driver task not placed yet
        try:
            return b"".join(iter_agent_file(self.agent_address, self.framework_id, stream,
                                            sandbox=self.sandbox, offset=offset, timeout=30))
        except RemoteFileNotFound:
            return b""


def master_state(master: str) -> Optional[dict]:
    try:
        with grpc.insecure_channel(master) as channel:
            reply = rpc.MasterStub(channel).GetState(pb.StateRequest(), timeout=10)
    except grpc.RpcError:
        return None
    return json.loads(reply.json)


def _from_state(state: dict, task_id: str, master: str) -> Optional[LogSource]:
    addresses = {a["id"]: a["address"] for a in state.get("agents", [])}
    for fw in state.get("frameworks", []):
        for task in fw.get("tasks", []) + fw.get("completed_tasks", []):
            if task["id"] != task_id:
                continue
            address = addresses.get(task["agent_id"])
            if not address:
                raise ConnectionLost(f"task {task_id} ran on agent {task['agent_id']}, which "
                                     f"the master no longer knows")

            def terminal(fid=fw["id"]) -> bool:
                now = master_state(master) or {}
                for f in now.get("frameworks", []):
                    if f["id"] == fid and any(t["id"] == task_id for t in f["tasks"]):
                        return False
                return True
            return LogSource(task_id, address, fw["id"], task["executor_id"] or task_id,
                             terminal=terminal)
    return None


def find_logs(task_id: str, master: str, state_dir: str) -> LogSource:
    """Locate the logs of ``task_id``.

    Raises
    ------
    InvalidRequest
        When neither the master nor the local driver records know it.
    """
    record = find_record(state_dir, task_id)
    if record is not None:
        def terminal() -> bool:
            fresh = find_record(state_dir, record.id)
            return fresh is None or fresh.settle().terminal

        def source(rec) -> LogSource:
            return LogSource(rec.task_id or rec.id, rec.agent_address, rec.framework_id,
                             rec.sandbox, local_dir=os.path.dirname(rec.path),
                             local_prefix=rec.id, local=rec.mode == "client",
                             terminal=terminal, refresh=refresh)

        def refresh() -> LogSource:
            return source(find_record(state_dir, record.id) or record)
        # A driver's task id (not its own id) names that attempt only.
        return source(record) if task_id == record.id or record.mode == "client" else \
            LogSource(task_id, record.agent_address, record.framework_id, record.sandbox,
                      local_dir=os.path.dirname(record.path), local_prefix=record.id,
                      terminal=terminal)
    state = master_state(master) if master else None
    if state is not None:
        found = _from_state(state, task_id, master)
        if found is not None:
            return found
    where = f"the master at {master}" if state is not None else \
        (f"the master at {master} (unreachable)" if master else "no master given")
    raise InvalidRequest(f"no task or submitted driver {task_id!r}: not in the driver records "
                         f"under {state_dir}, nor known to {where}")


def print_logs(source: LogSource, streams: tuple[str, ...], follow: bool,
               poll: float = 0.5) -> None:
    """Print the streams; with ``follow``, keep printing until the task has ended."""
    outs = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer,
            "submitter": sys.stdout.buffer}
    offsets = dict.fromkeys(streams, 0)
    if not follow and not source.local and not source.agent_address and \
            streams != ("submitter",):
        raise InvalidRequest(f"driver {source.local_prefix} is not placed on an agent yet: "
                             f"`--follow` waits for it")
    while True:
        ended = source.terminal() if follow else True
        if follow and source.refresh is not None:
            now = source.refresh()
            if now.agent_address and (now.task_id, now.agent_address) != \
                    (source.task_id, source.agent_address):
                task_streams = [k for k in streams if k != "submitter"]
                if source.agent_address:   # the rest of the previous attempt's output
                    for stream in task_streams:
                        outs[stream].write(source.read(stream, offsets[stream]))
                        outs[stream].flush()
                        offsets[stream] = 0
                    sys.stderr.write(f"--- offerpool logs: now task {now.task_id} ---\n")
                    sys.stderr.flush()
                source = now
        for stream in streams:
            data = source.read(stream, offsets[stream])
            if data:
                offsets[stream] += len(data)
                outs[stream].write(data)
                outs[stream].flush()
        if ended:
            return
        time.sleep(poll)  # a user-facing tail, not synchronisation
