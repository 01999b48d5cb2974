"""The cgroup v2 isolation on a real cgroup2 mount, whatever the host's own cgroup layout.

An agent process runs in a private mount namespace (``unshare --mount --propagation private``)
where a cgroup2 hierarchy is mounted on a directory of the test's own; the host's mounts are
never touched. The agent is forced to ``cgroups-v2`` on that mount and runs real tasks
(:mod:`tests.substrate.cgroup2_probe`); these tests judge what the kernel showed. The limit
tests run where the cgroup2 hierarchy has the controller, and say why they skip otherwise.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(150)
ROOT = Path(__file__).resolve().parents[2]


def _skip_reason() -> str:
    if os.geteuid() != 0:
        return "mounting a cgroup2 hierarchy needs root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return ""


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    why = _skip_reason()
    if why:
        pytest.skip(why)
    base = tmp_path_factory.mktemp("cgroup2")
    mount, work = base / "mnt", base / "work"
    mount.mkdir()
    script = ('mount -t cgroup2 none "$1" || { echo "cannot mount cgroup2 here" >&2; exit 77; }\n'
              'exec "$2" -m tests.substrate.cgroup2_probe "$1" "$3"')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script,
         "probe", str(mount), sys.executable, str(work)],
        cwd=ROOT, env=env, capture_output=True, timeout=140)
    if proc.returncode == 77 or (proc.returncode != 0 and b"unshare failed" in proc.stderr):
        pytest.skip(f"no private cgroup2 mount here: {proc.stderr.decode(errors='replace')}")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-4000:]
    # The namespace is gone with its processes: the host never saw the mount.
    assert not os.path.ismount(mount)
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_agent_runs_on_the_cgroup2_mount_it_was_given(facts):
    iso = facts["isolation"]
    assert iso["kind"] == "cgroups-v2"
    mount = next(m for m in facts["mounts"] if iso["root"].startswith(m + "/"))
    assert os.path.basename(iso["root"]).startswith(f"offerpool-")
    assert mount.endswith("/mnt")
    # Only controllers the hierarchy offers are used.
    assert set(iso["controllers"]) <= set(facts["controllers"])


def test_executor_is_placed_in_a_cgroup_of_its_own(facts):
    ex = facts["executor"]
    assert ex["pid"] in ex["procs"]
    assert ex["cgroup"].startswith(facts["isolation"]["root"] + "/")
    # The kernel agrees: the executor's v2 cgroup is that directory, relative to the mount.
    assert ex["cgroup"].endswith(ex["proc_cgroup"])


def test_teardown_kills_the_whole_tree_and_removes_the_cgroups(facts):
    tree = facts["tree"]
    assert {tree["leader"], tree["escaped"]} <= set(tree["procs"])
    # The grandchild had left the task's session and process group: only the cgroup held it.
    assert tree["escaped_sid"] != tree["leader_pgid"]
    assert tree["kill_file"]            # cgroup.kill: one write kills the cgroup at once
    assert tree["alive_after_kill"] == []
    assert tree["removed"]
    ex = facts["executor"]
    assert ex["removed"] and not ex["alive_after"]
    assert facts["root_removed_after_stop"]


def _needs(facts, controller: str) -> None:
    if controller not in facts["isolation"]["controllers"]:
        pytest.skip(f"the cgroup2 hierarchy here has no {controller} controller "
                    f"(cgroup.controllers: {' '.join(facts['controllers']) or 'empty'}; "
                    f"they are bound to cgroup v1)")


def test_cpu_max_holds_the_task_cpus(facts):
    _needs(facts, "cpu")
    assert facts["limits"]["cpu.max"] == "25000 100000"


def test_memory_max_stops_a_hog_with_the_memory_reason(facts):
    _needs(facts, "memory")
    assert int(facts["limits"]["memory.max"]) == 48 * 2**20
    hog = facts["limits"]["memory_hog"]
    assert hog["reason"] == "CONTAINER_LIMITATION_MEMORY", hog


def test_pids_max_stops_a_fork_bomb(facts):
    _needs(facts, "pids")
    bomb = facts["limits"]["pids_bomb"]
    assert bomb["pids.max"] == "64" and 1 < bomb["held"] <= 64
