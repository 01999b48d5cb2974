"""Client mode: the driver runs on this machine, configured for the submitted master.

The script runs as ``python SCRIPT ARGS`` in a child process whose environment names the
master (``OFFERPOOL_MASTER``: ``dataflow.Context()`` and ``genetic.evolve()`` use it when given
no master) and the code and files to ship (``OFFERPOOL_PY_FILES``, ``OFFERPOOL_FILES``: the
driver's :func:`substrate.shipment` starts with them). The driver's output is shown and also
copied next to its record, so ``offerpool logs`` finds it afterwards (detached, it goes only
there). When supervised, a driver that dies is started again, up to the retry limit. The driver
dies with its submitter (Linux parent-death signal), so a record whose submitter is gone
describes a driver that is gone too.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import IO, Callable, Optional, Sequence

from substrate.errors import InvalidRequest
from substrate.shipping import ENV_FILES, ENV_PY_FILES, Shipment
from substrate.submit.records import DriverRecord
from substrate.submit.supervisor import Supervisor


def check_inputs(script: str, py_files: Sequence[str], files: Sequence[str]) -> None:
    """Raise :class:`InvalidRequest` naming the first missing or unusable file."""
    if not os.path.isfile(script):
        raise InvalidRequest(f"no such script: {script}")
    try:
        open(script, "rb").close()
    except OSError as exc:
        raise InvalidRequest(f"cannot read the script {script}: {exc.strerror}") from None
    probe = Shipment(auto=False)
    try:
        for path in py_files:
            probe.add_py_file(path)
        for path in files:
            probe.add_file(path)
    finally:
        probe.close()


def _tee(source: IO[bytes], sink: IO[bytes], copy: IO[bytes]) -> None:
    for chunk in iter(lambda: source.read1(65536), b""):
        sink.write(chunk)
        sink.flush()
        copy.write(chunk)
        copy.flush()


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when ``parent`` dies."""
    def arm() -> None:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)           # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return                                  # not Linux: the driver may outlive us
        if os.getppid() != parent:                  # the parent died before we armed it
            os._exit(137)
    return arm


def driver_env(master: str, py_files: Sequence[str], files: Sequence[str],
               record: DriverRecord, attempt: int) -> dict[str, str]:
    env = dict(os.environ)
    if master:
        env["OFFERPOOL_MASTER"] = master
    env[ENV_PY_FILES] = ",".join(os.path.abspath(p) for p in py_files)
    env[ENV_FILES] = ",".join(os.path.abspath(p) for p in files)
    env["OFFERPOOL_SUBMISSION_ID"] = record.id
    env["OFFERPOOL_SUBMIT_ATTEMPT"] = str(attempt)
    return env


def run_client(script: str, args: Sequence[str], *, master: str, py_files: Sequence[str],
               files: Sequence[str], supervise: bool, max_retries: int,
               state_dir: str, quiet: bool = False, detached: bool = False,
               on_record: Optional[Callable[[DriverRecord], None]] = None) -> int:
    """Run (and supervise) the driver here; its exit status (128 + signal when killed).

    ``detached``: the driver's output goes only to the files next to its record, not to this
    process's. ``on_record`` is called with the record as soon as it exists.
    """
    check_inputs(script, py_files, files)
    record = DriverRecord.new(os.path.abspath(script), list(args), mode="client",
                              master=master, state_dir=state_dir,
                              max_retries=max_retries if supervise else 0)
    record.update(stdout=record.log_path("stdout"), stderr=record.log_path("stderr"),
                  detached=detached)
    if on_record is not None:
        on_record(record)
    sup = Supervisor(supervise, max_retries)
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    proc: Optional[subprocess.Popen] = None
    try:
        with open(record.stdout, "ab") as out_copy, open(record.stderr, "ab") as err_copy:
            while True:
                attempt = sup.started()
                proc = subprocess.Popen(
                    [sys.executable, os.path.abspath(script), *args],
                    env=driver_env(master, py_files, files, record, attempt),
                    stdin=subprocess.DEVNULL if detached else None,
                    stdout=out_copy if detached else subprocess.PIPE,
                    stderr=err_copy if detached else subprocess.PIPE,
                    preexec_fn=_die_with_parent(os.getpid()))
                record.update(state="RUNNING", pid=proc.pid, attempts=attempt)
                pumps = [] if detached else [
                    threading.Thread(target=_tee, args=(proc.stdout, out, out_copy)),
                    threading.Thread(target=_tee, args=(proc.stderr, err, err_copy))]
                for pump in pumps:
                    pump.start()
                code = proc.wait()
                for pump in pumps:
                    pump.join()
                verdict = sup.ended(code)
                how = (f"killed by signal {signal.Signals(-code).name}" if code < 0
                       else f"exited with status {code}")
                status = code if code >= 0 else 128 - code     # as a shell reports it
                if verdict == "relaunch":
                    record.update(state="RELAUNCHING", exit_code=status,
                                  message=f"attempt {attempt} {how}; relaunching")
                    if not quiet:
                        print(f"offerpool submit: driver {how}; relaunching "
                              f"(attempt {attempt + 1} of {max_retries + 1})",
                              file=sys.stderr, flush=True)
                    continue
                record.update(state=verdict, exit_code=status, message=f"driver {how}")
                return status
    except KeyboardInterrupt:
        sup.killed = True
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:   # it ignores SIGTERM
                proc.kill()
                proc.wait()
        code = proc.returncode if proc is not None else None
        record.update(state="KILLED", exit_code=None if code is None else
                      (code if code >= 0 else 128 - code), message="killed on request")
        raise
