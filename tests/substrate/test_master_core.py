"""The master's state machine, driven directly with a fake clock."""
from __future__ import annotations

import math

import pytest

from substrate.errors import InvalidRequest
from substrate.master.calls import handle_call
from substrate.v1 import pb

from .master_helpers import (
    accept_call, agent_events, command_task, drain, events, make_core, offers_for,
    register_agent, status, subscribe,
)

S = pb.TaskStatus


def _launch_one(core, fid, aid, task_id="t1", cpus=1.0):
    offer = offers_for(core, fid)[0]
    handle_call(core, fid, accept_call([offer.id], [command_task(task_id, aid, cpus=cpus)]))
    return drain(core), offer


def test_offer_accept_launch_and_finish_frees_resources():
    core, clock = make_core()
    aid = register_agent(core, cpus=4)
    fid = subscribe(core)
    offers = offers_for(core, fid)
    assert [o.agent_id for o in offers] == [aid]
    assert offers[0].resources.cpus == 4
    handle_call(core, fid, accept_call([offers[0].id], [command_task("t1", aid, cpus=1)]))
    out = drain(core)
    run = agent_events(out, aid, pb.AgentEvent.RUN_TASKS)
    assert [t.task_id for t in run[0].run_tasks.tasks] == ["t1"]
    assert core.frameworks[fid].tasks["t1"].state == S.STAGING
    # The 3 unused cpus were declined with the default 5 s filter: not re-offered at once.
    assert offers_for(core, fid) == []
    core.agent_update(aid, [status(fid, "t1", S.RUNNING)])
    core.agent_update(aid, [status(fid, "t1", S.FINISHED, b"v")])
    out = drain(core)
    states = [st.state for ev in events(out, fid, pb.Event.UPDATE) for st in ev.update.statuses]
    assert states == [S.RUNNING, S.FINISHED]
    assert "t1" not in core.frameworks[fid].tasks
    clock.advance(5.1)
    core.tick()
    again = offers_for(core, fid)
    assert again and again[0].resources.cpus == 4


def test_acknowledgements_are_forwarded_to_the_agent_that_sent_the_update():
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core)
    _launch_one(core, fid, aid)
    ack = pb.Call(type=pb.Call.ACKNOWLEDGE)
    ack.acknowledge.acks.add(agent_id=aid, task_id="t1", uuid=b"abc")
    handle_call(core, fid, ack)
    fwd = agent_events(drain(core), aid, pb.AgentEvent.ACKNOWLEDGE)
    assert fwd[0].acknowledge.acks[0].uuid == b"abc"
    assert fwd[0].acknowledge.framework_id == fid


def test_every_master_message_carries_the_epoch():
    core, _ = make_core()
    core.epoch = 7
    aid = register_agent(core)
    fid = subscribe(core)
    out, _ = _launch_one(core, fid, aid)
    assert out and all(m.epoch == 7 for _, _, m in out if m is not None)


@pytest.mark.parametrize("problem", ["unknown", "used", "rescinded", "two_agents", "foreign"])
def test_invalid_offers_drop_the_tasks_and_keep_the_master_going(problem):
    core, clock = make_core(offer_timeout=10.0)
    a1 = register_agent(core, hostname="a")
    a2 = register_agent(core, hostname="b")
    fid = subscribe(core, "one")
    other = subscribe(core, "two")
    offers = offers_for(core, fid) + offers_for(core, other)
    mine = [o for o in offers if o.framework_id == fid]
    foreign = [o for o in offers if o.framework_id == other]
    ids = {"unknown": ["nope"], "used": [mine[0].id], "rescinded": [mine[0].id],
           "two_agents": [o.id for o in mine], "foreign": [foreign[0].id] if foreign else ["x"]}
    if problem == "used":
        handle_call(core, fid, accept_call([mine[0].id], [command_task("first", mine[0].agent_id)]))
        drain(core)
    if problem == "rescinded":
        clock.advance(11)
        core.tick()
        drain(core)
    if problem == "two_agents" and len(mine) < 2:
        mine = offers_for(core, fid)  # both agents went to one framework? make sure of 2
        ids["two_agents"] = [o.id for o in mine] + ["extra"]
    handle_call(core, fid, accept_call(ids[problem], [command_task("t9", a1)]))
    out = drain(core)
    statuses = [st for ev in events(out, fid, pb.Event.UPDATE) for st in ev.update.statuses]
    assert [(s.task_id, s.state, s.reason) for s in statuses] == [("t9", S.LOST, S.INVALID_OFFERS)]
    assert not agent_events(out, a1, pb.AgentEvent.RUN_TASKS)
    assert not agent_events(out, a2, pb.AgentEvent.RUN_TASKS)
    assert "t9" not in core.frameworks[fid].tasks


