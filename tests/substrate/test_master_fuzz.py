"""Fuzzing the master's request handlers over a real gRPC channel to a real master process.

Hypothesis draws arbitrary and mutated ``Call`` and ``AgentCall`` sequences (after a real
subscription or registration, with live ids substituted so calls get past the id checks), and
raw garbage, truncated and oversized frames. After every example the master process is alive,
every answer is an event or a clear gRPC status (never UNKNOWN, which is an unhandled
exception); at the end a healthy framework still gets its work done. The budget is
``OFFERPOOL_FUZZ_SECONDS`` (default 20) shared by the fuzzing tests.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from substrate import TaskState
from substrate.v1 import pb

from .cluster_helpers import Recorder, start
from .proto_strategies import defuse, messages, substitute

pytestmark = pytest.mark.timeout(180)
BUDGET = float(os.environ.get("OFFERPOOL_FUZZ_SECONDS", "20")) / 3
SCHEDULER, AGENT, STATE = ("/substrate.v1.Master/Scheduler", "/substrate.v1.Master/Agent",
                           "/substrate.v1.Master/GetState")
# Statuses that are clear refusals. UNKNOWN (an exception escaped a handler) and UNAVAILABLE
# (the master is gone) are failures; INTERNAL only for frames gRPC itself cannot parse.
CLEAR = {None, grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
         grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.PERMISSION_DENIED,
         grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION}
# Each test runs batches of examples until its budget is spent: a batch is short (drawing a
# deep Call costs up to tens of milliseconds on a loaded machine), so the budget holds on slow
# and fast machines alike, and every batch draws fresh examples.
FUZZ_SETTINGS = settings(max_examples=25, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))


def _spawn(*args: str, log=None) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-m", "substrate.cli", *args, "--ready-json"],
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    return proc, json.loads(line)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz-agent")
    master_log = work / "master.log"
    log = open(master_log, "w")
    master, info = _spawn("master", "--port", "0", "--http-port", "-1",
                          "--agent-heartbeat", "2", "--agent-missed-heartbeats", "5", log=log)
    agent, ainfo = _spawn("agent", "--master", info["address"], "--work-dir", str(work),
                          "--cpus", "2", "--mem", "1024", "--isolation", "none")
    channel = grpc.insecure_channel(info["address"], options=[
        ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)])
    rec = Recorder()
    driver = start(info["address"], rec, name="healthy")
    deadline = {"end": 0.0}
    try:
        yield {"master": master, "address": info["address"], "agent_id": ainfo["agent_id"],
               "channel": channel, "rec": rec, "driver": driver, "deadline": deadline,
               "examples": 0, "master_log": master_log}
    finally:
        driver.stop()
        channel.close()
        for proc in (agent, master):
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


class RawStream:
    """A bidirectional stream of raw frames; replies and the final status are collected."""

    def __init__(self, channel: grpc.Channel, method: str) -> None:
        self._out: "queue.Queue[bytes | None]" = queue.Queue()
        call = channel.stream_stream(method, request_serializer=lambda b: b,
                                     response_deserializer=lambda b: b)
        self._call = call(iter(self._out.get, None), timeout=30)
        self.replies: list[bytes] = []
        self.code = None
        self.details = ""
        self._got = threading.Condition()
        self._done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for reply in self._call:
                with self._got:
                    self.replies.append(reply)
                    self._got.notify_all()
            self.code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            self.code, self.details = exc.code(), exc.details() or ""
        finally:
            self._done.set()
            with self._got:
                self._got.notify_all()

    def send(self, frame: bytes) -> None:
        self._out.put(frame)

    def first_reply(self, timeout: float = 10.0):
        with self._got:
            self._got.wait_for(lambda: self.replies or self._done.is_set(), timeout)
        return self.replies[0] if self.replies else None

    def finish(self, timeout: float = 20.0) -> None:
        self._out.put(None)
        if not self._done.wait(timeout):
            self._call.cancel()
            raise AssertionError("the master did not end a half-closed stream")


def _check(cluster, stream: RawStream, event_type) -> None:
    assert cluster["master"].poll() is None, "the master process died"
    clear = stream.code in CLEAR or (stream.code == grpc.StatusCode.INTERNAL
                                     and "serializ" in stream.details.lower())
    assert clear, (stream.code, stream.details)
    if stream.code not in (None, grpc.StatusCode.OK):
        assert stream.details, "an error status without a message"
    for raw in stream.replies:
        event = event_type.FromString(raw)
        if event.type == getattr(event_type, "ERROR", -1):
            assert event.error.message, "an ERROR event without a message"
            # The handlers' last-resort catch: a bug in the master, not a refusal.
            assert not event.error.message.startswith("internal error"), event.error.message


def _in_budget(cluster) -> bool:
    if time.monotonic() < cluster["deadline"]["end"]:
        cluster["examples"] += 1
        return True
    return False


def _run_for_budget(cluster, fuzz) -> None:
    cluster["deadline"]["end"] = time.monotonic() + BUDGET
    cluster["examples"] = 0
    while time.monotonic() < cluster["deadline"]["end"]:
        fuzz(cluster)
    assert cluster["examples"] > 0
    print(f"{fuzz.__name__}: {cluster['examples']} examples")


CALLS = messages(pb.Call.DESCRIPTOR)
AGENT_CALLS = messages(pb.AgentCall.DESCRIPTOR)
AGENT_INFOS = messages(pb.AgentInfo.DESCRIPTOR)


@FUZZ_SETTINGS
@given(subscribe_first=st.booleans(), first=CALLS, calls=st.lists(CALLS, max_size=5))
def _fuzz_scheduler(cluster, subscribe_first, first, calls):
    if not _in_budget(cluster):
        return
    stream = RawStream(cluster["channel"], SCHEDULER)
    ids = {"@fid": "", "@offer": "", "@agent": cluster["agent_id"], "@task": "fuzz-task"}
    if subscribe_first:
        sub = pb.Call(type=pb.Call.SUBSCRIBE)
        sub.subscribe.framework_info.name = "fuzz"
        stream.send(sub.SerializeToString())
        reply = stream.first_reply()
        if reply is not None:
            ids["@fid"] = pb.Event.FromString(reply).subscribed.framework_id
    else:
        defuse(first)
        stream.send(first.SerializeToString())
    for call in calls:
        for raw in list(stream.replies):
            event = pb.Event.FromString(raw)
            if event.type == pb.Event.OFFERS and event.offers.offers:
                ids["@offer"] = event.offers.offers[0].id
        substitute(call, ids)
        defuse(call)
        stream.send(call.SerializeToString())
    stream.finish()
    _check(cluster, stream, pb.Event)


@FUZZ_SETTINGS
@given(register_first=st.booleans(), info=AGENT_INFOS, first=AGENT_CALLS,
       calls=st.lists(AGENT_CALLS, max_size=5))
def _fuzz_agent(cluster, register_first, info, first, calls):
    if not _in_budget(cluster):
        return
    stream = RawStream(cluster["channel"], AGENT)
    ids = {"@agent": "", "@fid": "", "@offer": "", "@task": "fuzz-task"}
    if register_first:
        reg = pb.AgentCall(type=pb.AgentCall.REGISTER)
        info.id = ""
        info.resources.cpus, info.resources.mem = 1, 64   # a valid agent, odd in every other way
        del info.resources.ports[:]
        reg.register.info.CopyFrom(info)
        stream.send(reg.SerializeToString())
        reply = stream.first_reply()
        if reply is not None:
            ids["@agent"] = pb.AgentEvent.FromString(reply).registered.agent_id
    else:
        if first.register.info.id == cluster["agent_id"]:
            first.register.info.id = "fuzz"  # impersonating the real agent is an auth matter
        stream.send(first.SerializeToString())
    for call in calls:
        substitute(call, ids)
        stream.send(call.SerializeToString())
    stream.finish()
    _check(cluster, stream, pb.AgentEvent)


def _mutations(valid: bytes) -> st.SearchStrategy:
    cut = st.integers(0, len(valid)).map(lambda n: valid[:n])
    flip = st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)).map(
        lambda p: valid[:p[0]] + bytes([p[1]]) + valid[p[0] + 1:])
    insert = st.tuples(st.integers(0, len(valid)), st.binary(min_size=1, max_size=16)).map(
        lambda p: valid[:p[0]] + p[1] + valid[p[0]:])
    return st.one_of(cut, flip, insert, st.binary(max_size=256),
                     st.sampled_from([b"\xff" * 12, b"\x08" * 500, b"\x0a\xff\xff\xff\xff\x0f"]))


_VALID_SUB = pb.Call(type=pb.Call.SUBSCRIBE, subscribe=pb.Call.Subscribe(
    framework_info=pb.FrameworkInfo(name="fuzz-raw", capabilities=["PARTITION_AWARE"])))
_VALID_REG = pb.AgentCall(type=pb.AgentCall.REGISTER, register=pb.AgentCall.Register(
    info=pb.AgentInfo(hostname="fuzz-raw", resources=pb.Resources(cpus=1, mem=64))))


def _valid(method: str) -> bytes:
    return (_VALID_SUB if method == SCHEDULER else _VALID_REG).SerializeToString()


RAW = st.sampled_from([SCHEDULER, AGENT]).flatmap(lambda method: st.tuples(
    st.just(method), st.lists(_mutations(_valid(method)), min_size=1, max_size=4)))


@FUZZ_SETTINGS
@given(raw=RAW, state_request=st.binary(max_size=64))
def _fuzz_raw(cluster, raw, state_request):
    if not _in_budget(cluster):
        return
    method, frames = raw
    stream = RawStream(cluster["channel"], method)
    for frame in frames:
        stream.send(frame)
    stream.finish()
    _check(cluster, stream, pb.Event if method == SCHEDULER else pb.AgentEvent)
    state = cluster["channel"].unary_unary(STATE, request_serializer=lambda b: b,
                                           response_deserializer=lambda b: b)
    try:
        state(state_request, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
        assert "malformed StateRequest" in (exc.details() or "")


def test_fuzz_scheduler_calls(cluster):
    _run_for_budget(cluster, _fuzz_scheduler)


def test_fuzz_agent_calls(cluster):
    _run_for_budget(cluster, _fuzz_agent)


def test_fuzz_raw_frames(cluster):
    _run_for_budget(cluster, _fuzz_raw)


def test_oversized_frames_are_refused(cluster):
    huge = b"\x0a" + b"\xff" * (64 * 1024 * 1024 + 16)
    for method in (SCHEDULER, AGENT):
        stream = RawStream(cluster["channel"], method)
        stream.send(huge)
        stream.finish()
        assert stream.code == grpc.StatusCode.RESOURCE_EXHAUSTED, (stream.code, stream.details)
        assert cluster["master"].poll() is None


def test_master_keeps_serving_after_the_fuzzing(cluster):
    """Runs last in this module: the master is alive, and the healthy framework's work runs."""
    assert cluster["master"].poll() is None
    rec, driver = cluster["rec"], cluster["driver"]
    for i in range(3):
        rec.submit(driver, f"healthy-{i}", payload=b"true", agent=cluster["agent_id"])
    for i in range(3):
        rec.wait_state(f"healthy-{i}", TaskState.FINISHED, timeout=60)
    assert not any("fuzz" in e for e in rec.errors), rec.errors
    # Nothing escaped to a handler's last-resort catch (those log a traceback).
    log = cluster["master_log"].read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:3000]
