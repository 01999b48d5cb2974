"""Tests of the ``columnar`` kernel family (grouping and join indices over int64 keys).

Behaviour tests run on both backends against plain-Python models; property tests prove
compiled == twin. With ``OFFERPOOL_PURE_KERNELS`` set the compiled variants are skipped;
otherwise a missing build makes them, and ``test_compiled_module_built``, fail.
"""
from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from _native import PURE_ENV, compiled_available, load, pure_forced

pytestmark = pytest.mark.timeout(60)

BACKENDS = [pytest.param(True, id="twin"), pytest.param(False, id="compiled")]
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

wide_keys = hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(-(2 ** 63), 2 ** 63 - 1))
small_keys = hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(-5, 5))
any_keys = st.one_of(wide_keys, small_keys)


def backend(pure: bool) -> ModuleType:
    if not pure and pure_forced():
        pytest.skip(f"{PURE_ENV} forces the pure twin")
    return load("columnar", pure=pure)


def model_groups(keys) -> list:
    groups: dict = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return list(groups.values())


def model_join(left, right) -> list:
    return [(i, j) for i, a in enumerate(left) for j, b in enumerate(right) if a == b]


def test_compiled_module_built():
    if pure_forced():
        pytest.skip(f"{PURE_ENV} forces the pure twin")
    assert compiled_available("columnar"), "run: python setup.py build_ext --inplace"


@pytest.mark.parametrize("pure", BACKENDS)
@PROPERTY
@given(keys=any_keys)
def test_group_index_matches_the_model(pure, keys):
    starts, order = backend(pure).group_index(keys)
    assert starts.dtype == np.int64 and order.dtype == np.int64
    got = [order[a:b].tolist() for a, b in zip(starts.tolist(), starts[1:].tolist())]
    assert got == model_groups(keys.tolist())


@pytest.mark.parametrize("pure", BACKENDS)
@PROPERTY
@given(left=any_keys, right=any_keys)
def test_join_index_matches_the_model(pure, left, right):
    li, ri = backend(pure).join_index(left, right)
    assert li.dtype == np.int64 and ri.dtype == np.int64
    assert list(zip(li.tolist(), ri.tolist())) == model_join(left.tolist(), right.tolist())


