"""The master's HTTP endpoints: ``/state`` (JSON), ``/metrics`` (Prometheus text), ``/health``
and the web dashboard (:mod:`substrate.dashboard`), served by aiohttp on the master's loop.

Every handler runs on the event loop that owns :class:`~substrate.master.core.MasterCore`, so
it reads the state directly. Bound to loopback unless configured otherwise; read-only.
Requests are checked by the master's :class:`~substrate.security.server.ServerSecurity`: the
same bearer tokens and ACLs as its gRPC API (``view_state`` for pages, ``/state`` and
``/metrics``; ``read_sandboxes`` for sandbox files), and HTTPS when the master has a certificate.
"""
from __future__ import annotations

import asyncio
import json
from typing import Optional

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from substrate.dashboard.app import make_app
from substrate.master.core import MasterCore
from substrate.master.state_view import MasterCollector, state_snapshot
from substrate.security.client import Credentials
from substrate.security.server import ServerSecurity


class MasterHttp:
    """Serve the HTTP API and dashboard of ``core`` on ``host:port`` (0: any free port).

    Call :meth:`start` and :meth:`stop` on the master's event loop.
    """

    def __init__(self, core: MasterCore, loop: Optional[asyncio.AbstractEventLoop] = None,
                 host: str = "127.0.0.1", port: int = 0,
                 security: Optional[ServerSecurity] = None) -> None:
        self.core = core
        self.host, self.port = host, port
        self.security = security or ServerSecurity()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MasterCollector(core))
        # The dashboard reads sandboxes from agents as the master's own client principal.
        agents = self.security.client or Credentials.from_environment()
        self.app = make_app(lambda: state_snapshot(self.core), self._authorize, [
            web.get("/state", self._state),
            web.get("/metrics", self._metrics),
            web.get("/health", self._health),
        ], agent_credentials=agents)
        self.ssl = self.security.http_ssl_context()
        self.runner: Optional[web.AppRunner] = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl is not None else 'http'}://{self.host}:{self.port}"

    def _authorize(self, request: web.Request, action: str = "view_state",
                   obj: Optional[str] = None) -> tuple[int, str]:
        if request.path == "/health":   # liveness probes carry no token
            return 200, ""
        return self.security.check_http(request.headers, action, obj)

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True,
                           ssl_context=self.ssl)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []  # the bound port when 0
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def state_json(self) -> bytes:
        return json.dumps(state_snapshot(self.core), indent=1).encode()

    def metrics_text(self) -> bytes:
        return generate_latest(self.registry)

    async def _state(self, request: web.Request) -> web.Response:
        return web.Response(body=self.state_json(), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics_text(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")
