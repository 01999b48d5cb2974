"""The dashboard's web edge: aiohttp routes on the master's event loop.

Pages read :func:`~substrate.master.state_view.state_snapshot` on the loop that owns the
master's state (no locks, no thread hops) and render it with :mod:`substrate.dashboard.pages`.
The dashboard is read-only (GET only), sends a strict Content-Security-Policy (scripts and
styles only from ``/static``, nothing inline), and escapes all user text. A request for
``X-Fragment: 1`` gets only the main content: ``static/dashboard.js`` refreshes pages that way
and says so when the master stops answering. Sandbox files are read from the agent through its
path-confined ``ReadFile`` RPC; the path is checked here first.

Authentication: :func:`make_app` takes ``authorize(request, action, obj) -> (status, reason)``;
every request goes through it with ``view_state`` (the HTTP API and the dashboard alike) before
any handler runs, and a sandbox read also with ``read_sandboxes`` and the framework's principal.
"""
from __future__ import annotations

import logging
import os
import posixpath
from typing import Awaitable, Callable, Optional

import grpc
from aiohttp import web

from substrate.dashboard import pages
from substrate.dashboard.markup import Safe
from substrate.security.client import Credentials
from substrate.v1 import pb, rpc

log = logging.getLogger("substrate.dashboard")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: How much of a log the sandbox page shows, in bytes.
TAIL_BYTES = 64 * 1024
#: Seconds between refreshes of a page.
REFRESH_SECONDS = 2.0
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

#: ``(request, action, object) -> (HTTP status, reason)``; 200 lets the request through.
Authorize = Callable[..., "tuple[int, str]"]
StateFn = Callable[[], dict]


class Refused(Exception):
    """A sandbox path that could leave the sandbox."""


def check_sandbox_path(path: str) -> str:
    """A normalised relative path inside a sandbox, or :class:`Refused`.

    Examples
    --------
    >>> check_sandbox_path("stdout"), check_sandbox_path("logs/./x.txt")
    ('stdout', 'logs/x.txt')
    >>> for bad in ("../etc/passwd", "/etc/passwd", "a/../../b", ""):
    ...     try:
    ...         check_sandbox_path(bad)
    ...     except Refused:
    ...         print("refused", repr(bad))
    refused '../etc/passwd'
    refused '/etc/passwd'
    refused 'a/../../b'
    refused ''
    """
    if not path or len(path) > 1024 or "\x00" in path or "\\" in path:
        raise Refused(f"refused: {path!r} is not a path inside the sandbox")
    if path.startswith("/") or any(part == ".." for part in path.split("/")):
        raise Refused(f"refused: {path!r} leads outside the sandbox")
    return posixpath.normpath(path)


async def tail_file(address: str, framework_id: str, sandbox: str, path: str,
                    max_bytes: int = TAIL_BYTES, timeout: float = 10.0,
                    credentials: Optional[Credentials] = None) -> tuple[bytes, int]:
    """The last ``max_bytes`` of a sandbox file on the agent at ``address``, and its size."""
    credentials = credentials or Credentials()
    async with credentials.aio_channel(address) as channel:
        stub = rpc.AgentStub(channel)
        request = pb.ReadFileRequest(framework_id=framework_id, area=pb.ReadFileRequest.SANDBOX,
                                     name=sandbox, path=path, offset=0, length=0)
        size = 0
        async for chunk in stub.ReadFile(request, timeout=timeout,
                                         metadata=credentials.metadata):
            size = chunk.file_size
        request.offset, request.length = max(0, size - max_bytes), max_bytes
        data = []
        async for chunk in stub.ReadFile(request, timeout=timeout,
                                         metadata=credentials.metadata):
            data.append(chunk.data)
            size = max(size, chunk.file_size)
    return b"".join(data), size


def _page(request: web.Request, code: int, title: str, body: Safe) -> web.Response:
    if request.headers.get("X-Fragment") == "1":
        text = pages.fragment(title, body)
    else:
        text = pages.layout(title, body, request.path, REFRESH_SECONDS)
    return web.Response(status=code, text=text, content_type="text/html", charset="utf-8")


