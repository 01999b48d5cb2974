"""Executor isolation: cgroups (v2 or v1), a posix fallback, or none, chosen at agent start.

:func:`select` turns the agent's ``isolation`` setting into an :class:`Isolator`:

* ``auto`` -- cgroup v2 where the controllers are delegated to the agent, else cgroup v1 where
  the memory, cpu and pids hierarchies are writable, else ``posix``;
* ``cgroups`` -- v2 or v1, and an error when neither is writable;
* ``cgroups-v2`` -- v2 only (on ``cgroup_root``, a cgroup2 mount point, when given), with
  whichever of the memory, cpu and pids controllers are delegated (none at all: processes are
  still grouped, listed and killed together); an error when no cgroup2 is writable;
* ``cgroups-v1`` -- v1 only, and an error when it is not writable;
* ``posix`` -- rlimits in the child and RSS polling of its process tree;
* ``none`` -- process groups only.

Examples
--------
>>> select("none").kind
'none'
>>> select("posix").kind
'posix'
>>> select("chroot")
Traceback (most recent call last):
...
substrate.errors.InvalidRequest: isolation must be one of auto, cgroups, cgroups-v2, cgroups-v1, posix, none; got 'chroot'
"""
from __future__ import annotations

from substrate.agent.isolation.base import (
    MIN_CPUS, MIN_MEM_MIB, Container, Isolator, Limitation, Limits,
)
from substrate.errors import InvalidRequest

MODES = ("auto", "cgroups", "cgroups-v2", "cgroups-v1", "posix", "none")


def select(mode: str, poll_interval: float = 0.25, cgroup_root: str = "") -> Isolator:
    """The isolator for ``mode`` on this machine (see the module docstring).

    Raises
    ------
    InvalidRequest
        For an unknown mode, or ``cgroups`` where no cgroup hierarchy is writable.
    """
    if mode not in MODES:
        raise InvalidRequest(f"isolation must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "none":
        return Isolator()
    if mode == "cgroups-v2":
        from substrate.agent.isolation.cgroups_v2 import CgroupsV2

        v2 = CgroupsV2.probe(cgroup_root, require=())
        if v2 is None:
            where = f" at {cgroup_root}" if cgroup_root else ""
            raise InvalidRequest(f"isolation 'cgroups-v2' asked for, but no cgroup2 hierarchy"
                                 f"{where} is mounted and writable here")
        return v2
    if mode == "cgroups-v1":
        from substrate.agent.isolation.cgroups_v1 import CgroupsV1

        v1 = CgroupsV1.probe()
        if v1 is None:
            raise InvalidRequest("isolation 'cgroups-v1' asked for, but no cgroup v1 "
                                 "hierarchies of memory, cpu and pids are writable here")
        return v1
    if mode in ("auto", "cgroups"):
        from substrate.agent.isolation.cgroups_v1 import CgroupsV1
        from substrate.agent.isolation.cgroups_v2 import CgroupsV2

        found = CgroupsV2.probe() or CgroupsV1.probe()
        if found is not None:
            return found
        if mode == "cgroups":
            raise InvalidRequest("isolation 'cgroups' asked for, but no cgroup hierarchy with "
                                 "memory, cpu and pids is writable here (try 'posix')")
    from substrate.agent.isolation.posix import Posix

    return Posix(poll_interval)


__all__ = ["Container", "Isolator", "Limitation", "Limits", "MIN_CPUS", "MIN_MEM_MIB",
           "MODES", "select"]
