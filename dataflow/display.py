"""How the driver describes itself to people: call sites, stage names and notebook HTML.

:func:`call_site` names the user code that made an RDD or ran a job (``reduceByKey at
wordcount.py:12``), the way PySpark names its stages; :func:`stage_name` picks the name a
progress bar shows. :func:`context_html` and :func:`rdd_html` are the ``_repr_html_`` of
:class:`~dataflow.context.Context` and :class:`~dataflow.rdd.RDD`. Every piece of user text
(application and RDD names, paths, lineage) is escaped with :func:`html.escape`. This module only
formats: the progress bars themselves are :mod:`dataflow.progress`'s, and what the backend knows
(executors, the dashboard) is read through public attributes of the objects the context holds.

Examples
--------
>>> from dataflow import Context
>>> with Context("inline") as ctx:
...     rdd = ctx.parallelize([1, 2], 2).map(str).setName("<b>numbers</b>")
...     "&lt;b&gt;numbers&lt;/b&gt;" in rdd_html(rdd), rdd.creation_site.split(" at ")[0]
(True, 'map')
"""
from __future__ import annotations

import html
import os
import sys
from typing import Any

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def call_site(depth: int = 1) -> str:
    """``"operation at file:line"``: the dataflow method user code called, and where.

    Walks out of the dataflow package from the caller's frame: the outermost dataflow frame
    names the operation (``reduceByKey``, ``collect``), the first frame outside the package
    gives the file (base name, like PySpark's call sites) and line. Returns ``""`` when the
    stack cannot be inspected.
    """
    try:
        frame = sys._getframe(depth)
    except (AttributeError, ValueError):
        return ""
    operation = ""
    while frame is not None:
        code = frame.f_code
        if not os.path.abspath(code.co_filename).startswith(_PACKAGE_DIR):
            where = f"{os.path.basename(code.co_filename)}:{frame.f_lineno}"
            return f"{operation} at {where}" if operation else where
        operation = code.co_name
        frame = frame.f_back
    return operation


def stage_name(stage: Any, job_site: str = "") -> str:
    """What a progress bar calls ``stage``: a map stage by the shuffle that cut it, the result
    stage by the action that ran the job, else by the RDD's name or repr."""
    if stage.is_map:
        site = getattr(stage.shuffle_dep, "site", "")
    else:
        site = job_site
    rdd = stage.rdd
    if site:
        return site
    if rdd is None:
        return ""
    return rdd.name() or getattr(rdd, "creation_site", "") or repr(rdd)


def dashboard_url(backend: Any) -> str | None:
    """This application's page on the master's dashboard: of the embedded cluster the backend
    owns, else of the master the driver subscribed to; None for the inline backend or when
    unknown."""
    cluster = getattr(backend, "cluster", None)
    if cluster is not None:
        base = cluster.dashboard_url
    else:
        driver = getattr(backend, "driver", None)
        base = getattr(driver, "dashboard_url", "") if driver is not None else ""
    if not base:
        return None
    fid = getattr(backend, "framework_id", "")
    return base.rstrip("/") + (f"/frameworks/{fid}" if fid else "/")


def _executors(ctx: Any) -> str:
    backend = ctx._backend
    pids = getattr(backend, "executor_pids", None)
    if pids is None:
        return "1 (the driver thread)"
    live = len(pids())
    most = getattr(backend, "max_executors", None)
    return f"{live} of {most}" if most is not None else str(live)


def context_html(ctx: Any) -> str:
    """The Context as an HTML table: master, app, parallelism, executors, state, dashboard."""
    stopped = ctx._stopped
    rows = [("master", f"<code>{html.escape(ctx.master)}</code>"),
            ("app", html.escape(ctx.appName)),
            ("state", "stopped" if stopped else "running")]
    if not stopped:
        rows += [("default parallelism", str(ctx.defaultParallelism)),
                 ("executors", _executors(ctx))]
    url = ctx.dashboard_url
    if url:
        u = html.escape(url, quote=True)
        rows.append(("dashboard", f'<a href="{u}" target="_blank">{u}</a>'))
    body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>"
                   f"{v}</td></tr>" for k, v in rows)
    return f"<div><b>dataflow.Context</b><table>{body}</table></div>"


def rdd_html(rdd: Any) -> str:
    """The RDD as HTML: id, name, partitions, cached or not, call site and lineage."""
    rows = [("id", str(rdd.id())),
            ("name", html.escape(rdd.name()) if rdd.name() else "<i>none</i>"),
            ("type", html.escape(type(rdd).__name__)),
            ("partitions", str(rdd.getNumPartitions())),
            ("cached", "yes" if rdd.is_cached else "no")]
    site = getattr(rdd, "creation_site", "")
    if site:
        rows.append(("created by", f"<code>{html.escape(site)}</code>"))
    url = getattr(rdd.ctx, "dashboard_url", None)
    if url:
        u = html.escape(url, quote=True)
        rows.append(("dashboard", f'<a href="{u}" target="_blank">{u}</a>'))
    body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>"
                   f"{v}</td></tr>" for k, v in rows)
    lineage = html.escape(rdd.toDebugString().decode("utf-8", "replace"))
    return (f"<div><b>dataflow RDD</b> {html.escape(repr(rdd))}<table>{body}</table>"
            f"<pre>{lineage}</pre></div>")
