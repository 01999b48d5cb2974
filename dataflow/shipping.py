"""PySpark's ways of shipping code and files: ``addPyFile``, ``addFile`` and ``SparkFiles``.

The substrate does the shipping (:func:`substrate.shipment`): every executor made after a file
is added gets it fetched into its sandbox, and the driver's own modules (those next to the
script) go along without being listed. What this module adds is the dataflow side: executors
that are already running are told about new items with a signed ``F`` framework message
(:mod:`dataflow.executor` fetches them and puts code on ``sys.path`` before its next task),
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

import logging
import os
from typing import Any

import substrate

log = logging.getLogger("dataflow.shipping")


def _tell_executors(ctx: Any) -> None:
    """Refresh the executor template and tell running executors about the new items."""
    backend = ctx._backend
    shipment = substrate.shipment()
    template = getattr(backend, "_executor_info", None)
    if template is not None:
        shipment.apply(template)
    send = getattr(backend, "_broadcast_message", None)
    secret = getattr(backend, "secret", None)
    if send is not None and secret is not None:
        from .executor import sign
        send(b"F" + sign(secret, shipment.manifest()))


def add_py_file(ctx: Any, path: str) -> None:
    """Ship a ``.py``, ``.zip``/``.egg``/``.whl`` or package directory to every executor."""
    substrate.shipment().add_py_file(path)
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


def on_message(secret: bytes, body: bytes) -> None:
    """Executor side of the ``F`` message: fetch the new items, extend ``sys.path``."""
    from .executor import verify
    try:
        fetched = substrate.apply_manifest(verify(secret, body))
    except Exception as exc:  # the next task reports the missing module with its name
        log.error("could not fetch shipped files: %s", exc)
        return
    if fetched:
        log.info("fetched shipped files %s", ", ".join(fetched))
