"""Files executors leave on an agent, read from another process through the agent."""
from __future__ import annotations

import threading
import time

import pytest

import substrate
from substrate import LocalCluster, TaskState

from .cluster_helpers import Recorder, start


def eventually(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        threading.Event().wait(0.05)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(agents=1, cpus=2, mem=1024) as c:
        yield c


def test_framework_files_outlive_the_executor_and_go_with_the_framework(cluster):
    rec = Recorder()
    driver = start(cluster.master, rec)
    fid = driver.framework_id
    try:
        rec.submit(driver, "w", kind="executor", payload=b"write:out/block-0:hello blocks")
        address = rec.wait_state("w", TaskState.FINISHED).data.decode()
        assert substrate.read_agent_file(address, fid, "out/block-0") == b"hello blocks"
        assert substrate.read_agent_file(address, fid, "out/block-0", offset=6, length=3) == b"blo"
        chunks = list(substrate.iter_agent_file(address, fid, "out/block-0"))
        assert b"".join(chunks) == b"hello blocks"
        stdout = substrate.read_agent_file(address, fid, "stdout", sandbox="test-executor")
        assert b"wrote out/block-0" in stdout
        with pytest.raises(substrate.RemoteFileNotFound):
            substrate.read_agent_file(address, fid, "out/missing")
    finally:
        driver.stop()
    eventually(lambda: _gone(address, fid, "out/block-0"))


def _gone(address, fid, path) -> bool:
    try:
        substrate.read_agent_file(address, fid, path)
    except substrate.RemoteFileNotFound:
        return True
    return False


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "escape", "a/../../x", ""])
def test_reads_are_confined_to_the_framework_area(cluster, path):
    rec = Recorder()
    driver = start(cluster.master, rec)
    try:
        rec.submit(driver, "l", kind="executor", payload=b"write:link:x")
        address = rec.wait_state("l", TaskState.FINISHED).data.decode()
        with pytest.raises(substrate.InvalidRequest):
            substrate.read_agent_file(address, driver.framework_id, path)
        with pytest.raises(substrate.InvalidRequest):
            substrate.read_agent_file(address, "../" + driver.framework_id, "link")
    finally:
        driver.stop()
