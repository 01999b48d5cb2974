"""A broken scheduler stream does not lose a genetic run: the driver re-subscribes within the
framework's failover timeout and the islands go on where they were."""
from __future__ import annotations

import threading

import pytest

from genetic import Problem, bits, evolve
from substrate import LocalCluster
from tests.substrate.ha_helpers import wait_for
from tests.tcp_proxy import CuttableProxy

pytestmark = pytest.mark.timeout(180)


def gated_onemax(gate: str, after: int):
    """OneMax that, in each island, holds after ``after`` calls until ``gate`` exists."""
    calls = [0]

    def fitness(genome):
        import os
        import time
        calls[0] += 1
        deadline = time.monotonic() + 120
        while calls[0] > after and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
        return float(genome.sum())
    return fitness


def test_a_run_survives_a_cut_scheduler_stream(tmp_path):
    gate = tmp_path / "gate"
    with LocalCluster(agents=1, cpus=2) as cluster, CuttableProxy(cluster.master) as proxy:
        out: dict = {}

        def run() -> None:
            problem = Problem(genome=bits(64), fitness=gated_onemax(str(gate), 30),
                              maximize=True)
            out["result"] = evolve(problem, population=20, generations=15, islands=2, seed=5,
                                   master=proxy.address, island_cpus=0.5, progress=False)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            def islands() -> list:
                return [t for f in cluster.state()["frameworks"] if f["name"].startswith("genetic")
                        for t in f["tasks"] if t["state"] == "RUNNING"]
            wait_for(lambda: len(islands()) == 2, 60, "both islands to run")
            before = proxy.accepted
            proxy.cut()
            assert proxy.wait_accepted(before + 1, 30), "the driver did not reconnect"
            wait_for(lambda: all(f["connected"] for f in cluster.state()["frameworks"]),
                     30, "the re-subscription")
        finally:
            gate.touch()
            thread.join(90)
        result = out["result"]
        assert result.generations == 15
        assert result.history.num_rows == 2 * 15
        completed = [t for f in cluster.state()["completed_frameworks"]
                     for t in f["completed_tasks"]]
        assert completed and all(t["state"] == "FINISHED" for t in completed)
