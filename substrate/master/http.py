"""The master's HTTP endpoints: ``/state`` (JSON) and ``/metrics`` (Prometheus text).

Serving uses the standard library's threading HTTP server; every request reads the state on
the master's event loop (the only thread that touches it) and waits for the answer.
"""
from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from substrate.master.core import MasterCore
from substrate.master.state_view import MasterCollector, state_snapshot
from substrate.security.server import ServerSecurity


class MasterHttp:
    """Serve ``/state`` and ``/metrics`` of ``core`` on ``host:port`` (0: any free port)."""

    def __init__(self, core: MasterCore, loop: asyncio.AbstractEventLoop,
                 host: str = "127.0.0.1", port: int = 0,
                 security: "ServerSecurity | None" = None) -> None:
        self.core, self.loop = core, loop
        self.security = security or ServerSecurity()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MasterCollector(core))
        handler = _make_handler(self)
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        tls = self.security.http_ssl_context()
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, name="master-http",
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def on_loop(self, fn: Callable[[], object]) -> object:
        async def call() -> object:
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)

    def state_json(self) -> bytes:
        return json.dumps(self.on_loop(lambda: state_snapshot(self.core)), indent=1).encode()

    def metrics_text(self) -> bytes:
        return self.on_loop(lambda: generate_latest(self.registry))  # type: ignore[return-value]


def _make_handler(http: MasterHttp) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path != "/health":  # same bearer tokens and view_state ACL as GetState
                code, reason = http.security.check_http(self.headers)
                if code != 200:
                    return self._send(code, "text/plain", f"{reason}\n".encode())
            try:
                if path == "/state":
                    self._send(200, "application/json", http.state_json())
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, http.metrics_text())
                elif path == "/health":
                    self._send(200, "text/plain", b"ok\n")
                else:
                    self._send(404, "text/plain", b"not found\n")
            except Exception as exc:  # the master must outlive a failed scrape
                self._send(500, "text/plain", f"error: {type(exc).__name__}\n".encode())

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
