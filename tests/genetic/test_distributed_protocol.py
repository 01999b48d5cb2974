"""The frames between the genetic scheduler and its island executors: round trips, refusal of
malformed or unexpected input (nothing is unpickled), and the file path for big frames."""
from __future__ import annotations

import os
import types

import numpy as np
import pytest

import genetic
from genetic import protocol
from genetic.executor import _framed_or_file
from genetic.island import Island, Settings


def test_state_round_trip_continues_identically():
    problem = genetic.Problem(genome=genetic.bits(40), fitness="onemax")
    settings = Settings(size=20, selection=genetic.Tournament(3), crossover=genetic.TwoPoint(0.5),
                        mutation=genetic.BitFlip(0.2, 0.05))
    a = Island(problem, settings, 0, 9)
    a.step(3)
    header, arrays = protocol.pack_state(a.state())
    kind, h, arr = protocol.decode(protocol.encode("state", header, arrays))
    b = Island.from_state(problem, settings, protocol.unpack_state(h, arr))
    assert kind == "state"
    rows_a, rows_b = a.step(4), b.step(4)
    for row in rows_a + rows_b:
        row.pop("seconds")
    assert rows_a == rows_b
    assert np.array_equal(a.pop.genomes, b.pop.genomes)


@pytest.mark.parametrize("frame", [
    b"", b"OPGA", b"NOPE\x00\x00\x00\x02{}",
    protocol.encode("x", {}, {"a": np.arange(4)})[:-3],          # truncated
    protocol.encode("x", {}, {"a": np.arange(4)}) + b"junk",     # trailing bytes
    b"OPGA\x00\x00\x00\x05notjs",
])
def test_malformed_frames_are_refused(frame):
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(frame)


def test_object_arrays_cannot_travel():
    with pytest.raises(protocol.ProtocolError, match="unsupported dtype"):
        protocol.encode("x", {}, {"a": np.array([object()])})
    bad = protocol.encode("x", {}, {"a": np.arange(2)}).replace(b"<i8", b"|O8")
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(bad)


def test_big_frames_go_through_the_framework_dir(tmp_path):
    driver = types.SimpleNamespace(framework_dir=str(tmp_path), executor_id="island-0-0",
                                   agent_address="127.0.0.1:5051")
    small = protocol.encode("stats", {"rows": []})
    assert _framed_or_file(driver, small) == small
    big = protocol.encode("state", {}, {"a": np.zeros(protocol.PAYLOAD_LIMIT // 8 + 1)})
    kind, header, _ = protocol.decode(_framed_or_file(driver, big))
    assert kind == "file" and header["address"] == "127.0.0.1:5051"
    with open(os.path.join(str(tmp_path), header["path"]), "rb") as fh:
        assert fh.read() == big
