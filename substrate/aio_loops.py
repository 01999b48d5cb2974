"""Event loops for the substrate's background threads.

grpc.aio binds one process-wide poller to every loop that uses it (grpc/grpc#25364): when
several loops live in one process (an embedded cluster and a scheduler driver, say), a
completion may wake a loop that has nothing to read, and a closed loop may still be called.
Loops made here ignore those two spurious errors and are stopped but never closed.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable, Optional

log = logging.getLogger("substrate")


def _handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    exc = context.get("exception")
    handle = repr(context.get("handle", ""))
    if "PollerCompletionQueue" in handle and isinstance(exc, (BlockingIOError, RuntimeError)):
        return
    loop.default_exception_handler(context)


def new_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_handler)
    return loop


def start_loop_thread(name: str, main: Optional[Callable[[asyncio.AbstractEventLoop], None]] = None,
                      loop: Optional[asyncio.AbstractEventLoop] = None,
                      ) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Start a daemon thread running ``loop`` (default: a new one) forever, or ``main(loop)``."""
    loop = loop or new_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        ready.set()
        if main is None:
            loop.run_forever()
        else:
            main(loop)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait()
    return loop, thread
