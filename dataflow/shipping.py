"""PySpark's ways of shipping code and files: ``addPyFile``, ``addFile`` and ``SparkFiles``.

The substrate does the shipping (:func:`substrate.shipment`): every executor made after a file
is added gets it fetched into its sandbox, and the driver's own modules (those next to the
script) go along without being listed. What this module adds is the dataflow side: executors
that are already running are told about new items with an ``F`` framework message
(:mod:`dataflow.executor` fetches them and puts code on ``sys.path`` before its next task;
an executor that starts later fetches them when it starts),
and :class:`SparkFiles` finds a shipped file from a task or from the driver.

Examples
--------
>>> import tempfile, os
>>> from dataflow import Context
>>> path = os.path.join(tempfile.mkdtemp(), "lookup.txt")
>>> with open(path, "w") as f:
...     _ = f.write("42")
>>> with Context("inline") as ctx:
...     ctx.addFile(path)
...     ctx.parallelize([0]).map(lambda _: open(SparkFiles.get("lookup.txt")).read()).collect()
['42']
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import substrate

log = logging.getLogger("dataflow.shipping")


def _tell_executors(ctx: Any) -> None:
    """Ask running executors to fetch what was added (new ones fetch it when they start).

    The executors' command stays as it was: the master refuses tasks for a running executor
    whose command changed, so new items travel through the driver's manifest instead.
    """
    backend = ctx._backend
    send = getattr(backend, "_broadcast_message", None)
    if send is not None:
        send(b"F")


def add_py_file(ctx: Any, path: str) -> None:
    """Ship a ``.py``, ``.zip``/``.egg``/``.whl`` or package directory to every executor;
    the driver can import it too, as with PySpark."""
    item = substrate.shipment().add_py_file(path)
    entry = os.path.dirname(item.staged) if item.kind == "py" else item.staged
    if entry not in sys.path:
        sys.path.append(entry)
        importlib.invalidate_caches()
    _tell_executors(ctx)


def add_file(ctx: Any, path: str) -> None:
    """Ship a data file (or a directory) to every executor; find it with :class:`SparkFiles`."""
    substrate.shipment().add_file(path)
    _tell_executors(ctx)


class SparkFiles:
    """Where files added with ``Context.addFile`` (or ``offerpool submit --files``) are."""

    @classmethod
    def get(cls, filename: str) -> str:
        """Absolute path of an added file, in a task or in the driver."""
        return substrate.shipped_file(filename)

    @classmethod
    def getRootDirectory(cls) -> str:  # noqa: N802 (PySpark's name)
        """The directory added files are in: the executor's sandbox, or the driver's copy."""
        box = os.environ.get("SUBSTRATE_SANDBOX")
        if box:
            return box
        shipped = substrate.shipment().items
        if shipped:
            return os.path.dirname(next(iter(shipped.values())).staged)
        return os.getcwd()


def sync(reason: str) -> None:
    """Executor side: fetch newly shipped items from the driver and extend ``sys.path``."""
    try:
        fetched = substrate.sync_from_driver()
    except Exception as exc:  # the next task reports the missing module with its name
        log.error("could not fetch shipped files (%s): %s", reason, exc)
        return
    if fetched:
        log.info("fetched shipped files %s (%s)", ", ".join(fetched), reason)
