"""Notebook HTML of the cluster, a context, an RDD and a job: each links the dashboard, and
the linked pages exist."""
from __future__ import annotations

import re
import urllib.request

import pytest

from dataflow import Context
from substrate import LocalCluster

pytestmark = pytest.mark.timeout(120)


def test_reprs_link_the_dashboard():
    with LocalCluster(agents=1) as cluster:
        base = cluster.dashboard_url
        assert f'href="{base}' in cluster._repr_html_()
        with Context(cluster.master, appName="<i>reprs</i>", progress=False) as ctx:
            rdd = ctx.parallelize(range(10), 2).map(lambda x: (x % 3, x)).reduceByKey(max)
            assert sorted(rdd.collect()) == [(0, 9), (1, 7), (2, 8)]
            tracker = ctx.statusTracker()
            job = tracker.getJobInfo(tracker.getJobIdsForGroup()[-1])
            page = f"{base}/frameworks/{ctx._backend.framework_id}"
            assert ctx.dashboard_url == page
            for html in (ctx._repr_html_(), rdd._repr_html_(), job._repr_html_()):
                assert re.search(f"href=['\"]{re.escape(page)}['\"]", html), html
                assert "<i>reprs</i>" not in html
            assert job.status == "SUCCEEDED" and job.numCompletedTasks == job.numTasks == 4
            with urllib.request.urlopen(page, timeout=10) as r:
                text = r.read().decode()
            assert "&lt;i&gt;reprs&lt;/i&gt;" in text and "reduceByKey" in text
