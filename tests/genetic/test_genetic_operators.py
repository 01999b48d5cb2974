"""Population-level operators against DEAP's definitions: stated rates (per individual, per
gene) checked statistically on fixed seeds, selection distributions, NSGA-II on hand-checked
fronts."""
from __future__ import annotations

import numpy as np
import pytest

import genetic
from genetic import nsga2
from genetic.errors import ProblemError

BITS = genetic.bits(100)
REALS = genetic.reals(-5.0, 5.0, 30)


def popcount(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8), axis=1).sum(axis=1)


def test_bitflip_rates():
    # DEAP varAnd + mutFlipBit: a fraction `rate` of individuals is mutated; each gene of a
    # mutated individual flips with probability `gene_rate`.
    rng = np.random.default_rng(1)
    g = np.zeros((20000, 2), np.uint64)
    changed = genetic.BitFlip(rate=0.2, gene_rate=0.05).apply(BITS, g, rng)
    flips = popcount(g)
    assert (flips > 0).tolist() == changed.tolist()
    # P(individual touched) = 0.2 * (1 - 0.95**100)
    assert changed.mean() == pytest.approx(0.2 * (1 - 0.95 ** 100), abs=0.01)
    # genes flipped per mutated individual: 100 * 0.05 = 5 on average
    assert flips.sum() / (20000 * 0.2) == pytest.approx(5.0, rel=0.04)
    assert (g[:, 1] >> np.uint64(36) == 0).all(), "padding bits must stay zero"


def test_two_point_rate_and_segment():
    rng = np.random.default_rng(2)
    g = np.zeros((20000, 2), np.uint64)
    g[1::2] = np.uint64(2**64 - 1)
    g[1::2, 1] = np.uint64(2**36 - 1)
    changed = genetic.TwoPoint(rate=0.5).apply(BITS, g, rng)
    assert changed[0::2].tolist() == changed[1::2].tolist()
    assert changed[0::2].mean() == pytest.approx(0.5, abs=0.02)
    ones = BITS.decode(g[0::2][changed[0::2]])
    # exactly one contiguous run of ones, never the whole genome (DEAP's cut points are in
    # 1..n and distinct, so the segment is within 1..n-1... and at least one gene)
    runs = np.abs(np.diff(ones.astype(int), axis=1)).sum(axis=1)
    assert (runs <= 2).all() and (ones.sum(1) >= 1).all() and (ones[:, 0] == 0).all()
    # children are complementary: genes are exchanged, not copied
    assert (BITS.decode(g[0::2]) + BITS.decode(g[1::2]) == 1).all()


def test_one_point_and_uniform():
    rng = np.random.default_rng(3)
    a = np.zeros((4000, 10))
    a[1::2] = 1.0
    space = genetic.reals(0, 1, 10)
    genetic.OnePoint(rate=1.0).apply(space, a, rng)
    assert (a[0::2, 0] == 0).all() and (a[0::2, -1] == 1).all()
    b = np.zeros((4000, 10))
    b[1::2] = 1.0
    genetic.Uniform(rate=1.0, gene_rate=0.3).apply(space, b, rng)
    assert b[0::2].mean() == pytest.approx(0.3, abs=0.01)


def test_sbx_rates_and_swap():
    # DEAP's bounded SBX: each gene crosses with probability 0.5, and the children's values
    # are then swapped with probability 0.5. Parents 1.0 / 3.0: child A ends up above 2.0 (the
    # midpoint) only through the swap, so P(A > 2) = 0.5 * 0.5.
    rng = np.random.default_rng(4)
    g = np.empty((20000, 30))
    g[0::2], g[1::2] = 1.0, 3.0
    changed = genetic.SBX(rate=0.9, eta=20).apply(REALS, g, rng)
    assert changed[0::2].mean() == pytest.approx(0.9, abs=0.01)
    a = g[0::2][changed[0::2]]
    b = g[1::2][changed[1::2]]
    assert (a != 1.0).mean() == pytest.approx(0.5, abs=0.01)
    assert (a > 2.0).mean() == pytest.approx(0.25, abs=0.01)
    # SBX keeps the parents' mean unless a child is clipped at a bound (rare with eta=20)
    assert np.isclose(a + b, 4.0).mean() > 0.999


def test_polynomial_rates_and_bounds():
    rng = np.random.default_rng(5)
    g = rng.uniform(-5, 5, (5000, 30))
    before = g.copy()
    changed = genetic.Polynomial(rate=0.5, gene_rate=1 / 30, eta=20).apply(REALS, g, rng)
    moved = g != before
    assert (moved.any(axis=1) == changed).all()
    assert moved.mean() == pytest.approx(0.5 / 30, rel=0.08)
    assert ((g >= -5) & (g <= 5)).all()


