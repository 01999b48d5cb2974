"""The agent's fetcher: URIs fetched into the sandbox before launch, against a real HTTP server.

End-to-end cases launch real command tasks through a real master and agent; the unit cases
call the fetcher directly on real files. Every archive case also checks that nothing was
written outside the sandbox.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from substrate import (
    CommandInfo, FetchURI, Filters, FrameworkInfo, LocalCluster, Reason, Resources, Scheduler,
    SchedulerDriver, TaskInfo, TaskState, read_agent_file,
)
from substrate.agent.fetcher import FetchError, FetcherConfig, fetch_all

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A directory served by a local HTTP server: (directory, base URL)."""
    root = tmp_path_factory.mktemp("served")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tar_with(members: dict[str, bytes], links: dict[str, str] = {}) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def _zip_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# ---------------------------------------------------------------------- through an agent

class _Launcher(Scheduler):
    """Launches queued command tasks on offers; lets the test wait for terminal statuses."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queue: list[tuple[str, CommandInfo]] = []
        self.final: dict = {}

    def add(self, driver: SchedulerDriver, task_id: str, command: CommandInfo) -> None:
        with self.cond:
            self.queue.append((task_id, command))
        driver.revive_offers()

    def resource_offers(self, driver, offers):
        with self.cond:
            for offer in offers:
                batch = [TaskInfo(task_id=tid, agent_id=offer.agent_id,
                                  resources=Resources(cpus=0.1, mem=32), command=cmd)
                         for tid, cmd in self.queue]
                self.queue.clear()
                if batch:
                    driver.launch_tasks(offer.id, batch)
                else:
                    driver.decline_offer(offer.id, Filters(refuse_seconds=60))

    def status_update(self, driver, status):
        if status.state.is_terminal:
            with self.cond:
                self.final[status.task_id] = status
                self.cond.notify_all()

    def wait(self, task_id: str, timeout: float = 60.0):
        with self.cond:
            assert self.cond.wait_for(lambda: task_id in self.final, timeout), task_id
            return self.final[task_id]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalCluster(agents=1, cpus=2, mem=1024,
                      work_dir=str(tmp_path_factory.mktemp("cluster"))) as c:
        sched = _Launcher()
        driver = SchedulerDriver(sched, FrameworkInfo(name="fetch-test"), c.master)
        driver.start()
        driver.wait_registered(timeout=30)
        yield c, driver, sched
        driver.stop()


def _run(cluster, task_id: str, shell: str, uris: list[FetchURI]):
    c, driver, sched = cluster
    sched.add(driver, task_id, CommandInfo(shell, shell=True, uris=uris))
    return sched.wait(task_id)


def _stdout(cluster, status) -> bytes:
    c, driver, _ = cluster
    agent = c.agents[0]
    return read_agent_file(agent.address, driver.framework_id, "stdout", sandbox=status.task_id)


def test_http_uri_with_checksum_reaches_the_sandbox_before_launch(cluster, served):
    root, base = served
    (root / "words.txt").write_bytes(b"alpha beta\n")
    status = _run(cluster, "fetch-ok", "cat words.txt",
                  [FetchURI(base + "words.txt", sha256=_sha(b"alpha beta\n"))])
    assert status.state == TaskState.FINISHED, status.message
    assert _stdout(cluster, status) == b"alpha beta\n"


def test_archive_is_extracted_and_executable_flag_kept(cluster, served):
    root, base = served
    (root / "bundle.tar.gz").write_bytes(_tar_with({"bundle/data/a.txt": b"from tar\n"}))
    (root / "tool.sh").write_bytes(b"#!/bin/sh\necho tool ran\n")
    status = _run(cluster, "fetch-archive", "cat bundle/data/a.txt && ./tool.sh",
                  [FetchURI(base + "bundle.tar.gz", extract=True),
                   FetchURI(base + "tool.sh", executable=True)])
    assert status.state == TaskState.FINISHED, status.message
    assert _stdout(cluster, status) == b"from tar\ntool ran\n"


def test_a_404_fails_the_task_naming_the_uri(cluster, served):
    _, base = served
    status = _run(cluster, "fetch-404", "true", [FetchURI(base + "missing.bin")])
    assert status.state == TaskState.FAILED
    assert status.reason == Reason.FETCH_FAILED
    assert base + "missing.bin" in status.message and "404" in status.message


def test_a_wrong_checksum_fails_the_task(cluster, served):
    root, base = served
    (root / "payload.bin").write_bytes(b"real bytes")
    status = _run(cluster, "fetch-sha", "true",
                  [FetchURI(base + "payload.bin", sha256=_sha(b"other bytes"))])
    assert status.state == TaskState.FAILED
    assert status.reason == Reason.FETCH_FAILED
    assert "checksum mismatch" in status.message and "payload.bin" in status.message


def test_an_archive_with_dotdot_entries_fails_and_writes_nothing_outside(cluster, served):
    root, base = served
    c, driver, _ = cluster
    (root / "evil.zip").write_bytes(_zip_with({"ok.txt": b"fine", "../../escaped.txt": b"x"}))
    status = _run(cluster, "fetch-evil", "true", [FetchURI(base + "evil.zip", extract=True)])
    assert status.state == TaskState.FAILED
    assert status.reason == Reason.FETCH_FAILED
    assert "evil.zip" in status.message and "../../escaped.txt" in status.message
    work = Path(c.work_dir)
    assert not list(work.rglob("escaped.txt"))
    assert not list(work.rglob("ok.txt"))  # refused as a whole, before unpacking


# ---------------------------------------------------------------------- the fetcher itself

def _config(tmp_path: Path, **kw) -> FetcherConfig:
    return FetcherConfig(cache_dir=str(tmp_path / "cache"), **kw)


def test_cache_serves_a_second_fetch_when_the_origin_is_gone(tmp_path, served):
    root, base = served
    data = b"cached content"
    (root / "cached.txt").write_bytes(data)
    uri = FetchURI(base + "cached.txt", sha256=_sha(data), cache=True)
    fetch_all([uri], tmp_path / "box1", _config(tmp_path))
    (root / "cached.txt").unlink()
    fetch_all([uri], tmp_path / "box2", _config(tmp_path))
    assert (tmp_path / "box2" / "cached.txt").read_bytes() == data
    with pytest.raises(FetchError, match="404"):
        fetch_all([FetchURI(base + "cached.txt")], tmp_path / "box3", _config(tmp_path))


def test_size_cap_refuses_a_large_download(tmp_path, served):
    root, base = served
    (root / "big.bin").write_bytes(b"x" * 5000)
    with pytest.raises(FetchError, match="big.bin.*4096 byte limit"):
        fetch_all([FetchURI(base + "big.bin")], tmp_path / "box", _config(tmp_path,
                                                                        max_bytes=4096))
    assert not (tmp_path / "box" / "big.bin").exists()
    assert not [p for p in (tmp_path / "box").iterdir()]  # no temporary left behind


def test_extracted_size_cap(tmp_path):
    src = tmp_path / "bomb.zip"
    src.write_bytes(_zip_with({"zeros": b"\0" * 100_000}))
    with pytest.raises(FetchError, match="more than 1000 bytes"):
        fetch_all([FetchURI(str(src), extract=True)], tmp_path / "box",
                  _config(tmp_path, max_extracted_bytes=1000))
    assert not (tmp_path / "box" / "zeros").exists()


@pytest.mark.parametrize("archive, message", [
    (_tar_with({"/etc/owned": b"x"}), "absolute path"),
    (_tar_with({"a/../../up": b"x"}), r"'\.\.'"),
    (_tar_with({}, links={"link": "/etc"}), "absolute path '/etc'"),
    (_tar_with({}, links={"d/link": "../../outside"}), "points outside"),
])
def test_unsafe_tar_members_are_refused(tmp_path, archive, message):
    src = tmp_path / "bad.tar.gz"
    src.write_bytes(archive)
    box = tmp_path / "nested" / "box"
    with pytest.raises(FetchError, match=message):
        fetch_all([FetchURI(str(src), extract=True)], box, _config(tmp_path))
    assert sorted(p.name for p in box.iterdir()) == ["bad.tar.gz"]
    assert not (tmp_path / "outside").exists() and not (tmp_path / "up").exists()


def test_links_inside_the_archive_are_kept(tmp_path):
    src = tmp_path / "fine.tar.gz"
    src.write_bytes(_tar_with({"pkg/real.txt": b"real"}, links={"pkg/alias.txt": "real.txt"}))
    fetch_all([FetchURI(str(src), extract=True)], tmp_path / "box", _config(tmp_path))
    assert (tmp_path / "box" / "pkg" / "alias.txt").read_bytes() == b"real"


def test_missing_file_uri_and_bad_scheme_name_the_uri(tmp_path):
    with pytest.raises(FetchError, match="file:///no/such/file"):
        fetch_all([FetchURI("file:///no/such/file")], tmp_path / "box", _config(tmp_path))
    with pytest.raises(FetchError, match="ftp://host/x"):
        fetch_all([FetchURI("ftp://host/x")], tmp_path / "box", _config(tmp_path))
    with pytest.raises(FetchError, match="as a file name"):
        fetch_all([FetchURI("http://host/x", output_file="../x")], tmp_path / "box",
                  _config(tmp_path))
    assert not os.path.exists(tmp_path / "x")


def test_offerpool_logs_finds_a_task_through_the_master(cluster, served, tmp_path):
    import subprocess
    import sys
    root, base = served
    (root / "shout.txt").write_bytes(b"loud line\n")
    status = _run(cluster, "logs-task", "cat shout.txt; echo to-stderr >&2",
                  [FetchURI(base + "shout.txt")])
    assert status.state == TaskState.FINISHED, status.message
    c, _, _ = cluster
    env = dict(os.environ, OFFERPOOL_STATE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "substrate.cli", "logs", "logs-task", "--follow",
                        "--master", c.master], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "loud line\n" and r.stderr == "to-stderr\n"
