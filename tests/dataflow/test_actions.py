"""Actions against plain-Python models."""
from __future__ import annotations

import math
import statistics
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
ints = st.lists(st.integers(-1000, 1000), max_size=60)
nonempty = st.lists(st.integers(-1000, 1000), min_size=1, max_size=60)
nparts = st.integers(1, 5)


@SETTINGS
@given(data=ints, n=nparts)
def test_collect_count_sum_take(ctx, data, n):
    rdd = ctx.parallelize(data, n)
    assert rdd.collect() == data
    assert rdd.count() == len(data)
    assert rdd.sum() == sum(data)
    assert rdd.isEmpty() == (not data)
    for k in (0, 1, 3, len(data) + 2):
        assert rdd.take(k) == data[:k]
    assert list(rdd.toLocalIterator()) == data
    assert rdd.countByValue() == Counter(data)
    assert rdd.fold(0, lambda a, b: a + b) == sum(data)


@SETTINGS
@given(data=nonempty, n=nparts)
def test_reductions_and_order(ctx, data, n):
    rdd = ctx.parallelize(data, n)
    assert rdd.first() == data[0]
    assert rdd.reduce(lambda a, b: a + b) == sum(data)
    assert rdd.treeReduce(lambda a, b: a + b, 3) == sum(data)
    assert rdd.max() == max(data) and rdd.min() == min(data)
    assert rdd.max(key=lambda x: -x) == min(data) and rdd.min(key=abs) == min(data, key=abs)
    assert rdd.top(3) == sorted(data, reverse=True)[:3]
    assert rdd.top(2, key=abs) == sorted(data, key=abs, reverse=True)[:2]
    assert rdd.takeOrdered(4) == sorted(data)[:4]
    assert rdd.takeOrdered(4, key=lambda x: -x) == sorted(data, reverse=True)[:4]
    seq = lambda acc, x: (acc[0] + x, acc[1] + 1)
    comb = lambda a, b: (a[0] + b[0], a[1] + b[1])
    assert rdd.aggregate((0, 0), seq, comb) == (sum(data), len(data))
    assert rdd.treeAggregate((0, 0), seq, comb, depth=3) == (sum(data), len(data))


@SETTINGS
@given(data=nonempty, n=nparts)
def test_statistics(ctx, data, n):
    rdd = ctx.parallelize(data, n)
    assert math.isclose(rdd.mean(), statistics.fmean(data), abs_tol=1e-9)
    assert math.isclose(rdd.variance(), statistics.pvariance(data), rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(rdd.stdev(), statistics.pstdev(data), rel_tol=1e-9, abs_tol=1e-6)
    if len(data) > 1:
        assert math.isclose(rdd.sampleVariance(), statistics.variance(data), rel_tol=1e-9, abs_tol=1e-6)
        assert math.isclose(rdd.sampleStdev(), statistics.stdev(data), rel_tol=1e-9, abs_tol=1e-6)
    s = rdd.stats()
    assert (s.count(), s.max(), s.min()) == (len(data), max(data), min(data))
    assert math.isclose(s.sum(), sum(data), abs_tol=1e-6)


def test_empty_rdd_errors(ctx):
    empty = ctx.parallelize([], 2)
    with pytest.raises(ValueError, match="empty"):
        empty.reduce(lambda a, b: a)
    with pytest.raises(ValueError, match="empty"):
        empty.first()
    assert empty.fold(0, lambda a, b: a + b) == 0
    assert empty.sum() == 0 and empty.take(3) == [] and empty.top(2) == []
    assert math.isnan(empty.mean())


@SETTINGS
@given(data=st.lists(st.floats(-100, 100), min_size=1, max_size=50), b=st.integers(1, 6))
def test_histogram_even_buckets(ctx, data, b):
    edges, counts = ctx.parallelize(data, 3).histogram(b)
    assert sum(counts) == len(data)
    lo, hi = min(data), max(data)
    assert edges[0] == lo and edges[-1] == hi
    if lo != hi:
        assert len(counts) == b


def test_histogram_explicit_buckets(ctx):
    rdd = ctx.parallelize([1, 5, 10, 11, 20, 25, 26, float("nan")], 2)
    assert rdd.histogram([0, 10, 20, 25]) == ([0, 10, 20, 25], [2, 2, 2])
    assert ctx.parallelize(range(51)).histogram(2) == ([0, 25, 50], [25, 26])
    assert ctx.parallelize([3, 3]).histogram(4) == ([3, 3], [2])
    with pytest.raises(ValueError):
        rdd.histogram([1])
    with pytest.raises(ValueError):
        rdd.histogram([3, 1])


def test_take_sample(ctx):
    rdd = ctx.parallelize(range(100), 4)
    s = rdd.takeSample(False, 10, seed=1)
    assert len(s) == 10 and len(set(s)) == 10 and set(s) <= set(range(100))
    assert s == rdd.takeSample(False, 10, seed=1)
    assert sorted(rdd.takeSample(False, 500, seed=2)) == list(range(100))
    r = rdd.takeSample(True, 150, seed=3)
    assert len(r) == 150 and set(r) <= set(range(100))
    assert rdd.takeSample(False, 0) == [] and ctx.parallelize([]).takeSample(True, 5) == []
    with pytest.raises(ValueError):
        rdd.takeSample(False, -1)


def test_foreach_and_foreach_partition(ctx):
    acc = ctx.accumulator(0)
    ctx.parallelize(range(10), 3).foreach(lambda x: acc.add(x))
    assert acc.value == 45
    parts = ctx.accumulator(0)
    ctx.parallelize(range(10), 3).foreachPartition(lambda it: parts.add(1))
    assert parts.value == 3


def test_pair_actions(ctx):
    pairs = [("a", 1), ("b", 2), ("a", 3), ("c", 4)]
    rdd = ctx.parallelize(pairs, 2)
    assert rdd.countByKey() == Counter(k for k, _ in pairs)
    assert rdd.collectAsMap() == dict(pairs)
    assert rdd.lookup("a") == [1, 3] and rdd.lookup("z") == []
    part = rdd.partitionBy(3)
    assert sorted(part.lookup("a")) == [1, 3]
    assert rdd.reduceByKeyLocally(lambda x, y: x + y) == {"a": 4, "b": 2, "c": 4}


def test_run_job_on_some_partitions(ctx):
    rdd = ctx.parallelize(range(9), 3)
    assert ctx.runJob(rdd, lambda it: [max(it)], [2, 0]) == [8, 2]
    assert ctx.runJob(rdd, lambda it: [sum(it)]) == [3, 12, 21]
