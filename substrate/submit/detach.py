"""``offerpool submit --detach`` and ``offerpool kill``: submissions that outlive the terminal.

:func:`spawn` starts the ordinary submission (client or cluster mode, supervised or not) in a
background process, ``python -m substrate.submit.detach SPEC``, in a session of its own: it has
no controlling terminal, so logging out sends it no SIGHUP, and its stdin is ``/dev/null``. As
soon as its record exists, that process writes the record's id on its stdout pipe and moves its
own stdout and stderr to ``<id>.submitter`` next to the record; :func:`spawn` returns the id
and the command exits while the submission goes on.

:func:`kill_driver` stops a driver through its submitter: SIGTERM, which the submitter turns
into killing the driver (its process, or its task) and recording ``KILLED``; SIGKILL when it
does not answer in time (the driver then goes with it, see :mod:`.records`).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from typing import Any, Optional, Sequence

from substrate.errors import InvalidRequest, SubstrateError
from substrate.submit.records import DriverRecord, find_record

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_sigterm() -> None:
    """Make SIGTERM stop a submission the way Ctrl-C does (driver killed, record KILLED)."""
    for sig in SIGNALS:
        signal.signal(sig, _interrupt)


def spawn(spec: dict) -> str:
    """Start the submission described by ``spec`` in the background; the driver's id.

    ``spec`` holds :func:`~substrate.submit.client.run_client`'s (or, with ``"cluster"``
    true, :func:`~substrate.submit.cluster.run_cluster`'s) keyword arguments plus
    ``script`` and ``args``.

    Raises
    ------
    InvalidRequest
        When the background process ended before its record existed (its error included).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "substrate.submit.detach", json.dumps(spec)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, close_fds=True)
    line = proc.stdout.readline().decode().strip()
    if not line:
        err = proc.stderr.read().decode(errors="replace").strip()
        code = proc.wait()
        raise InvalidRequest("the detached submission did not start: "
                             + (err.splitlines()[-1] if err else f"exit status {code}"))
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = 0  # not ours to wait for: it outlives this process on purpose
    return line


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The background side of :func:`spawn`."""
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    stop_on_sigterm()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    records: list[DriverRecord] = []

    def announce(record: DriverRecord) -> None:
        records.append(record)
        log = record.log_path("submitter")
        record.update(submitter_log=log)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.write(1, f"{record.id}\n".encode())
        os.dup2(fd, 1)   # also closes the pipe to spawn(), which then returns
        os.dup2(fd, 2)
        os.close(fd)

    script, args = spec.pop("script"), spec.pop("args")
    try:
        if spec.pop("cluster"):
            from substrate.submit.cluster import run_cluster
            return run_cluster(script, args, detached=True, on_record=announce,
                               echo=lambda m: print(f"offerpool submit: {m}", file=sys.stderr,
                                                    flush=True), **spec)
        from substrate.submit.client import run_client
        return run_client(script, args, detached=True, on_record=announce, **spec)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:
        if not records:
            raise
        traceback.print_exc()
        text = str(exc) if isinstance(exc, SubstrateError) else f"{type(exc).__name__}: {exc}"
        fresh = find_record(records[0].state_dir, records[0].id) or records[0]
        if not fresh.terminal:
            fresh.update(state="FAILED", message=f"the submitter failed: {text}")
        return 1


def kill_driver(state_dir: str, key: str, timeout: float = 30.0,
                poll: float = 0.1) -> DriverRecord:
    """Stop the driver whose id (or task id) is ``key``; its final record.

    Raises
    ------
    InvalidRequest
        No such driver, or it has already ended.
    """
    record = find_record(state_dir, key)
    if record is None:
        raise InvalidRequest(f"no submitted driver {key!r} in the records under {state_dir}")
    record = record.settle()
    if record.terminal:
        raise InvalidRequest(f"driver {record.id} has already ended: {record.state}")
    pid = record.submitter_pid
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            raise InvalidRequest(f"driver {record.id}: its submitter (pid {pid}) belongs to "
                                 f"another user") from None
        deadline = time.monotonic() + wait
        while record.submitter_alive() and time.monotonic() < deadline:
            time.sleep(poll)  # another process's exit: nothing here to wait on but its pid
        if not record.submitter_alive():
            break
    fresh = find_record(state_dir, record.id) or record
    if not fresh.terminal:
        fresh.update(state="KILLED", message=f"killed: its submitter (pid {pid}) did not "
                     f"answer SIGTERM and was killed, the driver with it")
    return fresh


if __name__ == "__main__":
    sys.exit(main())
