"""Vectorised narrow transformations: what the analyser accepts, and that NumPy gives Python's
results exactly (or hands the elements back to Python)."""
from __future__ import annotations

import math
import operator
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dataflow import Context
from dataflow.batches import (
    Batch,
    Columnar,
    ConstPairs,
    add_fold,
    apply,
    int_sum,
    range_columns,
)
from dataflow.errors import TaskFailedError
from dataflow.vecexec import Col, Fallback, evaluate
from dataflow.vectorize import analyse, const_pair, is_add

K = 7
BIG = 2 ** 62
NEG = -3.5


# ------------------------------------------------------------------------------ the analyser

@pytest.mark.parametrize("f", [
    lambda x: x * x,
    lambda x: x % 2 == 0,
    lambda i: ((i * 7919) % K, i),
    lambda x: -x + 3 // 2 - x ** 3,
    lambda x: x / 2.5,
    lambda x: 0 < x <= 10,
    lambda x: x > 1 and x < 5 or not x,
    lambda x: x if x > 3 else -x,
    lambda kv: kv[1] + kv[0],
    lambda x: (x, 1),
    lambda x: x * BIG + NEG,
    lambda x: ~x,
])
def test_analyser_accepts_arithmetic(f):
    assert analyse(f) is not None


def _with_local(x):
    y = x * 2
    return y + 1


def test_analyser_follows_locals_and_reads_closures_when_asked():
    assert analyse(_with_local) == ("bin", "+", ("bin", "*", ("arg", 0), ("const", 2)),
                                    ("const", 1))
    n = 5
    f = lambda x: x + n
    assert analyse(f) == ("bin", "+", ("arg", 0), ("const", 5))
    n = 6  # a later job reads the new value, as PySpark serialises closures per job
    assert analyse(f) == ("bin", "+", ("arg", 0), ("const", 6))


def _loop(x):
    s = 0
    for i in range(x):
        s += i
    return s


def _gen(x):
    yield x


NOT_A_NUMBER = "7"
ARRAY = np.int64(3)


@pytest.mark.parametrize("f", [
    lambda x: abs(x),
    lambda x: x.real,
    lambda x: str(x),
    lambda x: x + NOT_A_NUMBER,
    lambda x: x + ARRAY,  # NumPy scalars have their own arithmetic
    lambda x: x + UNKNOWN_NAME,  # noqa: F821
    lambda x: [x],
    lambda x: x in (1, 2),
    lambda x: x is None,
    lambda x, y=1: x + y,
    lambda *a: a[0],
    lambda x: (),
    lambda x: x[x],
    _loop,
    _gen,
    len,
    operator.neg,
    str.split,
])
def test_analyser_refuses_everything_else(f):
    assert analyse(f) is None


def test_const_pair_and_is_add():
    assert const_pair(analyse(lambda w: (w, 3))) == 3
    assert const_pair(analyse(lambda w: (w, True))) is None  # True + True is 2, not True
    assert const_pair(analyse(lambda w: (1, w))) is None
    assert is_add(operator.add) and is_add(lambda a, b: a + b)
    assert not is_add(lambda a, b: a - b) and not is_add(max) and not is_add(lambda a: a)


# ------------------------------------------------------------------ exactness, expression level

def canon(v):
    """A value with its exact type (1 vs 1.0 vs True, -0.0 vs 0.0, nan)."""
    if isinstance(v, tuple):
        return ("tuple", tuple(canon(x) for x in v))
    return (type(v).__name__, repr(v))


CONSTS = st.sampled_from([0, 1, -1, 2, 3, 7, 10, 2 ** 31, 2 ** 53 + 1, 2 ** 62, -(2 ** 63),
                          0.0, -0.0, 1.5, -2.5, 1e300, math.inf, True, False])
BIN = st.sampled_from(["+", "-", "*", "//", "%", "/"])
CMP = st.sampled_from(["<", "<=", "==", "!=", ">", ">="])


