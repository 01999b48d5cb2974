"""A secured cluster for the security tests: credentials, certificates and an ACL policy on
disk, then a master and an agent as real ``offerpool`` processes with TLS, mutual TLS, tokens
and ACLs all on."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from substrate import Credentials
from substrate.security.certs import init_ca
from substrate.security.tokens import add_principal

POLICY = """
[[register_frameworks]]
principals = ["alice"]
roles = ["analytics"]

[[register_frameworks]]
principals = ["bob"]
roles = ["batch"]

[[run_tasks]]             # alice's executors run as the agent's own user (root, by name):
principals = ["alice"]    # the test interpreter may not be reachable by any other user
users = ["root"]

[[run_tasks]]
principals = ["alice", "bob"]
users = ["*"]

[[teardown_frameworks]]
principals = ["ops"]
framework_principals = ["*"]

[[view_state]]
principals = ["ops"]

[[read_sandboxes]]
principals = ["alice"]
framework_principals = ["alice"]

[[read_sandboxes]]
principals = ["ops"]
framework_principals = ["*"]

[[register_agents]]
principals = ["agent1"]
"""


@dataclass
class Secrets:
    dir: str
    certs: dict
    credentials: str
    acls: str
    tokens: dict = field(default_factory=dict)

    def creds(self, principal: str, token: str | None = None, *, tls: bool = True,
              client_cert: bool = True) -> Credentials:
        return Credentials(principal, self.tokens.get(principal, "") if token is None else token,
                           ca=self.certs["ca"] if tls else "",
                           cert=self.certs["client"] if tls and client_cert else "",
                           key=self.certs["client_key"] if tls and client_cert else "")

    def env(self, principal: str) -> dict:
        env = dict(os.environ)
        env.update(self.creds(principal).environment())
        return env

    def server_args(self, acls: bool = True) -> list[str]:
        return ["--credentials", self.credentials, *(["--acls", self.acls] if acls else []),
                "--tls-cert", self.certs["server"], "--tls-key", self.certs["server_key"],
                "--tls-ca", self.certs["ca"]]


def make_secrets(directory: str, hosts: tuple | list = ()) -> Secrets:
    certs = init_ca(os.path.join(directory, "certs"), hosts)
    credentials = os.path.join(directory, "credentials.json")
    tokens = {name: add_principal(credentials, name, kind) for name, kind in (
        ("agent1", "agent"), ("rogue-agent", "agent"), ("alice", "framework"),
        ("bob", "framework"), ("ops", "operator"))}
    tokens["late"] = add_principal(credentials, "late", "framework", expires=time.time() - 1)
    acls = os.path.join(directory, "acls.toml")
    with open(acls, "w") as f:
        f.write(POLICY)
    return Secrets(directory, certs, credentials, acls, tokens)


class Daemon:
    """An ``offerpool`` process started with ``--ready-json``; stderr is collected."""

    def __init__(self, args: list[str], env: dict, timeout: float = 60.0) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "substrate.cli", *args,
                                      "--ready-json"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.info: dict = {}
        self.stderr: list[str] = []
        self.cond = threading.Condition()
        ready = threading.Event()

        def read_out() -> None:
            line = self.proc.stdout.readline()
            try:
                self.info.update(json.loads(line))
            except ValueError:
                pass
            ready.set()

        def read_err() -> None:
            for line in self.proc.stderr:
                with self.cond:
                    self.stderr.append(line)
                    self.cond.notify_all()
            with self.cond:
                self.stderr.append("<eof>")
                self.cond.notify_all()

        threading.Thread(target=read_out, daemon=True).start()
        threading.Thread(target=read_err, daemon=True).start()
        self._ready, self._timeout = ready, timeout

    def wait_ready(self) -> dict:
        if not self._ready.wait(self._timeout) or not self.info:
            self.stop()
            raise AssertionError("daemon did not start: " + "".join(self.stderr[-20:]))
        return self.info

    def wait_stderr(self, text: str, timeout: float = 60.0) -> str:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(text in line for line in self.stderr), timeout)
            assert ok, f"{text!r} not in stderr: {''.join(self.stderr[-20:])}"
            return next(line for line in self.stderr if text in line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
