"""The dashboard without a browser: hostile or malformed status documents never break a page
or reach it unescaped; the authentication hook guards every route; it is read-only."""
from __future__ import annotations

import asyncio
import json
import threading

import pytest
from hypothesis import given, settings, strategies as st

from substrate.dashboard import pages, views
from substrate.master.core import MasterCore
from substrate.master.http import MasterHttp
from substrate.security.server import ServerSecurity
from substrate.security.tokens import add_principal

HOSTILE = "<script>alert(1)</script>"
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) |
    st.text(max_size=8) | st.just(HOSTILE),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "name", "state", "total", "done", "stages", "jobs", "series",
                         "generation", "best", "mean", "islands", "metrics", "tasks", "x"]),
        inner, max_size=5),
    max_leaves=25)


def framework(status) -> dict:
    return {"id": "fw-1", "name": HOSTILE, "role": "*", "weight": 1.0, "principal": "",
            "connected": True, "suppressed": False, "active": True, "removed_at": None,
            "failover_timeout": 0.0, "failover_deadline_in": None, "share": 0.5,
            "allocated": {"cpus": 1, "mem": 2}, "offers": 0, "tasks": [],
            "completed_tasks": [], "status": status, "status_time": None}


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["dataflow", "genetic", "other", 3]), body=junk)
def test_any_status_document_renders_escaped(kind, body):
    doc = dict(body) if isinstance(body, dict) else {"x": body}
    doc["kind"] = kind
    state = {"master_id": "m", "epoch": 1, "agents": [], "frameworks": [framework(doc)],
             "completed_frameworks": [], "roles": {"*": 0.5}, "offers": 0, "counters": {}}
    for render in (pages.overview_page, pages.frameworks_page, pages.dataflow_page,
                   pages.genetic_page):
        _, body_html = render(state)
        assert "<script>" not in body_html
    _, body_html = pages.framework_page(state, "fw-1")
    assert "<script>" not in body_html and "&lt;script&gt;" in body_html
    assert "<script>" not in views.summary(framework(doc))


def _serve(security, checks):
    async def main():
        core = MasterCore()
        http = MasterHttp(core, port=0, security=security)
        await http.start()
        try:
            import aiohttp
            async with aiohttp.ClientSession() as session:
                await checks(session, http.url)
        finally:
            await http.stop()
    # a thread of its own: Playwright's sync API may own this thread's event loop
    errors: list = []

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


def test_tokens_and_acls_guard_every_route(tmp_path):
    """The master's own token store and ACL policy decide, as for its gRPC API."""
    creds = str(tmp_path / "credentials.json")
    ops = add_principal(creds, "ops", "operator")
    eve = add_principal(creds, "eve", "operator")
    acls = tmp_path / "acls.toml"
    acls.write_text('[[view_state]]\nprincipals = ["ops"]\n')
    security = ServerSecurity.from_files(credentials=creds, acls=str(acls))

    async def checks(session, url):
        async with session.get(url + "/health") as r:   # liveness probes carry no token
            assert r.status == 200
        for path in ("/", "/state", "/metrics", "/tasks", "/genetic", "/static/dashboard.js",
                     "/agents/x"):
            async with session.get(url + path) as r:
                assert r.status == 401, path
            async with session.get(url + path, headers={"Authorization": "Bearer ops:nope"}) as r:
                assert r.status == 401, path
            async with session.get(url + path, headers={"Authorization": f"Bearer eve:{eve}"}) as r:
                assert r.status == 403, path    # authenticated, but the ACL says no
            async with session.get(url + path, headers={"Authorization": f"Bearer ops:{ops}"}) as r:
                assert r.status == (404 if path == "/agents/x" else 200), path

    _serve(security, checks)


def test_read_only_and_strict_headers():
    async def checks(session, url):
        async with session.get(url + "/") as r:
            assert r.status == 200
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with session.post(url + "/state", data=b"{}") as r:
            assert r.status == 405
        async with session.get(url + "/", headers={"X-Fragment": "1"}) as r:
            text = await r.text()
            assert "<html" not in text and 'data-title="Cluster"' in text
        async with session.get(url + "/state") as r:
            state = json.loads(await r.text())
            assert state["completed_frameworks"] == [] and state["agents"] == []
        async with session.get(url + "/static/../http.py") as r:
            assert r.status in (403, 404)

    _serve(None, checks)


@pytest.mark.parametrize("path", ["../x", "/abs", "a/../../b", "", "a\\b", "x\x00y"])
def test_sandbox_paths_outside_are_refused(path):
    from substrate.dashboard.app import Refused, check_sandbox_path
    with pytest.raises(Refused):
        check_sandbox_path(path)
