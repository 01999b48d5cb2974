"""By-key operations, joins, cogroup and sorting against plain-Python models."""
from __future__ import annotations

import operator
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import ResultIterable

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
keys = st.one_of(st.integers(-5, 5), st.sampled_from(["a", "b", "c", ""]))
pairs = st.lists(st.tuples(keys, st.integers(-100, 100)), max_size=40)
int_pairs = st.lists(st.tuples(st.integers(-20, 20), st.integers(-10**6, 10**6)), max_size=60)
nparts = st.integers(1, 4)


def grouped(data):
    g = defaultdict(list)
    for k, v in data:
        g[k].append(v)
    return g


def norm(rdd):
    """Collected pairs as a dict of sorted values, for order-insensitive comparison."""
    return {k: sorted(v) if isinstance(v, list) else v for k, v in rdd.collect()}


@SETTINGS
@given(data=pairs, n=nparts, m=nparts)
def test_reduce_fold_aggregate_combine(ctx, data, n, m):
    rdd = ctx.parallelize(data, n)
    g = grouped(data)
    expect_sum = {k: sum(v) for k, v in g.items()}
    assert dict(rdd.reduceByKey(operator.add).collect()) == expect_sum
    assert dict(rdd.reduceByKey(lambda a, b: a + b, m).collect()) == expect_sum
    assert rdd.reduceByKey(operator.add, m).getNumPartitions() == m
    assert dict(rdd.foldByKey(0, operator.add).collect()) == expect_sum
    agg = rdd.aggregateByKey((0, 0), lambda c, v: (c[0] + v, c[1] + 1),
                             lambda a, b: (a[0] + b[0], a[1] + b[1]), m)
    assert dict(agg.collect()) == {k: (sum(v), len(v)) for k, v in g.items()}
    comb = rdd.combineByKey(lambda v: [v], lambda c, v: c + [v], lambda a, b: a + b)
    assert norm(comb) == {k: sorted(v) for k, v in g.items()}
    assert len(rdd.reduceByKey(operator.add).collect()) == len(g)


@SETTINGS
@given(data=int_pairs, n=nparts, m=nparts)
def test_columnar_int_aggregations(ctx, data, n, m):
    """Int keys and values take the columnar kernel path; results must equal Python's."""
    rdd = ctx.parallelize(data, n)
    g = grouped(data)
    for op, py in ((operator.add, sum), (min, min), (max, max)):
        got = rdd.reduceByKey(op, m).collect()
        assert dict(got) == {k: py(v) for k, v in g.items()}
        assert len(got) == len(g) and all(type(k) is int and type(v) is int for k, v in got)
    floats = rdd.mapValues(lambda v: v / 7.0)
    got = dict(floats.reduceByKey(max).collect())
    assert got == {k: max(x / 7.0 for x in v) for k, v in g.items()}


def test_columnar_path_overflow_and_mixed_types(ctx):
    big = [(1, 2 ** 62), (1, 2 ** 62), (1, 2 ** 62), (2, 1)]
    assert dict(ctx.parallelize(big, 2).reduceByKey(operator.add).collect()) == {1: 3 * 2 ** 62, 2: 1}
    huge = [(1, 2 ** 70), (1, 1)]
    assert dict(ctx.parallelize(huge).reduceByKey(operator.add).collect()) == {1: 2 ** 70 + 1}
    mixed = [(1, 1), (1, 2.5), (2, 3), (True, 1)]
    assert dict(ctx.parallelize(mixed, 2).reduceByKey(operator.add).collect()) == {1: 4.5, 2: 3}
    many = [(i % 1000, i) for i in range(200_000)] + [("s", 1)]
    got = dict(ctx.parallelize(many, 3).reduceByKey(operator.add, 5).collect())
    expect = defaultdict(int)
    for k, v in many:
        expect[k] += v
    assert got == expect


@SETTINGS
@given(data=pairs, n=nparts)
def test_group_by_key_and_group_by(ctx, data, n):
    rdd = ctx.parallelize(data, n)
    out = rdd.groupByKey().collect()
    assert all(isinstance(v, ResultIterable) for _, v in out)
    assert {k: sorted(v) for k, v in out} == {k: sorted(v) for k, v in grouped(data).items()}
    by = rdd.groupBy(lambda kv: kv[1] % 3).mapValues(lambda vs: sorted(vs, key=repr)).collect()
    expect = defaultdict(list)
    for kv in data:
        expect[kv[1] % 3].append(kv)
    assert dict(by) == {k: sorted(v, key=repr) for k, v in expect.items()}