def _secure(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def make_app(state: StateFn, authorize: Optional[Authorize] = None,
             extra_routes: Optional[list] = None,
             agent_credentials: Optional[Credentials] = None) -> web.Application:
    """The dashboard application; ``state()`` returns the current ``/state`` snapshot.

    ``agent_credentials`` are what the dashboard presents to agents to read sandboxes.
    """

    def refusal(code: int, reason: str) -> web.Response:
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else {}
        return web.Response(status=code, text=f"{reason or 'unauthorized'}\n", headers=headers)

    @web.middleware
    async def guard(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        # The hook where a request is authenticated (token, mTLS peer, ...), before anything.
        code, reason = authorize(request, "view_state") if authorize is not None else (200, "")
        if code != 200:
            response: web.StreamResponse = refusal(code, reason)
        else:
            try:
                response = await handler(request)
            except pages.NotFound as exc:
                response = _page(request, 404, *pages.error_page(404, str(exc)))
            except Refused as exc:
                response = _page(request, 403, *pages.error_page(403, str(exc)))
            except web.HTTPNotFound:
                response = _page(request, 404, *pages.error_page(
                    404, f"There is no page at {request.path!r}."))
            except web.HTTPException as exc:  # 405 and the like: aiohttp wants them raised
                _secure(exc)
                raise
            except Exception as exc:  # the master must outlive a failing page
                log.exception("dashboard page %s failed", request.path)
                response = _page(request, 500, *pages.error_page(
                    500, f"The page failed: {type(exc).__name__}."))
        return _secure(response)

    def simple(render: Callable[..., tuple[str, Safe]], *keys: str):
        async def handler(request: web.Request) -> web.Response:
            args = [request.match_info[k] for k in keys]
            return _page(request, 200, *render(state(), *args))
        return handler

    async def sandbox(request: web.Request) -> web.Response:
        fid, tid = request.match_info["fid"], request.match_info["tid"]
        snapshot = state()
        fw, task = pages.find_task(snapshot, fid, tid)
        if authorize is not None:
            code, reason = authorize(request, "read_sandboxes", fw.get("principal") or "")
            if code != 200:
                return refusal(code, reason)
        path = check_sandbox_path(request.query.get("path", "stdout"))
        address = pages.agent_address(snapshot, task["agent_id"])
        if address is None:
            raise pages.NotFound(f"the agent of task {tid!r} is gone, and its sandbox with it")
        try:
            data, size = await tail_file(address, fid, task["executor_id"] or tid, path,
                                         credentials=agent_credentials)
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise Refused(f"refused by the agent: {exc.details()}") from None
            if code == grpc.StatusCode.NOT_FOUND:
                raise pages.NotFound(f"no file {path!r} in the sandbox of {tid!r}") from None
            raise pages.NotFound(f"the agent did not answer ({code.name})") from None
        text = data.decode("utf-8", "replace")
        return _page(request, 200, *pages.sandbox_page(fw, task, path, text, size, len(data)))

    app = web.Application(middlewares=[guard])
    routes = [
        web.get("/", simple(pages.overview_page)),
        web.get("/agents", simple(pages.overview_page)),
        web.get("/agents/{aid}", simple(pages.agent_page, "aid")),
        web.get("/frameworks", simple(pages.frameworks_page)),
        web.get("/frameworks/{fid}", simple(pages.framework_page, "fid")),
        web.get("/frameworks/{fid}/tasks/{tid}", simple(pages.task_page, "fid", "tid")),
        web.get("/frameworks/{fid}/tasks/{tid}/sandbox", sandbox),
        web.get("/tasks", simple(pages.tasks_page)),
        web.get("/dataflow", simple(pages.dataflow_page)),
        web.get("/genetic", simple(pages.genetic_page)),
        web.static("/static", STATIC_DIR, show_index=False, follow_symlinks=False),
    ]
    app.add_routes(routes + list(extra_routes or []))
    return app
