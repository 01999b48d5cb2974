"""What a notebook user does to a running job: Ctrl-C (KeyboardInterrupt in the driver
thread, as the kernel raises it) cancels it and leaves the context usable; a kernel restart
leaves no executor processes behind."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import psutil
import pytest

from dataflow import Context
from dataflow.progress import ProgressObserver

pytestmark = pytest.mark.timeout(180)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class InterruptAtFirstTask(ProgressObserver):
    """Sends this process SIGINT from a timer thread when the job's first stage starts."""

    def __init__(self) -> None:
        self.fired = threading.Event()

    def stage_started(self, stage, done):
        if not self.fired.is_set():
            self.fired.set()
            threading.Timer(0.0, os.kill, (os.getpid(), signal.SIGINT)).start()


def held(release: str):
    def fn(x):
        import os
        import time
        deadline = time.monotonic() + 120
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.05)
        return x
    return fn


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals reach the main thread only")
def test_keyboard_interrupt_cancels_the_job_and_keeps_the_context(tmp_path):
    observer = InterruptAtFirstTask()
    with Context("local[2]", appName="interrupt", progress=observer) as ctx:
        cluster = ctx._backend.cluster
        with pytest.raises(KeyboardInterrupt):
            ctx.parallelize(range(4), 4).map(held(str(tmp_path / "never"))).collect()
        assert observer.fired.is_set()
        tracker = ctx.statusTracker()
        assert tracker.getJobInfo(0).status == "FAILED" and not tracker.getActiveJobsIds()

        def no_running_tasks() -> bool:
            fws = [f for f in cluster.state()["frameworks"] if f["name"] == "dataflow: interrupt"]
            return bool(fws) and not fws[0]["tasks"]

        wait_for(no_running_tasks, 60, "the interrupted job's tasks to be killed")
        ctx.progress = False
        assert ctx.parallelize(range(10), 2).map(lambda x: x * 2).sum() == 90
        assert tracker.getJobInfo(1).status == "SUCCEEDED"


KERNEL_CODE = """
import json, os
from dataflow import Context
ctx = Context("local[2]", progress=False)
assert ctx.parallelize(range(100), 4).sum() == 4950
pids = sorted(ctx._backend.wait_executors(2).values())
print("PIDS", json.dumps(pids))
"""


def test_kernel_restart_leaves_no_executors():
    """``restart_kernel(now=True)`` kills the kernel outright (no shutdown request, no atexit):
    the executors, left without their agent, must still go."""
    from jupyter_client.manager import KernelManager

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [ROOT, env.get("PYTHONPATH", "")] if p)
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=ROOT)
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = kc.execute_interactive(KERNEL_CODE, timeout=120, output_hook=hook)
        assert reply["content"]["status"] == "ok", "".join(out)
        line = next(x for x in "".join(out).splitlines() if x.startswith("PIDS"))
        pids = json.loads(line[4:])
        assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
        kc.stop_channels()
        km.restart_kernel(now=True)

        def gone() -> bool:
            for pid in pids:
                try:
                    if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                        return False
                except psutil.NoSuchProcess:
                    pass
            return True

        wait_for(gone, 90, f"executors {pids} to exit after the kernel restart")
    finally:
        if km.is_alive():
            km.shutdown_kernel(now=True)