def test_invalid_offers_give_dropped_to_partition_aware_frameworks():
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core, partition_aware=True)
    handle_call(core, fid, accept_call(["nope"], [command_task("t1", aid)]))
    statuses = [s for ev in events(drain(core), fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert statuses[0].state == S.DROPPED


def _bad_task(kind, aid):
    task = command_task("bad", aid)
    if kind == "too_big":
        task.resources.cpus = 100
    elif kind == "negative":
        task.resources.cpus = -1
    elif kind == "nan":
        task.resources.mem = math.nan
    elif kind == "inf":
        task.resources.cpus = math.inf
    elif kind == "slash":
        task.task_id = "a/b"
    elif kind == "dotdot":
        task.task_id = ".."
    elif kind == "payload":
        task.data = b"x" * (4 * 1024 * 1024 + 1)
    elif kind == "wrong_agent":
        task.agent_id = "someone-else"
    elif kind == "no_command":
        task.ClearField("command")
    elif kind == "empty_id":
        task.task_id = ""
    return task


@pytest.mark.parametrize("kind", ["too_big", "negative", "nan", "inf", "slash", "dotdot",
                                  "payload", "wrong_agent", "no_command", "empty_id"])
def test_an_invalid_task_gets_error_and_its_neighbour_still_runs(kind):
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core)
    offer = offers_for(core, fid)[0]
    handle_call(core, fid, accept_call([offer.id], [_bad_task(kind, aid), command_task("good", aid)]))
    out = drain(core)
    statuses = [s for ev in events(out, fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [(s.state, s.reason) for s in statuses] == [(S.ERROR, S.TASK_INVALID)]
    assert statuses[0].message
    run = agent_events(out, aid, pb.AgentEvent.RUN_TASKS)
    assert [t.task_id for t in run[0].run_tasks.tasks] == ["good"]


def test_duplicate_task_ids_in_one_call_and_across_calls():
    core, clock = make_core()
    aid = register_agent(core, cpus=8)
    fid = subscribe(core)
    offer = offers_for(core, fid)[0]
    handle_call(core, fid, accept_call([offer.id], [command_task("d", aid), command_task("d", aid)]),
                )
    out = drain(core)
    errors = [s for ev in events(out, fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [s.state for s in errors] == [S.ERROR]
    clock.advance(6)
    core.tick()
    offer = offers_for(core, fid)[0]
    handle_call(core, fid, accept_call([offer.id], [command_task("d", aid)]))
    errors = [s for ev in events(drain(core), fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [(s.state, s.reason) for s in errors] == [(S.ERROR, S.TASK_INVALID)]


def test_bad_calls_raise_invalid_request_without_changing_state():
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core)
    before = (len(core.offers), dict(core.frameworks[fid].tasks))
    bad = [pb.Call(type=pb.Call.UNKNOWN), accept_call([], [])]
    neg = pb.Call(type=pb.Call.DECLINE)
    neg.decline.filters.refuse_seconds = -3
    bad.append(neg)
    msg = pb.Call(type=pb.Call.MESSAGE)
    msg.message.agent_id = "nobody"
    bad.append(msg)
    big = pb.Call(type=pb.Call.MESSAGE)
    big.message.agent_id = aid
    big.message.data = b"x" * (5 * 1024 * 1024)
    bad.append(big)
    for call in bad:
        with pytest.raises(InvalidRequest):
            handle_call(core, fid, call)
    assert (len(core.offers), dict(core.frameworks[fid].tasks)) == before


@pytest.mark.parametrize("info", [
    pb.FrameworkInfo(name=""), pb.FrameworkInfo(name="x", weight=-1),
    pb.FrameworkInfo(name="x", weight=math.nan), pb.FrameworkInfo(name="x", role="a/b"),
    pb.FrameworkInfo(name="x", failover_timeout=math.inf), pb.FrameworkInfo(name="x", id="fw-unknown"),
])
def test_bad_subscriptions_are_refused(info):
    core, _ = make_core()
    with pytest.raises(InvalidRequest):
        core.framework_subscribe(info)
    assert core.frameworks == {}


def test_bad_agent_registration_is_refused():
    core, _ = make_core()
    call = pb.AgentCall(type=pb.AgentCall.REGISTER)
    call.register.info.resources.cpus = math.nan
    with pytest.raises(InvalidRequest):
        core.agent_register(call)
    assert core.agents == {}


@pytest.mark.parametrize("partition_aware,expected", [(False, S.LOST), (True, S.UNREACHABLE)])
def test_missed_heartbeats_make_tasks_lost_or_unreachable(partition_aware, expected):
    core, clock = make_core(agent_heartbeat_interval=1.0)
    aid = register_agent(core)
    fid = subscribe(core, partition_aware=partition_aware)
    _launch_one(core, fid, aid)
    core.agent_update(aid, [status(fid, "t1", S.RUNNING)])
    drain(core)
    clock.advance(2.0)
    core.agent_heartbeat(aid)
    core.tick()
    assert aid in core.agents  # within 3 x 1 s
    clock.advance(3.5)
    core.tick()
    out = drain(core)
    statuses = [s for ev in events(out, fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [(s.task_id, s.state, s.reason) for s in statuses] == [("t1", expected, S.AGENT_UNREACHABLE)]
    assert [e.failure.agent_id for e in events(out, fid, pb.Event.FAILURE)] == [aid]
    assert aid not in core.agents
    assert core.allocator.allocated(fid).is_empty()


def test_framework_failover_within_timeout_keeps_tasks():
    core, clock = make_core()
    aid = register_agent(core)
    fid = subscribe(core, failover_timeout=10)
    _launch_one(core, fid, aid)
    core.framework_disconnected(fid)
    clock.advance(9)
    core.tick()
    assert fid in core.frameworks
    again = subscribe(core, failover_timeout=10, framework_id=fid)
    assert again == fid and "t1" in core.frameworks[fid].tasks
    clock.advance(100)
    core.tick()
    assert fid in core.frameworks
    assert not agent_events(drain(core), aid, pb.AgentEvent.SHUTDOWN_FRAMEWORK)


def test_framework_that_never_returns_has_its_tasks_killed_at_the_deadline():
    core, clock = make_core()
    aid = register_agent(core)
    fid = subscribe(core, failover_timeout=10)
    _launch_one(core, fid, aid)
    core.framework_disconnected(fid)
    clock.advance(10.5)
    core.tick()
    out = drain(core)
    assert [e.shutdown_framework.framework_id
            for e in agent_events(out, aid, pb.AgentEvent.SHUTDOWN_FRAMEWORK)] == [fid]
    assert fid not in core.frameworks
    with pytest.raises(InvalidRequest):
        subscribe(core, framework_id=fid)


def test_second_scheduler_for_the_same_framework_replaces_the_first():
    core, _ = make_core()
    fid = subscribe(core, failover_timeout=60)
    drain(core)
    subscribe(core, failover_timeout=60, framework_id=fid)
    closes = [m for k, t, m in drain(core) if k == "close_framework" and t == fid]
    assert closes and closes[0].error.fatal


def test_decline_filter_revive_and_suppress():
    core, clock = make_core()
    register_agent(core)
    fid = subscribe(core)
    offer = offers_for(core, fid)[0]
    decline = pb.Call(type=pb.Call.DECLINE)
    decline.decline.offer_ids.append(offer.id)
    decline.decline.filters.refuse_seconds = 30
    handle_call(core, fid, decline)
    assert offers_for(core, fid) == []
    clock.advance(20)
    core.tick()
    assert offers_for(core, fid) == []
    handle_call(core, fid, pb.Call(type=pb.Call.REVIVE))
    offer = offers_for(core, fid)[0]
    handle_call(core, fid, pb.Call(type=pb.Call.SUPPRESS))
    handle_call(core, fid, pb.Call(type=pb.Call.DECLINE, decline=pb.Call.Decline(offer_ids=[offer.id])))
    clock.advance(60)
    core.tick()
    assert offers_for(core, fid) == []


def test_offer_timeout_rescinds():
    core, clock = make_core(offer_timeout=30.0)
    register_agent(core)
    fid = subscribe(core)
    offer = offers_for(core, fid)[0]
    clock.advance(31)
    core.tick()
    out = drain(core)
    assert [e.rescind.offer_id for e in events(out, fid, pb.Event.RESCIND)] == [offer.id]
    assert offer.id not in core.offers


def test_reconcile_implicit_and_explicit():
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core)
    _launch_one(core, fid, aid)
    core.agent_update(aid, [status(fid, "t1", S.RUNNING)])
    drain(core)
    handle_call(core, fid, pb.Call(type=pb.Call.RECONCILE))
    implicit = [s for ev in events(drain(core), fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [(s.task_id, s.state, s.uuid) for s in implicit] == [("t1", S.RUNNING, b"")]
    call = pb.Call(type=pb.Call.RECONCILE)
    call.reconcile.tasks.add(task_id="t1")
    call.reconcile.tasks.add(task_id="ghost")
    handle_call(core, fid, call)
    explicit = [s for ev in events(drain(core), fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [(s.task_id, s.state) for s in explicit] == [("t1", S.RUNNING), ("ghost", S.LOST)]


def test_kill_known_and_unknown_tasks():
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core)
    _launch_one(core, fid, aid)
    handle_call(core, fid, pb.Call(type=pb.Call.KILL, kill=pb.Call.Kill(task_id="t1")))
    handle_call(core, fid, pb.Call(type=pb.Call.KILL, kill=pb.Call.Kill(task_id="nope")))
    out = drain(core)
    assert [e.kill_task.task_id for e in agent_events(out, aid, pb.AgentEvent.KILL_TASK)] == ["t1"]
    statuses = [s for ev in events(out, fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [(s.task_id, s.state, s.reason) for s in statuses] == [("nope", S.LOST, S.TASK_UNKNOWN)]


def test_teardown_kills_tasks_and_frees_everything():
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core)
    _launch_one(core, fid, aid)
    handle_call(core, fid, pb.Call(type=pb.Call.TEARDOWN))
    out = drain(core)
    assert agent_events(out, aid, pb.AgentEvent.SHUTDOWN_FRAMEWORK)
    assert fid not in core.frameworks
    other = subscribe(core, "next")
    assert offers_for(core, other)[0].resources.cpus == 4


def test_reregistering_agent_restores_its_tasks():
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core, failover_timeout=60)
    _launch_one(core, fid, aid, cpus=3)
    core.agent_update(aid, [status(fid, "t1", S.RUNNING)])
    task_info = core.frameworks[fid].tasks["t1"].info
    core.agent_disconnected(aid)
    call = pb.AgentCall(type=pb.AgentCall.REREGISTER)
    call.register.info.id = aid
    call.register.info.resources.cpus = 4
    call.register.info.resources.mem = 4096
    call.register.tasks.add(info=task_info, framework_id=fid,
                            latest=pb.TaskStatus(task_id="t1", state=S.RUNNING))
    assert core.agent_register(call) == aid
    assert core.frameworks[fid].tasks["t1"].state == S.RUNNING
    drain(core)
    offers = offers_for(core, fid)
    assert offers and offers[0].resources.cpus == pytest.approx(1)


def test_status_for_a_removed_framework_is_acknowledged_on_its_behalf():
    core, _ = make_core()
    aid = register_agent(core)
    core.agent_update(aid, [status("fw-gone", "t", S.FINISHED, b"id")])
    acks = agent_events(drain(core), aid, pb.AgentEvent.ACKNOWLEDGE)
    assert acks[0].acknowledge.acks[0].uuid == b"id"


def test_registry_records_admissions_and_failover_deadlines():
    core, clock = make_core()
    aid = register_agent(core, hostname="host-a")
    fid = subscribe(core, "durable", failover_timeout=30)
    assert core.registry.agents() == {aid: "host-a"}
    assert core.registry.frameworks()[fid]["deadline"] is None
    core.framework_disconnected(fid)
    assert core.registry.frameworks()[fid]["deadline"] is not None
    clock.advance(31)
    core.tick()
    assert fid not in core.registry.frameworks()
    assert core.epoch == 1 and core.registry.next_epoch() == 2


def test_reregistering_agent_with_a_removed_frameworks_task_is_told_to_kill_it():
    core, _ = make_core()
    call = pb.AgentCall(type=pb.AgentCall.REREGISTER)
    call.register.info.id = "agent-old"
    call.register.info.resources.cpus = 2
    call.register.info.resources.mem = 1024
    call.register.tasks.add(info=command_task("t", "agent-old"), framework_id="fw-gone",
                            latest=pb.TaskStatus(task_id="t", state=S.RUNNING))
    assert core.agent_register(call) == "agent-old"
    kills = agent_events(drain(core), "agent-old", pb.AgentEvent.SHUTDOWN_FRAMEWORK)
    assert [k.shutdown_framework.framework_id for k in kills] == ["fw-gone"]
