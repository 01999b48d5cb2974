"""The master's side of agents coming back, rebooting and draining, and quota from the config,
driven directly with a fake clock (the same paths run on real processes in
test_agent_recovery.py)."""
from __future__ import annotations

import pytest

from substrate.errors import InvalidRequest
from substrate.master.calls import handle_call
from substrate.resources import Resources
from substrate.v1 import pb

from .master_helpers import (
    accept_call, agent_events, command_task, drain, events, make_core, offers_for,
    register_agent, status, subscribe,
)

S = pb.TaskStatus


def launch(core, fid, aid, task_id, cpus=1.0):
    offer = next(o for o in offers_for(core, fid) if o.agent_id == aid)
    handle_call(core, fid, accept_call([offer.id], [command_task(task_id, aid, cpus=cpus)],
                                       refuse=0))
    core.agent_update(aid, [status(fid, task_id, S.RUNNING, uuid=task_id.encode())])
    drain(core)


def reregister(core, aid, tasks, previous: str = "") -> str:
    call = pb.AgentCall(type=pb.AgentCall.REREGISTER if not previous else pb.AgentCall.REGISTER)
    call.register.info.id = "" if previous else aid
    call.register.info.hostname = "h"
    call.register.info.resources.cpus = 4
    call.register.info.resources.mem = 4096
    call.register.previous_agent_id = previous
    for fid, task_id in tasks:
        info = core.frameworks[fid].completed[-1].info if task_id not in core.frameworks[fid].tasks \
            else core.frameworks[fid].tasks[task_id].info
        call.register.tasks.add(info=info, framework_id=fid,
                                latest=pb.TaskStatus(task_id=task_id, state=S.RUNNING))
    return core.agent_register(call)


def statuses(out, fid):
    return [(s.task_id, s.state, s.reason) for ev in events(out, fid, pb.Event.UPDATE)
            for s in ev.update.statuses]


def partitioned():
    core, clock = make_core(agent_heartbeat_interval=1.0)
    aid = register_agent(core)
    aware = subscribe(core, "aware", partition_aware=True)
    plain = subscribe(core, "plain")
    launch(core, aware, aid, "pa")
    launch(core, plain, aid, "np")
    clock.advance(10)
    core.tick()
    out = drain(core)
    assert statuses(out, aware) == [("pa", S.UNREACHABLE, S.AGENT_UNREACHABLE)]
    assert statuses(out, plain) == [("np", S.LOST, S.AGENT_UNREACHABLE)]
    return core, aid, aware, plain


def test_a_healed_partition_gives_running_to_aware_frameworks_and_kills_the_others():
    core, aid, aware, plain = partitioned()
    assert reregister(core, aid, [(aware, "pa"), (plain, "np")]) == aid
    out = drain(core)
    assert statuses(out, aware) == [("pa", S.RUNNING, S.REASON_UNSPECIFIED)]
    kills = agent_events(out, aid, pb.AgentEvent.KILL_TASK)
    assert [(k.kill_task.task_id, k.kill_task.reason, k.epoch) for k in kills] == [
        ("np", S.AGENT_UNREACHABLE, core.epoch)]
    assert core.frameworks[plain].tasks["np"].state == S.KILLING
    assert not core.allocator.allocated(plain).is_empty()   # still running until it dies
    core.agent_update(aid, [status(plain, "np", S.KILLED, uuid=b"k")])
    out = drain(core)
    assert statuses(out, plain) == [("np", S.KILLED, 0)]
    assert core.allocator.allocated(plain).is_empty()
    assert core.frameworks[aware].tasks["pa"].state == S.RUNNING


def test_tasks_an_agent_no_longer_reports_are_lost_or_gone():
    core, aid, aware, plain = partitioned()
    reregister(core, aid, [])
    out = drain(core)
    assert statuses(out, aware) == [("pa", S.GONE, S.AGENT_RESTARTED)]
    assert "pa" not in core.frameworks[aware].tasks
    # A restarted (not partitioned) agent that lost a task: LOST for a plain framework.
    core, _ = make_core()
    aid = register_agent(core)
    plain = subscribe(core, "plain")
    launch(core, plain, aid, "np2")
    core.agent_disconnected(aid)
    reregister(core, aid, [])
    out = drain(core)
    assert statuses(out, plain) == [("np2", S.LOST, S.AGENT_RESTARTED)]
    assert core.allocator.allocated(plain).is_empty()


