"""Simulated agents for ``bench_failover.py``, spread over worker processes.

Each worker process runs its own asyncio loop, its own ZooKeeper leader detector (as every
real agent has one) and its share of the simulated agents; each agent has its own gRPC
channel, hence its own TCP connection and ``Master.Agent`` stream, per attempt. One process
cannot drive 10,000 such agents (grpc.aio in one process then leaves operations pending for
seconds), so the benchmark starts one worker per ``--agents-per-worker`` agents.

A worker talks to the benchmark over a pipe. It sends ``("ready",)`` once its detector sees a
leader, then ``("full", epoch, first_at, full_at, tasks, errors)`` each time all of its agents
are registered at a new leader ``epoch`` (``time.monotonic()`` values, one clock for all
processes of the machine; ``errors``: exception name -> count so far). It answers
``("status", epoch)`` with ``("status", registered, phases, errors)`` and ends on ``("stop",)``.
"""
from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
from typing import Optional

import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from substrate.detector import LeaderDetector, MasterLocator  # noqa: E402
from substrate.v1 import pb, rpc  # noqa: E402

#: The real agent's reconnection backoff (``substrate.agent``): first delay and default cap.
FIRST_BACKOFF, MAX_BACKOFF = 0.05, 2.0
#: A re-registration unanswered this long is retried on a fresh connection (grpc.aio sometimes
#: never completes an operation; such retries are counted and printed). The deadline doubles
#: after each unanswered attempt, up to the cap: agents that give up early on a busy master
#: would bury it (and their own process) under new connections and repeated registrations.
REGISTER_DEADLINE, MAX_REGISTER_DEADLINE = 30.0, 60.0
#: The first registrations are spread over this many seconds per 1,000 agents (real agents
#: do not all start at the same instant; re-registrations after a failover are not spread).
RAMP_PER_1000 = 2.0
#: Memory per simulated task, MB (a task takes one cpu and this much memory).
TASK_MEM = 32


def raise_fd_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class SimAgent:
    """One simulated agent: registers, reports launched tasks RUNNING, re-registers them."""

    __slots__ = ("index", "agent_id", "epoch", "tasks", "cpus", "phase")

    def __init__(self, index: int, cpus: float) -> None:
        self.index, self.cpus = index, cpus
        self.phase = "start"  # what it waits on (printed when a run stalls)
        self.agent_id, self.epoch = "", 0
        self.tasks: dict = {}  # task id -> (framework id, TaskInfo)

    def registration(self) -> "pb.AgentCall":
        kind = pb.AgentCall.REREGISTER if self.agent_id else pb.AgentCall.REGISTER
        call = pb.AgentCall(type=kind, epoch=self.epoch)
        info = call.register.info
        info.id, info.hostname = self.agent_id, f"sim-{self.index}"
        info.address = f"127.0.0.1:{20000 + self.index % 40000}"
        info.resources.cpus, info.resources.mem = self.cpus, self.cpus * TASK_MEM
        for tid, (fid, task) in self.tasks.items():
            call.register.tasks.add(info=task, framework_id=fid, latest=pb.TaskStatus(
                task_id=tid, state=pb.TaskStatus.RUNNING, framework_id=fid,
                agent_id=self.agent_id))
        return call


class StalledCall(Exception):
    """A registration not answered within ``REGISTER_DEADLINE``."""


class LeaderChanged(Exception):
    """The leader changed while a stream operation was pending."""


