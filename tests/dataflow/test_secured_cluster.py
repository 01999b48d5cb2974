"""dataflow unchanged on a secured substrate: master and agents as real processes with tokens,
mutual TLS and an ACL policy; the driver and its executors (which fetch shuffle blocks and
results from agents) take their credentials from ``OFFERPOOL_*`` variables."""
from __future__ import annotations

import operator
import os

import pytest

from dataflow import Context
from dataflow.errors import DataflowError
from tests.substrate.security_helpers import Daemon, make_secrets

POLICY = """
[[register_frameworks]]
principals = ["alice"]
roles = ["*"]
[[run_tasks]]
principals = ["alice"]
users = ["root"]          # dataflow names no user: its tasks run as the agents' user
[[read_sandboxes]]
principals = ["alice"]
framework_principals = ["alice"]
[[register_agents]]
principals = ["agent1"]
"""


def test_word_count_on_a_secured_cluster(tmp_path, monkeypatch):
    secrets = make_secrets(str(tmp_path / "secrets"))
    with open(secrets.acls, "w") as f:
        f.write(POLICY)
    master = Daemon(["master", "--port", "0", "--http-port", "-1", *secrets.server_args()],
                    dict(os.environ))
    agents = []
    try:
        address = master.wait_ready()["address"]
        for i in range(2):
            agents.append(Daemon(["agent", "--master", address, "--work-dir",
                                  str(tmp_path / f"agent{i}"), "--cpus", "1", "--mem", "512",
                                  "--hostname", f"host-{i}", *secrets.server_args()],
                                 secrets.env("agent1")))
        for agent in agents:
            agent.wait_ready()
        for key, value in secrets.creds("alice").environment().items():
            monkeypatch.setenv(key, value)
        ctx = Context(address, appName="secured")
        try:
            words = ctx.parallelize(["a b", "b c", "c a", "a a"] * 50, 4)
            counts = dict(words.flatMap(str.split).map(lambda w: (w, 1))
                          .reduceByKey(operator.add, 3).collect())
        finally:
            ctx.stop()
        assert counts == {"a": 200, "b": 100, "c": 100}
        monkeypatch.setenv("OFFERPOOL_TOKEN", "wrong")
        with pytest.raises(DataflowError, match="wrong token"):
            Context(address, appName="intruder").parallelize([1]).count()
    finally:
        for daemon in (*agents, master):
            daemon.stop()
