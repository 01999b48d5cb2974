"""Random pipelines of transformations against a list model (multiset comparison)."""
from __future__ import annotations

import operator
from collections import Counter, defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _pairs(xs):
    return [(x % 5, x) for x in xs]


# each step: (name, rdd -> rdd, list -> list); every step maps ints to ints
STEPS = {
    "map": (lambda r: r.map(lambda x: x * 3 - 1), lambda xs: [x * 3 - 1 for x in xs]),
    "filter": (lambda r: r.filter(lambda x: x % 3 != 0), lambda xs: [x for x in xs if x % 3 != 0]),
    "flatMap": (lambda r: r.flatMap(lambda x: [x, -x] if x % 2 else [x]),
                lambda xs: [y for x in xs for y in ([x, -x] if x % 2 else [x])]),
    "union": (lambda r: r.union(r.map(lambda x: x + 100)), lambda xs: xs + [x + 100 for x in xs]),
    "distinct": (lambda r: r.distinct(3), lambda xs: list(set(xs))),
    "reduceByKey": (lambda r: r.map(lambda x: (x % 5, x)).reduceByKey(operator.add, 2)
                    .map(lambda kv: kv[0] * 1000 + kv[1]),
                    lambda xs: [k * 1000 + v for k, v in _sum_by_key(_pairs(xs)).items()]),
    "groupByKey": (lambda r: r.map(lambda x: (x % 5, x)).groupByKey().map(lambda kv: len(kv[1])),
                   lambda xs: list(Counter(x % 5 for x in xs).values())),
    "sortBy": (lambda r: r.sortBy(lambda x: -x, numPartitions=2), lambda xs: xs),
    "coalesce": (lambda r: r.coalesce(1), lambda xs: xs),
    "repartition": (lambda r: r.repartition(3), lambda xs: xs),
    "cache": (lambda r: r.cache(), lambda xs: xs),
    "join": (lambda r: r.map(lambda x: (x % 4, x)).join(r.map(lambda x: (x % 4, 1)))
             .map(lambda kv: kv[1][0]),
             lambda xs: [x for x in xs for y in xs if y % 4 == x % 4]),
    "zipWithIndex": (lambda r: r.zipWithIndex().map(lambda xi: xi[0]), lambda xs: xs),
    "cartesian": (lambda r: r.cartesian(r.coalesce(1)).map(lambda ab: ab[0] - ab[1]),
                  lambda xs: [a - b for a in xs for b in xs]),
}


def _sum_by_key(pairs):
    out = defaultdict(int)
    for k, v in pairs:
        out[k] += v
    return out


@SETTINGS
@given(data=st.lists(st.integers(-20, 20), max_size=12), n=st.integers(1, 4),
       steps=st.lists(st.sampled_from(sorted(STEPS)), max_size=4))
def test_random_pipeline_matches_model(ctx, data, n, steps):
    rdd, model = ctx.parallelize(data, n), list(data)
    for name in steps:
        to_rdd, to_model = STEPS[name]
        rdd, model = to_rdd(rdd), to_model(model)
        if len(model) > 2000:
            break
    assert Counter(rdd.collect()) == Counter(model)
    assert rdd.count() == len(model)
