"""A runnable master: the gRPC server, its service, timers and the HTTP endpoints.

:class:`Master` runs on an asyncio loop owned by the caller (the embedded cluster) or by
:func:`main` (the ``offerpool master`` command).
"""
from __future__ import annotations

import asyncio
import logging
import resource
import signal
import time
from typing import Optional

import grpc

from substrate.master.core import MasterConfig, MasterCore
from substrate.master.registry import Registry
from substrate.master.http import MasterHttp
from substrate.master.service import MasterService
from substrate.master.wire import add_master_service
from substrate.security.server import ServerSecurity

log = logging.getLogger("substrate.master")

#: Generous message cap: payloads are checked against the (smaller) configured cap.
GRPC_MAX_MESSAGE = 64 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
]


class Master:
    """A master serving on ``host:port`` with ``/state`` and ``/metrics`` on ``http_port``.

    Parameters
    ----------
    host : str
        Address to bind; loopback unless configured otherwise.
    port : int
        gRPC port, 0 for any free port.
    http_port : int or None
        HTTP port (0: any free port; None: no HTTP endpoints).
    config : MasterConfig, optional
    security : ServerSecurity, optional
        Credentials, ACLs and TLS; default: none, which only a loopback ``host`` allows.
    registry : Registry, optional
        Where the durable facts live (default: in memory). A master with a registry that
        already holds facts (``SqliteRegistry`` after a restart) recovers them.
    zk : str, optional
        ``zk://hosts/path``: contend for leadership there (the registry is then kept in
        ZooKeeper and ``registry`` must not be given); serve only while leading.
    zk_session_timeout : float
        ZooKeeper session timeout, seconds: how soon a dead leader is replaced.
    advertise_host : str, optional
        Host name published to clients in ZooKeeper (default: ``host``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, http_port: Optional[int] = 0,
                 config: Optional[MasterConfig] = None,
                 security: Optional[ServerSecurity] = None, *,
                 registry: Optional[Registry] = None, zk: str = "",
                 zk_session_timeout: float = 10.0, advertise_host: Optional[str] = None) -> None:
        from substrate.master.ha import Leadership

        self.host, self.port, self.http_port = host, port, http_port
        self.security = security or ServerSecurity()
        self.config = config or MasterConfig()
        self.leadership: Optional[Leadership] = None
        if zk:
            if registry is not None:
                raise ValueError("a ZooKeeper master keeps its registry in ZooKeeper")
            self.leadership = Leadership(self, zk, zk_session_timeout, advertise_host)
            self.core = self.leadership.placeholder()
        else:
            self.core = MasterCore(time.monotonic, self.config, registry=registry)
            if registry is not None:
                self.core.recover()
        self.service = MasterService(self.core, self.security)
        self.service.leading = not zk
        self.server: Optional[grpc.aio.Server] = None
        self.http: Optional[MasterHttp] = None

    @property
    def leading(self) -> bool:
        """True while this master serves (always, without ZooKeeper)."""
        return self.service.leading

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return self.http.url if self.http is not None else ""

    async def start(self) -> None:
        self.security.check_bind(self.host, "master")
        self.server = grpc.aio.server(options=GRPC_OPTIONS,
                                      interceptors=self.security.interceptors())
        add_master_service(self.service, self.server)
        bound = self.security.add_port(self.server, f"{self.host}:{self.port}")
        if bound == 0:
            raise OSError(f"could not bind the master to {self.host}:{self.port}")
        self.port = bound
        await self.server.start()
        if self.service.leading:
            self.service.start_timers()
        if self.http_port is not None:
            self.http = MasterHttp(self.core, asyncio.get_running_loop(), self.host,
                                   self.http_port, security=self.security)
            await self.http.start()
            self.service.dashboard_url = self.http.url
        if self.leadership is not None:
            await self.leadership.start()
        log.info("master %s listening on %s", self.core.master_id, self.address)

    def use_core(self, core: MasterCore) -> None:
        """Point the service and the HTTP endpoints at ``core`` (a new term of office)."""
        self.core = core
        if self.http is not None:
            self.http.core = core
            for collector in list(getattr(self.http.registry, "_collector_to_names", {})):
                if hasattr(collector, "core"):
                    collector.core = core

    async def stop(self, grace: float = 0.5) -> None:
        if self.leadership is not None:
            self.leadership.close()
        await self.service.close()
        if self.server is not None:
            await self.server.stop(grace)
        if self.http is not None:
            await self.http.stop()


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; return the limit.

    Every agent and scheduler holds a connection to the master, so a master of thousands of
    agents needs more descriptors than the usual soft limit of 1,024; the hard limit is what
    the administrator allows.

    >>> raise_open_files_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    True
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. a hard limit above the kernel's nr_open
            log.warning("could not raise the open files limit from %d: %s", soft, exc)
    return soft


def main(host: str = "127.0.0.1", port: int = 5050, http_port: Optional[int] = 5051,
         config: Optional[MasterConfig] = None, ready=None,
         security: Optional[ServerSecurity] = None, **ha) -> int:
    """Run a master in the foreground until SIGINT or SIGTERM (``ha``: see :class:`Master`)."""
    raise_open_files_limit()

    async def run() -> None:
        master = Master(host, port, http_port, config, security, **ha)
        await master.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready(master)
        await stop.wait()
        await master.stop()

    asyncio.run(run())
    return 0
