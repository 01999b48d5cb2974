"""Shared pieces of the dashboard tests: a headless Chromium, a screenshot folder, and a
scheduler that runs one command task with a hostile name."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from substrate import (
    CommandInfo, Filters, FrameworkInfo, Resources, Scheduler, SchedulerDriver, TaskInfo,
    TaskState,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
XSS_NAME = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2>"
LOG_LINE = "<b>bold?</b> & <script>window.__xss=3</script> from the sandbox"


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    # module scope: while Playwright's sync API is open it owns this thread's event loop,
    # which would break later tests that call asyncio.run()
    path = chromium_path()
    if path is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, headless=True,
                               args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(60_000)
    yield p
    context.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


class OneCommand(Scheduler):
    """Runs one shell command as a task named ``name`` and records its states."""

    def __init__(self, name: str, command: str) -> None:
        self.name, self.command = name, command
        self.launched = False
        self.states: list = []
        self.cond = threading.Condition()

    def resource_offers(self, driver, offers):
        for offer in offers:
            if not self.launched and offer.resources.contains(Resources(cpus=0.1, mem=32)):
                self.launched = True
                driver.launch_tasks(offer.id, [TaskInfo(
                    task_id="hostile-1", agent_id=offer.agent_id, name=self.name,
                    resources=Resources(cpus=0.1, mem=32),
                    command=CommandInfo(self.command, shell=True))])
            else:
                driver.decline_offer(offer.id, Filters(refuse_seconds=60))

    def status_update(self, driver, status):
        with self.cond:
            self.states.append(status.state)
            self.cond.notify_all()

    def wait_running(self, timeout: float = 60) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: TaskState.RUNNING in self.states, timeout), \
                self.states


def start_hostile(master: str, release: Path) -> tuple[SchedulerDriver, OneCommand]:
    """A framework whose task has a script for a name and prints markup to its stdout."""
    command = (f"printf '%s\\n' '{LOG_LINE}'; "
               f"while [ ! -e '{release}' ]; do sleep 0.2; done")
    sched = OneCommand(XSS_NAME, command)
    driver = SchedulerDriver(sched, FrameworkInfo(name="hostile <i>names</i>"), master).start()
    driver.wait_registered(timeout=30)
    sched.wait_running()
    return driver, sched


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch):
    """No progress bars in these tests (set per test: other packages' tests want them)."""
    monkeypatch.setenv("OFFERPOOL_PROGRESS", "0")
