"""Security end to end: a master and an agent as real processes with tokens, TLS, mutual TLS
and an ACL policy; schedulers, operators and file readers as real gRPC clients."""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from substrate import (
    AccessDenied, AuthenticationError, ConnectionLost, FrameworkInfo, SchedulerDriver,
    SubstrateError, TaskState, read_agent_file,
)

from .cluster_helpers import Recorder
from .security_helpers import Daemon, make_secrets


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    secrets = make_secrets(str(tmp_path_factory.mktemp("secrets")))
    work = str(tmp_path_factory.mktemp("agent"))
    master = Daemon(["master", "--port", "0", "--http-port", "0", "--agent-heartbeat", "0.5",
                     *secrets.server_args()], dict(os.environ))
    address = master.wait_ready()["address"]
    agent = Daemon(["agent", "--master", address, "--work-dir", work, "--cpus", "2",
                    "--mem", "1024", *secrets.server_args()], secrets.env("agent1"))
    try:
        agent.wait_ready()
        yield secrets, master, agent
    finally:
        agent.stop()
        master.stop()


def _driver(secrets, master, principal, token=None, *, role="analytics", user=None,
            tls=True, framework_id="", recorder=None):
    if user is None:    # alice runs real executors: as the agent's own user (see the policy)
        user = "" if principal == "alice" else "nobody"
    recorder = recorder or Recorder()
    info = FrameworkInfo(name=f"fw-{principal}", role=role, user=user, id=framework_id)
    creds = secrets.creds(principal, token, tls=tls)
    driver = SchedulerDriver(recorder, info, master.info["address"], credentials=creds,
                             reconnect_timeout=30)
    driver.start()
    return driver, recorder


def _state(secrets, master, principal="ops"):
    """``offerpool status --json`` with the principal's credentials in its environment."""
    return subprocess.run([sys.executable, "-m", "substrate.cli", "status", "--json",
                           "--master", master.info["address"]], env=secrets.env(principal),
                          capture_output=True, text=True, timeout=60)


def test_authenticated_tls_framework_runs_a_task_in_an_executor(secured):
    secrets, master, agent = secured
    driver, rec = _driver(secrets, master, "alice")
    try:
        fid = driver.wait_registered(timeout=30)
        rec.submit(driver, "t1", kind="executor", payload=b"finish")
        status = rec.wait_state("t1", TaskState.FINISHED, timeout=60)
        assert status.data.isdigit()  # the executor's pid: it ran, behind TLS and tokens
        state = json.loads(_state(secrets, master).stdout)
        fw = next(f for f in state["frameworks"] if f["id"] == fid)
        assert fw["principal"] == "alice"  # the authenticated principal, not a claimed one
        assert [a["hostname"] for a in state["agents"]]  # agent1 registered over mTLS
    finally:
        driver.stop()


@pytest.mark.parametrize("token,needle", [("not-the-token", "wrong token"),
                                          ("", "wrong token")])
def test_wrong_and_missing_tokens_are_refused_and_master_keeps_serving(secured, token, needle):
    secrets, master, _ = secured
    bad, rec = _driver(secrets, master, "alice", token)
    with pytest.raises(AuthenticationError, match=needle):
        bad.wait_registered(timeout=30)
    assert bad.join(10) and rec.errors
    good, _ = _driver(secrets, master, "bob", role="batch")
    try:
        assert good.wait_registered(timeout=30).startswith("fw-")
    finally:
        good.stop()


def test_no_credentials_and_expired_tokens_are_refused(secured):
    secrets, master, _ = secured
    anonymous = SchedulerDriver(Recorder(), FrameworkInfo(name="anon", role="analytics"),
                                master.info["address"],
                                credentials=secrets.creds("", "", tls=True))
    anonymous.start()
    with pytest.raises(AuthenticationError, match="no credentials"):
        anonymous.wait_registered(timeout=30)
    late, _ = _driver(secrets, master, "late")
    with pytest.raises(AuthenticationError, match="expired"):
        late.wait_registered(timeout=30)


def test_plaintext_client_cannot_talk_to_a_tls_master(secured):
    secrets, master, _ = secured
    driver, _ = _driver(secrets, master, "alice", tls=False)
    driver.reconnect_timeout = 2
    with pytest.raises(SubstrateError):
        driver.wait_registered(timeout=30)


def test_acl_register_frameworks_denies_a_role(secured):
    secrets, master, _ = secured
    driver, rec = _driver(secrets, master, "bob", role="analytics")
    with pytest.raises(AccessDenied, match="register frameworks.*'analytics'"):
        driver.wait_registered(timeout=30)
    assert any("analytics" in e for e in rec.errors)


def test_acl_run_tasks_denies_root_and_the_default_user(secured):
    secrets, master, _ = secured
    for user in ("root", ""):     # bob may run tasks as any user ("*"), never as root
        driver, _ = _driver(secrets, master, "bob", role="batch", user=user)
        with pytest.raises(AccessDenied, match="run tasks.*'root'"):
            driver.wait_registered(timeout=30)