@SETTINGS
@given(a=pairs, b=pairs, n=nparts)
def test_joins_and_cogroup(ctx, a, b, n):
    ra, rb = ctx.parallelize(a, n), ctx.parallelize(b, 2)
    ga, gb = grouped(a), grouped(b)
    inner = [(k, (v, w)) for k in ga if k in gb for v in ga[k] for w in gb[k]]
    key = lambda kv: (str(kv[0]), repr(kv[1]))
    assert sorted(ra.join(rb).collect(), key=key) == sorted(inner, key=key)
    left = [(k, (v, w)) for k in ga for v in ga[k] for w in gb.get(k, [None])]
    assert sorted(ra.leftOuterJoin(rb).collect(), key=key) == sorted(left, key=key)
    right = [(k, (v, w)) for k in gb for w in gb[k] for v in ga.get(k, [None])]
    assert sorted(ra.rightOuterJoin(rb).collect(), key=key) == sorted(right, key=key)
    full = left + [(k, (None, w)) for k in gb if k not in ga for w in gb[k]]
    assert sorted(ra.fullOuterJoin(rb, 3).collect(), key=key) == sorted(full, key=key)
    cg = {k: tuple(sorted(x) for x in v) for k, v in ra.cogroup(rb).collect()}
    assert cg == {k: (sorted(ga.get(k, [])), sorted(gb.get(k, []))) for k in set(ga) | set(gb)}
    sub = sorted(ra.subtractByKey(rb).collect(), key=key)
    assert sub == sorted([(k, v) for k, v in a if k not in gb], key=key)


def test_group_with_three(ctx):
    a = ctx.parallelize([("x", 1), ("y", 2)])
    b = ctx.parallelize([("x", 3)])
    c = ctx.parallelize([("y", 4), ("z", 5)])
    got = {k: tuple(list(x) for x in v) for k, v in a.groupWith(b, c).collect()}
    assert got == {"x": ([1], [3], []), "y": ([2], [], [4]), "z": ([], [], [5])}


@SETTINGS
@given(data=st.lists(st.tuples(st.integers(-50, 50), st.integers()), max_size=50),
       n=nparts, m=nparts, asc=st.booleans())
def test_sort_by_key_and_sort_by(ctx, data, n, m, asc):
    rdd = ctx.parallelize(data, n)
    got = rdd.sortByKey(asc, m).collect()
    assert [k for k, _ in got] == sorted((k for k, _ in data), reverse=not asc)
    assert sorted(got) == sorted(data)
    by = rdd.sortBy(lambda kv: (kv[1], kv[0]), asc, m).collect()
    assert by == sorted(data, key=lambda kv: (kv[1], kv[0]), reverse=not asc)
    words = ctx.parallelize(["Bb", "a", "C"], 2).map(lambda w: (w, 1))
    assert words.sortByKey(keyfunc=str.lower).keys().collect() == ["a", "Bb", "C"]


def test_partition_by_and_repartition_and_sort(ctx):
    from dataflow import portable_hash
    data = [(k, k * 10) for k in [5, 3, 9, 1, 3, 7, 0, 2]]
    rdd = ctx.parallelize(data, 3)
    p = rdd.partitionBy(3)
    glom = p.glom().collect()
    for i, part in enumerate(glom):
        assert all(portable_hash(k) % 3 == i for k, _ in part)
    assert sorted(x for part in glom for x in part) == sorted(data)
    assert p.partitionBy(3) is p
    assert p.mapValues(str).partitioner == p.partitioner
    assert p.map(lambda kv: kv).partitioner is None
    rs = rdd.repartitionAndSortWithinPartitions(2, lambda k: k % 2, ascending=False).glom().collect()
    assert rs == [sorted([kv for kv in data if kv[0] % 2 == 0], key=lambda kv: kv[0], reverse=True),
                  sorted([kv for kv in data if kv[0] % 2 == 1], key=lambda kv: kv[0], reverse=True)]


def test_map_values_flat_map_values(ctx):
    rdd = ctx.parallelize([("a", 2), ("b", 0), ("c", 1)], 2)
    assert rdd.mapValues(lambda v: v * 2).collect() == [("a", 4), ("b", 0), ("c", 2)]
    assert rdd.flatMapValues(range).collect() == [("a", 0), ("a", 1), ("c", 0)]


def test_shuffle_output_reused_across_jobs(ctx):
    calls = ctx.accumulator(0)

    def tag(x):
        calls.add(1)
        return (x % 3, x)

    r = ctx.parallelize(range(30), 3).map(tag).reduceByKey(operator.add)
    assert dict(r.collect()) == {0: 135, 1: 145, 2: 155}
    assert r.count() == 3 and sorted(r.keys().collect()) == [0, 1, 2]
    assert calls.value == 30  # the map stage ran once


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), parts=st.integers(1, 6))
def test_sort_sketch_counts_every_record_and_samples_real_keys(n, parts):
    from dataflow.pairs import SKETCH_KEYS, _key_sketch, _range_bounds
    keys = [(i * 7919) % 1013 for i in range(n)]
    it = iter([(k, None) for k in keys])
    count, sample = _key_sketch(it)
    assert count == n and next(it, None) is None  # one pass over everything
    assert len(sample) == min(n, SKETCH_KEYS) and set(sample) <= set(keys)
    bounds = _range_bounds([(count, sample)], parts, lambda k: k)
    assert bounds == sorted(bounds) and len(bounds) == (parts - 1 if n else 0)
