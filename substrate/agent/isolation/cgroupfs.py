"""Finding and touching cgroup file systems: mounts, the agent's own cgroup, small file I/O.

Shared by :mod:`~substrate.agent.isolation.cgroups_v1` and
:mod:`~substrate.agent.isolation.cgroups_v2`. Nothing here decides limits.
"""
from __future__ import annotations

import asyncio
import os
from typing import Optional

from substrate.agent.isolation.base import Limitation, signal_pids
from substrate.v1 import pb


def mounts(fstype: str) -> list[tuple[str, str, set[str]]]:
    """``(mount point, mount root, super options)`` of every mount of ``fstype``.

    Read from ``/proc/self/mountinfo`` so a bind-mounted subtree (containers) maps correctly.
    """
    found = []
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields, tail = left.split(), right.split()
                if len(fields) < 5 or len(tail) < 3 or tail[0] != fstype:
                    continue
                point = fields[4].replace("\\040", " ")
                found.append((point, fields[3], set(tail[2].split(","))))
    except OSError:
        pass
    return found


def own_cgroups() -> dict[str, str]:
    """The agent's cgroup path per v1 controller name, and ``""`` for the v2 hierarchy."""
    paths: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as fh:
            for line in fh:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) != 3:
                    continue
                _, controllers, path = parts
                for name in (controllers.split(",") if controllers else [""]):
                    paths[name] = path
    except OSError:
        pass
    return paths


def join(point: str, root: str, path: str) -> str:
    """Directory of cgroup ``path`` under a mount of hierarchy subtree ``root``."""
    if root != "/" and (path == root or path.startswith(root.rstrip("/") + "/")):
        path = path[len(root):]
    return os.path.join(point, path.lstrip("/"))


def write(path: str, value: str) -> None:
    """Write one value to a cgroup control file (each write is one kernel call)."""
    with open(path, "w") as fh:
        fh.write(value)


def read(path: str) -> str:
    """Read a cgroup control file; empty when it is gone."""
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def keyed(path: str) -> dict[str, int]:
    """A ``key value`` per line file (``memory.events``, ``memory.oom_control``) as ints."""
    out: dict[str, int] = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            pass
    return out


def pids_limitation(events: str, limit: object) -> Optional[Limitation]:
    """The limitation a ``pids.events`` file (v1 and v2 alike) reports, if forks were refused."""
    hits = keyed(events).get("max", 0)
    if hits <= 0:
        return None
    return Limitation(pb.TaskStatus.CONTAINER_LIMITATION,
                      f"process limit of {limit} reached ({hits} fork(s) refused)")


def procs(directory: str) -> list[int]:
    """The pids in a cgroup directory's ``cgroup.procs``."""
    return [int(p) for p in read(os.path.join(directory, "cgroup.procs")).split() if p.isdigit()]


def try_mkdir(directory: str) -> bool:
    """Make a cgroup directory; False when the kernel or permissions refuse."""
    try:
        os.makedirs(directory, exist_ok=True)
        return True
    except OSError:
        return False


def sweep_stale(base: str) -> None:
    """Remove the empty cgroups left by agents that died (``offerpool-<pid>-*``, pid gone).

    Cgroups that still hold processes stay: agent recovery may want to reattach to them.
    """
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        parts = name.split("-")
        if len(parts) < 3 or parts[0] != "offerpool" or not parts[1].isdigit():
            continue
        if os.path.exists(f"/proc/{parts[1]}"):
            continue
        top = os.path.join(base, name)
        for root, dirs, _ in os.walk(top, topdown=False):
            for d in dirs:
                try:
                    os.rmdir(os.path.join(root, d))
                except OSError:
                    pass
        try:
            os.rmdir(top)
        except OSError:
            pass


async def remove(directories: list[str], holder: Optional[str], kill_attempts: int = 200) -> bool:
    """SIGKILL what ``holder`` still lists, then ``rmdir`` every directory (deepest first).

    Killed processes leave their cgroup only once the kernel has finished them, so the loop
    retries with a short pause; it gives up after ``kill_attempts`` rounds and says so.
    """
    for _ in range(kill_attempts):
        if holder is not None:
            signal_pids(procs(holder), 9)
        remaining = []
        for d in directories:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                remaining.append(d)
        if not remaining:
            return True
        directories = remaining
        await asyncio.sleep(0.02)  # the kernel is reaping; not synchronisation with a peer
    return False
