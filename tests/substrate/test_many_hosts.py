"""Master, two agents and two frameworks as separate hosts (network namespaces on one
machine): a job runs across the hosts; one agent host is cut off past the agent timeout (its
tasks become UNREACHABLE for the partition-aware framework and LOST for the other), then comes
back, re-registers under its old id and runs work again."""
from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest

from .isolation_helpers import leaked_cgroups, offerpool_cgroups
from .netns import Network, unavailable
from .security_helpers import make_secrets

pytestmark = pytest.mark.timeout(240)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


class Proc:
    """A child process whose stdout lines (JSON) are collected for the test to wait on."""

    def __init__(self, argv: list[str], name: str, env: dict | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path[1:]]),
                   **(env or {}))
        self.name = name
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=None, text=True, env=env, cwd=str(ROOT))
        self.lines: list[dict] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.popen.stdout:  # type: ignore[union-attr]
            try:
                item = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                self.lines.append(item)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float, what: str,
                 since: int = 0) -> dict:
        """The first line from index ``since`` on that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for item in self.lines[since:]:
                    if predicate(item):
                        return item
                left = deadline - time.monotonic()
                if left <= 0 or self.popen.poll() is not None:
                    raise AssertionError(f"{self.name}: no {what}; saw {self.lines[-20:]}")
                self.cond.wait(left)

    def send(self, **command) -> None:
        self.popen.stdin.write(json.dumps(command) + "\n")  # type: ignore[union-attr]
        self.popen.stdin.flush()  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


@pytest.fixture
def network():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    net = Network(["master", "agent-a", "agent-b", "frameworks"])
    procs: list[Proc] = []
    cgroups_before = offerpool_cgroups()
    try:
        net.open()
        yield net, procs
    finally:
        for proc in reversed(procs):
            proc.stop()
        net.close()
        assert net.leftovers() == []
        assert leaked_cgroups(cgroups_before) == set()   # agents removed their cgroups


def cli(net: Network, host: str, *args: str) -> list[str]:
    return net.command(host, [sys.executable, "-m", "substrate.cli", *args, "--ready-json"])


#: Set by the test: the CA and the operator's bearer value for the master's HTTPS /state.
SECURE: dict = {}


def state(http: str) -> dict:
    request = urllib.request.Request(http + "/state",
                                     headers={"Authorization": f"Bearer {SECURE['bearer']}"})
    context = ssl.create_default_context(cafile=SECURE["ca"])
    with urllib.request.urlopen(request, timeout=10, context=context) as resp:
        return json.load(resp)


def wait_state(http: str, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
    """Poll the master's /state (another host's state: no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        current = state(http)
        if predicate(current):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {current['agents']}")
        time.sleep(0.1)