def exprs():
    leaf = st.one_of(st.just("x"), CONSTS.map(repr).map(lambda s: f"({s})"))
    leaf = leaf.map(lambda s: s.replace("inf", "INF"))  # a global number, read by the analyser

    def grow(children):
        return st.one_of(
            st.tuples(children, BIN, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(children, st.integers(0, 4)).map(lambda t: f"({t[0]} ** {t[1]})"),
            children.map(lambda a: f"(-{a})"),
            children.map(lambda a: f"(not {a})"),
            st.tuples(children, CMP, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(children, children).map(lambda t: f"({t[0]} and {t[1]})"),
            st.tuples(children, children).map(lambda t: f"({t[0]} or {t[1]})"),
            st.tuples(children, children, children).map(
                lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
            st.tuples(children, children).map(lambda t: f"(0 < {t[0]} < {t[1]})"),
        )

    return st.recursive(leaf, grow, max_leaves=6)


def ranges():
    starts = st.one_of(st.integers(-50, 50), st.sampled_from(
        [2 ** 31, -(2 ** 31), 2 ** 53 - 5, 2 ** 62, -(2 ** 63), 2 ** 63 - 40, 3037000499]))
    return st.builds(lambda s, n, step: range(s, s + n * step, step),
                     starts, st.integers(0, 40), st.sampled_from([1, -1, 3, 7919, 2 ** 33]))


def python_values(f, xs):
    out = []
    for x in xs:
        try:
            out.append(f(x))
        except Exception as exc:  # noqa: BLE001 - the type is what is compared
            return type(exc)
    return out


def make(src):
    # test expressions drawn from the grammar
    return eval(f"lambda x: {src}", {"INF": math.inf})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(src=exprs(), r=ranges())
def test_vectorised_value_is_pythons_or_it_falls_back(src, r):
    f = make(src)
    expr = analyse(f)
    assert expr is not None, src
    part = range_columns(r)
    assume(part is not None and len(r) > 0)
    (batch,) = list(part.items)
    expected = python_values(f, list(r))
    try:
        with np.errstate(all="ignore"):
            got = evaluate(expr, [batch.value], batch.n)
    except Fallback:
        return
    # vectorised: Python must not have raised, and every value must be identical
    assert not isinstance(expected, type), (src, r, expected)
    if isinstance(got, Col):
        values = got.arr.tolist()
    elif isinstance(got, tuple):
        pytest.skip("tuples are compared at the pipeline level")
    else:
        values = [got] * len(r)
    assert [canon(v) for v in values] == [canon(v) for v in expected], (src, r)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(srcs=st.lists(st.tuples(st.sampled_from(["map", "filter"]), exprs()), min_size=1,
                     max_size=3),
       r=ranges(), action=st.sampled_from(["collect", "sum", "count", "reduce", "fold", "pairs",
                                           "group", "sort"]))
def test_columnar_partitions_give_the_record_paths_results(srcs, r, action):
    got = run_pipeline(True, srcs, r, action)
    assert canon_result(got) == canon_result(run_pipeline(False, srcs, r, action)), (srcs, r)


def run_pipeline(vectorize, srcs, r, action):
    ctx = Context("inline", vectorize=vectorize, max_task_failures=1)
    try:
        rdd = ctx.parallelize(r, 2)
        for kind, src in srcs:
            rdd = getattr(rdd, kind)(make(src))
        if action == "collect":
            return rdd.collect()
        if action == "sum":
            return rdd.sum()
        if action == "count":
            return rdd.count()
        if action == "reduce":
            return rdd.reduce(lambda a, b: a + b)
        if action == "fold":
            return rdd.fold(0, operator.add)
        if action == "group":   # shuffles without a combine take a columnar batch as it is
            return sorted(((k, list(v)) for k, v in
                           rdd.map(lambda x: (x % 5, x)).groupByKey(3).collect()), key=repr)
        if action == "sort":
            return rdd.map(lambda x: (x % 7, x)).sortByKey(numPartitions=2).collect()
        return sorted(rdd.map(lambda x: (x % 5, x)).reduceByKey(operator.add).collect(),
                      key=repr)
    except TaskFailedError as exc:
        return ("raised", exc.remote_type)
    except ValueError as exc:  # reduce() of an empty RDD, on the driver
        return ("raised", type(exc).__name__)
    finally:
        ctx.stop()


def canon_result(v):
    if isinstance(v, list):
        return [canon_result(x) for x in v]
    if isinstance(v, tuple) and v[:1] == ("raised",):
        return v
    return canon(v)


# --------------------------------------------------------------------- columnar consumers

@given(st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), max_size=50))
def test_int_sum_is_exact(values):
    assert int_sum(np.array(values, dtype=np.int64)) == sum(values)


def test_sum_fold_and_count_mix_batches_and_records_in_order():
    def part():
        return Columnar(iter([Batch(Col(np.array([2 ** 62, 2 ** 62])), 2), [0.5, 1],
                              Batch(Col(np.array([True, False])), 2)]))
    expected = [2 ** 62, 2 ** 62, 0.5, 1, True, False]
    assert add_fold(part(), 0) == sum(expected)
    assert type(add_fold(part(), 0)) is float
    assert add_fold(part(), None, False) == (2 ** 63 + 0.5) + 1 + True + False
    bools = Columnar(iter([Batch(Col(np.array([True])), 1)]))
    assert add_fold(bools, None, False) is True  # reduce(add, [True]) is True, not 1


def test_a_batch_that_cannot_be_exact_goes_to_python_for_that_batch_only():
    calls = []

    def python(it):
        items = list(it)
        calls.append(len(items))
        return [x * 3 for x in items]

    r = range(2 ** 62 - 4, 2 ** 62 + 4)
    part = apply(range_columns(r), "map", analyse(lambda x: x * 3), python)
    assert list(part.records()) == [x * 3 for x in r]
    assert calls == [8]  # 3 * 2**62 overflows int64: Python did it
    part = apply(range_columns(range(10)), "map", analyse(lambda x: x * 3), python)
    assert list(part.records()) == [x * 3 for x in range(10)] and calls == [8]


def test_const_pairs_are_the_records_of_the_map():
    assert list(ConstPairs(iter("ab"), 2).records()) == [("a", 2), ("b", 2)]


# ----------------------------------------------------------------------- pipelines, both paths

def both(f):
    out = []
    for vec in (True, False):
        with Context("inline", vectorize=vec, max_task_failures=1) as ctx:
            out.append(f(ctx))
    assert canon_result(out[0]) == canon_result(out[1])
    return out[0]


def test_w6_shape():
    got = both(lambda ctx: ctx.parallelize(range(200_001), 3).map(lambda x: x * x)
               .filter(lambda x: x % 2 == 0).sum())
    assert got == sum(x * x for x in range(200_001) if x % 2 == 0)


def test_w2_shape_and_big_sums_stay_exact():
    nk = 1000
    got = both(lambda ctx: sorted(ctx.range(100_000, numSlices=4)
                                  .map(lambda i: ((i * 7919) % nk, i)).reduceByKey(operator.add)
                                  .collect()))
    ref = Counter()
    for i in range(100_000):
        ref[(i * 7919) % nk] += i
    assert got == sorted(ref.items())
    big = both(lambda ctx: sorted(ctx.range(1000, numSlices=2).map(lambda i: (i % 3, i * BIG))
                                  .reduceByKey(lambda a, b: a + b).collect()))
    assert big == sorted((k, sum(i * BIG for i in range(k, 1000, 3))) for k in range(3))
    # the reduce side hands its merged arrays on: same records, same order
    after = both(lambda ctx: ctx.range(50_000, numSlices=3).map(lambda i: ((i * 7919) % nk, i))
                 .reduceByKey(operator.add, 2).map(lambda kv: kv[1] - kv[0]).collect())
    ref2 = Counter()
    for i in range(50_000):
        ref2[(i * 7919) % nk] += i
    assert sorted(after) == sorted(v - k for k, v in ref2.items())
    floats = both(lambda ctx: ctx.range(1000, numSlices=2).map(lambda i: (i % 3, i / 7))
                  .reduceByKey(min).collectAsMap())
    assert floats == {k: k / 7 for k in range(3)}


def test_division_by_zero_raises_where_python_does(tmp_path):
    assert both(lambda ctx: ctx.range(-5, 5).map(lambda x: 10 // x).take(2)) == [-2, -3]
    with Context("inline", max_task_failures=1) as ctx, pytest.raises(TaskFailedError) as info:
        ctx.range(-5, 5).map(lambda x: 10 // x).sum()
    assert info.value.remote_type == "ZeroDivisionError"


def test_w1_shape_counts_words_like_python(tmp_path):
    words = ["a", "bb", "a", "c", "é", "bb", "a"]
    for i in range(3):
        (tmp_path / f"part-{i}.txt").write_text("\n".join(
            " ".join(words[j:] + words[:j]) for j in range(i, 7)) + "\r\n")
    # words separated by characters only str.split takes for whitespace
    (tmp_path / "part-3.txt").write_text("a\x1cb c\u3000d\n\u00a0a\x85b\n")
    ref = Counter()
    for p in sorted(tmp_path.iterdir()):
        ref.update(p.read_text().split())
    for c, add in ((1, operator.add), (3, lambda a, b: a + b)):
        got = both(lambda ctx, c=c, add=add: ctx.textFile(str(tmp_path)).flatMap(str.split)
                   .map(lambda w: (w, c)).reduceByKey(add).collect())  # same order, too
        assert dict(got) == {word: n * c for word, n in ref.items()}


def test_w1_shape_bad_utf8_raises_the_same_error(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe\n")
    got = both(lambda ctx: run_or_error(lambda: ctx.textFile(str(tmp_path)).flatMap(str.split)
                                        .map(lambda w: (w, 1)).reduceByKey(operator.add)
                                        .collect()))
    assert got == ("raised", "UnicodeDecodeError")


def run_or_error(f):
    try:
        return f()
    except TaskFailedError as exc:
        return ("raised", exc.remote_type)


def test_w1_shape_spills_partial_counts_within_a_small_budget():
    with Context("inline", memory_budget=4096) as ctx:
        got = ctx.parallelize([f"w{i % 5000}" for i in range(40_000)], 2) \
            .map(lambda w: (w, 2)).reduceByKey(operator.add).collectAsMap()
    assert got == {f"w{i}": 16 for i in range(5000)}


def test_vectorised_pipeline_on_executor_processes(shared_contexts):
    ctx = shared_contexts("local[2]")
    nk = 97
    assert ctx.range(1_000_000, numSlices=4).map(lambda x: x * x) \
        .filter(lambda x: x % 2 == 0).sum() == sum(x * x for x in range(0, 1_000_000, 2))
    got = dict(ctx.range(300_000, numSlices=4).map(lambda i: ((i * 7919) % nk, i))
               .reduceByKey(operator.add).collect())
    ref = Counter()
    for i in range(300_000):
        ref[(i * 7919) % nk] += i
    assert got == dict(ref)


def test_float_sums_add_each_keys_values_in_order_on_both_paths():
    n, parts = 300_000, 2
    got = both(lambda ctx: ctx.range(n, numSlices=parts).map(lambda i: (i % 7, i / 3 + 0.1))
               .reduceByKey(operator.add).collectAsMap())
    expected: dict = {}
    for p in range(parts):  # each map task adds in order, the reducer adds the partials in order
        partial: dict = {}
        for i in range(p * n // parts, (p + 1) * n // parts):
            partial[i % 7] = partial[i % 7] + (i / 3 + 0.1) if i % 7 in partial else i / 3 + 0.1
        for k, v in partial.items():
            expected[k] = expected[k] + v if k in expected else v
    assert got == expected
