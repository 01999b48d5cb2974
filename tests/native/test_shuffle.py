"""Tests of the ``shuffle`` kernel family: compiled module and twin, run side by side.

Behaviour tests run on both backends (``pure=True`` the twin, ``pure=False`` the compiled
module) against plain-Python models; property tests prove compiled == twin. With
``OFFERPOOL_PURE_KERNELS`` set the compiled variants are skipped; otherwise a missing build makes
them, and ``test_compiled_module_built``, fail.
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
OPS = {"add": lambda a, b: a + b, "min": min, "max": max}


def backend(pure: bool) -> ModuleType:
    if not pure and pure_forced():
        pytest.skip(f"{PURE_ENV} forces the pure twin")
    return load("shuffle", pure=pure)


def model_aggregate(keys, values, op):
    out: dict = {}
    for k, v in zip(keys, values):
        out[k] = OPS[op](out[k], v) if k in out else v
    return list(out), list(out.values())


int_keys = hnp.arrays(np.int64, st.integers(0, 300),
                      elements=st.integers(-(2 ** 63), 2 ** 63 - 1))
small_keys = hnp.arrays(np.int64, st.integers(0, 300), elements=st.integers(-5, 5))


def test_compiled_module_built():
    if pure_forced():
        pytest.skip(f"{PURE_ENV} forces the pure twin")
    assert compiled_available("shuffle"), "run: cythonize -3 -i _native/shuffle.pyx"


@pytest.mark.parametrize("pure", BACKENDS)
@pytest.mark.parametrize("op", ["add", "min", "max"])
def test_hash_aggregate_matches_model(pure, op):
    k = backend(pure)
    rng = np.random.default_rng(1)
    keys = rng.integers(-50, 50, 5000)
    for values in (rng.integers(-1000, 1000, 5000), rng.normal(size=5000)):
        got_k, got_v = k.hash_aggregate(keys, values, op)
        mk, mv = model_aggregate(keys.tolist(), values.tolist(), op)
        assert got_k.tolist() == mk
        assert np.allclose(got_v, mv) and got_v.dtype == values.dtype


@pytest.mark.parametrize("pure", BACKENDS)
def test_hash_aggregate_edges(pure):
    k = backend(pure)
    e_k, e_v = k.hash_aggregate(np.array([], dtype=np.int64), np.array([], dtype=np.int64), "add")
    assert len(e_k) == 0 and len(e_v) == 0
    extremes = np.array([-(2 ** 63), 2 ** 63 - 1, 0, -(2 ** 63)], dtype=np.int64)
    ks, vs = k.hash_aggregate(extremes, np.array([1, 2, 3, 4]), "add")
    assert ks.tolist() == [-(2 ** 63), 2 ** 63 - 1, 0] and vs.tolist() == [5, 2, 3]
    with pytest.raises(ValueError):
        k.hash_aggregate(np.array([1]), np.array([1]), "mul")
    with pytest.raises(TypeError):
        k.hash_aggregate(np.array([1]), np.array([1], dtype=np.int32), "add")
    with pytest.raises(ValueError):
        k.hash_aggregate(np.array([1, 2]), np.array([1]), "add")


@pytest.mark.parametrize("pure", BACKENDS)
def test_bucket_order_and_argsort(pure):
    k = backend(pure)
    pids = np.array([2, 0, 1, 2, 0, 0])
    order, offsets = k.bucket_order(pids, 4)
    assert order.tolist() == [1, 4, 5, 2, 0, 3] and offsets.tolist() == [0, 3, 4, 6, 6]
    with pytest.raises(ValueError):
        k.bucket_order(np.array([0, 4]), 4)
    with pytest.raises(ValueError):
        k.bucket_order(np.array([-1]), 4)
    keys = np.array([3, -(2 ** 63), 2 ** 63 - 1, 3, 0, -1], dtype=np.int64)
    assert k.argsort(keys).tolist() == [1, 5, 4, 0, 3, 2]
    assert k.argsort(np.array([], dtype=np.int64)).tolist() == []


@PROPERTY
@given(keys=st.one_of(int_keys, small_keys), op=st.sampled_from(["add", "min", "max"]),
       floats=st.booleans(), data=st.data())
def test_hash_aggregate_compiled_equals_twin(keys, op, floats, data):
    if pure_forced():
        pytest.skip(f"{PURE_ENV} forces the pure twin")
    dtype = np.float64 if floats else np.int64
    elements = (st.floats(-1e6, 1e6, allow_nan=False) if floats
                else st.integers(-(2 ** 40), 2 ** 40))
    values = data.draw(hnp.arrays(dtype, len(keys), elements=elements))
    ck, cv = load("shuffle", pure=False).hash_aggregate(keys, values, op)
    tk, tv = load("shuffle", pure=True).hash_aggregate(keys, values, op)
    assert ck.tolist() == tk.tolist()
    if floats and op == "add":  # summation order may differ by rounding
        assert np.allclose(cv, tv, rtol=1e-9, atol=1e-6)
    else:
        assert cv.tolist() == tv.tolist()


@PROPERTY
@given(pids=hnp.arrays(np.int64, st.integers(0, 400), elements=st.integers(0, 6)))
def test_bucket_order_compiled_equals_twin(pids):
    if pure_forced():
        pytest.skip(f"{PURE_ENV} forces the pure twin")
    c = load("shuffle", pure=False).bucket_order(pids, 7)
    t = load("shuffle", pure=True).bucket_order(pids, 7)
    assert c[0].tolist() == t[0].tolist() and c[1].tolist() == t[1].tolist()


@PROPERTY
@given(keys=st.one_of(int_keys, small_keys))
def test_argsort_compiled_equals_twin(keys):
    if pure_forced():
        pytest.skip(f"{PURE_ENV} forces the pure twin")
    c = load("shuffle", pure=False).argsort(keys)
    t = load("shuffle", pure=True).argsort(keys)
    assert c.tolist() == t.tolist()
    assert c.tolist() == sorted(range(len(keys)), key=lambda i: int(keys[i]))
