"""Islands on the substrate: real executor processes on ``local[2]`` and ``HOST:PORT``,
reproducibility equal to inline in synchronous mode, an island SIGKILLed mid-run finishing
from its checkpoint, resume, stopping rules, and teardown on errors."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

import genetic
import substrate
from genetic import framework

pytestmark = pytest.mark.timeout(60)

ONEMAX = genetic.Problem(genome=genetic.bits(64), fitness="onemax", maximize=True)


def strip(table: pa.Table) -> dict:
    d = table.to_pydict()
    d.pop("seconds")
    return d


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie child of an agent thread in this process counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Events:
    """Sees every scheduler event as it happens (on the driver thread) and can act on it."""

    def __init__(self, monkeypatch, action=None) -> None:
        self.cond = threading.Condition()
        self.seen: list[dict] = []
        self.action = action
        original = framework.GeneticScheduler._event
        events = self

        def hooked(sched, kind, **info):
            original(sched, kind, **info)
            event = sched.events[-1]
            with events.cond:
                events.seen.append(event)
                events.cond.notify_all()
            if events.action is not None:
                events.action(event)

        monkeypatch.setattr(framework.GeneticScheduler, "_event", hooked)

    def pids(self) -> list[int]:
        return [e["pid"] for e in self.seen if e["event"] == "running"]


def test_islands_run_in_real_processes_on_local2(monkeypatch):
    ev = Events(monkeypatch)
    r = genetic.evolve(ONEMAX, population=80, generations=30, islands=2, seed=4,
                       master="local[2]", migration_interval=5)
    assert r.generations == 30 and r.islands == 2 and r.stopped == "generations"
    pids = ev.pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert r.history.num_rows == 60
    assert sorted(zip(r.history.column("island").to_pylist(),
                      r.history.column("generation").to_pylist())) == \
        [(i, g) for i in range(2) for g in range(1, 31)]
    kinds = [e["event"] for e in r.events]
    assert kinds.count("launched") == 2 and "first_generation" in kinds
    assert all(not alive(p) for p in pids)   # the embedded cluster is gone with its executors
    # The embedded cluster had a dashboard; the result links to it.
    assert r.dashboard_url and r.dashboard_url.startswith("http://127.0.0.1:")
    assert r.dashboard_url.rstrip("/") in r._repr_html_()


@pytest.mark.parametrize("topology,islands", [("ring", 2), ("random", 3)])
def test_synchronous_migration_equals_inline(topology, islands):
    kw = {"population": 30 * islands, "generations": 24, "islands": islands, "seed": 7,
              "migration_interval": 4, "migrants": 2, "topology": topology}
    inline = genetic.evolve(ONEMAX, **kw)
    dist = genetic.evolve(ONEMAX, master="local[2]", **kw)
    assert strip(dist.history) == strip(inline.history)
    assert dist.best.genome.tolist() == inline.best.genome.tolist()
    assert dist.evaluations == inline.evaluations


def test_killed_island_continues_from_its_checkpoint(monkeypatch, tmp_path):
    kw = {"population": 80, "generations": 60, "islands": 2, "seed": 3, "migration_interval": 10,
              "migrants": 2}
    killed: list[int] = []

    def kill_island_1_after_first_checkpoint(event):
        # Runs on the driver thread: island 1 cannot pass the next migration epoch (gen 30)
        # until this returns, so the kill lands mid-run for sure.
        if event["event"] == "checkpoint" and event["generation"] == 20 and not killed:
            pid = next(e["pid"] for e in ev.seen
                       if e["event"] == "running" and e["island"] == 1)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    ev = Events(monkeypatch, kill_island_1_after_first_checkpoint)
    r = genetic.evolve(ONEMAX, master="local[2]", checkpoint=tmp_path / "run.arrow",
                       checkpoint_every=20, **kw)
    assert killed
    relaunch = [e for e in r.events if e["event"] == "relaunch"]
    assert [(e["island"], e["generation"]) for e in relaunch] == [(1, 20)]
    rerun = [e for e in r.events if e["event"] == "running" and e["island"] == 1]
    assert [e["generation"] for e in rerun] == [0, 20] and rerun[1]["pid"] != killed[0]
    assert r.generations == 60 and r.history.num_rows == 120
    # replaying from the checkpoint with the same immigrants gives the uninterrupted result
    inline = genetic.evolve(ONEMAX, **kw)
    assert strip(r.history) == strip(inline.history)
    assert r.best.genome.tolist() == inline.best.genome.tolist()


def test_resume_a_stopped_run(tmp_path):
    kw = {"population": 60, "islands": 2, "seed": 5, "migration_interval": 5}
    path = tmp_path / "half.arrow"
    first = genetic.evolve(ONEMAX, generations=15, master="local[2]", checkpoint=path, **kw)
    assert first.generations == 15
    resumed = genetic.evolve(ONEMAX, generations=30, master="local[2]", resume=path, **kw)
    straight = genetic.evolve(ONEMAX, generations=30, **kw)
    assert resumed.generations == 30
    assert strip(resumed.history) == strip(straight.history)
    assert resumed.best.genome.tolist() == straight.best.genome.tolist()


def test_asynchronous_on_a_running_master_stops_at_target():
    with substrate.LocalCluster(agents=2, cpus=1, http=False) as cluster:
        # only the target can end this run in time
        r = genetic.evolve(ONEMAX, population=120, generations=10**7, islands=2,
                           master=cluster.master, migration_interval=5, target=64,
                           topology="complete")
        assert r.stopped == "target" and r.best.fitness == 64.0
        assert r.generations < 10**7
        assert [e["reason"] for e in r.events if e["event"] == "stop"] == ["target"]


def _fails_late(x: np.ndarray) -> float:
    if x.sum() >= 44:
        raise ValueError("too many ones")
    return float(x.sum())


def test_island_error_stops_the_run_and_its_executors(monkeypatch):
    ev = Events(monkeypatch)
    problem = genetic.Problem(genome=genetic.bits(64), fitness=_fails_late, maximize=True)
    with pytest.raises(genetic.GeneticError, match="too many ones"):
        genetic.evolve(problem, population=40, generations=200, islands=2, seed=1,
                       master="local[2]")
    assert ev.pids() and all(not alive(p) for p in ev.pids())


def test_user_lambda_ships_to_the_executors():
    problem = genetic.Problem(genome=genetic.reals(-1, 1, 4), fitness=lambda x: float(x @ x),
                              maximize=False)
    r = genetic.evolve(problem, population=40, generations=10, islands=2, seed=2,
                       master="local[2]")
    inline = genetic.evolve(problem, population=40, generations=10, islands=2, seed=2)
    assert r.best.fitness == inline.best.fitness


def test_master_that_is_not_there(monkeypatch):
    monkeypatch.setattr(framework, "REGISTER_TIMEOUT", 1.0)
    with pytest.raises(genetic.GeneticError, match="could not register"):
        genetic.evolve(ONEMAX, population=20, generations=2, master="127.0.0.1:1")


def test_ctrl_c_tears_down_the_cluster_and_executors(monkeypatch):
    import _thread

    def interrupt_when_both_islands_run(event):
        if event["event"] == "running" and len(ev.pids()) == 2:
            _thread.interrupt_main()

    ev = Events(monkeypatch, interrupt_when_both_islands_run)
    with pytest.raises(KeyboardInterrupt):
        genetic.evolve(ONEMAX, population=40, generations=10**7, islands=2, master="local[2]")
    assert len(ev.pids()) == 2 and all(not alive(p) for p in ev.pids())


def test_a_mid_run_checkpoint_resumes_like_inline(monkeypatch, tmp_path):
    import shutil
    path, copy = tmp_path / "run.arrow", tmp_path / "at20.arrow"

    def keep_generation_20(event):
        if event["event"] == "checkpoint" and event["generation"] == 20:
            shutil.copy(path, copy)

    Events(monkeypatch, keep_generation_20)
    kw = {"population": 90, "islands": 3, "seed": 8, "migration_interval": 5, "topology": "random"}
    genetic.evolve(ONEMAX, generations=40, master="local[2]", checkpoint=path,
                   checkpoint_every=10, **kw)
    resumed = genetic.evolve(ONEMAX, generations=40, resume=copy, **kw)   # inline, from gen 20
    straight = genetic.evolve(ONEMAX, generations=40, **kw)
    assert strip(resumed.history) == strip(straight.history)
    assert resumed.best.genome.tolist() == straight.best.genome.tolist()


@pytest.mark.parametrize("agents", [1, 2])
def test_asynchronous_migrants_go_island_to_island_through_files(monkeypatch, agents):
    # one agent: the islands read each other's migrant files in the shared framework
    # directory; two agents: through substrate.read_agent_file on the other agent.
    # The run lasts until both islands have run 1,000 generations side by side (whenever
    # each one started), then the test stops it.
    original = framework.GeneticScheduler._stats
    overlap: dict[int, int] = {}

    def stats(sched, driver, slot, header):
        original(sched, driver, slot, header)
        if not overlap and all(s.phase == "running" for s in sched.slots):
            overlap.update({s.index: s.generation for s in sched.slots})
        if overlap and all(s.generation >= overlap[s.index] + 1000 for s in sched.slots):
            sched.request_stop(driver, "overlap")

    monkeypatch.setattr(framework.GeneticScheduler, "_stats", stats)
    with substrate.LocalCluster(agents=agents, cpus=2 / agents, http=False) as cluster:
        r = genetic.evolve(ONEMAX, population=80, generations=10**7, islands=2,
                           master=cluster.master, migration_interval=5, migrants=2,
                           synchronous=False, topology="ring", progress=False)
    assert r.stopped == "overlap"
    finished = {e["island"]: e for e in r.events if e["event"] == "finished"}
    assert sorted(finished) == [0, 1]
    # both islands took migrants from the other, without the scheduler relaying any
    assert all(e["immigrants"] > 0 for e in finished.values())
    assert all(e["immigrants"] % 2 == 0 for e in finished.values())


def _agent_of(executor_pid: int, agent_pids: set[int]) -> int:
    """The agent process an executor runs under (its nearest ancestor among the agents)."""
    pid = executor_pid
    while pid > 1:
        with open(f"/proc/{pid}/stat") as fh:
            pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        if pid in agent_pids:
            return pid
    raise AssertionError(f"executor {executor_pid} runs under no agent")


@pytest.mark.timeout(120)
def test_island_whose_agent_is_sigkilled_relaunches_on_another_agent(monkeypatch, tmp_path):
    from substrate.master.core import MasterConfig

    # executors orphaned by the killed agent give up quickly; the master declares the agent
    # lost after 3 missed heartbeats of 0.2 s
    monkeypatch.setenv("SUBSTRATE_RECOVERY_TIMEOUT", "2")
    kw = {"population": 80, "generations": 60, "islands": 2, "seed": 3,
          "migration_interval": 10, "migrants": 2}
    killed: list[int] = []
    orphans: list[int] = []
    new_agents: list[int] = []
    config = MasterConfig(agent_heartbeat_interval=0.2, agent_max_missed_heartbeats=3)
    with substrate.LocalCluster(agents=3, cpus=1, processes=True, http=False,
                                master_config=config) as cluster:
        agent_pids = {a["pid"] for a in cluster.agents}

        def kill_island_1s_agent(event):
            # on the driver thread: island 1 cannot pass its next migration epoch until this
            # returns, so the agent dies mid-run
            if event["event"] == "checkpoint" and event["generation"] == 20 and not killed:
                pid = next(e["pid"] for e in ev.seen
                           if e["event"] == "running" and e["island"] == 1)
                agent = _agent_of(pid, agent_pids)
                os.kill(agent, signal.SIGKILL)
                killed.append(agent)
                orphans.append(pid)
            elif event["event"] == "running" and event["island"] == 1 and killed:
                new_agents.append(_agent_of(event["pid"], agent_pids))

        ev = Events(monkeypatch, kill_island_1s_agent)
        r = genetic.evolve(ONEMAX, master=cluster.master, checkpoint=tmp_path / "run.arrow",
                           checkpoint_every=20, island_cpus=1, **kw)
        # the island's old executor, orphaned with its agent, exits on its own
        deadline = time.monotonic() + 30
        while alive(orphans[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(orphans[0])
    assert killed and new_agents and new_agents[0] != killed[0]
    lost = [e for e in r.events if e["event"] == "lost" and e["island"] == 1]
    assert [(e["state"], e["reason"]) for e in lost] == [("LOST", "AGENT_UNREACHABLE")]
    relaunch = [e for e in r.events if e["event"] == "relaunch" and e["island"] == 1]
    assert [e["generation"] for e in relaunch] == [20]
    rerun = [e for e in r.events if e["event"] == "running" and e["island"] == 1]
    assert [e["generation"] for e in rerun] == [0, 20]
    assert r.generations == 60 and r.history.num_rows == 120
    # with synchronous migration and a seed: the uninterrupted result
    inline = genetic.evolve(ONEMAX, progress=False, **kw)
    assert strip(r.history) == strip(inline.history)
    assert r.best.genome.tolist() == inline.best.genome.tolist()


def test_batched_statistics_keep_every_row_in_order(monkeypatch):
    # Islands send their statistics rows as column arrays in batches (here every 7
    # generations, across migration epochs of 4); the scheduler keeps the batches' rows and
    # compares them with the full record in each island's final status. History and live
    # progress must equal the inline run's, row for row.
    monkeypatch.setattr(framework, "REPORT_GENERATIONS", 7)
    kw = {"population": 60, "generations": 45, "islands": 2, "seed": 11,
          "migration_interval": 4, "migrants": 2}
    inline = genetic.evolve(ONEMAX, **kw)

    class Shown(genetic.progress.GenerationProgress):
        def draw(self) -> None:
            pass

        def finish(self, outcome: str) -> None:
            pass

    shown = Shown(45)
    dist = genetic.evolve(ONEMAX, master="local[2]", progress=shown, **kw)
    assert dist.history.num_rows == 2 * 45
    assert strip(dist.history) == strip(inline.history)
    finished = {e["island"]: e for e in dist.events if e["event"] == "finished"}
    for e in finished.values():
        assert e["rows_differed"] == 0
        assert e["rows_batched"] + e["rows_filled"] == 45
        assert e["rows_batched"] >= 1     # the generation-1 batch precedes the first epoch
    h = inline.history.to_pydict()
    per_gen = {}
    for g, b, m in zip(h["generation"], h["best"], h["mean"]):
        per_gen.setdefault(g, []).append((b, m))
    assert shown.gens == list(range(1, 46))
    assert shown.best == [max(b for b, _ in per_gen[g]) for g in shown.gens]
    assert shown.mean == pytest.approx([sum(m for _, m in per_gen[g]) / 2 for g in shown.gens])
