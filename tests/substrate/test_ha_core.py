"""Master failover in the pure core: what a new leader recovers from the registry, how it
rebuilds tasks from re-registering agents, and how lost launches are answered. Fake clocks,
no I/O; the same paths run on real processes in test_ha_failover.py."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from substrate.master.core import MasterConfig, MasterCore
from substrate.master.calls import handle_call
from substrate.master.registry import InMemoryRegistry, SqliteRegistry
from substrate.resources import Resources
from substrate.v1 import pb
from tests.substrate.master_helpers import (
    FakeClock, accept_call, agent_events, command_task, drain, events, offers_for, subscribe,
)

S = pb.TaskStatus


class Wall:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def new_leader(registry, clock: FakeClock, wall: Wall, **config) -> MasterCore:
    cfg = MasterConfig(**{"agent_heartbeat_interval": 100.0, **config})
    counter = iter(range(1, 1 << 30))
    core = MasterCore(clock, cfg, registry=registry, master_id=f"m{registry._epoch + 1}",
                      new_id=lambda p: f"{p}-{registry._epoch}-{next(counter)}", wall_clock=wall)
    core.recover()
    return core


def reregister(core: MasterCore, agent_id: str, tasks=(), cpus: float = 4) -> str:
    call = pb.AgentCall(type=pb.AgentCall.REREGISTER)
    call.register.info.id = agent_id
    call.register.info.hostname = "h"
    call.register.info.resources.cpus = cpus
    call.register.info.resources.mem = 4096
    for fid, task, state in tasks:
        call.register.tasks.add(info=task, framework_id=fid,
                                latest=pb.TaskStatus(task_id=task.task_id, state=state))
    return core.agent_register(call)


def launch(core: MasterCore, fid: str, *task_ids: str) -> tuple:
    offer = offers_for(core, fid)[0]
    tasks = [command_task(t, offer.agent_id) for t in task_ids]
    handle_call(core, fid, accept_call([offer.id], tasks))
    return (offer.agent_id, *tasks)


def test_new_leader_gets_a_higher_epoch_and_the_frameworks_with_their_deadlines():
    reg, clock, wall = InMemoryRegistry(), FakeClock(), Wall()
    old = new_leader(reg, clock, wall)
    gone = subscribe(old, "gone", failover_timeout=50)
    live = subscribe(old, "live", failover_timeout=0)
    old.framework_disconnected(gone)         # its scheduler died 10 s before the failover
    wall.now += 10
    clock.advance(10)
    new = new_leader(reg, FakeClock(), wall, framework_reregister_grace=20)
    assert new.epoch == old.epoch + 1
    assert {gone, live} == set(new.frameworks)
    assert not new.frameworks[gone].connected and not new.frameworks[live].connected
    # the dead scheduler keeps its original deadline; the live one gets the grace period
    assert new.frameworks[gone].failover_deadline - new.clock() == pytest.approx(40)
    assert new.frameworks[live].failover_deadline - new.clock() == pytest.approx(20)
    # the live scheduler comes back with its id and is welcome
    assert subscribe(new, "live", framework_id=live) == live
    new.clock.advance(41)
    new.tick()
    assert gone not in new.frameworks and gone not in reg.frameworks()
    assert live in new.frameworks


def test_tasks_are_rebuilt_from_reregistering_agents_and_killed_at_the_deadline():
    reg, clock, wall = InMemoryRegistry(), FakeClock(), Wall()
    old = new_leader(reg, clock, wall)
    aid = old.agent_register(_register_call())
    fid = subscribe(old, "fw", failover_timeout=30)
    _, task = launch(old, fid, "t1")
    old.framework_disconnected(fid)
    new_clock = FakeClock()
    new = new_leader(reg, new_clock, wall)
    assert aid in new.recovering
    reregister(new, aid, [(fid, task, S.RUNNING)])
    assert aid not in new.recovering
    assert new.frameworks[fid].tasks["t1"].state == S.RUNNING
    assert new.allocator.allocated(fid).cpus == 1
    drain(new)
    new_clock.advance(31)
    new.tick()
    kills = agent_events(drain(new), aid, pb.AgentEvent.SHUTDOWN_FRAMEWORK)
    assert [k.shutdown_framework.framework_id for k in kills] == [fid]


def test_a_lost_launch_is_reported_when_the_agent_reregisters_without_it():
    reg, clock, wall = InMemoryRegistry(), FakeClock(), Wall()
    core = new_leader(reg, clock, wall)
    aid = core.agent_register(_register_call())
    fid = subscribe(core, "fw", failover_timeout=30)
    _, kept, lost = launch(core, fid, "kept", "lost")
    drain(core)
    reregister(core, aid, [(fid, kept, S.RUNNING)])  # RUN_TASKS for "lost" never arrived
    updates = [s for ev in events(drain(core), fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [(s.task_id, s.state) for s in updates] == [("lost", S.LOST)]
    assert set(core.frameworks[fid].tasks) == {"kept"}
    assert core.allocator.allocated(fid).cpus == 1


def test_reconciliation_waits_for_recovering_agents_then_answers():
    reg, clock, wall = InMemoryRegistry(), FakeClock(), Wall()
    old = new_leader(reg, clock, wall)
    aid = old.agent_register(_register_call())
    fid = subscribe(old, "fw", failover_timeout=30)
    launch(old, fid, "t1")
    new = new_leader(reg, FakeClock(), wall, agent_reregister_timeout=60)
    subscribe(new, "fw", framework_id=fid)
    drain(new)
    ask = pb.Call(type=pb.Call.RECONCILE)
    ask.reconcile.tasks.add(task_id="t1", agent_id=aid)
    handle_call(new, fid, ask)
    assert events(drain(new), fid, pb.Event.UPDATE) == []  # its agent may still come back
    new.clock.advance(61)
    new.tick()
    assert aid not in reg.agents()                            # it did not: forgotten
    handle_call(new, fid, ask)
    answer = events(drain(new), fid, pb.Event.UPDATE)[0].update.statuses[0]
    assert (answer.task_id, answer.state) == ("t1", S.LOST)


def test_agents_that_do_not_reregister_are_forgotten_at_the_deadline_and_not_before():
    reg, wall = InMemoryRegistry(), Wall()
    old = new_leader(reg, FakeClock(), wall)
    aids = [old.agent_register(_register_call()) for _ in range(5)]
    clock = FakeClock()
    new = new_leader(reg, clock, wall, agent_reregister_timeout=60)
    reregister(new, aids[2])
    clock.advance(59)
    new.tick()
    assert set(new.recovering) == set(aids) - {aids[2]}
    assert set(reg.agents()) == set(aids)
    clock.advance(2)
    new.tick()
    assert not new.recovering and set(reg.agents()) == {aids[2]}


def test_an_offer_of_the_old_leader_is_refused_cleanly_by_the_new_one():
    reg, clock, wall = InMemoryRegistry(), FakeClock(), Wall()
    old = new_leader(reg, clock, wall)
    aid = old.agent_register(_register_call())
    fid = subscribe(old, "fw", failover_timeout=30)
    stale = offers_for(old, fid)[0]
    new = new_leader(reg, FakeClock(), wall)
    subscribe(new, "fw", framework_id=fid)
    reregister(new, aid)
    drain(new)
    handle_call(new, fid, accept_call([stale.id], [command_task("t", aid)]))
    statuses = [s for ev in events(drain(new), fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [(s.state, s.reason) for s in statuses] == [(S.LOST, S.INVALID_OFFERS)]
    assert offers_for(new, fid)  # and the agent is offered afresh


def test_weights_and_quota_survive_a_failover():
    reg, clock, wall = InMemoryRegistry(), FakeClock(), Wall()
    old = new_leader(reg, clock, wall)
    old.set_role_weight("prod", 3.0)
    old.set_role_quota("dev", Resources(cpus=2))
    new = new_leader(reg, FakeClock(), wall)
    new.allocator.add_framework("d", "dev")
    new.allocator.add_agent("a", Resources(cpus=8, mem=1024))
    assert [str(r) for _, _, r in new.allocator.allocate()] == ["Resources(cpus=2, mem=1024)"]
    assert reg.weights() == {"prod": 3.0}


def _register_call() -> "pb.AgentCall":
    call = pb.AgentCall(type=pb.AgentCall.REGISTER)
    call.register.info.hostname = "h"
    call.register.info.resources.cpus = 4
    call.register.info.resources.mem = 4096
    return call


# ---------------------------------------------------------------- registries agree
_ids = st.sampled_from(["a", "b", "c"])
_ops = st.lists(st.one_of(
    st.tuples(st.just("admit"), _ids, st.sampled_from(["h1", "h2"])),
    st.tuples(st.just("remove_agent"), _ids),
    st.tuples(st.just("add_fw"), _ids, st.floats(0, 100)),
    st.tuples(st.just("deadline"), _ids, st.one_of(st.none(), st.floats(0, 1e9))),
    st.tuples(st.just("remove_fw"), _ids),
    st.tuples(st.just("weight"), _ids, st.one_of(st.none(), st.floats(0.1, 10))),
    st.tuples(st.just("quota"), _ids, st.one_of(st.none(), st.just({"cpus": 2.0}))),
    st.tuples(st.just("epoch"),),
), max_size=25)


def apply(reg, ops) -> None:
    for op in ops:
        kind = op[0]
        if kind == "admit":
            reg.admit_agent(op[1], op[2])
        elif kind == "remove_agent":
            reg.remove_agent(op[1])
        elif kind == "add_fw":
            reg.add_framework(op[1], "n", "r", 1.0, op[2])
        elif kind == "deadline":
            reg.set_failover_deadline(op[1], op[2])
        elif kind == "remove_fw":
            reg.remove_framework(op[1])
        elif kind == "weight":
            reg.set_weight(op[1], op[2])
        elif kind == "quota":
            reg.set_quota(op[1], op[2])
        else:
            reg.next_epoch()


def view(reg) -> tuple:
    return reg.agents(), reg.frameworks(), reg.weights(), reg.quotas()


@settings(max_examples=40, deadline=None)
@given(_ops)
def test_sqlite_registry_reopened_equals_the_in_memory_one(tmp_path_factory, ops):
    path = str(tmp_path_factory.mktemp("reg") / "registry.db")
    model, reg = InMemoryRegistry(), SqliteRegistry(path)
    apply(model, ops)
    apply(reg, ops)
    reg.close()
    again = SqliteRegistry(path)
    assert view(again) == view(model)
    assert again.next_epoch() == model.next_epoch()
    again.close()
