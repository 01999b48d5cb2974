"""Run inside a private mount namespace with a cgroup2 hierarchy mounted at ``MOUNT``: an agent
forced to isolation ``cgroups-v2`` on that mount runs real tasks, and what the kernel shows is
printed as one JSON line for :mod:`tests.substrate.test_cgroups_v2` to judge.

Usage: ``python -m tests.substrate.cgroup2_probe MOUNT WORK_DIR``
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from substrate.agent.isolation import cgroupfs
from substrate.v1 import pb

from .agent_harness import (
    Harness, command_task, container_of, executor_task, pid_alive, run, wait_until,
)

S = pb.TaskStatus
BOMB = (f"{sys.executable} -c \"import os, time\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        time.sleep(0.05)\"")


def v2_line(pid: int) -> str:
    for line in cgroupfs.read(f"/proc/{pid}/cgroup").splitlines():
        if line.startswith("0::"):
            return line[3:]
    return ""


async def gone(path: str) -> bool:
    try:
        await wait_until(lambda: not os.path.isdir(path), timeout=30, what=f"{path} removed")
        return True
    except AssertionError:
        return False


async def probe(mount: str, work: Path) -> dict:
    facts: dict = {"mounts": [p for p, _, _ in cgroupfs.mounts("cgroup2")]}
    async with Harness(work, isolation="cgroups-v2", cgroup_root=mount,
                       container_pids_max=64) as h:
        iso = h.agent.snapshot()["isolation"]
        facts["isolation"] = iso
        facts["controllers"] = cgroupfs.read(os.path.join(mount, "cgroup.controllers")).split()
        # A real executor (the Python test program) in its own cgroup.
        h.run_tasks(executor_task("in-exec", b"hang"))
        await h.expect_status("in-exec", S.RUNNING, timeout=60)
        ex = h.agent.snapshot()["executors"][0]
        ex_cgroup = ex["container"]["cgroup"]
        facts["executor"] = {"pid": ex["pid"], "cgroup": ex_cgroup,
                             "procs": cgroupfs.procs(ex_cgroup),
                             "proc_cgroup": v2_line(ex["pid"])}
        # A command task whose grandchild leaves its process group (setsid).
        h.run_tasks(command_task("tree", "setsid sleep 300 & echo $! > escaped; wait"))
        leader = int((await h.expect_status("tree", S.RUNNING)).message.split()[-1])
        escaped_file = h.sandbox("tree") / "escaped"
        await wait_until(lambda: escaped_file.exists() and escaped_file.read_text().strip(),
                         what="the escaped child's pid")
        escaped = int(escaped_file.read_text())
        # $! is written at fork; setsid has left the group once it runs in that child.
        await wait_until(lambda: os.getsid(escaped) == escaped, what="the child's own session")
        tree_cgroup = container_of(h, "tree")["cgroup"]
        await wait_until(lambda: escaped in cgroupfs.procs(tree_cgroup), what="child listed")
        facts["tree"] = {"cgroup": tree_cgroup, "leader": leader, "escaped": escaped,
                         "procs": cgroupfs.procs(tree_cgroup),
                         "escaped_sid": os.getsid(escaped), "leader_pgid": os.getpgid(leader),
                         "kill_file": os.path.exists(os.path.join(tree_cgroup, "cgroup.kill"))}
        h.kill("tree")
        await h.expect_status("tree", S.KILLED)
        await wait_until(lambda: not pid_alive(escaped), timeout=30, what="escaped killed")
        facts["tree"]["alive_after_kill"] = [p for p in (leader, escaped) if pid_alive(p)]
        facts["tree"]["removed"] = await gone(tree_cgroup)
        h.shutdown_framework()
        await h.expect_status("in-exec", S.KILLED, timeout=30)
        facts["executor"]["removed"] = await gone(ex_cgroup)
        facts["executor"]["alive_after"] = pid_alive(ex["pid"])
        facts["limits"] = await limits(h, iso.get("controllers", []))
        root = iso["root"]
    facts["root"] = root
    facts["root_removed_after_stop"] = not os.path.isdir(root)
    return facts


async def limits(h: Harness, controllers: list) -> dict:
    """What each available controller did; absent controllers are simply not probed."""
    out: dict = {}
    if "cpu" in controllers or "memory" in controllers:
        task = command_task("limited", "sleep 300")
        task.resources.cpus, task.resources.mem = 0.25, 48
        h.run_tasks(task, fid="fw-lim")
        await h.expect_status("limited", S.RUNNING)
        path = container_of(h, "limited")["cgroup"]
        out["cpu.max"] = cgroupfs.read(os.path.join(path, "cpu.max")).strip()
        out["memory.max"] = cgroupfs.read(os.path.join(path, "memory.max")).strip()
        h.kill("limited", fid="fw-lim")
        await h.expect_status("limited", S.KILLED)
    if "memory" in controllers:
        hog = command_task("hog", f"{sys.executable} -c \"x = bytearray(b'1') * (400 * 2**20)\"")
        hog.resources.cpus, hog.resources.mem = 0.1, 48
        h.run_tasks(hog, fid="fw-lim")
        st = await h.expect_status("hog", S.FAILED, timeout=60)
        out["memory_hog"] = {"reason": S.Reason.Name(st.reason), "message": st.message}
    if "pids" in controllers:
        bomb = command_task("bomb", BOMB)
        bomb.resources.cpus, bomb.resources.mem = 0.2, 256
        h.run_tasks(bomb, fid="fw-lim")
        await h.expect_status("bomb", S.RUNNING)
        path = container_of(h, "bomb")["cgroup"]
        await wait_until(lambda: cgroupfs.keyed(os.path.join(path, "pids.events")).get("max", 0)
                         > 0, timeout=60, what="a refused fork")
        out["pids_bomb"] = {"held": len(cgroupfs.procs(path)),
                            "pids.max": cgroupfs.read(os.path.join(path, "pids.max")).strip()}
        h.kill("bomb", fid="fw-lim")
        await h.expect_status("bomb", S.KILLED, timeout=30)
    return out


def main() -> None:
    mount, work = sys.argv[1], Path(sys.argv[2])
    facts = run(probe(mount, work), timeout=100)
    print(json.dumps(facts), flush=True)


if __name__ == "__main__":
    main()