def test_a_framework_cannot_be_taken_over_by_another_principal(secured):
    secrets, master, _ = secured
    owner, _ = _driver(secrets, master, "alice")
    try:
        fid = owner.wait_registered(timeout=30)
        thief, _ = _driver(secrets, master, "bob", role="batch", framework_id=fid)
        with pytest.raises(AccessDenied, match="belongs to another principal"):
            thief.wait_registered(timeout=30)
        assert owner.running  # the owner's subscription was not replaced
    finally:
        owner.stop()


def test_acl_view_state_over_grpc_and_http(secured):
    secrets, master, _ = secured
    assert _state(secrets, master, "ops").returncode == 0
    denied = _state(secrets, master, "alice")
    assert denied.returncode == 1 and "view state" in denied.stderr
    url = master.info["http"] + "/state"
    assert url.startswith("https://")
    tls = ssl.create_default_context(cafile=secrets.certs["ca"])

    def get(token_of: str | None) -> int:
        request = urllib.request.Request(url.replace("127.0.0.1", "localhost"))
        if token_of:
            request.add_header("Authorization", f"Bearer {token_of}:{secrets.tokens[token_of]}")
        try:
            with urllib.request.urlopen(request, timeout=30, context=tls) as reply:
                assert "frameworks" in json.loads(reply.read())
                return reply.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert (get("ops"), get("alice"), get(None)) == (200, 403, 401)


def test_acl_teardown_frameworks(secured):
    secrets, master, _ = secured
    victim, rec = _driver(secrets, master, "bob", role="batch")
    try:
        fid = victim.wait_registered(timeout=30)
        run = [sys.executable, "-m", "substrate.cli", "teardown", fid,
               "--master", master.info["address"]]
        refused = subprocess.run(run, env=secrets.env("alice"), capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode == 1 and "teardown frameworks" in refused.stderr
        assert victim.running
        done = subprocess.run(run, env=secrets.env("ops"), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert victim.join(30)  # the master closed the torn-down framework's stream
        state = json.loads(_state(secrets, master).stdout)
        assert fid not in [f["id"] for f in state["frameworks"]]
    finally:
        victim.stop()


def test_acl_read_sandboxes_and_mutual_tls(secured):
    secrets, master, _ = secured
    driver, rec = _driver(secrets, master, "alice")
    try:
        fid = driver.wait_registered(timeout=30)
        rec.submit(driver, "w1", kind="executor", payload=b"write:note.txt:secret data")
        address = rec.wait_state("w1", TaskState.FINISHED, timeout=60).data.decode()
        assert read_agent_file(address, fid, "note.txt",
                               credentials=secrets.creds("alice")) == b"secret data"
        assert read_agent_file(address, fid, "note.txt",
                               credentials=secrets.creds("ops")) == b"secret data"
        with pytest.raises(AccessDenied, match="read sandboxes"):
            read_agent_file(address, fid, "note.txt", credentials=secrets.creds("bob"))
        with pytest.raises(AuthenticationError, match="wrong token"):
            read_agent_file(address, fid, "note.txt",
                            credentials=secrets.creds("alice", "forged"))
        with pytest.raises(ConnectionLost):  # no client certificate: the handshake fails
            read_agent_file(address, fid, "note.txt", timeout=10,
                            credentials=secrets.creds("alice", client_cert=False))
    finally:
        driver.stop()


def test_acl_register_agents_and_agent_tokens(secured, tmp_path):
    secrets, master, _ = secured
    address = master.info["address"]
    common = ["agent", "--master", address, "--cpus", "1", "--mem", "256"]
    rogue = Daemon([*common, "--work-dir", str(tmp_path / "rogue")], secrets.env("rogue-agent"))
    wrong = dict(secrets.env("agent1"), OFFERPOOL_TOKEN="guess")
    guesser = Daemon([*common, "--work-dir", str(tmp_path / "guess")], wrong)
    try:
        assert "register agents" in rogue.wait_stderr("refused this agent")
        assert "wrong token" in guesser.wait_stderr("refused this agent")
        state = json.loads(_state(secrets, master).stdout)
        assert len(state["agents"]) == 1
    finally:
        rogue.stop()
        guesser.stop()


@pytest.mark.parametrize("daemon", ["master", "agent"])
def test_non_loopback_bind_needs_credentials_or_the_insecure_flag(tmp_path, daemon):
    args = [sys.executable, "-m", "substrate.cli", "-v", daemon, "--host", "0.0.0.0",
            "--port", "0"]
    if daemon == "agent":
        args += ["--master", "127.0.0.1:1", "--work-dir", str(tmp_path)]
    else:
        args += ["--http-port", "-1"]
    refused = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "--insecure-allow-unauthenticated" in refused.stderr
    ok = Daemon([*args[3:], "--insecure-allow-unauthenticated"], dict(os.environ))
    try:
        if daemon == "master":
            assert ok.wait_ready()["address"].startswith("0.0.0.0:")
        else:
            ok.wait_stderr("serving executors on")
    finally:
        ok.stop()
