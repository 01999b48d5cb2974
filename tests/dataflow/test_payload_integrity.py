"""Payload integrity: a dataflow executor (a real process started by a real agent) refuses a
forged task before unpickling it, and the driver refuses a forged result the same way."""
from __future__ import annotations

import os
import pickle
import threading
import types

import substrate
from dataflow.cluster_backend import ClusterBackend, _Running
from dataflow.executor import ENV_SECRET, sign
from dataflow.tasks import TaskResult


class _Boom:
    """Unpickling this creates a file: proof that untrusted bytes were deserialized."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


class _Launcher(substrate.Scheduler):
    def __init__(self, payloads: dict, secret: bytes) -> None:
        self.payloads, self.secret = dict(payloads), secret
        self.statuses: dict = {}
        self.cond = threading.Condition()

    def resource_offers(self, driver, offers):
        offer = offers[0]
        if not self.payloads:
            return driver.decline_offer([o.id for o in offers],
                                        substrate.Filters(refuse_seconds=60))
        executor = substrate.ExecutorInfo.for_python_module(
            "dataflow-ex", "dataflow.executor", resources=substrate.Resources(cpus=0.1, mem=64),
            environment={ENV_SECRET: self.secret.hex()})
        tasks = [substrate.TaskInfo(task_id=tid, agent_id=offer.agent_id, executor=executor,
                                    resources=substrate.Resources(cpus=0.1, mem=16), data=data)
                 for tid, data in self.payloads.items()]
        self.payloads.clear()
        driver.launch_tasks(offer.id, tasks)
        driver.decline_offer([o.id for o in offers[1:]], substrate.Filters(refuse_seconds=60))

    def status_update(self, driver, status):
        with self.cond:
            self.statuses[status.task_id] = status
            self.cond.notify_all()


def test_forged_task_payloads_are_refused_and_nothing_runs(tmp_path):
    secret = os.urandom(32)
    marker = {name: str(tmp_path / name) for name in ("unsigned", "wrong-key", "tampered")}
    evil = {name: pickle.dumps(_Boom(path)) for name, path in marker.items()}
    good = sign(secret, evil["tampered"])
    payloads = {
        "unsigned": evil["unsigned"],
        "wrong-key": sign(os.urandom(32), evil["wrong-key"]),
        "tampered": good[:-1] + bytes([good[-1] ^ 1]),
    }
    launcher = _Launcher(payloads, secret)
    with substrate.LocalCluster(agents=1, cpus=1, mem=512) as cluster:
        driver = substrate.SchedulerDriver(launcher, substrate.FrameworkInfo(name="forgery"),
                                           cluster.master)
        driver.start()
        try:
            with launcher.cond:
                assert launcher.cond.wait_for(lambda: all(
                    t in launcher.statuses and launcher.statuses[t].state.is_terminal
                    for t in payloads), 60), launcher.statuses
        finally:
            driver.stop()
    for tid in payloads:
        status = launcher.statuses[tid]
        assert status.state == substrate.TaskState.ERROR, status
        assert "signature mismatch" in status.message
    assert not any(os.path.exists(p) for p in marker.values())  # nothing was unpickled
    pickle.loads(evil["unsigned"])  # the control: unpickling these bytes leaves the marker
    assert os.path.isdir(marker["unsigned"])


def test_driver_refuses_a_forged_result_before_unpickling(tmp_path):
    secret = os.urandom(32)
    backend = types.SimpleNamespace(secret=secret, framework_id="fw-1")
    run = _Running(task_id=7, executor_id="ex-1", agent_id="a-1", agent_address="127.0.0.1:1")
    path = str(tmp_path / "ran")
    forged = sign(os.urandom(32), pickle.dumps(_Boom(path)))
    ended = ClusterBackend._resolve(backend, ("finished", 7, b"I" + forged, run))
    result = TaskResult.from_bytes(ended.result)
    assert not result.ok and result.error_type == "ResultFetchError"
    assert "signature mismatch" in result.error_message
    assert not os.path.exists(path)
    genuine = TaskResult(7, True).to_bytes()
    ok = ClusterBackend._resolve(backend, ("finished", 7, b"I" + sign(secret, genuine), run))
    assert ok.result == genuine