@pytest.mark.parametrize("unreachable_first", [False, True])
def test_a_rebooted_host_is_a_new_agent_and_its_old_tasks_are_gone(unreachable_first):
    if unreachable_first:
        core, old, aware, plain = partitioned()
        expected = {aware: [("pa", S.GONE, S.AGENT_REBOOTED)], plain: []}
    else:
        core, _ = make_core()
        old = register_agent(core)
        aware, plain = subscribe(core, "aware", partition_aware=True), subscribe(core, "plain")
        launch(core, aware, old, "pa")
        launch(core, plain, old, "np")
        core.agent_disconnected(old)
        expected = {aware: [("pa", S.GONE, S.AGENT_REBOOTED)],
                    plain: [("np", S.GONE, S.AGENT_REBOOTED)]}
    new = reregister(core, "", [], previous=old)
    assert new != old and list(core.agents) == [new]
    out = drain(core)
    for fid, want in expected.items():
        assert statuses(out, fid) == want
        assert core.frameworks[fid].tasks == {}
    assert core.registry.agents() == {new: "h"}
    assert offers_for(core, aware)[0].resources.cpus == 4


def test_a_bad_previous_agent_id_is_refused_without_a_trace():
    core, _ = make_core()
    call = pb.AgentCall(type=pb.AgentCall.REGISTER)
    call.register.info.resources.cpus = 1
    call.register.info.resources.mem = 64
    call.register.previous_agent_id = "../etc"
    with pytest.raises(InvalidRequest):
        core.agent_register(call)
    assert core.agents == {}


def test_drain_kills_with_grace_stops_offers_survives_reregistration_and_ends():
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core)
    launch(core, fid, aid, "t1")
    offers_for(core, fid)                       # an outstanding offer, to be rescinded
    assert core.drain_agent(aid, grace=2.5) == 1
    out = drain(core)
    kill = agent_events(out, aid, pb.AgentEvent.KILL_TASK)[0].kill_task
    assert (kill.task_id, kill.reason, kill.grace_period_seconds) == ("t1", S.AGENT_DRAINING, 2.5)
    assert events(out, fid, pb.Event.RESCIND)
    assert core.frameworks[fid].tasks["t1"].state == S.KILLING
    handle_call(core, fid, pb.Call(type=pb.Call.REVIVE))
    assert offers_for(core, fid) == []
    core.agent_disconnected(aid)
    reregister(core, aid, [(fid, "t1")])
    out = drain(core)
    again = agent_events(out, aid, pb.AgentEvent.KILL_TASK)
    assert [k.kill_task.grace_period_seconds for k in again] == [2.5]
    assert offers_for(core, fid) == [] and core.agents[aid].draining
    core.agent_update(aid, [status(fid, "t1", S.KILLED, uuid=b"k")])
    core.drain_agent(aid, reactivate=True)
    assert [o.agent_id for o in offers_for(core, fid)] == [aid]


@pytest.mark.parametrize("agent,grace", [("nope", None), ("../x", None), ("A", -1.0),
                                         ("A", float("nan")), ("A", float("inf"))])
def test_bad_drain_requests_change_nothing(agent, grace):
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core)
    with pytest.raises(InvalidRequest):
        core.drain_agent(aid if agent == "A" else agent, grace)
    assert not core.agents[aid].draining and aid not in core.draining
    assert [o.agent_id for o in offers_for(core, fid)] == [aid]


def test_quota_in_the_master_config_caps_offers():
    core, _ = make_core(quota={"capped": Resources(cpus=1, mem=1024)})
    register_agent(core, cpus=4)
    capped = subscribe(core, "capped", role="capped")
    offers = offers_for(core, capped)
    assert [o.resources.cpus for o in offers] == [1]
    other = subscribe(core, "other", role="other")
    assert [(o.resources.cpus, o.resources.mem) for o in offers_for(core, other)] == [(3, 3072)]


def test_a_task_reported_ended_is_left_for_its_final_update():
    core, _ = make_core()
    aid = register_agent(core)
    fid = subscribe(core)
    launch(core, fid, aid, "t1")
    core.agent_disconnected(aid)
    call = pb.AgentCall(type=pb.AgentCall.REREGISTER)
    call.register.info.id = aid
    call.register.info.resources.cpus = 4
    call.register.info.resources.mem = 4096
    call.register.tasks.add(info=core.frameworks[fid].tasks["t1"].info, framework_id=fid,
                            latest=pb.TaskStatus(task_id="t1", state=S.FINISHED))
    core.agent_register(call)
    assert statuses(drain(core), fid) == []      # not LOST: its FINISHED is on its way
    core.agent_update(aid, [status(fid, "t1", S.FINISHED, uuid=b"f")])
    assert statuses(drain(core), fid) == [("t1", S.FINISHED, 0)]
    assert core.allocator.allocated(fid).is_empty()
