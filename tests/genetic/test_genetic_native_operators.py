"""Operator kernels (_native/operators): golden values from DEAP's definitions (pinned here,
for fixed random draws), compiled == twin, and permutation validity (hypothesis)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _native import compiled_available, load

BACKENDS = [pytest.param(True, id="twin"), pytest.param(False, id="compiled")]


@pytest.fixture(params=BACKENDS)
def ops(request):
    if not request.param and not compiled_available("operators"):
        pytest.skip("compiled operator kernels not built")
    return load("operators", pure=request.param)


LOW, UP = np.full(4, -5.0), np.full(4, 5.0)


def test_sbx_golden(ops):
    # DEAP's cxSimulatedBinaryBounded(eta=20, low=-5, up=5) fed the same draws: gene 0 crosses
    # (no swap), gene 1 crosses and swaps, gene 2 does not take part, gene 3 takes part but
    # the parents are equal. Coins as bits: take part 0b1011, swap 0b0010; spreads in order.
    a = np.array([[0.1, -2.0, 3.0, 0.5]])
    b = np.array([[1.5, 2.0, -1.0, 0.5]])
    words = np.array([[0b1011, 0b0010]], dtype=np.uint64)
    ops.sbx_bounded(a, b, LOW, UP, 20.0, words, np.array([0.3, 0.9, 0.5]))
    np.testing.assert_allclose(a, [[0.11682209, 2.15930645, 3.0, 0.5]], atol=1e-8)
    np.testing.assert_allclose(b, [[1.48317791, -2.15930645, -1.0, 0.5]], atol=1e-8)


def test_sbx_refuses_short_draws(ops):
    a, b = np.zeros((1, 4)), np.ones((1, 4))
    with pytest.raises(ValueError, match="participate"):
        ops.sbx_bounded(a, b, LOW, UP, 20.0, np.array([[0b1111, 0]], np.uint64),
                        np.array([0.5, 0.5]))
    assert (a == 0).all() and (b == 1).all()


def test_polynomial_golden(ops):
    # DEAP's mutPolynomialBounded(eta=20, low=-5, up=5) on genes 0..2 with draws .25, .8, .05
    x = np.array([[0.0, 4.5, -4.9, 1.0]])
    ops.polynomial_bounded(x, LOW, UP, 20.0, np.array([0, 1, 2], np.int64),
                           np.array([0.25, 0.8, 0.05]))
    np.testing.assert_allclose(x, [[-0.324682, 4.73696779, -4.98904433, 1.0]], atol=1e-8)


def test_tournament_first_best_wins(ops):
    key = np.array([1.0, 5.0, 5.0, -np.inf])
    c = np.array([[0, 1, 2], [2, 1, 0], [3, 3, 0], [3, 3, 3]], np.int64)
    assert ops.tournament(key, c).tolist() == [1, 2, 0, 3]
    with pytest.raises(ValueError):
        ops.tournament(key, np.array([[0, 4]], np.int64))


def test_ox_golden(ops):
    # DEAP's cxOrdered with positions (2, 5)
    a = np.array([[0, 1, 2, 3, 4, 5, 6, 7]], np.int32)
    b = np.array([[7, 6, 5, 4, 3, 2, 1, 0]], np.int32)
    ops.ordered(a, b, np.array([[2, 5]], np.int64))
    assert a.tolist() == [[0, 1, 5, 4, 3, 2, 6, 7]]
    assert b.tolist() == [[7, 6, 2, 3, 4, 5, 1, 0]]


def test_pmx_golden(ops):
    # DEAP's cxPartialyMatched with cut points 3 <= j < 6
    a = np.array([[1, 2, 3, 4, 5, 6, 7, 8, 0]], np.int32)
    b = np.array([[4, 5, 2, 1, 8, 7, 6, 0, 3]], np.int32)
    ops.partially_matched(a, b, np.array([[3, 6]], np.int64))
    assert a.tolist() == [[4, 2, 3, 1, 8, 7, 6, 5, 0]]
    assert b.tolist() == [[1, 8, 2, 4, 5, 6, 7, 0, 3]]


def test_shuffle_and_invert_golden(ops):
    x = np.array([[0, 1, 2, 3, 4]], np.int32)
    u = np.zeros((1, 5, 2))
    u[0, :, 0] = [0.9, 0.01, 0.9, 0.9, 0.9]   # only gene 1 mutates
    u[0, 1, 1] = 0.8                           # k = floor(0.8 * 4) = 3, >= 1 so k = 4
    ops.shuffle_indexes(x, 0.05, u)
    assert x.tolist() == [[0, 4, 2, 3, 1]]
    ops.invert(x, np.array([[1, 3]], np.int64))
    assert x.tolist() == [[0, 3, 2, 4, 1]]


perm_case = st.tuples(st.integers(2, 25), st.integers(1, 6), st.integers(0, 2**32 - 1))


def _perms(n, pop, rng):
    return np.ascontiguousarray(np.argsort(rng.random((pop, n)), axis=1).astype(np.int32))


@settings(max_examples=60, deadline=None)
@given(perm_case)
def test_ox_pmx_give_permutations_and_backends_agree(case):
    n, pop, seed = case
    rng = np.random.default_rng(seed)
    a, b = _perms(n, pop, rng), _perms(n, pop, rng)
    x = rng.integers(0, n, pop)
    y = (x + 1 + rng.integers(0, n - 1, pop)) % n
    ox_cuts = np.ascontiguousarray(np.stack([np.minimum(x, y), np.maximum(x, y)], 1), np.int64)
    c1, c2 = rng.integers(0, n + 1, pop), rng.integers(0, n + 1, pop)
    pmx_cuts = np.ascontiguousarray(np.stack([np.minimum(c1, c2), np.maximum(c1, c2)], 1),
                                    np.int64)
    results = []
    for pure in ([True, False] if compiled_available("operators") else [True]):
        ops = load("operators", pure=pure)
        out = []
        for fn, cuts in ((ops.ordered, ox_cuts), (ops.partially_matched, pmx_cuts)):
            aa, bb = a.copy(), b.copy()
            fn(aa, bb, cuts)
            for r in (aa, bb):
                assert (np.sort(r, axis=1) == np.arange(n)).all()
            out.append((aa, bb))
        results.append(out)
    for (x1, y1), (x2, y2) in zip(*results) if len(results) == 2 else []:
        assert (x1 == x2).all() and (y1 == y2).all()


@settings(max_examples=40, deadline=None)
@given(perm_case, st.floats(0, 1))
def test_swap_mutation_keeps_permutations(case, indpb):
    n, pop, seed = case
    rng = np.random.default_rng(seed)
    x = _perms(n, pop, rng)
    u = rng.random((pop, n, 2))
    outs = []
    for pure in ([True, False] if compiled_available("operators") else [True]):
        y = x.copy()
        load("operators", pure=pure).shuffle_indexes(y, indpb, u)
        assert (np.sort(y, axis=1) == np.arange(n)).all()
        outs.append(y)
    assert all((o == outs[0]).all() for o in outs)


@pytest.mark.skipif(not compiled_available("operators"), reason="compiled kernels not built")
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 140), st.integers(0, 2**32 - 1),
       st.sampled_from([1.0, 5.0, 20.0, 15.5]), st.booleans())
def test_real_operators_backends_agree(pop, dim, seed, eta, close):
    rng = np.random.default_rng(seed)
    low = rng.uniform(-10, 0, dim)
    up = low + rng.uniform(0.1, 10, dim)
    a = rng.uniform(low, up, (pop, dim))
    b = rng.uniform(low, up, (pop, dim))
    if close:   # near-equal and equal parents, genes at the bounds
        b = np.where(rng.random((pop, dim)) < 0.5, a + 1e-12, b)
        b[:, 0] = a[:, 0]
        a[:, -1] = low[-1]
        b[:, -1] = up[-1]
        b = np.minimum(b, up)
    nw = (dim + 63) // 64
    words = rng.integers(0, 2**64, (pop, 2 * nw), dtype=np.uint64, endpoint=False)
    rand = rng.random(pop * dim)
    pos = np.flatnonzero(rng.random(pop * dim) < 0.5)
    r = rng.random(pos.size)
    g = np.empty((2 * pop + 1, dim))
    g[0:2 * pop:2], g[1:2 * pop:2], g[-1] = a, b, low
    res = []
    for pure in (True, False):
        ops = load("operators", pure=pure)
        aa, bb, xx, gg = a.copy(), b.copy(), a.copy(), g.copy()
        ops.sbx_bounded(aa, bb, low, up, eta, words, rand)
        ops.polynomial_bounded(xx, low, up, eta, pos, r)
        bitgen = np.random.PCG64(seed)
        changed = ops.sbx_rows(gg, 1.0, low, up, eta, bitgen)
        after = bitgen.random_raw()   # both backends consumed the same stream
        assert changed[:-1].all() and not changed[-1]    # the odd row out has no partner
        assert ((aa >= low) & (aa <= up) & (bb >= low) & (bb <= up)).all()
        assert ((xx >= low) & (xx <= up)).all()
        assert ((gg >= low) & (gg <= up)).all()
        res.append((aa, bb, xx, gg, np.array([after], dtype=np.uint64)))
    for p, c in zip(res[0], res[1]):
        np.testing.assert_allclose(p, c, rtol=1e-9, atol=1e-9)
    # the rows kernel is the bounded kernel applied to the pairs with its own draws
    bitgen = np.random.PCG64(seed)
    np.random.Generator(bitgen).random(pop)                  # the pair choices
    words2 = bitgen.random_raw(pop * 2 * nw).reshape(pop, 2 * nw)
    take = np.unpackbits(words2[:, :nw].copy().view(np.uint8), axis=1, bitorder="little")
    rand2 = np.random.Generator(bitgen).random(int(take[:, :dim].sum()))
    aa, bb = a.copy(), b.copy()
    load("operators", pure=False).sbx_bounded(aa, bb, low, up, eta, words2, rand2)
    np.testing.assert_allclose(res[1][3][0:2 * pop:2], aa, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res[1][3][1:2 * pop:2], bb, rtol=1e-12, atol=1e-12)
    assert (res[1][3][-1] == low).all()


@pytest.mark.skipif(not compiled_available("operators"), reason="compiled kernels not built")
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 30), st.integers(1, 40), st.integers(0, 2**32 - 1),
       st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def test_sbx_rows_backends_agree_and_rate(n, dim, seed, rate):
    rng = np.random.default_rng(seed)
    low, up = np.full(dim, -5.0), np.full(dim, 5.0)
    g = rng.uniform(-5, 5, (n, dim))
    outs = []
    for pure in (True, False):
        x = g.copy()
        bitgen = np.random.PCG64(seed)
        changed = load("operators", pure=pure).sbx_rows(x, rate, low, up, 20.0, bitgen)
        assert not ((x != g).any(axis=1) & ~changed).any()
        assert (changed[0::2][: n // 2] == changed[1::2][: n // 2]).all()
        outs.append((x, changed, bitgen.random_raw()))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-9, atol=1e-9)
    assert (outs[0][1] == outs[1][1]).all() and outs[0][2] == outs[1][2]
    if rate == 0.0:
        assert not outs[1][1].any() and (outs[1][0] == g).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_tournament_backends_agree(n, size, seed):
    rng = np.random.default_rng(seed)
    key = np.round(rng.normal(size=n), 1)   # ties on purpose
    c = rng.integers(0, n, (30, size))
    outs = [load("operators", pure=p).tournament(key, c)
            for p in ([True, False] if compiled_available("operators") else [True])]
    assert all((o == outs[0]).all() for o in outs)
    assert (key[outs[0]] == key[c].max(axis=1)).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_bit_kernels_backends_agree(n_bits, pairs, seed):
    rng = np.random.default_rng(seed)
    words = (n_bits + 63) // 64
    g = rng.integers(0, 2**63, (2 * pairs, words), dtype=np.uint64)
    first = np.arange(0, 2 * pairs, 2, dtype=np.int64)
    lo = rng.integers(0, n_bits + 1, pairs)
    hi = np.minimum(lo + rng.integers(0, n_bits + 1, pairs), n_bits)
    u = rng.random((pairs, n_bits))
    rows = rng.choice(2 * pairs, pairs, replace=False).astype(np.int64)
    outs = []
    for pure in ([True, False] if compiled_available("operators") else [True]):
        ops = load("operators", pure=pure)
        x = g.copy()
        ops.bits_swap_range(x, first, lo, hi)
        # exchanging a range is the same as exchanging with the explicit mask
        y = g.copy()
        ones = np.zeros((pairs, words * 64), bool)
        for i in range(pairs):
            ones[i, lo[i]:hi[i]] = True
        mask = np.packbits(ones, axis=1, bitorder="little").view("<u8").astype(np.uint64)
        ops.bits_swap(y, first, np.ascontiguousarray(mask))
        assert (x == y).all()
        z = g.copy()
        changed = ops.bits_flip(z, rows, u, 0.1)
        flipped = np.unpackbits((z ^ g)[rows].view(np.uint8), axis=1, bitorder="little")
        assert (flipped[:, :n_bits] == (u < 0.1)).all()
        assert changed.tolist() == (u < 0.1).any(axis=1).tolist()
        outs.append((x, z))
    for a, b in zip(outs[0], outs[-1]):
        assert (a == b).all()


@pytest.mark.skipif(not compiled_available("operators"), reason="compiled kernels not built")
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 70), st.integers(0, 2**32 - 1),
       st.sampled_from([0.0, 0.3, 1.0]), st.sampled_from([0.0, 1e-3, 1 / 30, 0.5, 1.0]))
def test_polynomial_rows_backends_agree(n, dim, seed, rate, gene_rate):
    rng = np.random.default_rng(seed)
    low = rng.uniform(-10, 0, dim)
    up = low + rng.uniform(0.1, 10, dim)
    g = rng.uniform(low, up, (n, dim))
    g[0] = low   # genes at the bounds
    outs = []
    for pure in (True, False):
        x = g.copy()
        bitgen = np.random.PCG64(seed)
        changed = load("operators", pure=pure).polynomial_rows(x, rate, gene_rate, low, up,
                                                               20.0, bitgen)
        assert ((x >= low) & (x <= up)).all()
        # a row is reported changed exactly when one of its genes was hit (a hit gene at a
        # bound may keep its value, so "moved" implies "changed", not the converse)
        assert not ((x != g).any(axis=1) & ~changed).any()
        outs.append((x, changed, bitgen.random_raw()))
    np.testing.assert_allclose(outs[0][0], outs[1][0], rtol=1e-9, atol=1e-9)
    assert (outs[0][1] == outs[1][1]).all() and outs[0][2] == outs[1][2]
    if rate == 0.0 or gene_rate == 0.0:
        assert not outs[1][1].any()
    if rate == 1.0 and gene_rate == 1.0:
        assert outs[1][1].all()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(0, 40), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_tournament_draw_backends_agree(n, k, size, seed):
    key = np.round(np.random.default_rng(seed).normal(size=n), 1)   # ties on purpose
    outs = []
    for pure in ([True, False] if compiled_available("operators") else [True]):
        bitgen = np.random.PCG64(seed)
        won = load("operators", pure=pure).tournament_draw(key, k, size, bitgen)
        assert won.shape == (k,) and ((0 <= won) & (won < n)).all()
        outs.append((won, bitgen.random_raw()))
    assert all((o[0] == outs[0][0]).all() and o[1] == outs[0][1] for o in outs)
    # the same winners as the reference tournament over the same contestants
    u = np.random.Generator(np.random.PCG64(seed)).random((k, size))
    c = np.minimum((u * n).astype(np.int64), n - 1)
    assert (outs[0][0] == load("operators", pure=True).tournament(key, c)).all()
