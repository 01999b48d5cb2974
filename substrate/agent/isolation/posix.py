"""posix isolation, for machines where no cgroup is writable: rlimits plus polling.

The child sets resource limits on itself before ``exec`` (no core files; a data-segment
ceiling as a backstop against an allocation faster than one poll). The agent polls the resident
memory and the number of processes of the container's tree (the leader, its descendants and
anything left in its session) with psutil; over the memory limit or the process limit, the
whole tree is killed and the limitation reported. Weaker than cgroups: a burst between two
polls is not seen, and CPU is not limited at all.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Optional

import psutil

from substrate.agent.isolation.base import Container, Isolator, Limitation, Limits, OnLimit
from substrate.v1 import pb

log = logging.getLogger(__name__)

#: The data-segment rlimit is this multiple of the memory limit, plus :data:`DATA_SLACK_MIB`:
#: far enough above it that polling, not ``malloc`` failures, is what normally acts.
DATA_FACTOR = 4
DATA_SLACK_MIB = 512


class PosixContainer(Container):
    """A process tree watched by polling (see the module docstring)."""

    def __init__(self, isolator: "Posix", name: str, limits: Limits) -> None:
        super().__init__(isolator, name, limits)
        self._poller: Optional[asyncio.Task] = None
        self._leader: Optional[psutil.Process] = None

    def prelude(self) -> list[str]:
        data_kib = int((self.limits.mem_mib * DATA_FACTOR + DATA_SLACK_MIB) * 1024)
        return ["ulimit -c 0", f"ulimit -d {data_kib} 2>/dev/null || true"]

    def started(self, pid: int, on_limit: OnLimit) -> None:
        super().started(pid, on_limit)
        try:
            self._leader = psutil.Process(pid)
        except psutil.Error:
            return
        self._poller = asyncio.ensure_future(self._poll())

    def _tree(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        leader = self._leader
        if leader is not None:
            try:
                if leader.is_running():
                    found[leader.pid] = leader
                    for child in leader.children(recursive=True):
                        found[child.pid] = child
            except psutil.Error:
                pass
        return list(found.values())

    def _session(self) -> list[int]:
        """Processes still in the leader's session (orphans whose parent chain is broken)."""
        if self.pid is None:
            return []
        out = []
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) == self.pid:
                    out.append(proc.pid)
            except (OSError, psutil.Error):
                pass
        return out

    async def _poll(self) -> None:
        interval = self.isolator.poll_interval  # type: ignore[attr-defined]
        while self.limitation is None:
            tree = self._tree()
            if not tree:
                return
            rss = 0
            for proc in tree:
                try:
                    rss += proc.memory_info().rss
                except psutil.Error:
                    pass
            if rss > self.limits.mem_bytes:
                self._hit(Limitation(pb.TaskStatus.CONTAINER_LIMITATION_MEMORY,
                                     f"memory limit of {self.limits.mem_mib:g} MiB exceeded "
                                     f"(resident {rss / 2**20:.1f} MiB)"))
                return
            if len(tree) > self.limits.pids:
                self._hit(Limitation(pb.TaskStatus.CONTAINER_LIMITATION,
                                     f"process limit of {self.limits.pids} exceeded "
                                     f"({len(tree)} processes)"))
                return
            await asyncio.sleep(interval)  # the polling period of this isolator

    def pids(self) -> list[int]:
        return sorted({p.pid for p in self._tree()} | set(self._session()))

    async def destroy(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        for _ in range(50):
            left = self.pids()
            if not left:
                return
            self.kill_all()
            await asyncio.sleep(0.02)  # the kernel is reaping; not synchronisation
        log.warning("container %s: processes survived SIGKILL: %s", self.name, self.pids())


class Posix(Isolator):
    """rlimits and psutil polling; works anywhere, as any user."""

    kind = "posix"

    def __init__(self, poll_interval: float = 0.25) -> None:
        super().__init__()
        self.poll_interval = poll_interval

    def create(self, label: str, limits: Limits) -> Container:
        container = PosixContainer(self, self._next_name(label), limits)
        self.live[container.name] = container
        return container

    def describe(self) -> dict:
        return {"kind": self.kind, "poll_interval": self.poll_interval}
