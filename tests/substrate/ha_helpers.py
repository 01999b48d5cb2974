"""Real master and agent processes for the high-availability tests, and ways to watch them."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

import grpc

from substrate.detector import LeaderDetector
from substrate.v1 import pb, rpc


class Proc:
    """An ``offerpool`` daemon started with ``--ready-json``."""

    def __init__(self, args: list, timeout: float = 30.0, log_path: Optional[str] = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.log = open(log_path, "w") if log_path else None
        self.proc = subprocess.Popen([sys.executable, "-m", "substrate.cli", *args, "--ready-json"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.info: dict = {}
        done = threading.Event()

        def read() -> None:
            line = self.proc.stdout.readline()
            try:
                self.info.update(json.loads(line))
            except ValueError:
                pass
            done.set()

        threading.Thread(target=read, daemon=True).start()
        if not done.wait(timeout) or not self.info:
            self.kill()
            raise RuntimeError(f"`offerpool {' '.join(args)}` did not start")

    @property
    def address(self) -> str:
        return self.info["address"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(20)
        if self.log:
            self.log.close()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log:
            self.log.close()


def start_master(zk_url: str, log_dir: str, name: str, session_timeout: float = 1.5,
                 extra: tuple = ()) -> Proc:
    return Proc(["master", "--port", "0", "--http-port", "-1", "--zk", zk_url,
                 "--zk-session-timeout", str(session_timeout), "--agent-heartbeat", "1",
                 *extra], log_path=os.path.join(log_dir, f"{name}.log"))


def start_agent(master: str, work_dir: str, name: str, cpus: float = 2, mem: float = 1024) -> Proc:
    return Proc(["agent", "--master", master, "--port", "0", "--work-dir", work_dir,
                 "--cpus", str(cpus), "--mem", str(mem), "--hostname", name],
                log_path=os.path.join(work_dir + ".log"))


def state(address: str) -> dict:
    with grpc.insecure_channel(address) as channel:
        reply = rpc.MasterStub(channel).GetState(pb.StateRequest(), timeout=10)
    return json.loads(reply.json)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll a condition on other processes (no event to wait on across processes)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # a master between terms answers errors; keep polling
            last_exc = exc
        time.sleep(0.05)  # polling interval, not synchronisation: the predicate decides
    raise AssertionError(f"timed out waiting for {what or predicate} (last error: {last_exc})")


def leader(detector: LeaderDetector, timeout: float = 30.0) -> str:
    return detector.wait_leader(timeout).address


def wait_leader_other_than(detector: LeaderDetector, old: str, timeout: float = 30.0) -> str:
    wait_for(lambda: detector.leader is not None and detector.leader.address != old
             and state(detector.leader.address).get("leading"), timeout, "a new leader")
    return detector.leader.address


class LoopThread:
    """An asyncio loop on a thread of its own, for in-process masters in the HA tests."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn):
        async def go():
            return fn()
        return self.run(go())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
