"""`offerpool submit --detach`, `offerpool kill` and records whose submitter died, on real
processes: the submit command returns while its driver still runs (held back by a FIFO the test
opens later), and everything after that goes through the background submitter alone."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.batch.test_submit import JOB, _assert_ran, _env, make_job, offerpool

pytestmark = pytest.mark.timeout(240)

# The driver blocks opening the FIFO named after --gate until the test opens it for writing.
GATED_JOB = '''
import sys
if "--gate" in sys.argv:
    open(sys.argv[sys.argv.index("--gate") + 1]).read()
''' + JOB


@pytest.fixture
def job(tmp_path):
    return make_job(tmp_path, GATED_JOB)


def record(state: Path, driver_id: str) -> dict:
    return json.loads((state / "drivers" / f"{driver_id}.json").read_text())


def wait_for(what: str, check, timeout: float = 120.0):
    """Poll ``check`` (state owned by other processes) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def detach(cluster, d, elsewhere, state, *extra, args=()) -> str:
    r = offerpool("submit", "--detach", "--master", cluster.master, "--files",
                  d / "factor.txt", *extra, d / "job.py", *args, cwd=elsewhere, state=state,
                  timeout=60)
    assert r.returncode == 0, r.stderr
    driver_id = r.stdout.strip()
    assert driver_id.startswith("driver-") and f"offerpool kill {driver_id}" in r.stderr
    return driver_id


def ended(state: Path, driver_id: str) -> dict:
    return wait_for(f"{driver_id} to end", lambda: (lambda rec: rec if rec["state"] in (
        "FINISHED", "FAILED", "KILLED", "LOST") else None)(record(state, driver_id)))


def status_line(cluster, state: Path, elsewhere: Path, driver_id: str) -> str:
    out = offerpool("status", "--master", cluster.master, cwd=elsewhere, state=state).stdout
    return next(line for line in out.splitlines() if driver_id in line)


