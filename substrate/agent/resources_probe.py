"""What an agent offers when no resources are configured: a probe of the machine.

This module owns the defaults: every CPU, total memory minus a reserve for the operating
system, free disk of the work directory minus a reserve, a port range and no GPUs. It only reads
the machine; whether the agent's configuration overrides it is decided by
:class:`substrate.agent.config.AgentConfig`.
"""
from __future__ import annotations

import os
import shutil

from substrate.resources import Resources

MIB = 1024 * 1024
#: Ports offered by default (inclusive), like the usual ephemeral-free range of Mesos agents.
DEFAULT_PORTS = ((31000, 32000),)
MEM_RESERVE_MIB = 1024.0
DISK_RESERVE_MIB = 5 * 1024.0


def total_memory_mib() -> float:
    """Physical memory of the machine in MiB (0 when the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / MIB
    except (ValueError, OSError, AttributeError):
        try:
            import psutil  # optional fallback for platforms without sysconf names
            return psutil.virtual_memory().total / MIB
        except Exception:  # pragma: no cover - exotic platforms
            return 0.0


def free_disk_mib(path: str | os.PathLike[str]) -> float:
    """Free space in MiB of the file system that holds ``path`` (or its nearest parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        return shutil.disk_usage(probe).free / MIB
    except OSError:
        return 0.0


def _minus_reserve(total: float, reserve: float) -> float:
    """``total`` minus ``min(reserve, total / 2)``: small machines keep half."""
    return max(0.0, total - min(reserve, total / 2))


def probe(work_dir: str | os.PathLike[str]) -> Resources:
    """The resources of this machine as an agent offers them by default.

    cpus = ``os.cpu_count()``; mem = total MiB minus ``min(1 GiB, half)``; disk = free MiB of
    ``work_dir`` minus ``min(5 GiB, half)``; ports 31000-32000; gpus 0.

    Examples
    --------
    >>> r = probe(".")
    >>> r.cpus >= 1 and r.mem > 0 and r.ports == ((31000, 32000),)
    True
    """
    cpus = float(os.cpu_count() or 1)
    mem = _minus_reserve(total_memory_mib(), MEM_RESERVE_MIB)
    disk = _minus_reserve(free_disk_mib(work_dir), DISK_RESERVE_MIB)
    return Resources(cpus=cpus, mem=round(mem), disk=round(disk), gpus=0.0, ports=DEFAULT_PORTS)
