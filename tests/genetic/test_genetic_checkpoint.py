"""Checkpoints: Arrow IPC + lz4 round trip, and resume= continuing to exactly the result of an
uninterrupted run."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pyarrow import ipc

import genetic
from genetic import CheckpointError
from genetic.island import Island

PROBLEMS = {
    "onemax": genetic.Problem(genome=genetic.bits(70), fitness="onemax"),
    "rastrigin": genetic.Problem(genome=genetic.reals(-5.12, 5.12, 10), fitness="rastrigin"),
    "zdt1": genetic.Problem(genome=genetic.reals(0, 1, 10), fitness="zdt1"),
    "tsp": genetic.Problem(genome=genetic.permutation(9), fitness="tsp",
                           distances=np.random.default_rng(1).random((9, 9))),
}


def strip(table: pa.Table) -> dict:
    d = table.to_pydict()
    d.pop("seconds")
    return d


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_resume_equals_uninterrupted(tmp_path, name):
    problem = PROBLEMS[name]
    kw = dict(population=40, islands=2, seed=7, migration_interval=4, migrants=2,
              topology="random")
    full = genetic.evolve(problem, generations=20, **kw)
    path = tmp_path / "run.arrow"
    first = genetic.evolve(problem, generations=9, checkpoint=path, **kw)
    assert first.generations == 9
    resumed = genetic.evolve(problem, generations=20, resume=path, **kw)
    assert resumed.generations == 20
    assert strip(resumed.history) == strip(full.history)
    assert resumed.best.fitness == full.best.fitness
    assert np.array_equal(resumed.best.genome, full.best.genome)
    assert resumed.evaluations == full.evaluations
    if name == "zdt1":
        assert np.array_equal(resumed.pareto_front.fitness, full.pareto_front.fitness)


def test_checkpoint_file_contents(tmp_path):
    path = tmp_path / "c.arrow"
    genetic.evolve(PROBLEMS["onemax"], population=30, generations=6, islands=3, seed=1,
                   checkpoint=path, checkpoint_every=2, hall_of_fame=4)
    with pa.memory_map(str(path)) as src:
        reader = ipc.open_file(src)
        table = reader.read_all()
        # lz4 on every buffer: the IPC metadata records the codec
        batch = reader.get_batch(0)
    assert batch.num_rows == table.num_rows
    assert table.column_names == ["island", "role", "genome", "fitness", "viable", "violation",
                                  "hash", "front", "crowding"]
    roles = table.column("role").to_pylist()
    assert roles.count("population") == 30 and roles.count("hall_of_fame") == 12
    assert table.schema.field("genome").type == pa.list_(pa.uint64(), 2)
    import json
    meta = json.loads(table.schema.metadata[b"offerpool"])
    assert meta["generation"] == 6 and len(meta["islands"]) == 3
    assert meta["islands"][0]["rng"]["bit_generator"] == "PCG64"


def test_checkpoint_is_compressed(tmp_path):
    # the same population written with lz4 is smaller than uncompressed Arrow IPC
    path = tmp_path / "c.arrow"
    p = genetic.Problem(genome=genetic.bits(4096), fitness="onemax")
    genetic.evolve(p, population=200, generations=15, seed=1, checkpoint=path)
    with pa.memory_map(str(path)) as src:
        table = ipc.open_file(src).read_all()
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    assert path.stat().st_size < sink.getvalue().size


def test_island_state_round_trip():
    problem = PROBLEMS["rastrigin"]
    settings = genetic.Settings(size=20, selection=genetic.Tournament(3),
                                crossover=genetic.SBX(), mutation=genetic.Polynomial())
    a = Island(problem, settings, 0, 3)
    a.step(3)
    b = Island.from_state(problem, settings, a.state())
    b.pop = b.pop.take(np.arange(b.pop.n))   # independent arrays
    ra, rb = a.step(4), b.step(4)
    for x, y in zip(ra, rb):
        x.pop("seconds"), y.pop("seconds")
    assert ra == rb


def test_resume_errors(tmp_path):
    path = tmp_path / "c.arrow"
    genetic.evolve(PROBLEMS["onemax"], population=20, generations=2, seed=1, checkpoint=path)
    with pytest.raises(CheckpointError, match="different problem|do not match"):
        genetic.evolve(PROBLEMS["rastrigin"], population=20, generations=4, resume=path)
    with pytest.raises(CheckpointError, match="islands"):
        genetic.evolve(PROBLEMS["onemax"], population=20, islands=2, generations=4,
                       resume=path)
    bad = tmp_path / "bad.arrow"
    bad.write_bytes(b"not arrow")
    with pytest.raises(CheckpointError, match="cannot read"):
        genetic.evolve(PROBLEMS["onemax"], population=20, generations=4, resume=bad)
    with pytest.raises(CheckpointError):
        genetic.evolve(PROBLEMS["onemax"], population=20, generations=4,
                       resume=tmp_path / "missing.arrow")