def test_job_across_hosts_partition_and_return(network, tmp_path):
    net, procs = network
    master_addr = net.addr("master")
    # Off loopback the cluster runs as it would in production: mutual TLS and tokens.
    secrets = make_secrets(str(tmp_path / "secrets"),
                           hosts=[net.addr(h) for h in ("master", "agent-a", "agent-b")])
    SECURE.update(ca=secrets.certs["ca"], bearer=f"ops:{secrets.tokens['ops']}")
    master = Proc(cli(net, "master", "master", "--host", master_addr, "--port", "5050",
                      "--http-port", "5051", "--agent-heartbeat", "1",
                      "--agent-missed-heartbeats", "5", *secrets.server_args(acls=False)),
                  "master")
    procs.append(master)
    http = master.wait_for(lambda m: "http" in m, 60, "master ready")["http"]
    assert master_addr in http
    agent_ids: dict[str, str] = {}
    for host, isolation in (("agent-a", "posix"), ("agent-b", "auto")):
        agent = Proc(cli(net, host, "agent", "--master", f"{master_addr}:5050",
                         "--host", net.addr(host), "--hostname", host,
                         "--work-dir", str(tmp_path / host), "--cpus", "2", "--mem", "512",
                         "--isolation", isolation, *secrets.server_args(acls=False)), host,
                     secrets.creds("agent1").environment())
        procs.append(agent)
        agent_ids[host] = agent.wait_for(lambda m: "agent_id" in m, 60, "agent ready")["agent_id"]
    seen = state(http)
    assert {a["hostname"] for a in seen["agents"]} == {"agent-a", "agent-b"}
    assert {a["address"].rsplit(":", 1)[0] for a in seen["agents"]} == {
        net.addr("agent-a"), net.addr("agent-b")}
    by_host = {a["hostname"]: a for a in seen["agents"]}
    assert by_host["agent-a"]["isolation"] == "posix"
    assert by_host["agent-b"]["isolation"] in ("cgroups-v1", "cgroups-v2", "posix")

    frameworks = {}
    for name, aware in (("aware", True), ("plain", False)):
        argv = [sys.executable, str(HERE / "netns_framework.py"), "--master",
                f"{master_addr}:5050", "--name", name] + (["--partition-aware"] if aware else [])
        fw = Proc(net.command("frameworks", argv), name, secrets.creds("alice").environment())
        procs.append(fw)
        fw.wait_for(lambda m: m.get("ev") == "registered", 60, "registration")
        frameworks[name] = fw

    def status(fw: Proc, task: str, state_name: str, timeout: float = 60,
               since: int = 0) -> dict:
        return fw.wait_for(lambda m: m.get("ev") == "status" and m["task"] == task
                           and m["state"] == state_name, timeout, f"{task} {state_name}", since)

    # The job: short tasks on both agents from both frameworks, and one long task per agent.
    for name, fw in frameworks.items():
        for host, aid in agent_ids.items():
            for i in range(2):
                fw.send(op="submit", id=f"{name}-{host}-{i}", cmd="echo done", agent=aid)
            fw.send(op="submit", id=f"{name}-{host}-long", cmd="sleep 600", agent=aid)
    for name, fw in frameworks.items():
        for host, aid in agent_ids.items():
            for i in range(2):
                assert status(fw, f"{name}-{host}-{i}", "FINISHED")["agent"] == aid
            status(fw, f"{name}-{host}-long", "RUNNING")

    # Cut agent-b off for longer than 5 missed heartbeats of 1 s.
    victim = agent_ids["agent-b"]
    net.cut("agent-b")
    aware, plain = frameworks["aware"], frameworks["plain"]
    got = status(aware, "aware-agent-b-long", "UNREACHABLE")
    assert got["reason"] == "AGENT_UNREACHABLE"
    got = status(plain, "plain-agent-b-long", "LOST")
    assert got["reason"] == "AGENT_UNREACHABLE"
    for fw in (aware, plain):
        fw.wait_for(lambda m: m.get("ev") == "agent_lost" and m["agent"] == victim, 30,
                    "agent_lost")
    current = state(http)
    assert [a["id"] for a in current["agents"]] == [agent_ids["agent-a"]]
    # agent-a and its tasks were never touched.
    for name, fw in frameworks.items():
        assert not any(m.get("task") == f"{name}-agent-a-long" and m["state"] != "RUNNING"
                       for m in fw.lines if m.get("ev") == "status")

    # Back on the network: agent-b re-registers under the id it had; the partition-aware
    # framework sees its task RUNNING again, the other one sees its (LOST) task killed.
    marks = {name: len(fw.lines) for name, fw in frameworks.items()}
    net.heal("agent-b")
    wait_state(http, lambda s: any(a["id"] == victim and a["connected"] for a in s["agents"]),
               90, "agent-b to re-register")
    back = status(aware, "aware-agent-b-long", "RUNNING", since=marks["aware"])
    assert back["agent"] == victim
    status(plain, "plain-agent-b-long", "KILLED", since=marks["plain"])
    aware.send(op="submit", id="aware-after", cmd="echo back", agent=victim)
    assert status(aware, "aware-after", "FINISHED", timeout=60)["agent"] == victim