def test_gaussian_and_blend_and_uniform_int():
    rng = np.random.default_rng(6)
    g = np.zeros((4000, 30))
    genetic.Gaussian(rate=1.0, gene_rate=0.5, sigma=0.1).apply(REALS, g, rng)
    assert (g != 0).mean() == pytest.approx(0.5, abs=0.02)
    assert g[g != 0].std() == pytest.approx(0.1, rel=0.05)
    a = np.zeros((4000, 30))
    a[1::2] = 1.0
    genetic.Blend(rate=1.0, alpha=0.5).apply(REALS, a, rng)
    # gamma ~ U(-0.5, 1.5): child A = gamma * 1, mean 0.5, range [-0.5, 1.5]
    assert a[0::2].mean() == pytest.approx(0.5, abs=0.02)
    assert a[0::2].min() >= -0.5 and a[0::2].max() <= 1.5
    ints = genetic.integers(0, 9, 20)
    z = np.zeros((4000, 20), np.int64)
    genetic.UniformInt(rate=1.0, gene_rate=0.5).apply(ints, z, rng)
    assert ((z >= 0) & (z <= 9)).all() and (z == 9).any()


def test_permutation_operators_keep_permutations():
    rng = np.random.default_rng(7)
    space = genetic.permutation(12)
    for op in (genetic.OX(1.0), genetic.PMX(1.0), genetic.Swap(1.0, 0.2),
               genetic.Inversion(1.0)):
        g = space.random(rng, 200)
        op.apply(space, g, rng)
        assert (np.sort(g, axis=1) == np.arange(12)).all(), op


def test_operator_genome_mismatch():
    with pytest.raises(ProblemError, match="does not apply to bits"):
        genetic.SBX().check(BITS)
    with pytest.raises(ProblemError, match="does not apply to permutation"):
        genetic.TwoPoint().check(genetic.permutation(5))
    with pytest.raises(ProblemError, match="BitFlip"):
        genetic.Polynomial().check(BITS)
    with pytest.raises(genetic.ConfigError):
        genetic.TwoPoint(rate=1.5)
    with pytest.raises(genetic.ConfigError):
        genetic.BitFlip(rate=0.2, gene_rate=-0.1)


# -- selection ----------------------------------------------------------------------------------

def test_tournament_distribution():
    # With keys 0..n-1 and replacement, P(winner = i) = ((i+1)^3 - i^3) / n^3
    n, k = 10, 200000
    rng = np.random.default_rng(8)
    idx = genetic.Tournament(3).select(np.arange(n, dtype=float), k, rng)
    freq = np.bincount(idx, minlength=n) / k
    expected = ((np.arange(n) + 1) ** 3 - np.arange(n) ** 3) / n ** 3
    np.testing.assert_allclose(freq, expected, atol=0.005)


def test_tournament_ties_pick_first_drawn():
    rng = np.random.default_rng(0)
    idx = genetic.Tournament(2).select(np.zeros(5), 1000, rng)
    assert np.bincount(idx, minlength=5).min() > 0


def test_truncation_roulette_sus():
    rng = np.random.default_rng(9)
    key = np.array([1.0, 4.0, 2.0, 3.0])
    assert genetic.Truncation().select(key, 3, rng).tolist() == [1, 3, 2]
    idx = genetic.Roulette().select(key, 100000, rng)
    np.testing.assert_allclose(np.bincount(idx, minlength=4) / 1e5, key / key.sum(), atol=0.01)
    # SUS: counts are floor or ceil of the expected k * f / sum f
    for _ in range(20):
        counts = np.bincount(genetic.SUS().select(key, 7, rng), minlength=4)
        exp = 7 * key / key.sum()
        assert ((counts >= np.floor(exp)) & (counts <= np.ceil(exp))).all()


# -- NSGA-II ------------------------------------------------------------------------------------

def test_fronts_hand_checked():
    # minimise both: (1,5) (2,3) (4,1) are non-dominated; (3,4) is dominated by (2,3);
    # (5,5) by everything on the way; (2,3) duplicates share a front.
    f = np.array([[1, 5], [2, 3], [4, 1], [3, 4], [5, 5], [2, 3]], float)
    fronts = nsga2.nondominated_fronts(-f)
    assert fronts.tolist() == [0, 0, 0, 1, 2, 0]


def test_crowding_hand_checked():
    f = -np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]])
    d = nsga2.crowding_distance(f, np.zeros(4, int))
    # objective spans are 4; interior: (2-0)/(2*4) + (4-1)/(2*4) and (4-1)/8 + (2-0)/8
    assert d.tolist() == [np.inf, 0.625, 0.625, np.inf]


def test_select_nsga2_cuts_last_front_by_crowding():
    f = -np.array([[0, 4], [1, 2], [2, 1.9], [4, 0], [5, 5]], float)
    keep, front, crowd = nsga2.select_nsga2(f, 3)
    # the 4 non-dominated points fill the front; the boundary ones (inf) survive, then the
    # more isolated interior one: crowding (1/8 + 2.1/8 = 0.5125) for (1, 2) and
    # (3/8 + 2/8 = 0.625) for (2, 1.9)
    assert sorted(keep[:2].tolist()) == [0, 3]
    assert keep[2] == 2 and (front == 0).all()
    np.testing.assert_allclose(crowd[2], 0.625)


def test_constrained_domination():
    f = -np.array([[1, 1], [0, 0], [5, 5], [3, 3]], float)
    viable = np.array([True, True, True, False])
    violation = np.array([0.0, 2.0, 0.0, 0.0])
    fronts = nsga2.nondominated_fronts(f, viable, violation)
    # feasible first (0 dominates 2), then the infeasible one, non-viable last
    assert fronts.tolist() == [0, 2, 1, 3]