@PROPERTY
@given(left=any_keys, right=any_keys)
def test_compiled_equals_twin(left, right):
    compiled, twin = backend(False), backend(True)
    for a, b in zip(compiled.group_index(left), twin.group_index(left)):
        assert np.array_equal(a, b)
    for a, b in zip(compiled.join_index(left, right), twin.join_index(left, right)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("pure", BACKENDS)
def test_empty_inputs(pure):
    k = backend(pure)
    empty = np.zeros(0, dtype=np.int64)
    starts, order = k.group_index(empty)
    assert starts.tolist() == [0] and order.tolist() == []
    for li, ri in (k.join_index(empty, np.array([1])), k.join_index(np.array([1]), empty)):
        assert li.tolist() == [] and ri.tolist() == []


scalars = st.one_of(st.integers(-(2 ** 64), 2 ** 64), st.floats(allow_nan=False), st.booleans(),
                    st.text(max_size=2), st.none())
records = st.lists(st.one_of(st.tuples(scalars, scalars), st.tuples(scalars),
                             st.lists(scalars, min_size=2, max_size=2)), max_size=30)
plain = st.lists(st.tuples(st.integers(-(2 ** 63), 2 ** 63 - 1),
                           st.integers(-(2 ** 63), 2 ** 63 - 1)), max_size=30)
plain_float = st.lists(st.tuples(st.integers(-5, 5), st.floats(allow_nan=False)), max_size=30)


def _same_columns(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return all(x.dtype == y.dtype and x.tolist() == y.tolist() for x, y in zip(a, b))


@pytest.mark.parametrize("pure", BACKENDS)
@PROPERTY
@given(recs=st.one_of(plain, plain_float))
def test_pair_columns_round_trips_plain_pairs(pure, recs):
    cols = backend(pure).pair_columns(recs)
    assert cols is not None
    back = list(zip(cols[0].tolist(), cols[1].tolist()))
    assert back == recs and all(type(v) is type(w) for (_, v), (_, w) in zip(back, recs))


@PROPERTY
@given(recs=st.one_of(records, plain, plain_float))
def test_pair_columns_compiled_equals_twin(recs):
    assert _same_columns(backend(False).pair_columns(recs), backend(True).pair_columns(recs))


@pytest.mark.parametrize("pure", BACKENDS)
def test_pair_columns_refuses_what_it_cannot_hold(pure):
    k = backend(pure)
    for bad in ([(1, 2), [3, 4]], [(True, 1)], [(1, 2 ** 63)], [(1, 2), (3, 4.0)], [(1.0, 2)],
                [(1, 2, 3)], [("a", 1)]):
        assert k.pair_columns(bad) is None, bad


pair_records = st.lists(st.one_of(st.tuples(st.sampled_from(["a", "b", 1, 2.0, (1, "x")]),
                                            st.integers(-3, 3)),
                                  st.lists(st.integers(), min_size=2, max_size=2)), max_size=40)


def model_combine(combined: dict, records: list, create, merge) -> int:
    for i, rec in enumerate(records):
        if type(rec) is not tuple or len(rec) != 2:
            return i
        k, v = rec
        combined[k] = merge(combined[k], v) if k in combined else create(v)
    return len(records)


@pytest.mark.parametrize("pure", BACKENDS)
@PROPERTY
@given(recs=pair_records, start=st.dictionaries(st.sampled_from(["a", 2]), st.integers(), max_size=2))
def test_combine_into_matches_the_model(pure, recs, start):
    k = backend(pure)
    for create, merge, add in ((None, None, True), (lambda v: [v], lambda c, v: c + [v], False),
                               (None, max, False)):
        got, want = dict(start), dict(start)
        if create is not None:
            got = {key: [v] for key, v in got.items()}
            want = {key: [v] for key, v in want.items()}
        used = k.combine_into(got, recs, create, merge, add)
        expect = model_combine(want, recs, create or (lambda v: v),
                               merge or (lambda a, b: a + b))
        assert used == expect and got == want and list(got) == list(want)


@pytest.mark.parametrize("pure", BACKENDS)
def test_combine_into_propagates_errors_of_merge(pure):
    with pytest.raises(TypeError):
        backend(pure).combine_into({"a": "x"}, [("a", 1)], None, None, True)


count_records = st.lists(st.one_of(
    st.tuples(st.sampled_from(["a", "b", 1, 1.0, True, (2, "x")]),
              st.one_of(st.integers(-3, 3), st.sampled_from([2 ** 62, -(2 ** 62), 2 ** 63 - 1]))),
    st.tuples(st.just("a"), st.one_of(st.floats(allow_nan=False), st.just(2 ** 64), st.booleans())),
    st.lists(st.integers(), min_size=2, max_size=2)), max_size=40)


@PROPERTY
@given(recs=count_records, cap=st.integers(1, 8), start=st.integers(0, 5))
def test_count_into_compiled_equals_twin(recs, cap, start):
    runs = []
    for pure in (False, True):
        index, sums = {}, np.zeros(cap, dtype=np.int64)
        pos = backend(pure).count_into(index, recs, min(start, len(recs)), sums)
        runs.append((pos, list(index.items()), sums[:len(index)].tolist()))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("pure", BACKENDS)
@PROPERTY
@given(recs=count_records)
def test_count_into_sums_like_python_until_it_stops(pure, recs):
    index, sums = {}, np.zeros(64, dtype=np.int64)
    pos = backend(pure).count_into(index, recs, 0, sums)
    expect: dict = {}
    for k, v in recs[:pos]:
        expect[k] = expect[k] + v if k in expect else v
    assert dict(zip(index, sums[:len(index)].tolist())) == expect and list(index) == list(expect)
    if pos < len(recs):  # it stopped on a record it must not take
        rec = recs[pos]
        bad = type(rec) is not tuple or type(rec[1]) is not int or not -2 ** 63 <= rec[1] < 2 ** 63
        assert bad or not -2 ** 63 <= expect.get(rec[0], 0) + rec[1] < 2 ** 63
