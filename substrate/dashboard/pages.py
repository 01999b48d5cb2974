"""The dashboard's pages, rendered from the master's ``/state`` snapshot.

Each ``*_page`` function takes the snapshot (:func:`substrate.master.state_view.state_snapshot`)
and returns ``(title, body)`` markup, or raises :class:`NotFound`. Layout, refresh and errors
are :mod:`substrate.dashboard.app`'s; per-framework views are :mod:`substrate.dashboard.views`'s.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional

from substrate.dashboard.markup import (
    Safe, ago, clock, esc, fmt, join, kv, link, nbytes, pretty_json, progress, seg, table, tag,
)
from substrate.dashboard.views import fw_link, status_view, summary

NAV = [("/", "Cluster"), ("/frameworks", "Frameworks"), ("/tasks", "Tasks"),
       ("/dataflow", "Dataflow jobs"), ("/genetic", "Genetic runs")]
LOG_FILES = ("stdout", "stderr")


class NotFound(Exception):
    """The page names an agent, framework or task the master does not know."""


def layout(title: str, body: Safe, path: str, refresh: float) -> str:
    nav = join(link(href, text, "current" if href == path else "") for href, text in NAV)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)} · offerpool</title>"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<link rel=\"stylesheet\" href=\"/static/dashboard.css\">"
        "<script src=\"/static/dashboard.js\" defer></script></head>"
        f"<body data-refresh=\"{refresh:g}\"><header><span class=\"brand\">offerpool</span>"
        f"<nav>{nav}</nav><span id=\"conn\" class=\"conn ok\" role=\"status\">live</span>"
        f"</header><main id=\"main\">{body}</main></body></html>")


def fragment(title: str, body: Safe) -> str:
    """What a refresh fetches: the title and the main content, nothing else."""
    return f"<h1 hidden data-title=\"{esc(title)}\"></h1>{body}"


# ---------------------------------------------------------------------------------- lookups
def all_frameworks(state: dict) -> Iterator[dict]:
    yield from state.get("frameworks", [])
    yield from state.get("completed_frameworks", [])


def find_framework(state: dict, fid: str) -> dict:
    for fw in all_frameworks(state):
        if fw["id"] == fid:
            return fw
    raise NotFound(f"no framework {fid!r}")


def find_task(state: dict, fid: str, tid: str) -> tuple[dict, dict]:
    fw = find_framework(state, fid)
    for task in list(fw["tasks"]) + list(reversed(fw["completed_tasks"])):
        if task["id"] == tid:
            return fw, task
    raise NotFound(f"no task {tid!r} in framework {fid!r}")


def find_agent(state: dict, aid: str) -> dict:
    for agent in state.get("agents", []):
        if agent["id"] == aid:
            return agent
    raise NotFound(f"no agent {aid!r}")


def agent_address(state: dict, aid: str) -> Optional[str]:
    for agent in state.get("agents", []):
        if agent["id"] == aid:
            return agent.get("address") or None
    return None


# ---------------------------------------------------------------------------------- pieces
def task_href(task: dict) -> str:
    return f"/frameworks/{seg(task['framework_id'])}/tasks/{seg(task['id'])}"


def agent_link(aid: str) -> Safe:
    return link(f"/agents/{seg(aid)}", aid) if aid else Safe("")


def state_badge(state: str) -> Safe:
    return tag("span", state, cls=f"state {state}")


def use(used: dict, total: dict, key: str, unit: str = "") -> Safe:
    u, t = float(used.get(key, 0) or 0), float(total.get(key, 0) or 0)
    if not t:
        return Safe("–")
    return progress(u, t, f"{fmt(u)}/{fmt(t)}{unit}")


def task_rows(tasks: list[dict], with_framework: bool, names: dict) -> list:
    rows = []
    for t in tasks:
        row = [link(task_href(t), t["id"]), t["name"], state_badge(t["state"]),
               t["reason"] if t["reason"] != "REASON_UNSPECIFIED" else "", t["message"],
               agent_link(t["agent_id"])]
        if with_framework:
            row.insert(1, link(f"/frameworks/{seg(t['framework_id'])}",
                               names.get(t["framework_id"], t["framework_id"])))
        rows.append(row)
    return rows


def task_headers(with_framework: bool) -> list[str]:
    cols = ["task", "name", "state", "reason", "message", "agent"]
    if with_framework:
        cols.insert(1, "framework")
    return cols


def agents_table(state: dict) -> Safe:
    rows = []
    for a in state.get("agents", []):
        res, used = a["resources"], a["used"]
        status = "connected" if a["connected"] else ("disconnected" if a["reachable"]
                                                     else "unreachable")
        rows.append([agent_link(a["id"]), a["hostname"], state_badge(status),
                     use(used, res, "cpus"), use(used, res, "mem", " MiB"),
                     use(used, res, "disk", " MiB"), fmt(a["tasks"]), fmt(len(a["executors"])),
                     f"{a['seconds_since_heartbeat']:.1f} s"])
    return table(["agent", "host", "state", "cpus", "mem", "disk", "tasks", "executors",
                  "last heard"], rows, cls="agents", empty="No agents registered.")


def frameworks_table(frameworks: list[dict]) -> Safe:
    rows = []
    for fw in frameworks:
        alloc = fw["allocated"]
        status = ("active" if fw["connected"] else "removed" if not fw.get("active", True)
                  else "disconnected")
        rows.append([fw_link(fw), fw["role"], fmt(fw["weight"]), state_badge(status),
                     f"{fw['share']:.3f}", f"{fmt(alloc.get('cpus', 0))} cpus, "
                     f"{fmt(alloc.get('mem', 0))} MiB", fmt(len(fw["tasks"])), summary(fw)])
    return table(["framework", "role", "weight", "state", "dominant share", "allocated",
                  "active tasks", "progress"], rows, cls="frameworks",
                 empty="No frameworks.")


# ---------------------------------------------------------------------------------- pages
def overview_page(state: dict) -> tuple[str, Safe]:
    roles = sorted(state.get("roles", {}).items())
    share_rows = [[r, progress(s, 1.0, f"{s:.3f}")] for r, s in roles]
    fw_shares = [[fw_link(fw), fw["role"], progress(fw["share"], 1.0, f"{fw['share']:.3f}")]
                 for fw in state.get("frameworks", [])]
    counters = state.get("counters", {})
    body = join([
        tag("h1", "Cluster"),
        kv([("master", state.get("master_id", "")), ("epoch", fmt(state.get("epoch"))),
            ("agents", fmt(len(state.get("agents", [])))),
            ("frameworks", fmt(len(state.get("frameworks", [])))),
            ("outstanding offers", fmt(state.get("offers", 0))),
            ("tasks launched", fmt(counters.get("tasks_launched", 0))),
            ("isolation", state.get("isolation", ""))]),
        tag("h2", "Agents"), agents_table(state),
        tag("h2", "Allocation: dominant share per role"),
        table(["role", "share"], share_rows, cls="roles", empty="No roles in use."),
        tag("h2", "Allocation: dominant share per framework"),
        table(["framework", "role", "share"], fw_shares, cls="shares", empty="No frameworks."),
        tag("h2", "Frameworks"), frameworks_table(state.get("frameworks", [])),
    ])
    return "Cluster", body


def agent_page(state: dict, aid: str) -> tuple[str, Safe]:
    a = find_agent(state, aid)
    tasks = [t for fw in state.get("frameworks", []) for t in fw["tasks"]
             if t["agent_id"] == aid]
    names = {fw["id"]: fw["name"] for fw in all_frameworks(state)}
    res, used = a["resources"], a["used"]
    body = join([
        tag("h1", join(["Agent ", tag("code", a["id"])])),
        kv([("hostname", a["hostname"]), ("address", a["address"]),
            ("connected", "yes" if a["connected"] else "no"),
            ("last heard", f"{a['seconds_since_heartbeat']:.1f} s ago"),
            ("cpus", use(used, res, "cpus")), ("mem", use(used, res, "mem", " MiB")),
            ("disk", use(used, res, "disk", " MiB")), ("gpus", use(used, res, "gpus")),
            ("ports", ", ".join(f"{b}-{e}" for b, e in res.get("ports", []))),
            ("outstanding offers", fmt(a["offered"]))]),
        tag("h2", "Attributes"),
        table(["name", "value"], sorted(a["attributes"].items()), empty="No attributes."),
        tag("h2", "Executors"),
        table(["executor"], [[e] for e in a["executors"]], empty="No executors."),
        tag("h2", "Tasks"),
        table(task_headers(True), task_rows(tasks, True, names), cls="tasks",
              empty="No active tasks."),
    ])
    return f"Agent {aid}", body


def frameworks_page(state: dict) -> tuple[str, Safe]:
    body = join([tag("h1", "Frameworks"), tag("h2", "Active"),
                 frameworks_table(state.get("frameworks", [])),
                 tag("h2", "Completed"),
                 frameworks_table(state.get("completed_frameworks", []))])
    return "Frameworks", body


def framework_page(state: dict, fid: str) -> tuple[str, Safe]:
    fw = find_framework(state, fid)
    names = {fw["id"]: fw["name"]}
    alloc = fw["allocated"]
    body = join([
        tag("h1", join(["Framework ", tag("span", fw["name"])])),
        kv([("id", tag("code", fw["id"])), ("role", fw["role"]), ("weight", fmt(fw["weight"])),
            ("principal", fw.get("principal") or "–"),
            ("state", "connected" if fw["connected"] else
             ("removed " + ago(fw.get("removed_at")) if fw.get("removed_at") else "disconnected")),
            ("dominant share", f"{fw['share']:.3f}"),
            ("allocated", f"{fmt(alloc.get('cpus', 0))} cpus, {fmt(alloc.get('mem', 0))} MiB, "
                          f"{fmt(alloc.get('disk', 0))} MiB disk"),
            ("failover timeout", f"{fmt(fw['failover_timeout'])} s"),
            ("status published", ago(fw.get("status_time")) or "never")]),
        tag("h2", "Progress"), tag("div", status_view(fw), cls="status"),
        tag("h2", "Active tasks"),
        table(task_headers(False), task_rows(fw["tasks"], False, names), cls="tasks",
              empty="No active tasks."),
        tag("h2", "Recently completed tasks"),
        table(task_headers(False), task_rows(list(reversed(fw["completed_tasks"]))[:50], False,
                                             names), cls="tasks completed",
              empty="No completed tasks."),
    ])
    return f"Framework {fw['name']}", body


def tasks_page(state: dict) -> tuple[str, Safe]:
    names = {fw["id"]: fw["name"] for fw in all_frameworks(state)}
    active = [t for fw in state.get("frameworks", []) for t in fw["tasks"]]
    done = sorted((t for fw in all_frameworks(state) for t in fw["completed_tasks"]),
                  key=lambda t: -(t["history"][-1]["time"] if t["history"] else 0))[:100]
    body = join([tag("h1", "Tasks"), tag("h2", "Active"),
                 table(task_headers(True), task_rows(active, True, names), cls="tasks active",
                       empty="No active tasks."),
                 tag("h2", "Recently completed"),
                 table(task_headers(True), task_rows(done, True, names), cls="tasks completed",
                       empty="No completed tasks.")])
    return "Tasks", body


def task_page(state: dict, fid: str, tid: str) -> tuple[str, Safe]:
    fw, t = find_task(state, fid, tid)
    history = [[clock(h["time"]), state_badge(h["state"]),
                h["reason"] if h["reason"] != "REASON_UNSPECIFIED" else "", h["message"]]
               for h in t["history"]]
    res = t["resources"]
    base = task_href(t) + "/sandbox?path="
    logs = join([link(base + name, name, "log-link") for name in LOG_FILES], " · ")
    body = join([
        tag("h1", join(["Task ", tag("span", t["name"] or t["id"], cls="task-name")])),
        kv([("id", tag("code", t["id"])), ("name", t["name"]), ("framework", fw_link(fw)),
            ("agent", agent_link(t["agent_id"])), ("executor", t["executor_id"] or "–"),
            ("state", state_badge(t["state"])),
            ("reason", t["reason"] if t["reason"] != "REASON_UNSPECIFIED" else "–"),
            ("message", t["message"] or "–"),
            ("resources", f"{fmt(res.get('cpus', 0))} cpus, {fmt(res.get('mem', 0))} MiB"),
            ("sandbox", logs)]),
        tag("h2", "State history"),
        table(["time", "state", "reason", "message"], history, cls="history"),
    ])
    return f"Task {t['name'] or t['id']}", body


def sandbox_page(fw: dict, t: dict, path: str, text: str, size: int, shown: int) -> tuple[str, Safe]:
    others = join([link(task_href(t) + "/sandbox?path=" + n, n) for n in LOG_FILES], " · ")
    body = join([
        tag("h1", join(["Sandbox of ", link(task_href(t), t["name"] or t["id"]), ": ",
                        tag("code", path)])),
        tag("p", join([f"last {nbytes(shown)} of {nbytes(size)} · ", others])),
        tag("pre", text, cls="log"),
    ])
    return f"{path} of {t['id']}", body


def dataflow_page(state: dict) -> tuple[str, Safe]:
    from substrate.dashboard.views import dataflow_jobs
    parts = [tag("h1", "Dataflow jobs")]
    for fw in all_frameworks(state):
        if isinstance(fw.get("status"), dict) and fw["status"].get("kind") == "dataflow":
            parts += [tag("h2", fw_link(fw)), tag("div", dataflow_jobs(fw), cls="status")]
    if len(parts) == 1:
        parts.append(tag("p", "No dataflow application has published its jobs.", cls="empty"))
    return "Dataflow jobs", join(parts)


def genetic_page(state: dict) -> tuple[str, Safe]:
    from substrate.dashboard.views import genetic_run
    parts = [tag("h1", "Genetic runs")]
    for fw in all_frameworks(state):
        if isinstance(fw.get("status"), dict) and fw["status"].get("kind") == "genetic":
            parts += [tag("h2", fw_link(fw)), tag("div", genetic_run(fw), cls="status run")]
    if len(parts) == 1:
        parts.append(tag("p", "No genetic run has published its progress.", cls="empty"))
    return "Genetic runs", join(parts)


def error_page(code: int, message: str) -> tuple[str, Safe]:
    title = {404: "Not found", 403: "Refused", 401: "Unauthorized"}.get(code, "Error")
    return title, join([tag("h1", f"{code} · {title}", cls="error"), tag("p", message),
                        tag("p", link("/", "Back to the cluster"))])


def raw_state(state: Any) -> Safe:
    return pretty_json(state)
