"""Malformed and hostile clients on the wire: the master answers, survives, and keeps serving
the well-behaved framework next to them."""
from __future__ import annotations

import math

import grpc
import pytest

from substrate import LocalCluster, Resources, TaskInfo, TaskState, CommandInfo
from substrate.v1 import pb, rpc

from .cluster_helpers import Recorder, start


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(agents=1, cpus=2, mem=1024) as c:
        yield c


@pytest.fixture
def healthy(cluster):
    rec = Recorder()
    driver = start(cluster.master, rec, name="healthy")
    yield rec, driver
    driver.stop()


def _still_serves(rec: Recorder, driver, name: str) -> None:
    rec.submit(driver, name, payload=b"true")
    rec.wait_state(name, TaskState.FINISHED)


def _raw_stream(master: str, frames: list[bytes], limit: int = 3) -> list[bytes]:
    """Send raw bytes as Call messages; collect raw Event bytes (no parsing on our side)."""
    with grpc.insecure_channel(master) as channel:
        method = channel.stream_stream("/substrate.v1.Master/Scheduler",
                                       request_serializer=lambda b: b,
                                       response_deserializer=lambda b: b)
        replies = []
        try:
            for reply in method(iter(frames), timeout=5):
                replies.append(reply)
                if len(replies) >= limit:
                    break
        except grpc.RpcError as exc:
            replies.append(exc.code())
        return replies


def test_truncated_and_garbage_protobufs(cluster, healthy):
    rec, driver = healthy
    sub = pb.Call(type=pb.Call.SUBSCRIBE)
    sub.subscribe.framework_info.name = "x" * 50
    good = sub.SerializeToString()
    for frames in ([good[: len(good) // 2]], [b"\xff\xff\xff\xff"], [b"\x08" * 1000],
                   [good, b"\x12\x05abc"]):
        _raw_stream(cluster.master, frames)
    _still_serves(rec, driver, "after-garbage")


def test_first_call_must_be_subscribe(cluster, healthy):
    rec, driver = healthy
    replies = _raw_stream(cluster.master, [pb.Call(type=pb.Call.ACCEPT).SerializeToString()])
    event = pb.Event.FromString(replies[0])
    assert event.type == pb.Event.ERROR and event.error.fatal
    assert "SUBSCRIBE" in event.error.message
    _still_serves(rec, driver, "after-bad-first")


@pytest.mark.parametrize("info", [
    pb.FrameworkInfo(name=""), pb.FrameworkInfo(name="w", weight=math.nan),
    pb.FrameworkInfo(name="w", failover_timeout=-1), pb.FrameworkInfo(name="r", role="../etc"),
])
def test_bad_framework_infos_get_a_fatal_error(cluster, healthy, info):
    rec, driver = healthy
    replies = _raw_stream(cluster.master, [pb.Call(
        type=pb.Call.SUBSCRIBE, subscribe=pb.Call.Subscribe(framework_info=info)).SerializeToString()])
    event = pb.Event.FromString(replies[0])
    assert event.type == pb.Event.ERROR and event.error.fatal and event.error.message
    _still_serves(rec, driver, f"after-info-{abs(hash(str(info))) % 1000}")


def test_bad_calls_in_a_session_get_error_events(cluster, healthy):
    rec, driver = healthy
    bad = Recorder()
    other = start(cluster.master, bad, name="clumsy")
    try:
        other.decline_offer("nonexistent")           # harmless: ignored
        other.send_framework_message("no-agent", "x", b"hi")
        bad.wait(lambda: any("unknown" in e for e in bad.errors), what="error event")
        _still_serves(rec, driver, "after-bad-calls")
    finally:
        other.stop()


def test_oversized_message_is_refused_not_fatal(cluster, healthy):
    rec, driver = healthy
    agent_id = cluster.state()["agents"][0]["id"]
    driver.send_framework_message(agent_id, "nobody", b"x" * (5 * 1024 * 1024))
    rec.wait(lambda: any("over the cap" in e for e in rec.errors), what="payload cap error")
    _still_serves(rec, driver, "after-oversized")


def _bad(kind: str, agent_id: str) -> "pb.TaskInfo":
    task = pb.TaskInfo(task_id=f"bad-{kind}", agent_id=agent_id)
    task.resources.cpus, task.resources.mem = 0.1, 16
    task.command.value = "true"
    if kind == "nan":
        task.resources.cpus = math.nan
    elif kind == "huge":
        task.resources.cpus = 64
    elif kind == "path":
        task.task_id = "../escape"
    elif kind == "oversized":
        task.data = b"x" * (4 * 1024 * 1024 + 1)
    return task


@pytest.mark.parametrize("kind,expect", [("nan", "finite"), ("huge", "needs"),
                                         ("path", ".."), ("oversized", "cap")])
def test_bad_tasks_on_the_wire_get_error_status(cluster, kind, expect):
    class Once(Recorder):
        def resource_offers(self, drv, offers):
            offer = offers[0]
            call = pb.Call(type=pb.Call.ACCEPT)
            call.accept.offer_ids.append(offer.id)
            ok = pb.TaskInfo(task_id="ok", agent_id=offer.agent_id)
            ok.resources.cpus, ok.resources.mem, ok.command.value = 0.1, 16, "true"
            call.accept.operations.add(type=pb.Call.Operation.LAUNCH,
                                       tasks=[_bad(kind, offer.agent_id), ok])
            call.accept.filters.refuse_seconds = 60
            drv._send(call)  # bypass the dataclasses, which refuse most of these themselves

    rec = Once()
    driver = start(cluster.master, rec, name=f"bad-{kind}")
    try:
        bad_id = "../escape" if kind == "path" else f"bad-{kind}"
        status = rec.wait_state(bad_id, TaskState.ERROR)
        assert expect in status.message and status.reason.name == "TASK_INVALID"
        rec.wait_state("ok", TaskState.FINISHED)  # its neighbour in the same call runs
    finally:
        driver.stop()


def test_dataclasses_refuse_bad_resources_before_sending():
    with pytest.raises(ValueError):
        TaskInfo(task_id="t", agent_id="a", resources=Resources(cpus=-1),
                 command=CommandInfo("true"))
