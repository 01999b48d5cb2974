"""A master's terms of office under ZooKeeper: take office when elected, step down when not.

:class:`Leadership` glues :class:`substrate.master.zk.ZkContender` (who leads) to a
:class:`substrate.master.server.Master` (what it serves). When elected it loads the registry
from ZooKeeper, claims the next epoch, builds a fresh :class:`MasterCore` that recovers the
registry's frameworks and agents, and starts serving; agents then re-register and bring their
tasks back. When deposed (session expired, cut off from ZooKeeper for a session timeout, or a
client showed it a newer epoch) it closes every stream, fences the old core off the registry
and goes back to standby, contending again. Also: the ``offerpool master`` options for HA.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Optional

from substrate.master.core import MasterCore
from substrate.master.registry import InMemoryRegistry, open_registry

if TYPE_CHECKING:
    from substrate.master.server import Master
    from substrate.master.zk import ZkContender

log = logging.getLogger("substrate.master.ha")


class Leadership:
    """Runs the election for one master and switches its service between terms."""

    def __init__(self, master: "Master", url: str, session_timeout: float,
                 advertise_host: Optional[str]) -> None:
        from substrate.detector import parse_zk_url

        parse_zk_url(url)
        self.master = master
        self.url = url
        self.session_timeout = session_timeout
        self.advertise_host = advertise_host
        self.base_id = f"master-{uuid.uuid4().hex[:8]}"
        self.contender: Optional["ZkContender"] = None
        self.terms = 0           # how many times this master took office
        self._generation = 0     # bumped on every election or deposition
        self._elected_event: Optional[asyncio.Event] = None

    def placeholder(self) -> MasterCore:
        """The empty, epoch-0 core a standby shows on ``/state``."""
        return MasterCore(time.monotonic, self.master.config, epoch=0, master_id=self.base_id,
                          registry=InMemoryRegistry())

    async def start(self) -> None:
        from substrate.master.zk import ZkContender

        loop = asyncio.get_running_loop()
        self._elected_event = asyncio.Event()
        host = self.advertise_host or self.master.host
        info = {"address": f"{host}:{self.master.port}", "master_id": self.base_id,
                "http": self.master.http_url}
        self.contender = ZkContender(self.url, info, loop, self._on_elected, self._on_deposed,
                                     self.session_timeout)
        self.master.service.on_stale = self._on_stale
        await loop.run_in_executor(None, self.contender.start)

    async def wait_elected(self, timeout: Optional[float] = None) -> None:
        assert self._elected_event is not None
        await asyncio.wait_for(self._elected_event.wait(), timeout)

    # -- callbacks, on the master's loop
    def _on_elected(self) -> None:
        self._generation += 1
        self.master.service.taking_office()
        asyncio.ensure_future(self._take_office(self._generation))

    async def _take_office(self, generation: int) -> None:
        contender = self.contender
        assert contender is not None
        registry = contender.registry()

        started = time.monotonic()

        def prepare() -> int:
            registry.load()
            return registry.next_epoch()

        try:
            epoch = await asyncio.get_running_loop().run_in_executor(None, prepare)
        except Exception:
            log.exception("could not take office; resigning")
            self.master.service.end_taking_office()
            contender.resign()
            return
        if generation != self._generation or not contender.leading:
            return  # deposed while loading (which released the held streams)
        self.terms += 1
        core = MasterCore(time.monotonic, self.master.config, epoch=epoch,
                          master_id=f"{self.base_id}.{epoch}", registry=registry)
        core.recover()
        self.master.use_core(core)
        self.master.service.lead(core)
        log.warning("elected leading master (epoch %d): %d frameworks, %d agents to recover "
                    "(registry loaded and office taken in %.2f s)", epoch, len(core.frameworks),
                    len(core.recovering), time.monotonic() - started)
        if self._elected_event is not None:
            self._elected_event.set()

    def _on_deposed(self) -> None:
        self._generation += 1
        if self._elected_event is not None:
            self._elected_event.clear()
        self.master.service.end_taking_office()
        if self.master.service.leading:
            placeholder = self.placeholder()
            self.master.service.step_down(placeholder)
            self.master.use_core(placeholder)
            log.warning("stepped down; standing by")

    def _on_stale(self) -> None:
        self._on_deposed()
        if self.contender is not None:
            self.contender.resign()

    def close(self) -> None:
        if self.contender is not None:
            self.contender.close()


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``offerpool master`` options for high availability."""
    parser.add_argument("--zk", default="", metavar="zk://HOST:PORT[,HOST:PORT]/PATH",
                        help="elect a leader among masters through ZooKeeper (registry kept there)")
    parser.add_argument("--zk-session-timeout", type=float, default=10.0,
                        help="seconds; how soon a dead leader is replaced (default 10)")
    parser.add_argument("--registry", default="memory",
                        help="durable registry of a single master: memory or sqlite:PATH")
    parser.add_argument("--advertise-host", default=None,
                        help="host name other machines reach this master at (with --zk)")


def master_options(args: argparse.Namespace) -> dict:
    """Keyword arguments for :class:`~substrate.master.server.Master` from parsed options."""
    if args.zk:
        if args.registry not in ("memory", "zk"):
            raise SystemExit("offerpool master: --zk keeps the registry in ZooKeeper; "
                             "drop --registry")
        return {"zk": args.zk, "zk_session_timeout": args.zk_session_timeout,
                "advertise_host": args.advertise_host}
    if args.registry == "zk":
        raise SystemExit("offerpool master: --registry zk needs --zk URL")
    return {"registry": None if args.registry == "memory" else open_registry(args.registry)}
