"""An unreachable agent comes back (master core, fake clock): partition-aware frameworks see
their tasks RUNNING again; tasks reported LOST to the others are killed on the agent."""
from __future__ import annotations

import pytest

from substrate.master.calls import handle_call
from substrate.v1 import pb

from .master_helpers import (
    accept_call, agent_events, command_task, drain, events, make_core, offers_for,
    register_agent, status, subscribe,
)

S = pb.TaskStatus


def _partitioned(partition_aware: bool):
    core, clock = make_core(agent_heartbeat_interval=1.0)
    aid = register_agent(core)
    fid = subscribe(core, partition_aware=partition_aware)
    offer = offers_for(core, fid)[0]
    task = command_task("t1", aid)
    handle_call(core, fid, accept_call([offer.id], [task]))
    core.agent_update(aid, [status(fid, "t1", S.RUNNING)])
    clock.advance(5.0)
    core.tick()
    assert aid not in core.agents
    drain(core)
    back = pb.AgentCall(type=pb.AgentCall.REREGISTER)
    back.register.info.id = aid
    back.register.info.hostname = "h"
    back.register.info.resources.cpus, back.register.info.resources.mem = 4, 4096
    ts = back.register.tasks.add(framework_id=fid)
    ts.info.CopyFrom(task)
    ts.latest.CopyFrom(S(task_id="t1", state=S.RUNNING, framework_id=fid))
    assert core.agent_register(back) == aid
    return core, aid, fid, drain(core)


def test_partition_aware_framework_sees_its_task_running_again():
    core, aid, fid, out = _partitioned(True)
    statuses = [s for ev in events(out, fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [(s.task_id, s.state) for s in statuses] == [("t1", S.RUNNING)]
    assert "reachable again" in statuses[0].message
    assert not agent_events(out, aid, pb.AgentEvent.KILL_TASK)
    assert core.frameworks[fid].tasks["t1"].state == S.RUNNING


def test_task_reported_lost_is_killed_when_its_agent_returns():
    core, aid, fid, out = _partitioned(False)
    kills = agent_events(out, aid, pb.AgentEvent.KILL_TASK)
    assert [(k.kill_task.framework_id, k.kill_task.task_id) for k in kills] == [(fid, "t1")]
    # Until the agent confirms the kill the task holds its resources there.
    assert core.frameworks[fid].tasks["t1"].state == S.KILLING
    # The agent's KILLED update reaches the framework, and nothing is charged for the task.
    core.agent_update(aid, [status(fid, "t1", S.KILLED)])
    out = drain(core)
    statuses = [s for ev in events(out, fid, pb.Event.UPDATE) for s in ev.update.statuses]
    assert [(s.task_id, s.state) for s in statuses] == [("t1", S.KILLED)]
    assert core.allocator.allocated(fid).is_empty()


@pytest.mark.parametrize("aware", [True, False])
def test_a_second_return_changes_nothing(aware):
    core, aid, fid, _ = _partitioned(aware)
    again = pb.AgentCall(type=pb.AgentCall.REREGISTER)
    again.register.info.id = aid
    again.register.info.resources.cpus, again.register.info.resources.mem = 4, 4096
    ts = again.register.tasks.add(framework_id=fid)   # still there (a kill not yet done)
    ts.info.CopyFrom(core.frameworks[fid].tasks["t1"].info)
    ts.latest.CopyFrom(S(task_id="t1", state=S.RUNNING, framework_id=fid))
    core.agent_register(again)
    out = drain(core)
    assert not events(out, fid, pb.Event.UPDATE)
    # The kill of the other framework's task is asked again (idempotent), not forgotten.
    assert len(agent_events(out, aid, pb.AgentEvent.KILL_TASK)) == (0 if aware else 1)
    assert core.frameworks[fid].tasks["t1"].state == (S.RUNNING if aware else S.KILLING)
