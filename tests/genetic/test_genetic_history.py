"""Statistics rows as arrays (genetic.history): batches cut anywhere, delivered in any order and
repeated give the table of the rows themselves; the dashboard's series and the migrants file
layout."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import genetic
from genetic import protocol, status
from genetic.history import COLUMNS, History, pack_rows
from genetic.island import Island, Settings
from genetic.population import Population
from genetic.result import history_table

pytestmark = pytest.mark.timeout(60)


def island_rows(islands: int, generations: int) -> list[list[tuple]]:
    """Real statistics rows of small islands, one list per island."""
    problem = genetic.Problem(genome=genetic.reals(-5.12, 5.12, 8), fitness="rastrigin")
    s = Settings(size=12, selection=genetic.Tournament(3), crossover=genetic.SBX(0.9, eta=20.0),
                 mutation=genetic.Polynomial(1.0, 0.2, eta=20.0))
    out = []
    for i in range(islands):
        isl = Island(problem, s, i, 100 + i)
        out.append([isl.advance() for _ in range(generations)])
    return out


ROWS = island_rows(3, 40)


def reference(rows: list[list[tuple]]) -> pa.Table:
    flat = sorted((r for per in rows for r in per), key=lambda r: (r[0], r[1]))
    return history_table([dict(zip(COLUMNS, r)) for r in flat])


def frame_batches(rows: list[tuple], cuts: list[int]) -> list[dict[str, np.ndarray]]:
    """One island's rows cut into batches, each through a real stats frame and back."""
    out, start = [], 0
    for end in sorted(set(cuts)) + [len(rows)]:
        if end > start:
            frame = protocol.encode("stats", {"island": rows[0][1]}, pack_rows(rows[start:end]))
            out.append(protocol.decode(frame)[2])
            start = end
    return out


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.lists(st.integers(1, 39), max_size=8), min_size=3, max_size=3),
       order=st.randoms(use_true_random=False), repeats=st.integers(0, 3))
def test_batches_in_any_order_and_repeated_give_every_row_once(cuts, order, repeats):
    deliveries = [(i, b) for i in range(3) for b in frame_batches(ROWS[i], cuts[i])]
    deliveries += [order.choice(deliveries) for _ in range(repeats)]   # a replayed batch
    order.shuffle(deliveries)
    h = History()
    for island, batch in deliveries:
        h.add(island, batch)
    assert len(h) == 3 * 40
    assert h.table().equals(reference(ROWS))
    # the final status (all rows) on top: every row agrees, none is new
    for i in range(3):
        assert h.add(i, pack_rows(ROWS[i]), fill_only=True) == (0, 40, 0)


def test_a_lost_batch_is_filled_by_the_final_rows_and_a_wrong_one_is_counted():
    h = History()
    batches = frame_batches(ROWS[0], [10, 20, 30])
    for b in batches[:1] + batches[2:]:        # the second batch is lost
        h.add(0, b)
    assert len(h) == 30
    assert h.add(0, pack_rows(ROWS[0]), fill_only=True) == (10, 30, 0)
    assert h.table().equals(reference(ROWS[:1]))
    changed = pack_rows(ROWS[0])
    changed["best"][5] += 1.0
    assert h.add(0, changed, fill_only=True) == (0, 39, 1)
    assert h.table().equals(reference(ROWS[:1]))      # the rows held are kept


def test_rows_outside_the_run_are_refused_and_add_nothing():
    h = History()
    rows = pack_rows(ROWS[0])
    with pytest.raises(ValueError, match="outside"):
        h.add(0, rows, limit=39)
    bad = dict(rows, generation=rows["generation"] - 5)
    with pytest.raises(ValueError, match="outside"):
        h.add(0, bad)
    assert len(h) == 0
    assert h.add(0, rows, limit=40) == (40, 0, 0)


def test_rows_round_trip_through_dicts_truncate_and_checkpoint_upto():
    h = History()
    for i in range(3):
        h.add(i, pack_rows(ROWS[i]))
    again = History.from_rows(h.rows())
    assert again.table().equals(h.table())
    assert [r["generation"] for r in h.rows(upto=2)] == [1, 1, 1, 2, 2, 2]
    assert h.rows(upto=2)[0] == dict(zip(COLUMNS, ROWS[0][0]))
    h.truncate(1, 25)
    assert len(h) == 40 + 25 + 40 and h.last_generation(1) == 25


def old_series(rows: list[dict], weight: float) -> list[dict]:
    """The dashboard series computed row by row (what the array version must equal)."""
    def finite(v):
        return v if math.isfinite(v) else None
    per_gen: dict[int, list[dict]] = {}
    for r in rows:
        per_gen.setdefault(r["generation"], []).append(r)
    points = []
    for g in sorted(per_gen):
        bests = [b for b in (finite(r["best"]) for r in per_gen[g]) if b is not None]
        means = [m for m in (finite(r["mean"]) for r in per_gen[g]) if m is not None]
        points.append({"generation": g,
                       "best": max(bests, key=lambda b: b * weight) if bests else None,
                       "mean": sum(means) / len(means) if means else None})
    if len(points) > status.MAX_POINTS:
        step = (len(points) - 1) / (status.MAX_POINTS - 1)
        points = [points[round(i * step)] for i in range(status.MAX_POINTS)]
    return points


@pytest.mark.parametrize("weight", [1.0, -1.0])
def test_dashboard_series_equals_the_row_by_row_aggregate(weight):
    rng = np.random.default_rng(1)
    rows = []
    for island in range(2):
        for g in range(1, 700 - 100 * island):       # islands at different generations
            best, mean = rng.normal(), rng.normal()
            if rng.random() < 0.05:
                best = float("nan")
            if rng.random() < 0.05:
                mean = float("inf")
            rows.append({"generation": g, "island": island, "best": best, "mean": mean,
                         "std": 1.0, "diversity": 1.0, "evaluations": g, "seconds": 0.0})
    got = status.series(History.from_rows(rows), weight)
    want = old_series(rows, weight)
    assert [p["generation"] for p in got] == [p["generation"] for p in want]
    for a, b in zip(got, want):
        for k in ("best", "mean"):
            assert (a[k] is None and b[k] is None) or a[k] == pytest.approx(b[k])


def test_migrants_file_layout_round_trip_torn_and_longer_files():
    rng = np.random.default_rng(2)
    pop = Population(rng.integers(0, 2**63, (3, 2), dtype=np.uint64), rng.random((3, 2)),
                     np.array([True, False, True]), rng.random(3),
                     rng.integers(0, 2**63, 3, dtype=np.uint64))
    data = protocol.pack_migrants(42, pop)
    back = protocol.unpack_migrants(data, pop)
    assert protocol.migrants_epoch(data) == 42
    for f in ("genomes", "fitness", "viable", "violation", "hashes"):
        assert np.array_equal(getattr(back, f), getattr(pop, f))
    # the file is overwritten in place: an older, longer content may follow
    assert protocol.unpack_migrants(data + b"\xff" * 100, pop).n == 3
    torn = bytearray(data)
    torn[-5] ^= 0xFF                       # caught mid-write
    assert protocol.unpack_migrants(bytes(torn), pop) is None
    assert protocol.unpack_migrants(data[:-1], pop) is None
    assert protocol.migrants_epoch(b"") is None and protocol.migrants_epoch(b"x" * 64) is None
    empty = protocol.pack_migrants(1, pop.take(np.arange(0)))
    assert protocol.unpack_migrants(empty, pop).n == 0
