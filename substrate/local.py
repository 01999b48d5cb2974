"""The embedded cluster: a master and agents on loopback, started from a notebook or script.

:class:`LocalCluster` runs the master and its agents on one event loop in a background thread
of the caller's process (fast to start), or each as its own OS process (``processes=True``).
Executors are always real child processes. Frameworks connect to :attr:`LocalCluster.master`
exactly as they would to a remote ``host:port``.
"""
from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Optional

from substrate.aio_loops import start_loop_thread
from substrate.errors import ClusterError
from substrate.resources import Resources


#: Seconds the executors of an embedded cluster wait for a dead agent to come back.
LOCAL_EXECUTOR_RECOVERY_TIMEOUT = 10.0


class LocalCluster:
    """A master and ``agents`` agents on ephemeral loopback ports.

    Parameters
    ----------
    agents : int
        Number of agents.
    cpus, mem : float, optional
        Resources of each agent (default: this machine's cpus and memory split evenly,
        at least one cpu each).
    work_dir : str, optional
        Where sandboxes go (default: a temporary directory removed on stop).
    processes : bool
        Run master and agents as separate OS processes instead of threads of this process.
    master_port, http_port : int
        Ports for the master's gRPC and HTTP endpoints (0: any free port).
    master_config : MasterConfig, optional
        Timing overrides for the master (tests shorten heartbeats).
    agent_options : dict, optional
        Extra :class:`substrate.agent.AgentConfig` fields for every agent (in process mode,
        those that have an ``offerpool agent`` flag). ``executor_recovery_timeout`` defaults
        to 10 seconds here.

    Examples
    --------
    >>> from substrate import LocalCluster
    >>> with LocalCluster(agents=2) as cluster:
    ...     state = cluster.state()
    >>> len(state["agents"])
    2
    """

    def __init__(self, agents: int = 2, *, cpus: Optional[float] = None,
                 mem: Optional[float] = None, work_dir: Optional[str] = None,
                 processes: bool = False, master_config=None,
                 agent_options: Optional[dict] = None, http: bool = True,
                 master_port: int = 0, http_port: int = 0) -> None:
        if agents < 1:
            raise ClusterError("a cluster needs at least one agent")
        self.num_agents = agents
        ncpu = os.cpu_count() or 1
        self.cpus = float(cpus) if cpus is not None else max(1.0, ncpu / agents)
        if mem is None:
            try:
                import psutil
                mem = max(256.0, psutil.virtual_memory().total / 2**20 / 2 / agents)
            except Exception:
                mem = 1024.0
        self.mem = float(mem)
        self._own_dir = work_dir is None
        self.work_dir = work_dir or tempfile.mkdtemp(prefix="offerpool-")
        self.processes = processes
        self.master_config = master_config
        # An embedded cluster dies with its notebook or script: its executors should not wait
        # the production default (15 minutes) for agents that will not come back.
        self.agent_options = {"executor_recovery_timeout": LOCAL_EXECUTOR_RECOVERY_TIMEOUT,
                              **(agent_options or {})}
        self.http = http
        self.master_port, self.http_port = master_port, http_port
        self.master = ""
        self.dashboard_url = ""
        self.agents: list = []
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._master_obj = None
        self._children: list[subprocess.Popen] = []
        self._started = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "LocalCluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> "LocalCluster":
        if self._started:
            return self
        self._started = True
        atexit.register(self.stop)
        try:
            if self.processes:
                self._start_processes(timeout)
            else:
                self._start_threads(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop agents (killing their executors) and the master; remove the temporary dir."""
        if not self._started:
            return
        self._started = False
        if self._loop is not None and self._thread is not None:
            fut = asyncio.run_coroutine_threadsafe(self._stop_async(), self._loop)
            try:
                fut.result(timeout=30)
            except Exception:
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop = None
        for child in reversed(self._children):
            if child.poll() is None:
                child.terminate()
        for child in reversed(self._children):
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self._children.clear()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        try:
            atexit.unregister(self.stop)
        except Exception:
            pass

    # ------------------------------------------------------------------ threads mode
    def _start_threads(self, timeout: float) -> None:
        self._loop, self._thread = start_loop_thread("local-cluster")
        fut = asyncio.run_coroutine_threadsafe(self._start_async(), self._loop)  # type: ignore[arg-type]
        try:
            fut.result(timeout=timeout)
        except Exception as exc:
            raise ClusterError(f"the embedded cluster did not start: {exc}") from exc

    async def _start_async(self) -> None:
        from substrate.agent import Agent, AgentConfig
        from substrate.master import Master

        self._master_obj = Master("127.0.0.1", self.master_port,
                                  self.http_port if self.http else None, self.master_config)
        await self._master_obj.start()
        self.master = self._master_obj.address
        self.dashboard_url = self._master_obj.http_url
        for i in range(self.num_agents):
            config = AgentConfig(
                master=self.master, work_dir=os.path.join(self.work_dir, f"agent{i}"),
                resources=Resources(cpus=self.cpus, mem=self.mem, disk=1024.0,
                                    ports=((31000 + 1000 * i, 31999 + 1000 * i),)),
                hostname=f"localhost-{i}", **self.agent_options)
            agent = Agent(config)
            await agent.start()
            self.agents.append(agent)
        await asyncio.gather(*(asyncio.wait_for(a.registered.wait(), 20) for a in self.agents))

    async def _stop_async(self) -> None:
        for agent in self.agents:
            try:
                await agent.stop()
            except Exception:
                pass
        self.agents.clear()
        if self._master_obj is not None:
            await self._master_obj.stop()

    # ------------------------------------------------------------------ processes mode
    def _start_processes(self, timeout: float) -> None:
        args = ["master", "--port", "0", "--http-port", "0" if self.http else "-1"]
        cfg = self.master_config
        if cfg is not None:
            from substrate.ops_cli import quota_flags
            args += ["--agent-heartbeat", str(cfg.agent_heartbeat_interval),
                     "--agent-missed-heartbeats", str(cfg.agent_max_missed_heartbeats),
                     "--offer-timeout", str(cfg.offer_timeout or 0), *quota_flags(cfg.quota)]
        master = self._spawn(args, timeout)
        self.master, self.dashboard_url = master["address"], master.get("http", "")
        for i in range(self.num_agents):
            self.agents.append(self.start_agent(i, timeout=timeout))

    def _agent_args(self, i: int, options: dict) -> list[str]:
        from substrate.ops_cli import agent_flags
        try:
            flags = agent_flags({"isolation": "none", **self.agent_options, **options})
        except ValueError as exc:
            raise ClusterError(str(exc)) from None
        return ["agent", "--master", self.master, "--port", "0",
                "--work-dir", os.path.join(self.work_dir, f"agent{i}"),
                "--cpus", str(self.cpus), "--mem", str(self.mem),
                "--hostname", f"localhost-{i}", *flags]

    def start_agent(self, i: int, timeout: float = 30.0, **options) -> dict:
        """Process mode: start agent ``i`` (again, after :meth:`kill_agent`) on its work dir.

        ``options`` override :class:`~substrate.agent.AgentConfig` fields for this start
        (those with a flag, e.g. ``recover="cleanup"``). Returns ``{"agent_id", "address",
        "pid"}`` once the agent is registered, and puts it in :attr:`agents`.
        """
        if not self.processes:
            raise ClusterError("start_agent needs LocalCluster(processes=True)")
        info = self._spawn(self._agent_args(i, options), timeout)
        if i < len(self.agents):
            self.agents[i] = info
        return info

    def kill_agent(self, i: int, sig: int = 9) -> None:
        """Process mode: send ``sig`` (default SIGKILL) to agent ``i`` and reap it.

        After SIGKILL its executors and tasks keep running, as on a real host whose agent
        crashed; :meth:`start_agent` then recovers them.
        """
        pid = self.agents[i]["pid"]
        for child in self._children:
            if child.pid == pid:
                child.send_signal(sig)
                child.wait(timeout=30)
                return
        raise ClusterError(f"agent {i} is not a child of this cluster")

    def _spawn(self, args: list[str], timeout: float) -> dict:
        """Start ``offerpool ARGS --ready-json``; wait for its one-line JSON greeting."""
        proc = subprocess.Popen([sys.executable, "-m", "substrate.cli", *args, "--ready-json"],
                                stdout=subprocess.PIPE, stderr=None, text=True)
        self._children.append(proc)
        result: dict = {}
        done = threading.Event()

        def read() -> None:
            line = proc.stdout.readline() if proc.stdout else ""
            try:
                result.update(json.loads(line))
            except ValueError:
                pass
            done.set()

        threading.Thread(target=read, daemon=True).start()
        if not done.wait(timeout) or not result:
            raise ClusterError(f"`offerpool {' '.join(args)}` did not start")
        result["pid"] = proc.pid
        return result

    # ------------------------------------------------------------------ views
    def state(self) -> dict:
        """The master's ``/state`` as a dict."""
        import grpc

        from substrate.v1 import pb, rpc

        with grpc.insecure_channel(self.master) as channel:
            reply = rpc.MasterStub(channel).GetState(pb.StateRequest(), timeout=10)
        return json.loads(reply.json)

    def _repr_html_(self) -> str:
        import html
        link = (f'<a href="{html.escape(self.dashboard_url)}" target="_blank">dashboard</a>'
                if self.dashboard_url else "no dashboard")
        return (f"<b>offerpool LocalCluster</b>: master {html.escape(self.master)}, "
                f"{self.num_agents} agents × {self.cpus:g} cpus, {link}")

    def __repr__(self) -> str:
        return f"LocalCluster(master={self.master!r}, agents={self.num_agents})"
