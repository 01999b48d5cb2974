"""The isolation interface: what an agent asks of the thing that confines an executor.

An :class:`Isolator` is chosen once, when the agent starts, and makes one :class:`Container` per
executor or command task. A container turns the task's resources (:class:`Limits`) into kernel
limits, tells the child how to enter it (shell lines run just before ``exec``, so nothing the
child forks can escape), watches for a limit being hit, kills everything it holds, and is
destroyed when its process is gone. What a limit *means* for a task's state is left to
:mod:`substrate.agent.launcher`; how processes are spawned is :mod:`substrate.agent.processes`.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from substrate.resources import Resources
from substrate.v1 import pb

log = logging.getLogger(__name__)

#: No container gets less memory than this (MiB): a process cannot even start below it.
MIN_MEM_MIB = 32.0
#: No container gets less CPU than this (cores).
MIN_CPUS = 0.01


@dataclass(frozen=True)
class Limits:
    """What one container may use.

    Examples
    --------
    >>> lim = Limits.of(Resources(cpus=0.5, mem=8), pids=64)
    >>> lim.cpus, lim.mem_mib, lim.pids, lim.mem_bytes
    (0.5, 32.0, 64, 33554432)
    """

    cpus: float
    mem_mib: float
    pids: int

    @classmethod
    def of(cls, resources: Resources, pids: int) -> "Limits":
        """Limits from a task's (or executor plus tasks') resources, with the floors applied."""
        cpus = resources.cpus if math.isfinite(resources.cpus) else MIN_CPUS
        mem = resources.mem if math.isfinite(resources.mem) else MIN_MEM_MIB
        return cls(max(MIN_CPUS, cpus), max(MIN_MEM_MIB, mem), max(1, int(pids)))

    @property
    def mem_bytes(self) -> int:
        """The memory limit in bytes."""
        return int(self.mem_mib * 2**20)


@dataclass(frozen=True)
class Limitation:
    """A limit a container hit: the task status reason and a message for humans."""

    reason: int
    message: str

    @property
    def is_memory(self) -> bool:
        """True for the memory limit (the task failed because of it, whatever its exit code)."""
        return self.reason == pb.TaskStatus.CONTAINER_LIMITATION_MEMORY


OnLimit = Callable[[Limitation], None]


class Container:
    """One executor's or command task's confinement. This base confines nothing.

    Subclasses override the hooks; every hook is safe to call after the processes are gone.
    """

    def __init__(self, isolator: "Isolator", name: str, limits: Limits) -> None:
        self.isolator = isolator
        self.name = name
        self.limits = limits
        self.pid: Optional[int] = None
        self.limitation: Optional[Limitation] = None
        self._on_limit: Optional[OnLimit] = None

    def prelude(self) -> list[str]:
        """Shell lines the child runs before ``exec`` (enter cgroups, set rlimits)."""
        return []

    def started(self, pid: int, on_limit: OnLimit) -> None:
        """The child is running as ``pid``; call ``on_limit`` once if it hits a limit."""
        self.pid = pid
        self._on_limit = on_limit

    def update(self, limits: Limits) -> None:
        """New limits (more tasks in the executor). Memory is only ever raised."""
        self.limits = Limits(limits.cpus, max(limits.mem_mib, self.limits.mem_mib), limits.pids)

    def pids(self) -> list[int]:
        """Every process the container holds right now."""
        return []

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` to every process in the container."""
        signal_pids(self.pids(), sig)

    def kill_all(self) -> None:
        """SIGKILL everything in the container (the leader's group is killed by the caller)."""
        self.signal_all(signal.SIGKILL)

    def check_exit(self) -> Optional[Limitation]:
        """After the leader exited: the limitation it hit, if any (also read from the kernel)."""
        return self.limitation

    async def destroy(self) -> None:
        """Kill what is left and remove the container's kernel objects."""

    def describe(self) -> dict:
        """A JSON-able description for the agent's snapshot."""
        return {"name": self.name, "cpus": self.limits.cpus, "mem_mib": self.limits.mem_mib,
                "pids_max": self.limits.pids}

    def _hit(self, limitation: Limitation) -> None:
        """Record the first limitation and tell the owner (who kills the container)."""
        if self.limitation is not None:
            return
        self.limitation = limitation
        log.warning("container %s: %s", self.name, limitation.message)
        if self._on_limit is not None:
            self._on_limit(limitation)


class Isolator:
    """Makes containers; one per agent. This base is isolation ``none``."""

    #: What ``/state`` shows: ``none``, ``posix``, ``cgroups-v1`` or ``cgroups-v2``.
    kind = "none"

    def __init__(self) -> None:
        self._counter = 0
        self._destroying: set[asyncio.Task] = set()
        self.live: dict[str, Container] = {}

    def create(self, label: str, limits: Limits) -> Optional[Container]:
        """A container for a new child, or None when this isolator confines nothing."""
        return None

    def _next_name(self, label: str) -> str:
        self._counter += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:48]
        return f"c{self._counter}-{safe}"

    def release(self, container: Container) -> None:
        """Destroy ``container`` in the background; :meth:`close` waits for it."""
        self.live.pop(container.name, None)
        job = asyncio.ensure_future(container.destroy())
        self._destroying.add(job)
        job.add_done_callback(self._destroying.discard)

    async def close(self) -> None:
        """Destroy every container still alive and remove the isolator's own kernel objects."""
        for container in list(self.live.values()):
            container.kill_all()
            self.release(container)
        if self._destroying:
            await asyncio.gather(*list(self._destroying), return_exceptions=True)

    def describe(self) -> dict:
        """A JSON-able description for the agent's snapshot."""
        return {"kind": self.kind}


def signal_pids(pids: Iterable[int], sig: int) -> None:
    """Signal each pid, ignoring the ones already gone."""
    for pid in pids:
        if pid == os.getpid():
            continue  # never the agent itself, whatever a cgroup file says
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
