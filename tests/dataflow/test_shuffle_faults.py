"""Shuffle spilling with bounded memory, and recovery of lost map outputs from lineage."""
from __future__ import annotations

import operator
import os
import shutil
import tracemalloc
from collections import Counter, defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow import Context
from dataflow.shuffle import Aggregator
from dataflow.spill import ExternalAggregator, ExternalSorter, identity
from tests.dataflow.conftest import inline_only


def test_group_by_key_spills_and_is_right(small_ctx):
    data = [(f"k{i % 2000}", f"v{i}") for i in range(20_000)]
    got = small_ctx.parallelize(data, 4).groupByKey(3).mapValues(sorted).collect()
    expect = defaultdict(list)
    for k, v in data:
        expect[k].append(v)
    assert dict(got) == {k: sorted(v) for k, v in expect.items()}
    m = small_ctx.last_job_metrics
    assert m["spill_files"] > 0 and m["spilled_records"] > 0


def test_reduce_by_key_object_and_columnar_paths_spill(small_ctx):
    words = [f"w{i % 3000}" for i in range(30_000)]
    counts = small_ctx.parallelize(words, 3).map(lambda w: (w, 1)).reduceByKey(operator.add, 2)
    assert dict(counts.collect()) == Counter(words)
    assert small_ctx.last_job_metrics["spill_files"] > 0
    ints = small_ctx.range(100_000, numSlices=4).map(lambda i: (i % 20_000, i))
    got = dict(ints.reduceByKey(operator.add, 2).collect())
    expect = defaultdict(int)
    for i in range(100_000):
        expect[i % 20_000] += i
    assert got == expect
    assert small_ctx.last_job_metrics["spill_files"] > 0


def test_sort_by_key_spills_and_sorts(small_ctx):
    data = [((i * 7919) % 10_007, i) for i in range(10_007)]
    got = small_ctx.parallelize(data, 3).sortByKey(numPartitions=2).collect()
    assert [k for k, _ in got] == sorted(k for k, _ in data)
    assert small_ctx.last_job_metrics["spill_files"] > 0
    desc = small_ctx.parallelize(data, 3).sortBy(lambda kv: kv[1], ascending=False).values()
    assert desc.collect() == list(range(10_006, -1, -1))


def _grouped_peak(n: int) -> tuple[int, int, int]:
    """Peak traced bytes while grouping ``n`` ~200-byte records under a 256 KiB budget."""
    with Context("inline", memory_budget=256 * 1024) as ctx:
        rdd = ctx.range(n, numSlices=4).map(lambda i: (i % (n // 2), "x" * 120 + str(i)))
        grouped = rdd.groupByKey(2).mapValues(len)
        tracemalloc.start()
        try:
            total = grouped.map(lambda kv: kv[1]).sum()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return total, peak, ctx.last_job_metrics["spill_files"]


def test_shuffle_larger_than_budget_runs_in_bounded_memory():
    """Shuffles far above the merge budget: peak memory stays flat as the data doubles."""
    n = 40_000
    total, peak, spills = _grouped_peak(n)
    total2, peak2, spills2 = _grouped_peak(2 * n)
    assert (total, total2) == (n, 2 * n)
    assert spills > 32 and spills2 > spills  # enough runs to exercise the run-collapsing merge
    data_bytes = 2 * n * (120 + 49 + 28 + 56)  # strings + ints + tuples, roughly
    assert peak2 < data_bytes / 4, (peak2, data_bytes)
    assert peak2 < 1.25 * peak + 256 * 1024, (peak, peak2)


def _shuffle_root(ctx):
    return ctx._backend.env.shuffle_root


def test_lost_map_output_is_recomputed_from_lineage(ctx):
    inline_only(ctx)
    calls = ctx.accumulator(0)

    def tag(x):
        calls.add(1)
        return (x % 4, x)

    summed = ctx.parallelize(range(40), 4).map(tag).reduceByKey(operator.add, 2)
    expect = {k: sum(x for x in range(40) if x % 4 == k) for k in range(4)}
    assert dict(summed.collect()) == expect
    assert calls.value == 40
    root = _shuffle_root(ctx)
    (sid,) = os.listdir(root)
    victim = sorted(os.listdir(os.path.join(root, sid)))[1]
    shutil.rmtree(os.path.join(root, sid, victim))
    assert dict(summed.collect()) == expect  # fetch failure -> map task re-run
    assert calls.value == 50  # only the lost map partition (10 records) recomputed


def test_executor_lost_forgets_its_map_outputs(ctx):
    inline_only(ctx)
    calls = ctx.accumulator(0)

    def tag(x):
        calls.add(1)
        return (x % 3, 1)

    counts = ctx.parallelize(range(30), 3).map(tag).reduceByKey(operator.add)
    assert dict(counts.collect()) == {0: 10, 1: 10, 2: 10}
    ctx._dag.executor_lost("inline")
    assert dict(counts.collect()) == {0: 10, 1: 10, 2: 10}
    assert calls.value == 60


def test_corrupt_block_counts_as_fetch_failure(ctx):
    inline_only(ctx)
    r = ctx.parallelize([(i % 5, i) for i in range(50)], 2).reduceByKey(operator.add, 2)
    first = dict(r.collect())
    root = _shuffle_root(ctx)
    (sid,) = os.listdir(root)
    for m in os.listdir(os.path.join(root, sid)):
        for b in os.listdir(os.path.join(root, sid, m)):
            with open(os.path.join(root, sid, m, b), "r+b") as f:
                f.write(b"O\xff\xff\x00\x00garbage")
    assert dict(r.collect()) == first


@settings(max_examples=25, deadline=None)
@given(data=st.lists(st.tuples(st.integers(-30, 30), st.integers()), max_size=120),
       budget=st.sampled_from([1, 200, 10 ** 6]), ascending=st.booleans())
def test_external_sorter_and_aggregator_match_models(tmp_path_factory, data, budget, ascending):
    d = str(tmp_path_factory.mktemp("spill"))
    sorter = ExternalSorter(identity, ascending, budget, d)
    sorter.insert_all(data)
    assert list(sorter.items()) == sorted(data, key=lambda kv: kv[0], reverse=not ascending)
    agg = ExternalAggregator(Aggregator.for_reduce(lambda a, b: a + b), budget, d)
    agg.insert_values(data)
    expect: dict = defaultdict(int)
    for k, v in data:
        expect[k] += v
    assert dict(agg.items()) == expect
    if budget == 1 and len(data) > 40:
        assert agg.spill_files > 32 and sorter.spill_files > 32
    assert os.listdir(d) == []  # run files are removed once merged
