"""Broadcast variables: a read-only value shipped once per executor, not once per task.

The driver writes the pickled value to a file in the context's work directory. A
:class:`Broadcast` pickled into a task carries only its id and that path; on the executor
``value`` loads the file once and keeps it in the executor's cache (a remote executor would
fetch the bytes through its environment's ``broadcast_loader`` instead of reading the path).

Examples
--------
>>> from dataflow import Context
>>> with Context("inline") as ctx:
...     b = ctx.broadcast({"a": 1, "b": 2})
...     ctx.parallelize(["a", "b", "a"]).map(lambda k: b.value[k]).collect()
[1, 2, 1]
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import lz4.block

from .errors import DataflowError
from .serialize import dumps, loads

_MISSING = object()


class Broadcast:
    """A read-only variable cached on every executor. Read it with ``.value``."""

    def __init__(self, bid: int, path: str, value: Any = _MISSING,
                 on_drop: Callable[[int], None] | None = None) -> None:
        self.bid = bid
        self.path = path
        self._value = value
        self._on_drop = on_drop  # driver only: tells the executors to forget their copies

    @staticmethod
    def create(bid: int, value: Any, directory: str,
               on_drop: Callable[[int], None] | None = None) -> Broadcast:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"broadcast_{bid}")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(lz4.block.compress(dumps(value, "a broadcast value")))
        os.replace(tmp, path)
        return Broadcast(bid, path, value, on_drop)

    @property
    def value(self) -> Any:
        if self._value is _MISSING:
            self._value = _load(self.bid, self.path)
        return self._value

    def unpersist(self, blocking: bool = False) -> None:
        """Drop executor copies; the value is re-read if used again."""
        if self._on_drop is not None:
            self._on_drop(self.bid)

    def destroy(self, blocking: bool = False) -> None:
        """Remove the value for good."""
        self._value = _MISSING
        self.unpersist()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __reduce__(self) -> tuple:
        return (Broadcast, (self.bid, self.path))

    def __repr__(self) -> str:
        return f"Broadcast<id={self.bid}>"


def _load(bid: int, path: str) -> Any:
    from .tasks import TaskContext
    tc: TaskContext | None = TaskContext.get()
    env = tc.env if tc is not None else None
    if env is not None and bid in env.broadcasts:
        return env.broadcasts[bid]
    if env is not None and env.broadcast_loader is not None:
        value = env.broadcast_loader(bid)
    else:
        try:
            with open(path, "rb") as f:
                value = loads(lz4.block.decompress(f.read()))
        except FileNotFoundError:
            raise DataflowError(f"broadcast {bid} was destroyed") from None
    if env is not None:
        env.broadcasts[bid] = value
    return value
