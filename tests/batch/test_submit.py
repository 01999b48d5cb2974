"""`offerpool submit` end to end: real master and agents in their own processes, a driver
script in a temporary directory that imports a helper next to it, run from another directory
(so the helper reaches the executors only by being shipped)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


pytestmark = pytest.mark.timeout(240)

HELPER = '''
import os
from dataflow import SparkFiles

def scaled(x):
    """x times the factor in the shipped factor.txt, and where this module was loaded from."""
    factor = int(open(SparkFiles.get("factor.txt")).read())
    box = os.environ.get("SUBSTRATE_SANDBOX", "")
    here = os.path.realpath(__file__)
    where = "sandbox" if box and here.startswith(os.path.realpath(box) + os.sep) else here
    return x * factor, where
'''

JOB = '''
import os, sys, pathlib, threading
attempt = int(os.environ.get("OFFERPOOL_SUBMIT_ATTEMPT", "1"))
if "--hang-first" in sys.argv and attempt == 1:
    pathlib.Path(sys.argv[-1]).write_text(str(os.getpid()))
    threading.Event().wait()          # until killed
if "--die-first" in sys.argv and attempt == 1:
    os.kill(os.getpid(), 9)
import helper
from dataflow import Context
with Context(progress=False) as ctx:
    master = ctx.master
    out = ctx.parallelize(range(6), 3).map(helper.scaled).collect()
print("MASTER", master)
print("RESULT", [v for v, _ in out])
print("WHERE", sorted(set(w for _, w in out)))
print("ATTEMPT", attempt)
'''


def make_job(tmp_path: Path, script: str) -> tuple[Path, Path, Path]:
    """A job folder (``job.py`` importing ``helper.py``, a data file), another folder to
    submit from, and the state directory."""
    d = tmp_path / "job"
    d.mkdir()
    (d / "helper.py").write_text(HELPER)
    (d / "job.py").write_text(script)
    (d / "factor.txt").write_text("10")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return d, elsewhere, tmp_path / "state"


@pytest.fixture
def job(tmp_path):
    return make_job(tmp_path, JOB)


def _env(state: Path) -> dict:
    env = dict(os.environ, OFFERPOOL_STATE_DIR=str(state))
    env.pop("OFFERPOOL_MASTER", None)
    return env


def offerpool(*args, cwd, state, timeout=180, check=False):
    return subprocess.run([sys.executable, "-m", "substrate.cli", *map(str, args)], cwd=cwd,
                          env=_env(state), capture_output=True, text=True, timeout=timeout,
                          check=check)


def _records(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((state / "drivers").glob("*.json"))]


def _assert_ran(out: str, master: str, attempt: int = 1) -> None:
    assert f"MASTER {master}" in out
    assert "RESULT [0, 10, 20, 30, 40, 50]" in out
    assert "WHERE ['sandbox']" in out           # the helper came from the executor's sandbox
    assert f"ATTEMPT {attempt}" in out


def test_client_mode_ships_the_local_helper_and_files(cluster, job):
    d, elsewhere, state = job
    r = offerpool("submit", "--master", cluster.master, "--files", d / "factor.txt",
                  d / "job.py", cwd=elsewhere, state=state)
    assert r.returncode == 0, r.stderr
    _assert_ran(r.stdout, cluster.master)
    [rec] = _records(state)
    assert (rec["mode"], rec["state"], rec["attempts"]) == ("client", "FINISHED", 1)
    status = offerpool("status", "--master", cluster.master, cwd=elsewhere, state=state)
    assert status.returncode == 0
    line = next(ln for ln in status.stdout.splitlines() if rec["id"] in ln)
    assert "FINISHED" in line and "client" in line
    logs = offerpool("logs", rec["id"], cwd=elsewhere, state=state)
    assert "RESULT [0, 10, 20, 30, 40, 50]" in logs.stdout


def test_cluster_mode_runs_the_driver_as_a_task(cluster, job):
    d, elsewhere, state = job
    r = offerpool("submit", "--master", cluster.master, "--cluster", "--files",
                  d / "factor.txt", d / "job.py", cwd=elsewhere, state=state)
    assert r.returncode == 0, r.stderr
    [rec] = _records(state)
    assert (rec["mode"], rec["state"]) == ("cluster", "FINISHED")
    assert rec["task_id"] and rec["agent_address"]
    logs = offerpool("logs", rec["task_id"], "--master", cluster.master, cwd=elsewhere,
                     state=state)
    assert logs.returncode == 0, logs.stderr
    _assert_ran(logs.stdout, cluster.master)
    follow = offerpool("logs", rec["task_id"], "--follow", "--stdout", cwd=elsewhere,
                       state=state)
    assert "RESULT [0, 10, 20, 30, 40, 50]" in follow.stdout


def test_supervise_relaunches_a_driver_killed_once(cluster, job, tmp_path):
    d, elsewhere, state = job
    pid_file = tmp_path / "driver.pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "substrate.cli", "submit", "--master", cluster.master,
         "--supervise", "--max-retries", "2", "--files", str(d / "factor.txt"),
         str(d / "job.py"), "--hang-first", str(pid_file)],
        cwd=elsewhere, env=_env(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()):  # the first attempt is up
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    _assert_ran(out, cluster.master, attempt=2)
    assert "killed by signal SIGKILL; relaunching" in err
    [rec] = _records(state)
    assert (rec["state"], rec["attempts"]) == ("FINISHED", 2)


def test_supervise_in_cluster_mode(cluster, job):
    d, elsewhere, state = job
    r = offerpool("submit", "--master", cluster.master, "--cluster", "--supervise",
                  "--files", d / "factor.txt", d / "job.py", "--die-first",
                  cwd=elsewhere, state=state)
    assert r.returncode == 0, r.stderr
    assert "relaunching" in r.stderr
    [rec] = _records(state)
    assert (rec["state"], rec["attempts"]) == ("FINISHED", 2)
    logs = offerpool("logs", rec["task_id"], cwd=elsewhere, state=state)
    _assert_ran(logs.stdout, cluster.master, attempt=2)


def test_without_supervision_a_dead_driver_fails(cluster, job):
    d, elsewhere, state = job
    r = offerpool("submit", "--master", cluster.master, d / "job.py", "--die-first",
                  cwd=elsewhere, state=state)
    assert r.returncode == 128 + 9
    [rec] = _records(state)
    assert (rec["state"], rec["attempts"], rec["exit_code"]) == ("FAILED", 1, 128 + 9)


def test_bad_input_names_the_file(cluster, job):
    d, elsewhere, state = job
    r = offerpool("submit", "--master", cluster.master, d / "nope.py", cwd=elsewhere,
                  state=state)
    assert r.returncode == 1 and f"no such script: {d / 'nope.py'}" in r.stderr
    r = offerpool("submit", "--master", cluster.master, "--py-files", d / "gone.py",
                  d / "job.py", cwd=elsewhere, state=state)
    assert r.returncode == 1 and f"cannot ship {d / 'gone.py'}: no such file" in r.stderr
    r = offerpool("submit", "--master", cluster.master, "--py-files", d / "factor.txt",
                  d / "job.py", cwd=elsewhere, state=state)
    assert r.returncode == 1 and "factor.txt as Python code" in r.stderr
    (d / "notpkg").mkdir()
    r = offerpool("submit", "--master", cluster.master, "--py-files", d / "notpkg",
                  d / "job.py", cwd=elsewhere, state=state)
    assert r.returncode == 1 and "notpkg" in r.stderr and "__init__.py" in r.stderr
    r = offerpool("submit", "--cluster", d / "job.py", cwd=elsewhere, state=state)
    assert r.returncode == 1 and "--cluster needs a master" in r.stderr
    assert not (state / "drivers").exists() or not _records(state)
    r = offerpool("logs", "no-such-task", "--master", cluster.master, cwd=elsewhere,
                  state=state)
    assert r.returncode == 1 and "no-such-task" in r.stderr


def test_a_module_failing_to_import_on_the_executor_is_named(cluster, job):
    d, elsewhere, state = job
    (d / "fragile.py").write_text(textwrap.dedent('''
        import os
        if os.environ.get("SUBSTRATE_SANDBOX"):   # only on executors
            import missing_dependency_xyz
        def f(x):
            return x
    '''))
    (d / "uses_fragile.py").write_text(textwrap.dedent('''
        import fragile
        from dataflow import Context
        with Context(progress=False) as ctx:
            ctx.parallelize([1, 2], 2).map(fragile.f).collect()
    '''))
    r = offerpool("submit", "--master", cluster.master, d / "uses_fragile.py", cwd=elsewhere,
                  state=state)
    assert r.returncode != 0
    assert "missing_dependency_xyz" in r.stderr and "fragile" in r.stderr
    [rec] = _records(state)
    assert rec["state"] == "FAILED"


GA_HELPER = '''
import os

def ones(x):
    """OneMax, or a large penalty when this module was not loaded from a sandbox."""
    box = os.environ.get("SUBSTRATE_SANDBOX", "")
    here = os.path.realpath(__file__)
    shipped = bool(box) and here.startswith(os.path.realpath(box) + os.sep)
    return float(x.sum()) if shipped else -1000.0
'''

GA_JOB = '''
import gahelper
import genetic
problem = genetic.Problem(genome=genetic.bits(12), fitness=gahelper.ones, maximize=True)
result = genetic.evolve(problem, population=24, generations=5, islands=2, seed=1)
print("BEST", result.best.fitness)
'''


def test_genetic_evolve_uses_the_submitted_master_and_shipped_helper(cluster, tmp_path):
    d = tmp_path / "ga"
    d.mkdir()
    (d / "gahelper.py").write_text(GA_HELPER)
    (d / "ga_job.py").write_text(GA_JOB)
    r = offerpool("submit", "--master", cluster.master, d / "ga_job.py", cwd=tmp_path,
                  state=tmp_path / "state")
    assert r.returncode == 0, r.stderr
    best = float(r.stdout.split("BEST")[1].strip().strip("[]").split(",")[0])
    assert best >= 0  # every evaluation ran on an executor, with the shipped copy


from hypothesis import given, strategies as st  # noqa: E402

from substrate.submit.supervisor import Supervisor  # noqa: E402


@given(st.lists(st.sampled_from([0, 1, -9, 2]), min_size=1, max_size=10),
       st.integers(0, 5), st.booleans())
def test_supervisor_relaunches_until_success_or_the_retry_limit(codes, retries, supervise):
    sup = Supervisor(supervise, retries)
    verdicts = []
    for code in codes:
        sup.started()
        verdicts.append(sup.ended(code))
        if verdicts[-1] != "relaunch":
            break
    attempts = len(verdicts)
    assert verdicts[:-1] == ["relaunch"] * (attempts - 1)
    assert attempts <= (retries + 1 if supervise else 1)
    if verdicts[-1] != "relaunch":
        assert verdicts[-1] == ("FINISHED" if codes[attempts - 1] == 0 else "FAILED")
