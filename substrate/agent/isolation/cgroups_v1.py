"""cgroup v1 isolation: one cgroup per container in the memory, cpu, pids (and freezer)
hierarchies, nested under the agent's own cgroup in each.

Memory: ``memory.limit_in_bytes`` (and ``memsw`` where swap accounting exists); the kernel's OOM
killer acts at the limit, and an eventfd registered on ``memory.oom_control`` wakes the agent's
event loop so the *whole* container is killed and the task reported
``CONTAINER_LIMITATION_MEMORY``. CPU: ``cpu.shares`` (1024 per core) and a CFS quota of
``cpus`` cores per period. Pids: ``pids.max``, so a fork bomb gets ``EAGAIN`` instead of the
machine. Kill: freeze (when the freezer is mounted), SIGKILL everything, thaw.
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
import signal
import time
from typing import Optional

from substrate.agent.isolation import cgroupfs
from substrate.agent.isolation.base import (
    Container, Isolator, Limitation, Limits, OnLimit, signal_pids,
)
from substrate.v1 import pb

log = logging.getLogger(__name__)

REQUIRED = ("memory", "cpu", "pids")
OPTIONAL = ("freezer",)
CFS_PERIOD_US = 100_000


class CgroupV1Container(Container):
    """A container as one cgroup per controller (see the module docstring)."""

    def __init__(self, isolator: "CgroupsV1", name: str, limits: Limits,
                 dirs: dict[str, str]) -> None:
        super().__init__(isolator, name, limits)
        self.dirs = dirs
        self._efd: Optional[int] = None
        self._oom_fd: Optional[int] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._apply(limits, first=True)

    def _apply(self, limits: Limits, first: bool = False) -> None:
        mem = self.dirs["memory"]
        limit = str(limits.mem_bytes)
        memsw = os.path.join(mem, "memory.memsw.limit_in_bytes")
        # memsw must stay >= the memory limit: raise memory first, memsw after (fresh: memsw
        # starts unlimited, so the same order works).
        cgroupfs.write(os.path.join(mem, "memory.limit_in_bytes"), limit)
        if os.path.exists(memsw):
            try:
                cgroupfs.write(memsw, limit)
            except OSError:
                pass  # no swap accounting on this kernel: the memory limit alone holds
        cpu = self.dirs["cpu"]
        cgroupfs.write(os.path.join(cpu, "cpu.shares"), str(max(2, int(limits.cpus * 1024))))
        if first:
            cgroupfs.write(os.path.join(cpu, "cpu.cfs_period_us"), str(CFS_PERIOD_US))
        quota = max(1000, int(limits.cpus * CFS_PERIOD_US))
        cgroupfs.write(os.path.join(cpu, "cpu.cfs_quota_us"), str(quota))
        cgroupfs.write(os.path.join(self.dirs["pids"], "pids.max"), str(limits.pids))

    def prelude(self) -> list[str]:
        return [f"echo $$ > {shlex.quote(os.path.join(d, 'cgroup.procs'))} || exit 125"
                for d in self.dirs.values()]

    def started(self, pid: int, on_limit: OnLimit) -> None:
        super().started(pid, on_limit)
        self._watch_oom()

    def _watch_oom(self) -> None:
        """Ask the kernel for an eventfd wake-up on every OOM in this cgroup."""
        mem = self.dirs["memory"]
        try:
            self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            self._oom_fd = os.open(os.path.join(mem, "memory.oom_control"), os.O_RDONLY)
            cgroupfs.write(os.path.join(mem, "cgroup.event_control"),
                           f"{self._efd} {self._oom_fd}")
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._efd, self._on_oom_event)
        except (OSError, AttributeError, RuntimeError) as exc:
            # Without the event the limit still holds; the reason is read at exit instead.
            log.info("container %s: no OOM notification (%s)", self.name, exc)
            self._unwatch()

    def _unwatch(self) -> None:
        if self._loop is not None and self._efd is not None:
            self._loop.remove_reader(self._efd)
        for fd in (self._efd, self._oom_fd):
            if fd is not None:
                os.close(fd)
        self._efd = self._oom_fd = self._loop = None

    def _on_oom_event(self) -> None:
        try:
            os.eventfd_read(self._efd)  # type: ignore[arg-type]
        except (BlockingIOError, OSError):
            return
        if not os.path.isdir(self.dirs["memory"]):
            self._unwatch()   # the event fires once more when the cgroup is removed
            return
        found = self._memory_limitation()
        if found is not None:
            self._hit(found)

    def _memory_limitation(self) -> Optional[Limitation]:
        control = cgroupfs.keyed(os.path.join(self.dirs["memory"], "memory.oom_control"))
        kills = control.get("oom_kill", 0)
        if kills <= 0 and control.get("under_oom", 0) <= 0:
            return None
        return Limitation(pb.TaskStatus.CONTAINER_LIMITATION_MEMORY,
                          f"memory limit of {self.limits.mem_mib:g} MiB reached "
                          f"(the kernel OOM killer ran {kills} time(s))")

    def _pids_limitation(self) -> Optional[Limitation]:
        return cgroupfs.pids_limitation(os.path.join(self.dirs["pids"], "pids.events"),
                                        self.limits.pids)

    def update(self, limits: Limits) -> None:
        super().update(limits)
        try:
            self._apply(self.limits)
        except OSError as exc:
            log.warning("container %s: cannot update limits: %s", self.name, exc)

    def pids(self) -> list[int]:
        seen: set[int] = set()
        for d in self.dirs.values():
            seen.update(cgroupfs.procs(d))
        return sorted(seen)

    def kill_all(self) -> None:
        freezer = self.dirs.get("freezer")
        frozen = False
        if freezer is not None and os.path.isdir(freezer):
            try:
                cgroupfs.write(os.path.join(freezer, "freezer.state"), "FROZEN")
                frozen = True
                # A frozen cgroup cannot fork while we walk it; freezing takes microseconds.
                deadline = time.monotonic() + 0.5
                state = os.path.join(freezer, "freezer.state")
                while cgroupfs.read(state).strip() != "FROZEN" and time.monotonic() < deadline:
                    time.sleep(0.001)
            except OSError:
                frozen = False
        signal_pids(self.pids(), signal.SIGKILL)
        if frozen:
            try:
                cgroupfs.write(os.path.join(freezer, "freezer.state"), "THAWED")  # type: ignore
            except OSError:
                pass

    def check_exit(self) -> Optional[Limitation]:
        if self.limitation is None:
            found = self._memory_limitation() or self._pids_limitation()
            if found is not None:
                self.limitation = found
        return self.limitation

    async def destroy(self) -> None:
        self._unwatch()
        ok = await cgroupfs.remove(list(self.dirs.values()), self.dirs["pids"])
        if not ok:
            log.warning("container %s: cgroups still busy, left: %s", self.name, self.dirs)

    def describe(self) -> dict:
        out = super().describe()
        out["cgroups"] = dict(self.dirs)
        out["pids"] = len(self.pids())
        return out


class CgroupsV1(Isolator):
    """Containers as v1 cgroups under ``<hierarchy>/<agent's cgroup>/offerpool-<instance>``."""

    kind = "cgroups-v1"

    def __init__(self, roots: dict[str, str]) -> None:
        super().__init__()
        self.roots = roots

    @classmethod
    def probe(cls) -> Optional["CgroupsV1"]:
        """The isolator when memory, cpu and pids are mounted and writable here, else None."""
        own = cgroupfs.own_cgroups()
        bases: dict[str, str] = {}
        for point, root, options in cgroupfs.mounts("cgroup"):
            for ctrl in REQUIRED + OPTIONAL:
                if ctrl in options and ctrl in own and ctrl not in bases:
                    bases[ctrl] = cgroupfs.join(point, root, own[ctrl])
        if not all(c in bases for c in REQUIRED):
            return None
        instance = f"offerpool-{os.getpid()}-{secrets.token_hex(3)}"
        roots: dict[str, str] = {}
        for ctrl, base in bases.items():
            cgroupfs.sweep_stale(base)
            path = os.path.join(base, instance)
            if cgroupfs.try_mkdir(path):
                roots[ctrl] = path
            elif ctrl in REQUIRED:
                for made in roots.values():
                    os.rmdir(made)
                return None
        return cls(roots)

    def create(self, label: str, limits: Limits) -> Container:
        name = self._next_name(label)
        dirs: dict[str, str] = {}
        try:
            for ctrl, root in self.roots.items():
                path = os.path.join(root, name)
                os.mkdir(path)
                dirs[ctrl] = path
            container = CgroupV1Container(self, name, limits, dirs)
        except OSError:
            for path in dirs.values():
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            raise
        self.live[name] = container
        return container

    async def close(self) -> None:
        await super().close()
        await cgroupfs.remove(list(self.roots.values()), None, kill_attempts=50)

    def describe(self) -> dict:
        return {"kind": self.kind, "roots": dict(self.roots)}