async def _unless(op, follow: asyncio.Future, deadline: Optional[float] = None):
    """Await a stream operation unless the leader changes first.

    ``call.cancel()`` (done when ``follow`` fires) does not always complete a pending
    ``write`` or ``read`` of grpc.aio: with hundreds of streams on one loop some never
    return, and the agent would wait forever. So the operation is raced against ``follow``
    (and ``deadline``) and abandoned if the leader changes first.
    """
    task = asyncio.ensure_future(op)
    done, _ = await asyncio.wait({task, follow}, timeout=deadline,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return task.result()
    task.cancel()
    if follow in done:
        raise LeaderChanged()
    raise StalledCall()


class Fleet:
    """The simulated agents of one worker process, sharing one leader detector."""

    def __init__(self, first: int, n: int, cpus: float, locator: MasterLocator,
                 on_full, shared_channel: bool = False) -> None:
        self.agents = [SimAgent(first + i, cpus) for i in range(n)]
        # One channel (one HTTP/2 connection) per master for all agents of this process,
        # each agent still with a stream of its own; or (default) a channel per agent.
        self.shared_channel = shared_channel
        self.channels: dict = {}       # target -> shared channel
        self.locator = locator
        self.on_full = on_full         # (epoch, first_at, full_at, tasks) -> None
        self.errors: dict = {}         # exception name -> count
        self.registered: dict = {}     # epoch -> count
        self.tasks: dict = {}          # epoch -> tasks re-registered
        self.first_at: dict = {}       # epoch -> monotonic time of its first REGISTERED

    def ramp_index(self, agent: SimAgent) -> int:
        """The agent's place in the start-up ramp of the whole fleet (workers interleave)."""
        return agent.index

    def phases(self, epoch: int) -> dict:
        """What the agents not yet registered at ``epoch`` wait on: phase -> count."""
        out: dict = {}
        for a in self.agents:
            if a.epoch < epoch:
                out[a.phase] = out.get(a.phase, 0) + 1
        return out

    def _registered(self, agent: SimAgent, epoch: int) -> None:
        now = time.monotonic()
        count = self.registered.get(epoch, 0) + 1
        self.registered[epoch] = count
        self.first_at.setdefault(epoch, now)
        self.tasks[epoch] = self.tasks.get(epoch, 0) + len(agent.tasks)
        if count == len(self.agents):
            self.on_full(epoch, self.first_at[epoch], now, self.tasks[epoch])

    async def run_agent(self, agent: SimAgent) -> None:
        """Like a real agent's link: a connection of its own per attempt, closed after it,
        exponential backoff between failed attempts, and a move as soon as the leader
        changes."""
        backoff, last, deadline = FIRST_BACKOFF, "", REGISTER_DEADLINE
        await asyncio.sleep(RAMP_PER_1000 * self.ramp_index(agent) / 1000)
        while True:
            agent.phase = "resolve"
            target = await self.locator.resolve(60)
            if target != last:  # a new leader: the backoff grown against the old one is moot
                backoff, last = FIRST_BACKOFF, target
            # A distinct channel argument per agent: gRPC would otherwise share one TCP
            # connection between all channels to the same target.
            if self.shared_channel:
                channel = self.channels.get(target)
                if channel is None:
                    channel = self.channels[target] = grpc.aio.insecure_channel(target)
            else:
                channel = grpc.aio.insecure_channel(target, options=[
                    ("offerpool.bench.agent", agent.index)])
            follow = asyncio.ensure_future(self.locator.wait_changed(target))
            call = None
            try:
                call = rpc.MasterStub(channel).Agent()
                follow.add_done_callback(lambda f, c=call: f.cancelled() or c.cancel())
                answered = False  # REGISTERED received on this stream
                agent.phase = "write"
                # A first REGISTER has no deadline: retried, it could admit the same agent
                # twice under two ids (the first attempt may have reached the master).
                first_time = not agent.agent_id
                await _unless(call.write(agent.registration()), follow,
                              None if first_time else deadline)
                while True:
                    agent.phase = "read" if answered else "await REGISTERED"
                    ev = await _unless(call.read(), follow,
                                       None if answered or first_time else deadline)
                    if ev is grpc.aio.EOF:
                        break
                    if ev.epoch < agent.epoch:
                        continue
                    agent.epoch = ev.epoch
                    if ev.type == pb.AgentEvent.REGISTERED:
                        answered, backoff, deadline = True, FIRST_BACKOFF, REGISTER_DEADLINE
                        agent.agent_id = ev.registered.agent_id
                        self._registered(agent, ev.epoch)
                    elif ev.type == pb.AgentEvent.RUN_TASKS:
                        fid = ev.run_tasks.framework.id
                        update = pb.AgentCall(type=pb.AgentCall.UPDATE, epoch=agent.epoch)
                        for task in ev.run_tasks.tasks:
                            agent.tasks[task.task_id] = (fid, task)
                            update.update.statuses.add(
                                task_id=task.task_id, state=pb.TaskStatus.RUNNING,
                                source=pb.TaskStatus.AGENT, agent_id=agent.agent_id,
                                framework_id=fid, uuid=os.urandom(16), timestamp=time.time())
                        await _unless(call.write(update), follow)
            except (grpc.RpcError, asyncio.CancelledError, Exception) as exc:
                # (a stream cancelled under a pending write raises grpc's own usage errors)
                if asyncio.current_task().cancelling():
                    follow.cancel()
                    if not self.shared_channel:
                        await channel.close(None)
                    raise  # the benchmark is over
                key = type(exc).__name__
                self.errors[key] = self.errors.get(key, 0) + 1
                if call is not None:
                    call.cancel()  # so that the master sees this stream end
                if isinstance(exc, StalledCall):
                    deadline = min(deadline * 2, MAX_REGISTER_DEADLINE)
            if not self.shared_channel:
                # (not awaited: closing waits for the calls that grpc may never complete)
                asyncio.ensure_future(channel.close(None))
            if not follow.done():
                # the master went away: retry after a backoff, or at once on a new leader
                agent.phase = "backoff"
                await asyncio.wait({follow}, timeout=backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            follow.cancel()


async def _serve(conn, url: str, first: int, count: int, cpus: float,
                 shared_channel: bool) -> None:
    loop = asyncio.get_running_loop()
    detector = LeaderDetector(url).start()
    await loop.run_in_executor(None, detector.wait_leader, 60)
    locator = MasterLocator(url, detector=detector)
    fleet = Fleet(first, count, cpus, locator, lambda epoch, t1, t2, tasks: conn.send(
        ("full", epoch, t1, t2, tasks, dict(fleet.errors))), shared_channel)
    stop = asyncio.Event()

    def on_command() -> None:
        while conn.poll():
            try:
                msg = conn.recv()
            except EOFError:   # the benchmark is gone
                stop.set()
                return
            if msg[0] == "status":
                conn.send(("status", dict(fleet.registered), fleet.phases(msg[1]),
                           dict(fleet.errors)))
            elif msg[0] == "stop":
                stop.set()

    loop.add_reader(conn.fileno(), on_command)
    runners = [asyncio.ensure_future(fleet.run_agent(a)) for a in fleet.agents]
    conn.send(("ready",))
    try:
        await stop.wait()
    finally:
        loop.remove_reader(conn.fileno())
        for r in runners:
            r.cancel()
        await asyncio.wait_for(asyncio.gather(*runners, return_exceptions=True), 30)
        for channel in fleet.channels.values():
            await channel.close(None)
        detector.close()


def worker_main(conn, url: str, first: int, count: int, cpus: float, nice: int = 0,
                shared_channel: bool = False) -> None:
    """Entry point of a worker process: agents ``first .. first + count - 1``, run at
    scheduling priority ``nice`` (the master under test keeps the default)."""
    raise_fd_limit()
    if nice:
        os.nice(nice)
    try:
        asyncio.run(_serve(conn, url, first, count, cpus, shared_channel))
    except (asyncio.TimeoutError, KeyboardInterrupt):
        pass
    finally:
        conn.close()
