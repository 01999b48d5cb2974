"""Views of frameworks' published status documents: dataflow jobs, genetic runs, anything else.

A status document is whatever the framework published (:mod:`substrate.framework_status`);
it is untrusted input, so every field is type-checked here and every string escaped by
:mod:`substrate.dashboard.markup`. ``kind`` picks the view; an unknown kind is listed as JSON.
"""
from __future__ import annotations

import math
from typing import Any

from substrate.dashboard.chart import line_chart
from substrate.dashboard.markup import (
    Safe, ago, fmt, join, kv, link, nbytes, pretty_json, progress, seg, table, tag,
)


def _num(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return default
    return float(value)


def _list(value: Any) -> list:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def fw_link(fw: dict) -> Safe:
    return link(f"/frameworks/{seg(fw['id'])}", fw.get("name") or fw["id"])


# ---------------------------------------------------------------------------------- dataflow
def stage_rows(job: dict) -> list:
    rows = []
    for st in _list(job.get("stages")):
        total, done = _num(st.get("total")), _num(st.get("done"))
        rows.append([fmt(st.get("id")), st.get("name", ""), st.get("state", ""),
                     progress(done, total)])
    return rows


def dataflow_jobs(fw: dict, limit: int = 20) -> Safe:
    """Jobs of one dataflow framework, newest first, each with its stages' progress."""
    doc = _dict(fw.get("status"))
    tasks = _dict(doc.get("tasks"))
    metrics = _dict(doc.get("metrics"))
    head = kv([("application", doc.get("app", "")),
               ("tasks running / queued",
                f"{fmt(int(_num(tasks.get('running'))))} / {fmt(int(_num(tasks.get('queued'))))}"),
               ("tasks completed", fmt(int(_num(metrics.get("dataflow_tasks_completed_total"))))),
               ("shuffle written", nbytes(_num(metrics.get("dataflow_shuffle_bytes_written_total")))),
               ("jobs succeeded / failed",
                f"{fmt(int(_num(metrics.get('dataflow_jobs_succeeded_total'))))} / "
                f"{fmt(int(_num(metrics.get('dataflow_jobs_failed_total'))))}")])
    parts = [head]
    jobs = list(reversed(_list(doc.get("jobs"))))[:limit]
    for job in jobs:
        stages = _list(job.get("stages"))
        total = sum(_num(s.get("total")) for s in stages)
        done = sum(_num(s.get("done")) for s in stages)
        state = str(job.get("state", ""))
        parts.append(tag("section", join([
            tag("h4", join([f"Job {fmt(job.get('id'))}: ", tag("span", job.get("name", "")),
                            " ", tag("span", state, cls=f"state {state}")])),
            tag("p", join([progress(done, total, f"{fmt(done)}/{fmt(total)} tasks"), " ",
                           f"started {ago(_num(job.get('started')))}"])),
            table(["stage", "name", "state", "progress"], stage_rows(job), cls="stages"),
        ]), cls=f"job job-{state}", data_job=fmt(job.get("id"))))
    if not jobs:
        parts.append(tag("p", "no jobs yet", cls="empty"))
    return join(parts)


# ---------------------------------------------------------------------------------- genetic
def genetic_run(fw: dict) -> Safe:
    """One GA run: generation, evaluations, best, islands and the fitness-per-generation chart."""
    doc = _dict(fw.get("status"))
    series = [p for p in _list(doc.get("series"))]
    best = doc.get("best")
    islands = _list(doc.get("islands"))
    facts = kv([
        ("problem", doc.get("problem", "")),
        ("state", doc.get("state", "")),
        ("generation", f"{fmt(int(_num(doc.get('generation'))))} of "
                       f"{fmt(int(_num(doc.get('generations'))))}"),
        ("progress", progress(_num(doc.get("generation")), _num(doc.get("generations")))),
        ("evaluations", fmt(int(_num(doc.get("evaluations"))))),
        ("best fitness", fmt(_num(best), 8) if best is not None else "–"),
        ("objective", "minimise" if doc.get("minimize") else "maximise"),
    ])
    rows = [[fmt(i.get("index")), i.get("phase", ""), fmt(int(_num(i.get("generation")))),
             fmt(int(_num(i.get("evaluations")))),
             fmt(_num(i.get("best")), 8) if i.get("best") is not None else "–"]
            for i in islands]
    chart = line_chart(series, x="generation", series=("best", "mean"),
                       title=f"fitness per generation: {doc.get('problem', '')}",
                       y_label="fitness")
    return join([facts, tag("div", chart, cls="chart-box"),
                 table(["island", "phase", "generation", "evaluations", "best"], rows,
                       cls="islands", empty="no islands yet")])


def status_view(fw: dict) -> Safe:
    """The view for whatever the framework published; nothing when it published nothing."""
    doc = fw.get("status")
    if not isinstance(doc, dict):
        return tag("p", "This framework has not published a status.", cls="empty")
    kind = doc.get("kind")
    if kind == "dataflow":
        return dataflow_jobs(fw)
    if kind == "genetic":
        return genetic_run(fw)
    return pretty_json(doc)


def summary(fw: dict) -> Safe:
    """One short line for tables: a job's progress or a run's generation."""
    doc = _dict(fw.get("status"))
    if doc.get("kind") == "dataflow":
        jobs = _list(doc.get("jobs"))
        if not jobs:
            return Safe("no jobs yet")
        job = jobs[-1]
        stages = _list(job.get("stages"))
        return join([f"job {fmt(job.get('id'))} {job.get('state', '')} ",
                     progress(sum(_num(s.get("done")) for s in stages),
                              sum(_num(s.get("total")) for s in stages))])
    if doc.get("kind") == "genetic":
        return join([f"generation {fmt(int(_num(doc.get('generation'))))} ",
                     progress(_num(doc.get("generation")), _num(doc.get("generations"))),
                     f" best {fmt(_num(doc.get('best')), 6)}" if doc.get("best") is not None
                     else ""])
    return Safe("")
