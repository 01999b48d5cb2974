"""A real ZooKeeper server for the tests (the Debian package's jars, java from the JRE).

``zookeeper`` is a session-scoped fixture: one standalone server on a free loopback port in a
temporary directory, shared by every test of the session; each test works under a path of its
own (:meth:`ZooKeeperServer.url`). Import the fixture into a test module to use it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

JAVA_DIR = "/usr/share/java"
_JARS = ["zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-simple.jar",
         "netty-handler.jar", "netty-common.jar", "netty-buffer.jar", "netty-transport.jar",
         "netty-codec.jar", "netty-resolver.jar", "netty-transport-native-epoll.jar",
         "netty-transport-native-unix-common.jar", "metrics-core.jar", "snappy-java.jar"]
#: ZooKeeper ticks of 100 ms allow sessions as short as 200 ms (the expiry tests use ~1.5 s).
TICK_MS = 100


def classpath() -> str:
    jars = [os.path.join(JAVA_DIR, j) for j in _JARS]
    return os.pathsep.join(j for j in jars if os.path.exists(j))


def available() -> bool:
    return bool(shutil.which("java")) and os.path.exists(os.path.join(JAVA_DIR, "zookeeper.jar"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ZooKeeperServer:
    """One standalone ZooKeeper process."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="zk-")
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, name: str = "") -> str:
        """A ``zk://`` URL under a path no other test uses."""
        return f"zk://{self.hosts}/offerpool-{name or 't'}-{uuid.uuid4().hex[:8]}"

    def start(self, timeout: float = 60.0) -> "ZooKeeperServer":
        cfg = os.path.join(self.dir, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(f"tickTime={TICK_MS}\ndataDir={self.dir}/data\nclientPort={self.port}\n"
                    "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                    "maxClientCnxns=0\nminSessionTimeout=200\nmaxSessionTimeout=60000\n")
        log = open(os.path.join(self.dir, "zookeeper.log"), "w")
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-cp", classpath(),
             "org.apache.zookeeper.server.ZooKeeperServerMain", cfg],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        from kazoo.client import KazooClient

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited: see {self.dir}/zookeeper.log")
            client = KazooClient(self.hosts, timeout=2)
            try:
                client.start(timeout=2)
                client.stop()
                client.close()
                return self
            except Exception:
                client.close()
                if time.monotonic() > deadline:
                    raise RuntimeError("ZooKeeper did not start") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def zookeeper():
    if not available():
        pytest.skip("ZooKeeper is not installed (Debian package `zookeeper` and a JRE; "
                    ".ci/run installs them)")
    server = ZooKeeperServer().start()
    yield server
    server.stop()


__all__ = ["ZooKeeperServer", "zookeeper", "available", "classpath"]
