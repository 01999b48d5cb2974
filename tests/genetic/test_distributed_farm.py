"""Evaluation-farm mode: batches of genomes evaluated by executors on ``local[2]``, equal to
inline; a batch lost with its executor is re-queued; a fitness error stops the run."""
from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

import genetic
from genetic import farm

pytestmark = pytest.mark.timeout(60)


def sphere(x: np.ndarray) -> float:
    return float(x @ x)


def hangs_in_first_executor(x: np.ndarray) -> float:
    """Hangs (until its process is killed) in the farm's first executor only."""
    if os.environ.get("SUBSTRATE_EXECUTOR_ID") == "genetic-farm-0":
        threading.Event().wait()
    return float(x @ x)


def fails_on_executors(x: np.ndarray) -> float:
    if "SUBSTRATE_EXECUTOR_ID" in os.environ and x[0] > 0.9:
        raise ValueError("remote failure")
    return float(x @ x)


def hook(monkeypatch, action):
    original = farm.FarmScheduler._event

    def hooked(sched, kind, **info):
        original(sched, kind, **info)
        action(sched.events[-1])

    monkeypatch.setattr(farm.FarmScheduler, "_event", hooked)


KW = {"population": 60, "generations": 6, "islands": 2, "seed": 3}


def strip(table):
    d = table.to_pydict()
    d.pop("seconds")
    return d


def test_farm_equals_inline():
    p = genetic.Problem(genome=genetic.reals(-1, 1, 5), fitness=sphere, maximize=False)
    r = genetic.evolve(p, master="local[2]", farm=True, batch_size=16, **KW)
    q = genetic.evolve(p, **KW)
    assert strip(r.history) == strip(q.history)
    assert r.best.genome.tolist() == q.best.genome.tolist()
    pids = {e["pid"] for e in r.events if e["event"] == "running"}
    assert len(pids) == 2 and os.getpid() not in pids


def test_lost_batch_is_requeued(monkeypatch):
    killed = []

    def kill_first_batch(event):
        if event["event"] == "running" and not killed:
            os.kill(event["pid"], signal.SIGKILL)
            killed.append(event["pid"])

    hook(monkeypatch, kill_first_batch)
    p = genetic.Problem(genome=genetic.reals(-1, 1, 5), fitness=hangs_in_first_executor,
                        maximize=False)
    r = genetic.evolve(p, master="local[2]", farm=True, batch_size=64, **KW)
    assert killed
    requeued = [e for e in r.events if e["event"] == "requeue"]
    assert len(requeued) == 1 and requeued[0]["attempt"] == 1
    q = genetic.evolve(genetic.Problem(genome=genetic.reals(-1, 1, 5), fitness=sphere,
                                       maximize=False), **KW)
    assert strip(r.history) == strip(q.history)


def test_remote_fitness_error_stops_the_run():
    p = genetic.Problem(genome=genetic.reals(-1, 1, 5), fitness=fails_on_executors,
                        maximize=False)
    with pytest.raises(genetic.FitnessError, match="remote failure"):
        genetic.evolve(p, master="local[2]", farm=True, **KW)


def test_farm_needs_a_substrate_master():
    p = genetic.Problem(genome=genetic.reals(-1, 1, 5), fitness=sphere, maximize=False)
    with pytest.raises(genetic.ConfigError, match="farm=True"):
        genetic.evolve(p, farm=True, **KW)
