"""cgroup v2 isolation: one cgroup per container in the unified hierarchy, where the memory,
cpu and pids controllers are delegated to the agent's cgroup.

``memory.max`` (and ``memory.swap.max`` = 0 so the limit cannot leak into swap), ``cpu.weight``
(100 per core, in 1..10000) and ``cpu.max`` (a CFS quota of ``cpus`` cores), ``pids.max``. A
limit hit is read from ``memory.events`` (``oom_kill``) and ``pids.events`` (``max``), polled
while the container lives. Kill: ``cgroup.kill`` (Linux 5.14+) or freeze and SIGKILL.

v2 forbids processes in a cgroup whose children use controllers, so the agent's own cgroup must
already have the controllers in its ``cgroup.subtree_control`` (systemd ``Delegate=yes``, or a
container runtime that delegates); the agent does not move itself.

Chosen automatically only when all three controllers are delegated. Forced (isolation
``cgroups-v2``, optionally on a given cgroup2 mount), it uses the controllers it has: each
container is still a cgroup of its own that lists every process of the task, is killed as a
whole and removed afterwards, and only the limits whose controller is missing are not applied.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
from typing import Optional

from substrate.agent.isolation import cgroupfs
from substrate.agent.isolation.base import (
    Container, Isolator, Limitation, Limits, OnLimit, signal_pids,
)
from substrate.v1 import pb

log = logging.getLogger(__name__)

CONTROLLERS = ("memory", "cpu", "pids")
CFS_PERIOD_US = 100_000
POLL_SECONDS = 0.25


class CgroupV2Container(Container):
    """A container as one v2 cgroup (see the module docstring)."""

    def __init__(self, isolator: "CgroupsV2", name: str, limits: Limits, path: str) -> None:
        super().__init__(isolator, name, limits)
        self.path = path
        self._poller: Optional[asyncio.Task] = None
        self._apply(limits)

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _apply(self, limits: Limits) -> None:
        enabled = self.isolator.controllers  # type: ignore[attr-defined]
        if "memory" in enabled:
            cgroupfs.write(self._file("memory.max"), str(limits.mem_bytes))
            if os.path.exists(self._file("memory.swap.max")):
                cgroupfs.write(self._file("memory.swap.max"), "0")
        if "cpu" in enabled:
            cgroupfs.write(self._file("cpu.weight"),
                           str(min(10000, max(1, int(limits.cpus * 100)))))
            quota = max(1000, int(limits.cpus * CFS_PERIOD_US))
            cgroupfs.write(self._file("cpu.max"), f"{quota} {CFS_PERIOD_US}")
        if "pids" in enabled:
            cgroupfs.write(self._file("pids.max"), str(limits.pids))

    def prelude(self) -> list[str]:
        return [f"echo $$ > {shlex.quote(self._file('cgroup.procs'))} || exit 125"]

    def started(self, pid: int, on_limit: OnLimit) -> None:
        super().started(pid, on_limit)
        self._poller = asyncio.ensure_future(self._poll())

    async def _poll(self) -> None:
        # memory.events supports poll(2) notification, but a timer keeps this portable.
        while os.path.isdir(self.path) and self.limitation is None:
            found = self._memory_limitation()
            if found is not None:
                self._hit(found)
                return
            await asyncio.sleep(POLL_SECONDS)

    def _memory_limitation(self) -> Optional[Limitation]:
        kills = cgroupfs.keyed(self._file("memory.events")).get("oom_kill", 0)
        if kills <= 0:
            return None
        return Limitation(pb.TaskStatus.CONTAINER_LIMITATION_MEMORY,
                          f"memory limit of {self.limits.mem_mib:g} MiB reached "
                          f"(the kernel OOM killer ran {kills} time(s))")

    def _pids_limitation(self) -> Optional[Limitation]:
        return cgroupfs.pids_limitation(self._file("pids.events"), self.limits.pids)

    def update(self, limits: Limits) -> None:
        super().update(limits)
        try:
            self._apply(self.limits)
        except OSError as exc:
            log.warning("container %s: cannot update limits: %s", self.name, exc)

    def pids(self) -> list[int]:
        return cgroupfs.procs(self.path)

    def kill_all(self) -> None:
        if os.path.exists(self._file("cgroup.kill")):
            try:
                cgroupfs.write(self._file("cgroup.kill"), "1")
                return
            except OSError:
                pass
        frozen = False
        try:
            cgroupfs.write(self._file("cgroup.freeze"), "1")
            frozen = True
        except OSError:
            pass
        signal_pids(self.pids(), 9)
        if frozen:
            try:
                cgroupfs.write(self._file("cgroup.freeze"), "0")
            except OSError:
                pass

    def check_exit(self) -> Optional[Limitation]:
        if self.limitation is None:
            self.limitation = self._memory_limitation() or self._pids_limitation()
        return self.limitation

    async def destroy(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        self.kill_all()
        if not await cgroupfs.remove([self.path], self.path):
            log.warning("container %s: cgroup still busy, left: %s", self.name, self.path)

    def describe(self) -> dict:
        out = super().describe()
        out["cgroup"] = self.path
        out["pids"] = len(self.pids())
        return out


class CgroupsV2(Isolator):
    """Containers as v2 cgroups under ``<agent's cgroup>/offerpool-<instance>``."""

    kind = "cgroups-v2"

    def __init__(self, root: str, controllers: tuple[str, ...] = CONTROLLERS) -> None:
        super().__init__()
        self.root = root
        self.controllers = controllers

    @classmethod
    def probe(cls, mount_point: str = "",
              require: tuple[str, ...] = CONTROLLERS) -> Optional["CgroupsV2"]:
        """The isolator when the ``require``d controllers are delegated to the agent's cgroup
        (on ``mount_point``, if given), else None. It uses every one of :data:`CONTROLLERS`
        that is delegated, required or not."""
        own = cgroupfs.own_cgroups().get("")
        if own is None:
            return None
        wanted = os.path.realpath(mount_point) if mount_point else ""
        for point, root, _ in cgroupfs.mounts("cgroup2"):
            if wanted and os.path.realpath(point) != wanted:
                continue
            base = cgroupfs.join(point, root, own)
            delegated = cgroupfs.read(os.path.join(base, "cgroup.subtree_control")).split()
            if not all(c in delegated for c in require):
                continue
            found = tuple(c for c in CONTROLLERS if c in delegated)
            cgroupfs.sweep_stale(base)
            path = os.path.join(base, f"offerpool-{os.getpid()}-{secrets.token_hex(3)}")
            if not cgroupfs.try_mkdir(path):
                continue
            try:
                if found:
                    cgroupfs.write(os.path.join(path, "cgroup.subtree_control"),
                                   " ".join(f"+{c}" for c in found))
            except OSError:
                os.rmdir(path)
                continue
            if found != CONTROLLERS:
                log.warning("cgroup v2 at %s without the %s controller(s): tasks are grouped "
                            "and killed whole, but not limited by them", point,
                            ", ".join(c for c in CONTROLLERS if c not in found))
            return cls(path, found)
        return None

    def create(self, label: str, limits: Limits) -> Container:
        name = self._next_name(label)
        path = os.path.join(self.root, name)
        os.mkdir(path)
        try:
            container = CgroupV2Container(self, name, limits, path)
        except OSError:
            os.rmdir(path)
            raise
        self.live[name] = container
        return container

    async def close(self) -> None:
        await super().close()
        await cgroupfs.remove([self.root], None, kill_attempts=50)

    def describe(self) -> dict:
        return {"kind": self.kind, "root": self.root, "controllers": list(self.controllers)}
