"""The security building blocks on their own: the credentials file, ACL matching, sealed
payloads, the certificate authority, bind rules and the master's status-data cap."""
from __future__ import annotations

import json
import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings, strategies as st

from substrate import AccessDenied, AuthenticationError, PayloadKey, PayloadRejected
from substrate.errors import ClusterError, InvalidRequest
from substrate.master import validation
from substrate.security.acl import Policy
from substrate.security.certs import init_ca
from substrate.security.client import Credentials, is_loopback
from substrate.security.server import ServerSecurity
from substrate.security.tokens import CredentialStore, add_principal
from substrate.v1 import pb


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_credentials_file_is_private_and_holds_no_token(tmp_path):
    path = str(tmp_path / "creds.json")
    token = add_principal(path, "alice", "framework")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = open(path).read()
    assert token not in text and json.loads(text)["principals"]["alice"]["kind"] == "framework"
    principal = CredentialStore.load(path).verify(f"Bearer alice:{token}")
    assert (principal.name, principal.kind) == ("alice", "framework")


def test_missing_malformed_unknown_wrong_and_expired_tokens(tmp_path):
    path = str(tmp_path / "creds.json")
    token = add_principal(path, "svc", "operator", expires=1000.0)
    clock = Clock(999.0)
    store = CredentialStore.load(path, clock)
    assert store.verify(f"Bearer svc:{token}").name == "svc"
    cases = {None: "no credentials", "": "no credentials", "Basic abc": "malformed",
             "Bearer svc": "malformed", f"Bearer nobody:{token}": "unknown principal",
             "Bearer svc:nope": "wrong token"}
    for value, needle in cases.items():
        with pytest.raises(AuthenticationError, match=needle):
            store.verify(value)
    clock.now = 1000.0
    with pytest.raises(AuthenticationError, match="expired"):
        store.verify(f"Bearer svc:{token}")


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=0, max_size=60))
def test_no_other_token_is_accepted(guess):
    store = CredentialStore({"a": {"kind": "agent", "salt": "00" * 16,
                                   "sha256": __import__("hashlib").sha256(
                                       bytes(16) + b"the-token").hexdigest()}})
    if guess == "the-token":
        assert store.verify("Bearer a:the-token").name == "a"
    else:
        with pytest.raises(AuthenticationError):
            store.verify(f"Bearer a:{guess}")


def test_bad_credentials_files_get_clear_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidRequest, match="not JSON"):
        CredentialStore.load(str(bad))
    bad.write_text(json.dumps({"principals": {"x": {"kind": "king", "salt": "", "sha256": ""}}}))
    with pytest.raises(InvalidRequest, match="kind must be one of"):
        CredentialStore.load(str(bad))
    with pytest.raises(InvalidRequest, match="invalid principal name"):
        add_principal(str(tmp_path / "c.json"), "a:b", "agent")


POLICY = {
    "register_frameworks": [{"principals": ["eve"], "roles": ["*"], "allow": False},
                            {"principals": ["*"], "roles": ["analytics"]}],
    "run_tasks": [{"principals": ["admin"], "users": ["root"]},
                  {"principals": ["*"], "users": ["*"]}],
    "teardown_frameworks": [{"principals": ["ops"], "framework_principals": ["alice"]}],
    "view_state": [{"principals": ["ops", "alice"]}],
    "read_sandboxes": [{"principals": ["alice"], "framework_principals": ["alice"]}],
    "register_agents": [{"principals": ["agent1"]}],
}


@pytest.mark.parametrize("action,principal,obj,allowed", [
    ("register_frameworks", "alice", "analytics", True),
    ("register_frameworks", "alice", "finance", False),
    ("register_frameworks", "eve", "analytics", False),      # first match wins: the deny
    ("run_tasks", "alice", "nobody", True),
    ("run_tasks", "alice", "root", False),                   # "*" never means root
    ("run_tasks", "admin", "root", True),
    ("teardown_frameworks", "ops", "alice", True),
    ("teardown_frameworks", "ops", "bob", False),
    ("teardown_frameworks", "alice", "alice", False),
    ("view_state", "alice", None, True),
    ("view_state", "bob", None, False),
    ("read_sandboxes", "alice", "alice", True),
    ("read_sandboxes", "alice", "bob", False),
    ("register_agents", "agent1", None, True),
    ("register_agents", "agent2", None, False),
])
def test_acl_each_action(action, principal, obj, allowed):
    policy = Policy.from_dict(POLICY)
    assert policy.allows(action, principal, obj) is allowed
    if not allowed:
        with pytest.raises(AccessDenied, match=principal):
            policy.check(action, principal, obj)


