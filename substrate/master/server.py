"""A runnable master: the gRPC server, its service, timers and the HTTP endpoints.

:class:`Master` runs on an asyncio loop owned by the caller (the embedded cluster) or by
:func:`main` (the ``offerpool master`` command).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Optional

import grpc

from substrate.master.core import MasterConfig, MasterCore
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
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, http_port: Optional[int] = 0,
                 config: Optional[MasterConfig] = None,
                 security: Optional[ServerSecurity] = None) -> None:
        self.host, self.port, self.http_port = host, port, http_port
        self.security = security or ServerSecurity()
        self.core = MasterCore(time.monotonic, config)
        self.service = MasterService(self.core, self.security)
        self.server: Optional[grpc.aio.Server] = None
        self.http: Optional[MasterHttp] = None

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
        self.service.start_timers()
        if self.http_port is not None:
            self.http = MasterHttp(self.core, asyncio.get_running_loop(), self.host,
                                   self.http_port, security=self.security)
            await self.http.start()
            self.service.dashboard_url = self.http.url
        log.info("master %s listening on %s", self.core.master_id, self.address)

    async def stop(self, grace: float = 0.5) -> None:
        await self.service.close()
        if self.server is not None:
            await self.server.stop(grace)
        if self.http is not None:
            await self.http.stop()


def main(host: str = "127.0.0.1", port: int = 5050, http_port: Optional[int] = 5051,
         config: Optional[MasterConfig] = None, ready=None,
         security: Optional[ServerSecurity] = None) -> int:
    """Run a master in the foreground until SIGINT or SIGTERM."""

    async def run() -> None:
        master = Master(host, port, http_port, config, security)
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