def test_detached_cluster_driver_finishes_after_submit_returned(cluster, job, tmp_path):
    d, elsewhere, state = job
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    driver_id = detach(cluster, d, elsewhere, state, "--cluster", args=("--gate", gate))
    # submit has returned; the driver cannot finish before the gate opens.
    rec = record(state, driver_id)
    assert rec["state"] in ("PENDING", "RUNNING") and rec["detached"]
    submitter = rec["submitter_pid"]
    assert os.getsid(submitter) == submitter != os.getsid(0)   # its own session: no SIGHUP
    wait_for("the driver task to run", lambda: record(state, driver_id)["state"] == "RUNNING")
    assert "RUNNING" in status_line(cluster, state, elsewhere, driver_id)
    follow = subprocess.Popen(
        [sys.executable, "-m", "substrate.cli", "logs", driver_id, "--follow", "--stdout"],
        cwd=elsewhere, env=_env(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    with open(gate, "w") as g:        # blocks until the driver opens its end
        g.write("go")
    out, err = follow.communicate(timeout=120)   # --follow returns once the driver ended
    assert follow.returncode == 0, err
    _assert_ran(out, cluster.master)
    rec = ended(state, driver_id)
    assert (rec["state"], rec["exit_code"], rec["mode"]) == ("FINISHED", 0, "cluster")
    assert "FINISHED exit 0" in status_line(cluster, state, elsewhere, driver_id)
    logs = offerpool("logs", driver_id, cwd=elsewhere, state=state)
    _assert_ran(logs.stdout, cluster.master)
    own = offerpool("logs", driver_id, "--submitter", cwd=elsewhere, state=state).stdout
    assert f"driver task {rec['task_id']}" in own and "FINISHED" in own
    wait_for("the submitter to exit", lambda: not psutil.pid_exists(submitter)
             or psutil.Process(submitter).status() == psutil.STATUS_ZOMBIE)


def test_detached_supervised_driver_killed_once_still_finishes(cluster, job, tmp_path):
    d, elsewhere, state = job
    pid_file = tmp_path / "driver.pid"
    driver_id = detach(cluster, d, elsewhere, state, "--supervise", "--max-retries", "2",
                       args=("--hang-first", pid_file))
    pid = int(wait_for("the first attempt", lambda: pid_file.exists() and pid_file.read_text()))
    os.kill(pid, signal.SIGKILL)
    rec = ended(state, driver_id)
    assert (rec["state"], rec["attempts"], rec["exit_code"]) == ("FINISHED", 2, 0)
    line = status_line(cluster, state, elsewhere, driver_id)
    assert "FINISHED exit 0" in line and "attempts 2/3" in line
    logs = offerpool("logs", driver_id, cwd=elsewhere, state=state)
    _assert_ran(logs.stdout, cluster.master, attempt=2)
    own = offerpool("logs", driver_id, "--submitter", cwd=elsewhere, state=state).stdout
    assert "killed by signal SIGKILL; relaunching" in own


def test_kill_stops_a_detached_cluster_driver(cluster, job, tmp_path):
    d, elsewhere, state = job
    pid_file = tmp_path / "driver.pid"
    driver_id = detach(cluster, d, elsewhere, state, "--cluster", "--supervise",
                       args=("--hang-first", pid_file))
    pid = int(wait_for("the driver task", lambda: pid_file.exists() and pid_file.read_text()))
    driver = psutil.Process(pid)
    submitter = record(state, driver_id)["submitter_pid"]
    r = offerpool("kill", driver_id, cwd=elsewhere, state=state, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{driver_id} KILLED" in r.stdout
    driver.wait(timeout=60)                 # raises if the driver task is still alive
    rec = record(state, driver_id)
    assert (rec["state"], rec["attempts"]) == ("KILLED", 1)      # killed, not relaunched
    assert not psutil.pid_exists(submitter) or \
        psutil.Process(submitter).status() == psutil.STATUS_ZOMBIE
    assert "KILLED" in status_line(cluster, state, elsewhere, driver_id)
    again = offerpool("kill", driver_id, cwd=elsewhere, state=state)
    assert again.returncode == 1 and "already ended: KILLED" in again.stderr
    assert "no submitted driver 'driver-nope'" in \
        offerpool("kill", "driver-nope", cwd=elsewhere, state=state).stderr


@pytest.mark.parametrize("mode", ["client", "cluster"])
def test_a_record_whose_submitter_was_killed_is_lost(cluster, job, tmp_path, mode):
    d, elsewhere, state = job
    pid_file = tmp_path / "driver.pid"
    extra = ("--cluster",) if mode == "cluster" else ()
    driver_id = detach(cluster, d, elsewhere, state, *extra, args=("--hang-first", pid_file))
    driver = psutil.Process(int(wait_for("the driver", lambda: pid_file.exists()
                                         and pid_file.read_text())))
    assert record(state, driver_id)["state"] == "RUNNING"
    os.kill(record(state, driver_id)["submitter_pid"], signal.SIGKILL)
    driver.wait(timeout=60)                 # the driver went with its submitter
    line = status_line(cluster, state, elsewhere, driver_id)
    assert "LOST" in line and "submitter" in line and "RUNNING" not in line.split("(")[0]
    rec = record(state, driver_id)
    assert rec["state"] == "LOST"           # settled once, in the file


from hypothesis import given, strategies as st  # noqa: E402

from substrate.agent.processes import describe_exit  # noqa: E402
from substrate.submit.cluster import exit_code_of  # noqa: E402
from substrate.types import TaskState  # noqa: E402


@given(st.one_of(st.integers(0, 255), st.sampled_from([-s.value for s in signal.Signals])),
       st.sampled_from([TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED]))
def test_a_driver_tasks_exit_status_is_read_back_from_its_final_message(code, state):
    expected = code if code >= 0 else 128 - code
    assert exit_code_of(state, describe_exit(code)) == expected
    assert exit_code_of(state, "") == (0 if state == TaskState.FINISHED else 1)