def test_acl_files_toml_and_json_and_their_errors(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text('[[view_state]]\nprincipals = ["ops"]\n')
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"view_state": [{"principals": ["ops"]}]}))
    for path in (toml, js):
        policy = Policy.load(str(path))
        assert policy.allows("view_state", "ops") and not policy.allows("run_tasks", "ops", "x")
    for text, needle in (('[[fly]]\nprincipals=["a"]', "unknown ACL action"),
                         ('[[run_tasks]]\nprincipals=["a"]', "needs 'users'"),
                         ('[[view_state]]\nprincipals=["a"]\nallow="yes"', "true or false"),
                         ("[[view_state", "does not parse")):
        toml.write_text(text)
        with pytest.raises(InvalidRequest, match=needle):
            Policy.load(str(toml))


def test_sealed_payloads_refuse_forgeries():
    key, other = PayloadKey.generate(), PayloadKey.generate()
    blob = key.seal(b"data", purpose=b"task")
    assert key.open(blob, purpose=b"task") == b"data"
    for forged, purpose in ((other.seal(b"data", b"task"), b"task"),   # another framework
                            (blob, b"result"),                          # replayed elsewhere
                            (blob[:10], b"task"), (b"", b"task"),       # truncated
                            (blob[:-1] + b"!", b"task")):               # tampered
        with pytest.raises(PayloadRejected):
            key.open(forged, purpose=purpose)
    assert "secret" in repr(key) and key.environment()["OFFERPOOL_PAYLOAD_KEY"] not in repr(key)


def test_certs_init_builds_a_chain(tmp_path):
    paths = init_ca(str(tmp_path), hosts=["10.1.2.3", "node-a"])
    ca = x509.load_pem_x509_certificate(open(paths["ca"], "rb").read())
    for name in ("server", "client"):
        cert = x509.load_pem_x509_certificate(open(paths[name], "rb").read())
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                               ec.ECDSA(cert.signature_hash_algorithm))
        assert cert.issuer == ca.subject
        assert stat.S_IMODE(os.stat(paths[f"{name}_key"]).st_mode) == 0o600
    san = x509.load_pem_x509_certificate(open(paths["server"], "rb").read()).extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value
    assert "node-a" in san.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} >= {"10.1.2.3",
                                                                              "127.0.0.1"}
    with pytest.raises(InvalidRequest, match="already holds"):
        init_ca(str(tmp_path))


def test_bind_rules_and_plaintext_tokens(tmp_path):
    for host in ("127.0.0.1", "localhost", "::1", "[::1]:5050"):
        assert is_loopback(host)
        ServerSecurity().check_bind(host, "master")
    for host in ("0.0.0.0", "10.0.0.1", "example.org"):
        assert not is_loopback(host)
        with pytest.raises(ClusterError, match="insecure-allow-unauthenticated"):
            ServerSecurity().check_bind(host, "master")
        ServerSecurity(insecure=True).check_bind(host, "master")
    with pytest.raises(ClusterError, match="ACLs need"):
        ServerSecurity(policy=Policy.from_dict({})).check_bind("127.0.0.1", "agent")
    with pytest.raises(AuthenticationError, match="plaintext"):
        Credentials("a", "t").check_target("10.0.0.1:5050")
    Credentials("a", "t", insecure=True).check_target("10.0.0.1:5050")
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    creds = Credentials.from_environment({"OFFERPOOL_PRINCIPAL": "p",
                                          "OFFERPOOL_TOKEN_FILE": str(token_file)})
    assert creds.metadata == (("authorization", "Bearer p:from-file"),)


def test_master_drops_oversized_status_data_but_keeps_the_update():
    status = pb.TaskStatus(task_id="t", state=pb.TaskStatus.FINISHED, data=b"x" * 101,
                           message="done")
    validation.cap_status_data(status, 100)
    assert status.data == b"" and status.state == pb.TaskStatus.FINISHED
    assert "101 bytes dropped" in status.message
    small = pb.TaskStatus(task_id="t", data=b"x" * 100)
    validation.cap_status_data(small, 100)
    assert len(small.data) == 100


def test_master_core_caps_status_data_from_agents():
    from .master_helpers import drain, events, make_core, register_agent, subscribe

    core, _ = make_core(max_payload=64)
    aid, fid = register_agent(core), subscribe(core)
    drain(core)
    core.agent_update(aid, [pb.TaskStatus(task_id="t", framework_id=fid, uuid=b"u",
                                          state=pb.TaskStatus.RUNNING, data=b"y" * 65)])
    [update] = events(drain(core), fid, pb.Event.UPDATE)
    [status] = update.update.statuses
    assert status.state == pb.TaskStatus.RUNNING and status.data == b""
    assert "over the cap of 64 bytes" in status.message
