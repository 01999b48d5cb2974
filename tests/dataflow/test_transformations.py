"""Narrow transformations against plain-Python models."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import Context

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
ints = st.lists(st.integers(-1000, 1000), max_size=60)
nparts = st.integers(1, 5)


def slices(data: list, n: int) -> list:
    return [data[i * len(data) // n:(i + 1) * len(data) // n] for i in range(n)]


@SETTINGS
@given(data=ints, n=nparts)
def test_parallelize_slices_like_pyspark(ctx, data, n):
    assert ctx.parallelize(data, n).glom().collect() == slices(data, n)
    assert ctx.parallelize(range(len(data)), n).glom().collect() == slices(list(range(len(data))), n)


@SETTINGS
@given(data=ints, n=nparts)
def test_map_filter_flatmap_pipeline(ctx, data, n):
    rdd = ctx.parallelize(data, n)
    assert rdd.map(lambda x: x * 3).collect() == [x * 3 for x in data]
    assert rdd.filter(lambda x: x % 2 == 0).collect() == [x for x in data if x % 2 == 0]
    assert rdd.flatMap(lambda x: [x] * (x % 3)).collect() == [y for x in data for y in [x] * (x % 3)]
    chained = rdd.map(lambda x: x + 1).filter(lambda x: x > 0).map(str).collect()
    assert chained == [str(x + 1) for x in data if x + 1 > 0]


@SETTINGS
@given(data=ints, n=nparts)
def test_mappartitions_and_index(ctx, data, n):
    rdd = ctx.parallelize(data, n)
    assert rdd.mapPartitions(lambda it: [sum(it)]).collect() == [sum(s) for s in slices(data, n)]
    got = rdd.mapPartitionsWithIndex(lambda i, it: [(i, len(list(it)))]).collect()
    assert got == [(i, len(s)) for i, s in enumerate(slices(data, n))]
    assert rdd.mapPartitionsWithSplit(lambda i, it: [i]).collect() == list(range(n))


def test_range_and_empty(ctx):
    assert ctx.range(5).collect() == [0, 1, 2, 3, 4]
    assert ctx.range(2, 10, 3, numSlices=2).collect() == [2, 5, 8]
    assert ctx.emptyRDD().collect() == []
    assert ctx.emptyRDD().count() == 0
    assert ctx.parallelize([], 3).collect() == []
    assert ctx.defaultParallelism >= 1


@SETTINGS
@given(a=ints, b=ints, n=nparts)
def test_union_and_cartesian(ctx, a, b, n):
    ra, rb = ctx.parallelize(a, n), ctx.parallelize(b, 2)
    assert ra.union(rb).collect() == a + b
    assert (ra + rb).getNumPartitions() == n + 2
    assert ctx.union([ra, rb, ra]).collect() == a + b + a
    assert sorted(ra.cartesian(rb).collect()) == sorted(itertools.product(a, b))


def test_zip_family(ctx):
    a = ctx.parallelize(range(7), 3)
    b = ctx.parallelize("abcdefg", 3)
    assert a.zip(b).collect() == list(zip(range(7), "abcdefg"))
    with pytest.raises(ValueError):
        a.zip(ctx.parallelize("ab", 2))
    assert b.zipWithIndex().collect() == [(c, i) for i, c in enumerate("abcdefg")]
    ids = b.zipWithUniqueId().collect()
    assert [c for c, _ in ids] == list("abcdefg") and len({i for _, i in ids}) == 7
    assert ids[:2] == [("a", 0), ("b", 3)]


def test_zip_unequal_partitions_fails(ctx):
    from dataflow import TaskFailedError
    a = ctx.parallelize(range(4), 2)
    b = ctx.parallelize(range(4), 2).filter(lambda x: x != 0)
    with pytest.raises(TaskFailedError, match="same number of elements"):
        a.zip(b).collect()


@SETTINGS
@given(data=ints, n=st.integers(1, 6), m=st.integers(1, 6))
def test_coalesce_and_repartition(ctx, data, n, m):
    rdd = ctx.parallelize(data, n)
    co = rdd.coalesce(m)
    assert co.getNumPartitions() == min(n, m)
    assert co.collect() == data
    re = rdd.repartition(m)
    assert re.getNumPartitions() == m
    assert sorted(re.collect()) == sorted(data)
    sizes = re.glom().map(len).collect()
    assert max(sizes) - min(sizes) <= n  # round-robin per source partition
    assert sorted(rdd.coalesce(m, shuffle=True).collect()) == sorted(data)


def test_glom_keyby_keys_values(ctx):
    rdd = ctx.parallelize(["a", "bb", "ccc"], 2)
    assert rdd.glom().collect() == [["a"], ["bb", "ccc"]]
    kb = rdd.keyBy(len)
    assert kb.collect() == [(1, "a"), (2, "bb"), (3, "ccc")]
    assert kb.keys().collect() == [1, 2, 3]
    assert kb.values().collect() == ["a", "bb", "ccc"]


def test_sample_is_deterministic_and_plausible(ctx):
    rdd = ctx.parallelize(range(2000), 4)
    s1 = rdd.sample(False, 0.2, seed=5).collect()
    assert s1 == rdd.sample(False, 0.2, seed=5).collect()
    assert 300 < len(s1) < 500 and len(set(s1)) == len(s1) and set(s1) <= set(range(2000))
    s2 = rdd.sample(True, 0.5, seed=5).collect()
    assert 800 < len(s2) < 1200
    assert rdd.sample(False, 0.0, seed=1).count() == 0
    with pytest.raises(ValueError):
        rdd.sample(False, -1)


def test_random_split_partitions_the_data(ctx):
    rdd = ctx.parallelize(range(1000), 3)
    parts = rdd.randomSplit([1, 2, 7], seed=11)
    got = [p.collect() for p in parts]
    assert sorted(x for g in got for x in g) == list(range(1000))
    assert 40 < len(got[0]) < 170 and 600 < len(got[2]) < 800
    with pytest.raises(ValueError):
        rdd.randomSplit([0, 0])


def test_pipe(ctx):
    rdd = ctx.parallelize(["b", "a", "c"], 1)
    assert rdd.pipe("sort").collect() == ["a", "b", "c"]
    assert ctx.parallelize([1, 2, 3], 2).pipe("cat").collect() == ["1", "2", "3"]
    assert ctx.parallelize(["x"], 1).pipe("grep -c x").collect() == ["1"]
    from dataflow import TaskFailedError
    with pytest.raises(TaskFailedError, match="exited with error code"):
        ctx.parallelize(["x"], 1).pipe("false", checkCode=True).collect()


def test_distinct_intersection_subtract(ctx):
    a = ctx.parallelize([1, 2, 2, 3, 4, 4, 4], 3)
    b = ctx.parallelize([2, 4, 5, 5], 2)
    assert sorted(a.distinct().collect()) == [1, 2, 3, 4]
    assert sorted(a.distinct(5).collect()) == [1, 2, 3, 4]
    assert sorted(a.intersection(b).collect()) == [2, 4]
    assert sorted(a.subtract(b).collect()) == [1, 3]


def test_names_ids_debug_string(ctx):
    rdd = ctx.parallelize(range(4), 2).setName("numbers")
    assert rdd.name() == "numbers"
    mapped = rdd.map(lambda x: (x, 1)).reduceByKey(lambda a, b: a + b)
    assert rdd.id() != mapped.id()
    text = mapped.toDebugString()
    assert isinstance(text, bytes)
    lines = text.decode().splitlines()
    assert "ShuffledRDD" in lines[0] and any("numbers" in ln for ln in lines)
    assert any(ln.lstrip().startswith("+-(2)") for ln in lines)
    assert "numbers" in repr(rdd) and "partitions" in rdd._repr_html_()
    assert rdd.context is ctx


def test_cache_and_unpersist(ctx):
    calls = ctx.accumulator(0)

    def f(x):
        calls.add(1)
        return x * 2

    rdd = ctx.parallelize(range(10), 2).map(f).cache()
    assert rdd.sum() == 90 and rdd.sum() == 90
    assert calls.value == 10
    assert ctx.last_job_metrics["cache_hits"] == 2
    rdd.unpersist()
    assert not rdd.is_cached
    assert rdd.count() == 10 and calls.value == 20
    assert rdd.persist().count() == 10


def test_checkpoint_cuts_lineage(ctx, tmp_path):
    with pytest.raises(Exception, match="setCheckpointDir"):
        ctx.parallelize([1]).checkpoint()
    ctx.setCheckpointDir(str(tmp_path))
    rdd = ctx.parallelize(range(6), 3).map(lambda x: (x % 2, x)).reduceByKey(lambda a, b: a + b)
    rdd.checkpoint()
    assert not rdd.isCheckpointed()
    assert sorted(rdd.collect()) == [(0, 6), (1, 9)]
    assert rdd.isCheckpointed() and rdd._deps() == []
    assert rdd.getCheckpointFile().startswith(str(tmp_path))
    assert sorted(rdd.mapValues(lambda v: -v).collect()) == [(0, -6), (1, -9)]


def test_context_reuse_after_stop_is_refused():
    from dataflow import ContextStoppedError
    c = Context("inline")
    rdd = c.parallelize([1])
    c.stop()
    c.stop()
    with pytest.raises(ContextStoppedError):
        rdd.collect()


def test_context_misc(ctx):
    from dataflow import TaskContext
    ctx.setLogLevel("ERROR")
    ctx.setLogLevel("warn")
    with pytest.raises(ValueError):
        ctx.setLogLevel("LOUD")
    assert ctx.master in ctx._repr_html_() and ctx.master in repr(ctx)
    assert ctx.defaultMinPartitions >= 1 and ctx.applicationId
    seen = ctx.parallelize(range(4), 2).mapPartitions(
        lambda it: [(TaskContext.get().partitionId(), TaskContext.get().stageId() >= 0,
                     TaskContext.get().attemptNumber(), TaskContext.get().taskAttemptId() >= 0)]
    ).collect()
    assert seen == [(0, True, 0, True), (1, True, 0, True)]
    assert TaskContext.get() is None
    other = Context("inline")
    try:
        from dataflow import DataflowError
        with pytest.raises(DataflowError, match="another Context"):
            other.runJob(ctx.parallelize([1]), list)
    finally:
        other.stop()
