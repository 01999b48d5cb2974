"""Frameworks' status documents: published through the driver, checked and kept by the master,
shown in /state and exported on /metrics; bad documents are refused without harm."""
from __future__ import annotations

import threading
import time
import urllib.request

import pytest
from hypothesis import given, settings, strategies as st

from substrate import FrameworkInfo, InvalidRequest, LocalCluster, Scheduler, SchedulerDriver
from substrate.framework_status import MAX_STATUS_BYTES, parse_status
from substrate.v1 import pb

pytestmark = pytest.mark.timeout(120)


class Errors(Scheduler):
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.cond = threading.Condition()

    def error(self, driver, message):
        with self.cond:
            self.errors.append(message)
            self.cond.notify_all()

    def wait_errors(self, n: int, timeout: float = 30) -> list[str]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.errors) >= n, timeout), self.errors
            return list(self.errors)


def wait_for(predicate, timeout: float = 30.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(agents=1) as c:
        yield c


def _status_of(cluster, name):
    for fw in cluster.state()["frameworks"]:
        if fw["name"] == name:
            return fw["status"]
    return None


def test_published_status_reaches_state_and_metrics(cluster):
    driver = SchedulerDriver(Scheduler(), FrameworkInfo(name="reporter"), cluster.master).start()
    try:
        driver.wait_registered(timeout=30)
        doc = {"kind": "custom", "phase": "<loading>", "metrics": {"items_total": 7, "queue": 2.5}}
        driver.publish_status(doc)
        assert wait_for(lambda: _status_of(cluster, "reporter"), what="the status") == doc
        with urllib.request.urlopen(cluster.dashboard_url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        lines = text.splitlines()
        assert any(line.startswith("# TYPE offerpool_framework_items") and
                   line.endswith("counter") for line in lines)
        items = [x for x in lines if x.startswith("offerpool_framework_items_total{")]
        queue = [x for x in lines if x.startswith("offerpool_framework_queue{")]
        assert len(items) == 1 and 'framework="reporter"' in items[0] and \
            items[0].endswith(" 7.0")
        assert len(queue) == 1 and 'kind="custom"' in queue[0] and queue[0].endswith(" 2.5")
        # the framework page shows an unknown kind as JSON, escaped
        fid = driver.framework_id
        with urllib.request.urlopen(f"{cluster.dashboard_url}/frameworks/{fid}", timeout=10) as r:
            page = r.read().decode()
        assert "&lt;loading&gt;" in page and "<loading>" not in page
    finally:
        driver.stop()
    # a removed framework keeps its last status among the completed ones
    done = [f for f in cluster.state()["completed_frameworks"] if f["name"] == "reporter"]
    assert done and done[0]["status"]["phase"] == "<loading>"


def test_driver_refuses_bad_documents_locally(cluster):
    driver = SchedulerDriver(Scheduler(), FrameworkInfo(name="local-checks"), cluster.master)
    driver.start()
    try:
        driver.wait_registered(timeout=30)
        for bad in ({"x": float("nan")}, {"x": object()}, [1, 2],
                    {"blob": "x" * (MAX_STATUS_BYTES + 1)}):
            with pytest.raises(InvalidRequest):
                driver.publish_status(bad)  # type: ignore[arg-type]
    finally:
        driver.stop()


def test_master_refuses_bad_documents_and_keeps_the_last_good_one(cluster):
    sched = Errors()
    driver = SchedulerDriver(sched, FrameworkInfo(name="bad-status"), cluster.master).start()
    try:
        driver.wait_registered(timeout=30)
        driver.publish_status({"kind": "ok", "n": 1})
        wait_for(lambda: _status_of(cluster, "bad-status"), what="the good status")
        raw = ["not json", "[1, 2]", '{"x": NaN}', '{"metrics": {"bad name": 1}}',
               '{"metrics": {"x": "1"}}', "[" * 5000 + "]" * 5000,
               '{"a":' * 20 + "1" + "}" * 20, '{"x": "' + "y" * MAX_STATUS_BYTES + '"}']
        for text in raw:
            driver._send(pb.Call(type=pb.Call.PUBLISH_STATUS,
                                 status=pb.FrameworkStatus(json=text)))
        errors = sched.wait_errors(len(raw))
        assert all("status" in e or "metric" in e for e in errors), errors
        assert _status_of(cluster, "bad-status") == {"kind": "ok", "n": 1}
        assert driver.running  # refused calls are not fatal
    finally:
        driver.stop()


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=4),
    max_leaves=20).map(lambda v: __import__("json").dumps(v))))
def test_parse_status_only_ever_refuses(text):
    try:
        doc = parse_status(text)
    except InvalidRequest:
        return
    assert isinstance(doc, dict)
