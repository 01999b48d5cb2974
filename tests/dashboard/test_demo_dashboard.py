"""``offerpool demo`` prints its dashboard address, and the demo's GA run and dataflow job show
up there (with their progress) while the demo runs."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.timeout(240)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_demo_jobs_are_visible_on_the_printed_dashboard():
    proc = subprocess.Popen([sys.executable, "-m", "substrate.cli", "demo"],
                            stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "dashboard:" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(60), "".join(lines)
        url = re.search(r"dashboard: (http://\S+?)/?\s", next(
            x for x in lines if "dashboard:" in x) + " ").group(1)
        seen: dict[str, dict] = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and len(seen) < 2:
            try:
                state = json.loads(_get(url + "/state"))
            except (urllib.error.URLError, ConnectionError):
                break  # the demo ended and took its cluster with it
            for fw in state["frameworks"] + state["completed_frameworks"]:
                doc = fw.get("status") or {}
                if doc.get("kind") == "genetic" and doc.get("series"):
                    seen["genetic"] = doc
                    page = _get(url + "/genetic")
                    assert page.count('class="pt best"') >= 1
                if doc.get("kind") == "dataflow" and doc.get("jobs"):
                    seen["dataflow"] = doc
                    assert "word count" in _get(url + "/dataflow")
            time.sleep(0.1)  # polling the demo's progress, not synchronising with it
        assert set(seen) == {"genetic", "dataflow"}, (seen.keys(), "".join(lines))
        assert seen["genetic"]["generations"] == 300
        assert proc.wait(timeout=180) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
