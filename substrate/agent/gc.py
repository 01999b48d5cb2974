"""Sandbox garbage collection: finished executors' sandboxes and logs, kept for a while.

A sandbox (``work_dir/sandboxes/<framework>/<executor or task>/``) holds a program's
``stdout``/``stderr`` and fetched files. Once its executor or command task is gone the sandbox
stays readable (``offerpool logs``) for ``keep_seconds``, counted from its last write. Like
Mesos' ``gc_delay`` with ``gc_disk_headroom``, the retention shrinks as the disk fills:

    max_age = keep_seconds * max(0, 1 - headroom - disk_usage)

so with a full-enough disk (usage >= 1 - headroom) every finished sandbox goes at once.
:func:`plan` is the pure decision (time from an injected clock); :func:`collect` applies it to
the disk, skipping sandboxes that a live executor or task still uses; :func:`run_periodically`
is the agent's loop.

Examples
--------
>>> policy = GCPolicy(keep_seconds=3600, headroom=0.1)
>>> policy.max_age(disk_usage=0.5)
1440.0
>>> plan([("old", 0.0), ("new", 9000.0)], now=10000.0, policy=policy, disk_usage=0.5)
['old']
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

log = logging.getLogger(__name__)


@dataclass
class GCPolicy:
    """How long finished sandboxes are kept.

    Parameters
    ----------
    keep_seconds : float
        Retention with an empty disk (default one week, as Mesos' ``gc_delay``).
    headroom : float
        Fraction of the disk to keep free; retention reaches zero when usage reaches
        ``1 - headroom``.
    interval : float
        Seconds between two collections on a running agent.
    """

    keep_seconds: float = 7 * 24 * 3600.0
    headroom: float = 0.1
    interval: float = 60.0

    def max_age(self, disk_usage: float) -> float:
        """Seconds a finished sandbox may be kept at this disk usage (0..1)."""
        return self.keep_seconds * max(0.0, 1.0 - self.headroom - disk_usage)


def plan(candidates: Iterable[tuple[str, float]], *, now: float, policy: GCPolicy,
         disk_usage: float) -> list[str]:
    """Which of ``(name, last_modified)`` candidates are old enough to remove."""
    limit = policy.max_age(disk_usage)
    return [name for name, mtime in candidates if now - mtime >= limit]


def disk_usage(path: str) -> float:
    """Used fraction of the file system holding ``path``."""
    usage = shutil.disk_usage(path)
    return usage.used / usage.total if usage.total else 0.0


def _last_write(sandbox: Path) -> float:
    latest = sandbox.lstat().st_mtime
    for entry in sandbox.iterdir():
        try:
            latest = max(latest, entry.lstat().st_mtime)
        except FileNotFoundError:
            continue
    return latest


def collect(work_dir: str, live: set[tuple[str, str]], policy: GCPolicy, *,
            clock: Callable[[], float] = time.time,
            usage: Optional[float] = None) -> list[Path]:
    """Remove finished sandboxes older than the policy allows; the paths removed.

    Parameters
    ----------
    work_dir : str
        The agent's work directory.
    live : set of (framework_id, name)
        Sandboxes in use by a running executor or command task; never removed.
    clock : callable
        Wall clock (sandbox ages come from file modification times).
    usage : float, optional
        Disk usage fraction; measured on ``work_dir`` when not given.
    """
    root = Path(work_dir) / "sandboxes"
    if not root.is_dir():
        return []
    candidates: dict[str, Path] = {}
    for fw_dir in root.iterdir():
        if not fw_dir.is_dir() or fw_dir.is_symlink():
            continue
        for box in fw_dir.iterdir():
            if (fw_dir.name, box.name) in live or not box.is_dir() or box.is_symlink():
                continue
            try:
                candidates[str(box)] = box
            except FileNotFoundError:
                continue
    ages = []
    for key, box in candidates.items():
        try:
            ages.append((key, _last_write(box)))
        except FileNotFoundError:
            continue
    if usage is None:
        usage = disk_usage(work_dir)
    removed = []
    for key in plan(ages, now=clock(), policy=policy, disk_usage=usage):
        box = candidates[key]
        shutil.rmtree(box, ignore_errors=True)
        removed.append(box)
        log.info("removed finished sandbox %s", box)
        try:
            box.parent.rmdir()  # the framework's last sandbox
        except OSError:
            pass
    return removed


def live_sandboxes(core) -> set[tuple[str, str]]:
    """Sandboxes an agent's running executors and command tasks still use."""
    from substrate.agent.records import TERMINAL

    live = {key for key in core.executors}
    live |= {key for key, task in core.tasks.items()
             if not task.executor_id and task.state not in TERMINAL}
    return live


async def run_periodically(core, policy: Optional[GCPolicy] = None) -> None:
    """The agent's collector: every ``policy.interval`` seconds, off the event loop."""
    policy = policy or getattr(core.config, "sandbox_gc", None) or GCPolicy()
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(policy.interval)
        try:
            await loop.run_in_executor(None, collect, core.config.work_dir,
                                       live_sandboxes(core), policy)
        except Exception:  # a GC error must never take the agent down
            log.exception("sandbox garbage collection failed")
