"""Random sequences of agent, scheduler and clock events (garbage included) against the
master's state machine: it only ever raises InvalidRequest, and its books always balance."""
from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from substrate.errors import InvalidRequest
from substrate.master.calls import handle_call
from substrate.master.core import TERMINAL
from substrate.resources import Resources
from substrate.v1 import pb

from .master_helpers import accept_call, command_task, drain, make_core, register_agent, subscribe

S = pb.TaskStatus
STATES = [S.STARTING, S.RUNNING, S.FINISHED, S.FAILED, S.KILLED, S.LOST]
CALL_TYPES = [pb.Call.DECLINE, pb.Call.REVIVE, pb.Call.SUPPRESS, pb.Call.KILL,
              pb.Call.RECONCILE, pb.Call.TEARDOWN, pb.Call.UNKNOWN, pb.Call.ACKNOWLEDGE]


class MasterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core, self.clock = make_core(agent_heartbeat_interval=1.0, offer_timeout=20.0)
        self.task_seq = 0

    # ------------------------------------------------------------------ agents
    @rule(cpus=st.sampled_from([1.0, 2.0, 4.0]))
    def add_agent(self, cpus):
        if len(self.core.agents) < 4:
            register_agent(self.core, cpus=cpus, mem=2048)

    @precondition(lambda self: self.core.agents)
    @rule(data=st.data())
    def agent_disconnects(self, data):
        aid = data.draw(st.sampled_from(sorted(self.core.agents)))
        self.core.agent_disconnected(aid)

    @rule()
    def heartbeats(self):
        for aid in list(self.core.agents):
            self.core.agent_heartbeat(aid)

    @precondition(lambda self: any(a.tasks for a in self.core.agents.values()))
    @rule(data=st.data(), state=st.sampled_from(STATES))
    def agent_reports(self, data, state):
        agents = [a for a in self.core.agents.values() if a.tasks]
        agent = data.draw(st.sampled_from(sorted(agents, key=lambda a: a.agent_id)))
        fid, tid = data.draw(st.sampled_from(sorted(agent.tasks)))
        self.core.agent_update(agent.agent_id, [pb.TaskStatus(
            framework_id=fid, task_id=tid, state=state, uuid=b"u")])

    # ------------------------------------------------------------------ frameworks
    @rule(failover=st.sampled_from([0.0, 5.0]), weight=st.sampled_from([1.0, 2.0]))
    def add_framework(self, failover, weight):
        if len(self.core.frameworks) < 3:
            subscribe(self.core, f"fw{len(self.core.frameworks)}", weight=weight,
                      failover_timeout=failover)

    @precondition(lambda self: self.core.frameworks)
    @rule(data=st.data())
    def framework_disconnects(self, data):
        self.core.framework_disconnected(data.draw(st.sampled_from(sorted(self.core.frameworks))))

    @rule()
    def allocate(self):
        self.core.allocate()

    @precondition(lambda self: self.core.offers)
    @rule(data=st.data(), n=st.integers(0, 3), cpus=st.sampled_from([0.5, 1.0, 8.0, -1.0]),
          dup=st.booleans(), foreign=st.booleans())
    def accept(self, data, n, cpus, dup, foreign):
        offer = data.draw(st.sampled_from(sorted(self.core.offers.values(), key=lambda o: o.offer_id)))
        fid = offer.framework_id
        if foreign and len(self.core.frameworks) > 1:
            fid = next(f for f in sorted(self.core.frameworks) if f != fid)
        tasks = []
        for _ in range(n):
            self.task_seq += 1
            task = command_task(f"t{self.task_seq}", offer.agent_id, cpus=1.0, mem=64)
            task.resources.cpus = cpus
            tasks.append(task)
        if dup and tasks:
            tasks.append(tasks[0])
        self._call(fid, accept_call([offer.offer_id], tasks))

    @precondition(lambda self: self.core.frameworks)
    @rule(data=st.data(), kind=st.sampled_from(CALL_TYPES), task=st.sampled_from(["t1", "t2", "x/y"]))
    def misc_call(self, data, kind, task):
        fid = data.draw(st.sampled_from(sorted(self.core.frameworks)))
        call = pb.Call(type=kind)
        if kind == pb.Call.KILL:
            call.kill.task_id = task
        if kind == pb.Call.DECLINE:
            call.decline.offer_ids.extend(sorted(self.core.offers)[:1] + ["bogus"])
        if kind == pb.Call.ACKNOWLEDGE:
            call.acknowledge.acks.add(agent_id="a", task_id=task, uuid=b"" if task == "x/y" else b"k")
        self._call(fid, call)

    @precondition(lambda self: self.core.frameworks)
    @rule(data=st.data(), raw=st.binary(max_size=64))
    def garbage_call(self, data, raw):
        fid = data.draw(st.sampled_from(sorted(self.core.frameworks)))
        try:
            call = pb.Call.FromString(raw)
        except Exception:
            return  # the gRPC layer refuses what does not parse
        self._call(fid, call)

    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0, 30.0]))
    def time_passes(self, seconds):
        self.clock.advance(seconds)
        self.core.tick()

    def _call(self, fid, call):
        try:
            handle_call(self.core, fid, call)
        except InvalidRequest:
            pass

    # ------------------------------------------------------------------ invariants
    @invariant()
    def books_balance(self):
        core = self.core
        drain(core)
        for agent in core.agents.values():
            used = Resources()
            for task in agent.tasks.values():
                assert task.state not in TERMINAL
                used = used + task.resources
            for ex in agent.executors.values():
                used = used + ex.resources
            for offer_id in agent.offers:
                used = used + core.offers[offer_id].resources
            assert agent.total.contains(used), (agent.total, used)
        for offer in core.offers.values():
            assert offer.agent_id in core.agents and offer.framework_id in core.frameworks
            assert offer.offer_id in core.frameworks[offer.framework_id].offers
        for fw in core.frameworks.values():
            for task in fw.tasks.values():
                assert task.state not in TERMINAL
                if task.agent_id in core.agents:
                    assert core.agents[task.agent_id].tasks.get((fw.framework_id, task.task_id)) is task
                else:
                    assert task.state == S.UNREACHABLE or not fw.partition_aware


MasterMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestMasterStateMachine = MasterMachine.TestCase
