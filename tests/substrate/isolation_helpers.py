"""Helpers for the isolation tests: which cgroups exist, and whether cgroups can be used here."""
from __future__ import annotations

import glob
import os

from substrate.agent.isolation import cgroupfs


def offerpool_cgroups() -> set[str]:
    """Every ``offerpool-*`` cgroup directory under this process's cgroups (v1 and v2)."""
    own = cgroupfs.own_cgroups()
    found: set[str] = set()
    for fstype in ("cgroup", "cgroup2"):
        for point, root, options in cgroupfs.mounts(fstype):
            names = [""] if fstype == "cgroup2" else [c for c in options if c in own]
            for name in names:
                if name not in own:
                    continue
                base = cgroupfs.join(point, root, own[name])
                found.update(glob.glob(os.path.join(base, "offerpool-*")))
    return found


def leaked_cgroups(before: set[str]) -> set[str]:
    """The ``offerpool-<agent pid>-*`` cgroups made since ``before`` whose agent is gone: a
    live agent's cgroups (another test run's, on a shared machine) are not a leak."""
    def owner_alive(path: str) -> bool:
        try:
            os.kill(int(os.path.basename(path).split("-")[1]), 0)
        except (ValueError, IndexError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return True
    return {c for c in offerpool_cgroups() - before if not owner_alive(c)}


def cgroups_usable() -> str:
    """Empty when cgroup isolation works here, else the reason it does not (for skips)."""
    from substrate.agent.isolation import select
    from substrate.errors import InvalidRequest

    if os.geteuid() != 0:
        return "cgroup isolation tests need root"
    try:
        isolator = select("cgroups")
    except InvalidRequest as exc:
        return str(exc)
    import asyncio
    asyncio.run(isolator.close())
    return ""
