"""Fitness kernels: reference values from the standard definitions (DEAP's benchmarks module,
values pinned here), compiled == twin (hypothesis), and the compiled build must exist."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from _native import compiled_available, load, pure_forced

BACKENDS = [pytest.param(True, id="twin"), pytest.param(False, id="compiled")]


@pytest.fixture(params=BACKENDS)
def fit(request):
    if not request.param and not compiled_available("fitness"):
        pytest.skip("compiled fitness kernels not built")
    return load("fitness", pure=request.param)


def test_compiled_module_is_built():
    if pure_forced():
        pytest.skip("OFFERPOOL_PURE_KERNELS is set")
    assert compiled_available("fitness"), \
        "_native.fitness is not compiled: run `cythonize -3 -i _native/fitness.pyx`"
    assert compiled_available("operators"), \
        "_native.operators is not compiled: run `cythonize -3 -i _native/operators.pyx`"


def pack(ones):
    from genetic.spaces import pack_bits
    ones = np.asarray(ones, dtype=np.uint8)
    return pack_bits(ones, (ones.shape[1] + 63) // 64)


def row(*values):
    return np.array([values], dtype=np.float64)


def test_onemax_leading_ones(fit):
    ones = np.zeros((4, 100), np.uint8)
    ones[1] = 1
    ones[2, :37] = 1
    ones[3, [0, 1, 2, 70, 99]] = 1
    b = pack(ones)
    assert fit.onemax(b).tolist() == [0, 100, 37, 5]
    assert fit.leading_ones(b, 100).tolist() == [0, 100, 37, 3]


def test_leading_ones_word_boundary(fit):
    ones = np.ones((2, 130), np.uint8)
    ones[1, 64] = 0
    assert fit.leading_ones(pack(ones), 130).tolist() == [130, 64]


def test_trap(fit):
    # blocks of 4: all ones -> 4, u ones otherwise -> 3 - u
    ones = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 0]], np.uint8)
    assert fit.trap(pack(ones), 12, 4).tolist() == [4 + 3 + 1]


def test_knapsack(fit):
    values = np.array([10.0, 5.0, 8.0])
    weights = np.array([4.0, 3.0, 5.0])
    ones = np.array([[1, 1, 0], [1, 0, 1], [0, 0, 0]], np.uint8)
    out = fit.knapsack(pack(ones), 3, values, weights, 8.0, 2.0)
    assert out.tolist() == [15.0, 18.0 - 2.0 * 1.0, 0.0]


def test_tsp_square(fit):
    pts = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    dist = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    tours = np.array([[0, 1, 2, 3], [0, 2, 1, 3]], np.int32)
    out = fit.tsp_length(tours, dist)
    assert out[0] == pytest.approx(4.0)
    assert out[1] == pytest.approx(2 + 2 * math.sqrt(2))


@pytest.mark.parametrize("name,x,expected", [
    ("sphere", [0.0] * 5, 0.0),
    ("sphere", [1.0, -2.0], 5.0),
    ("rastrigin", [0.0] * 30, 0.0),
    ("rastrigin", [1.0, 2.0], 5.0),
    ("rosenbrock", [1.0] * 10, 0.0),
    ("rosenbrock", [0.0, 0.0], 1.0),
    ("rosenbrock", [1.0, 2.0], 100.0),
    ("ackley", [0.0] * 10, 0.0),
    ("ackley", [1.0, 1.0], 3.6253849384403627),
    ("griewank", [0.0] * 10, 0.0),
    ("griewank", [1.0, 1.0], 0.5897380911762422),
    ("schwefel", [420.968746] * 10, 0.0),
])
def test_real_benchmarks(fit, name, x, expected):
    assert getattr(fit, name)(row(*x))[0] == pytest.approx(expected, abs=1e-3 if
                                                           name == "schwefel" else 1e-9)


@pytest.mark.parametrize("name,front", [
    ("zdt1", lambda f1: 1 - np.sqrt(f1)),
    ("zdt2", lambda f1: 1 - f1 ** 2),
    ("zdt3", lambda f1: 1 - np.sqrt(f1) - f1 * np.sin(10 * np.pi * f1)),
    ("zdt4", lambda f1: 1 - np.sqrt(f1)),
])
def test_zdt_on_pareto_front(fit, name, front):
    # x[1:] = 0 puts a point on the true front (g = 1)
    x = np.zeros((11, 10))
    x[:, 0] = np.linspace(0, 1, 11)
    out = getattr(fit, name)(x)
    np.testing.assert_allclose(out[:, 0], x[:, 0])
    np.testing.assert_allclose(out[:, 1], front(x[:, 0]), atol=1e-12)


def test_zdt_off_front(fit):
    x = np.full((1, 4), 0.5)
    g = 1 + 9 * 1.5 / 3
    np.testing.assert_allclose(fit.zdt1(x)[0], [0.5, g * (1 - math.sqrt(0.5 / g))])
    f1 = 1 - math.exp(-2.0) * math.sin(3 * math.pi) ** 6
    g6 = 1 + 9 * 0.5 ** 0.25
    np.testing.assert_allclose(fit.zdt6(x)[0], [f1, g6 * (1 - (f1 / g6) ** 2)])


def test_zdt6_front(fit):
    x = np.zeros((3, 10))
    x[:, 0] = [0.0, 0.3, 1.0]
    f1 = 1 - np.exp(-4 * x[:, 0]) * np.sin(6 * np.pi * x[:, 0]) ** 6
    np.testing.assert_allclose(fit.zdt6(x)[:, 1], 1 - f1 ** 2, atol=1e-12)


def test_row_hash(fit):
    w = np.array([[1, 2], [1, 2], [2, 1], [0, 0]], np.uint64)
    h = fit.row_hash(w)
    assert h.dtype == np.uint64
    assert h[0] == h[1] and len({int(v) for v in h}) == 3
    assert fit.row_hash(w, seed=1)[0] != h[0]


def test_out_argument_is_used(fit):
    out = np.empty(2)
    res = fit.sphere(np.ones((2, 3)), out=out)
    assert res is out and out.tolist() == [3.0, 3.0]


# -- compiled == twin ---------------------------------------------------------------------------

needs_compiled = pytest.mark.skipif(not compiled_available("fitness"),
                                    reason="compiled fitness kernels not built")
C = load("fitness", pure=False) if compiled_available("fitness") else None
P = load("fitness", pure=True)

words = hnp.arrays(np.uint64, st.tuples(st.integers(1, 8), st.integers(1, 3)),
                   elements=st.integers(0, 2**64 - 1))
reals = hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(2, 12)),
                   elements=st.floats(-10, 10))
unit = hnp.arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(2, 12)),
                  elements=st.floats(0, 1))


def _mask_bits(b: np.ndarray, n_bits: int) -> np.ndarray:
    b = b.copy()
    r = n_bits - 64 * (b.shape[1] - 1)
    if r < 64:
        b[:, -1] &= np.uint64((1 << r) - 1)
    return b


@needs_compiled
@settings(max_examples=60, deadline=None)
@given(words, st.data())
def test_bit_kernels_equal(b, data):
    n_bits = data.draw(st.integers(64 * (b.shape[1] - 1) + 1, 64 * b.shape[1]))
    b = _mask_bits(b, n_bits)
    assert C.onemax(b).tolist() == P.onemax(b).tolist()
    assert C.leading_ones(b, n_bits).tolist() == P.leading_ones(b, n_bits).tolist()
    k = data.draw(st.sampled_from([d for d in (1, 2, 3, 4, 5) if n_bits % d == 0]))
    assert C.trap(b, n_bits, k).tolist() == P.trap(b, n_bits, k).tolist()
    v = np.arange(n_bits, dtype=float)
    wt = np.ones(n_bits)
    np.testing.assert_allclose(C.knapsack(b, n_bits, v, wt, n_bits / 3, 1.5),
                               P.knapsack(b, n_bits, v, wt, n_bits / 3, 1.5))
    assert C.row_hash(b, 7).tolist() == P.row_hash(b, 7).tolist()


@needs_compiled
@settings(max_examples=60, deadline=None)
@given(reals)
def test_real_kernels_equal(x):
    for name in ("sphere", "rastrigin", "rosenbrock", "ackley", "schwefel", "griewank"):
        np.testing.assert_allclose(getattr(C, name)(x), getattr(P, name)(x),
                                   rtol=1e-10, atol=1e-9, err_msg=name)


@needs_compiled
@settings(max_examples=60, deadline=None)
@given(unit)
def test_zdt_kernels_equal(x):
    for name in ("zdt1", "zdt2", "zdt3", "zdt4", "zdt6"):
        np.testing.assert_allclose(getattr(C, name)(x), getattr(P, name)(x),
                                   rtol=1e-10, atol=1e-9, err_msg=name)


@needs_compiled
@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_tsp_equal(n, pop, seed):
    rng = np.random.default_rng(seed)
    tours = np.ascontiguousarray(np.argsort(rng.random((pop, n)), axis=1).astype(np.int32))
    dist = rng.random((n, n))
    np.testing.assert_allclose(C.tsp_length(tours, dist), P.tsp_length(tours, dist))
