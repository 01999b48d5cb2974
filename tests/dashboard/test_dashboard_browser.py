"""The dashboard in a real browser (headless Chromium through Playwright) against a live
embedded cluster running a dataflow job, a genetic run and a task with a hostile name."""
from __future__ import annotations

import json
import socket
import threading
import urllib.request

import pytest

from dataflow import Context
from genetic import Problem, bits, evolve
from substrate import LocalCluster

from .conftest import LOG_LINE, XSS_NAME, screenshot, start_hostile

pytestmark = pytest.mark.timeout(240)


def gated(release: str):
    """A map function: partitions 0 and 1 return at once, the others wait for ``release``."""
    def fn(x):
        import os
        import time
        if x >= 2:
            deadline = time.monotonic() + 180
            while not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.05)
        return x
    return fn


def gated_onemax(release: str, after: int):
    """OneMax as a per-individual function that, in each island, holds after ``after`` calls
    until ``release`` exists: the run is certainly live while the test looks at it."""
    calls = [0]

    def fitness(genome):
        import os
        import time
        calls[0] += 1
        if calls[0] > after:
            deadline = time.monotonic() + 180
            while not os.path.exists(release) and time.monotonic() < deadline:
                time.sleep(0.05)
        return float(genome.sum())
    return fitness


def state(cluster) -> dict:
    with urllib.request.urlopen(cluster.dashboard_url + "/state", timeout=10) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A cluster with: a hostile task running, a dataflow job half done and blocked, and a
    genetic run in progress."""
    tmp = tmp_path_factory.mktemp("dash")
    release = tmp / "release"
    ga_release = tmp / "ga-release"
    cluster = LocalCluster(agents=2, cpus=3, mem=2048).start()
    hostile, _ = start_hostile(cluster.master, release)
    ctx = Context(cluster.master, appName="browser <b>test</b>", progress=False)
    out: dict = {}

    def run_job():
        out["job"] = ctx.parallelize(range(4), 4).map(gated(str(release))).collect()

    job = threading.Thread(target=run_job, daemon=True)
    job.start()

    def run_ga():
        problem = Problem(genome=bits(48), fitness=gated_onemax(str(ga_release), 100),
                          maximize=True)
        out["ga"] = evolve(problem, population=40,
                           generations=60, islands=2, seed=3, master=cluster.master,
                           island_cpus=0.3, progress=False)

    ga = threading.Thread(target=run_ga, daemon=True)
    ga.start()
    try:
        yield {"cluster": cluster, "release": release, "ctx": ctx, "job": job, "ga": ga,
               "out": out, "ga_release": ga_release}
    finally:
        release.touch()
        ga_release.touch()
        job.join(60)
        ga.join(120)
        ctx.stop()
        hostile.stop()
        cluster.stop()


def test_cluster_page_lists_agents_and_shares(live, page):
    cluster = live["cluster"]
    page.goto(cluster.dashboard_url + "/")
    rows = page.locator("table.agents tbody tr")
    assert rows.count() == 2
    for agent in state(cluster)["agents"]:
        row = page.locator("table.agents tbody tr", has_text=agent["id"])
        assert row.count() == 1 and agent["hostname"] in row.inner_text()
        assert row.locator("progress").count() >= 2     # cpus and mem in use
    assert page.locator("table.roles tbody tr", has_text="*").count() == 1
    screenshot(page, "cluster")
    page.click(f"text={state(cluster)['agents'][0]['id']}")
    assert page.locator("h1").inner_text().startswith("Agent")
    screenshot(page, "agent")


def test_running_task_and_stage_progress(live, page):
    cluster = live["cluster"]
    page.goto(cluster.dashboard_url + "/dataflow")
    # partitions 0 and 1 finished, 2 and 3 are held: the page refreshes itself until it shows it
    stage = page.locator("table.stages tbody tr", has_text="2/4")
    stage.first.wait_for(timeout=90_000)
    assert stage.first.locator("progress").get_attribute("value") == "2"
    assert "browser <b>test</b>" in page.inner_text("main")   # the app name, as text
    screenshot(page, "dataflow")
    page.goto(cluster.dashboard_url + "/tasks")
    running = page.locator("table.active tbody tr", has_text="dataflow: browser")
    running.filter(has_text="RUNNING").first.wait_for()
    assert running.filter(has_text="RUNNING").count() == 2
    screenshot(page, "tasks")
    running.first.locator("a").first.click()
    page.locator("table.history").wait_for()
    assert "STAGING" in page.inner_text("table.history") and \
        "RUNNING" in page.inner_text("table.history")
    screenshot(page, "task")


def test_hostile_names_and_log_lines_are_text(live, page):
    cluster = live["cluster"]
    page.goto(cluster.dashboard_url + "/tasks")
    page.locator("table.active", has_text=XSS_NAME).wait_for()
    assert page.evaluate("window.__xss") is None
    # wait for one in-place refresh, then check again
    page.locator("#conn", has_text="updated").wait_for()
    assert page.evaluate("window.__xss") is None and XSS_NAME in page.inner_text("main")
    fid = next(f["id"] for f in state(cluster)["frameworks"] if f["name"].startswith("hostile"))
    page.goto(f"{cluster.dashboard_url}/frameworks/{fid}/tasks/hostile-1")
    assert page.inner_text(".task-name") == XSS_NAME
    page.click("a.log-link >> text=stdout")
    page.locator("pre.log", has_text="from the sandbox").wait_for()
    assert LOG_LINE in page.inner_text("pre.log")
    assert page.evaluate("window.__xss") is None
    screenshot(page, "sandbox")
    for bad in ("../../../etc/passwd", "/etc/passwd", "a/../../x"):
        response = page.goto(f"{cluster.dashboard_url}/frameworks/{fid}/tasks/hostile-1/"
                             f"sandbox?path={bad}")
        assert response.status == 403 and "refused" in page.inner_text("main")
    screenshot(page, "sandbox-refused")


def test_unknown_things_are_404_pages(live, page):
    cluster = live["cluster"]
    fid = state(cluster)["frameworks"][0]["id"]
    for path in ("/agents/no-such-agent", "/frameworks/no-such-fw",
                 f"/frameworks/{fid}/tasks/no-such-task", "/no/such/page"):
        response = page.goto(cluster.dashboard_url + path)
        assert response.status == 404, path
        assert page.inner_text("h1").startswith("404"), path
    screenshot(page, "404")


def test_genetic_chart_is_live_and_matches_the_run(live, page):
    cluster = live["cluster"]
    page.goto(cluster.dashboard_url + "/genetic")
    points = page.locator("svg.fitness-chart circle.pt.best")
    points.first.wait_for(timeout=90_000)         # drawn while the run goes on (held)
    assert live["ga"].is_alive()
    fw = next(f for f in state(cluster)["frameworks"] if f["name"].startswith("genetic"))
    assert fw["status"]["state"] == "running" and fw["status"]["generation"] >= 1
    with urllib.request.urlopen(cluster.dashboard_url + "/metrics", timeout=10) as r:
        metrics = r.read().decode().splitlines()
    for name in ("offerpool_framework_genetic_generation{",
                 "offerpool_framework_genetic_evaluations_total{"):
        line = next(x for x in metrics if x.startswith(name) and fw["id"] in x)
        assert float(line.rsplit(" ", 1)[1]) >= 1
    screenshot(page, "genetic-live")
    live["ga_release"].touch()
    live["ga"].join(120)
    assert "ga" in live["out"], "the genetic run did not finish"
    result = live["out"]["ga"]
    page.reload()
    points.first.wait_for()
    doc = next(f["status"] for f in state(cluster)["completed_frameworks"]
               if f["name"].startswith("genetic"))
    last = doc["series"][-1]
    assert last["generation"] == result.generations == 60
    point = page.locator(f'svg.fitness-chart circle.pt.best[data-x="{last["generation"]}"]')
    assert float(point.get_attribute("data-y")) == last["best"] == result.best.fitness
    assert points.count() == len(doc["series"])
    screenshot(page, "genetic")


def test_metrics_cover_frameworks(live):
    live["release"].touch()
    live["job"].join(60)
    assert live["out"]["job"] == [0, 1, 2, 3]
    with urllib.request.urlopen(live["cluster"].dashboard_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    for name in ("offerpool_framework_dataflow_jobs_succeeded_total",
                 "offerpool_framework_dataflow_tasks_completed_total",
                 "offerpool_framework_dataflow_shuffle_bytes_written_total",
                 "offerpool_allocator_framework_share", "offerpool_allocator_allocated",
                 "offerpool_master_agents"):
        assert name in text, name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_master_gone_page_says_so_and_recovers(page):
    port = _free_port()
    first = LocalCluster(agents=1, http_port=port).start()
    try:
        page.goto(first.dashboard_url + "/")
        page.locator("#conn.ok").wait_for()
    finally:
        first.stop()
    page.locator("#conn.down", has_text="master unreachable").wait_for(timeout=60_000)
    screenshot(page, "master-gone")
    second = LocalCluster(agents=1, http_port=port).start()
    try:
        page.locator("#conn.ok", has_text="updated").wait_for(timeout=90_000)
        assert second.dashboard_url.endswith(str(port))
    finally:
        second.stop()
