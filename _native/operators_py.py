"""Genetic-operator kernels, NumPy/Python twin: the reference for ``_native/operators.pyx``.

These are the loops that do not vectorise well (bounded SBX and polynomial mutation have many
branches; OX, PMX and index shuffling are sequential per row). Random numbers are either
passed in by the caller or, for the whole-population kernels (``sbx_rows``,
``polynomial_rows``, ``tournament_draw``), drawn from a NumPy bit generator in an order both
backends follow, so the compiled module and this twin give the same children and leave the
generator in the same state: the engine's RNG stream does not depend on the backend.
Definitions follow DEAP's ``tools`` module (``cxSimulatedBinaryBounded``,
``mutPolynomialBounded``, ``cxOrdered``, ``cxPartialyMatched``, ``mutShuffleIndexes``).
All functions modify their row arguments in place.
"""
from __future__ import annotations

import math

import numpy as np


def sbx_bounded(a: np.ndarray, b: np.ndarray, low: np.ndarray, up: np.ndarray, eta: float,
                words: np.ndarray, rand: np.ndarray) -> None:
    """Bounded simulated binary crossover of row pairs ``(a[i], b[i])``, in place.

    The coin tosses come as bits: with ``W = ceil(dim / 64)`` words per half,
    bit ``j % 64`` of ``words[i, j // 64]`` makes gene ``j`` of pair ``i`` take part (DEAP's
    ``random() <= 0.5``), and the same bit of ``words[i, W + j // 64]`` swaps the two
    children's values of that gene. Each participating gene, in row-major order, consumes one
    spread draw of ``rand``; genes closer than 1e-14 participate but are left alone, as in
    DEAP.
    """
    pairs, dim = a.shape
    nw = (dim + 63) // 64
    words = np.ascontiguousarray(words, dtype=np.uint64)
    if words.shape != (pairs, 2 * nw):
        raise ValueError(f"words must have shape ({pairs}, {2 * nw})")
    bits = np.unpackbits(words.view(np.uint8).reshape(pairs, 2, nw * 8), axis=2,
                         bitorder="little")[:, :, :dim].astype(bool)
    take, swap = bits[:, 0], bits[:, 1]
    n_take = int(take.sum())
    if n_take > rand.shape[0]:
        raise ValueError(f"rand holds {rand.shape[0]} draws, {n_take} genes participate")
    r = np.zeros(a.shape)
    r[take] = rand[:n_take]
    x1 = np.minimum(a, b)
    x2 = np.maximum(a, b)
    cross = take & (np.abs(a - b) > 1e-14)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        diff = np.where(cross, x2 - x1, 1.0)
        e1 = 1.0 / (eta + 1.0)

        def beta_q(beta: np.ndarray) -> np.ndarray:
            alpha = 2.0 - beta ** -(eta + 1.0)
            return np.where(r <= 1.0 / alpha, (r * alpha) ** e1,
                            (1.0 / (2.0 - r * alpha)) ** e1)

        c1 = 0.5 * (x1 + x2 - beta_q(1.0 + 2.0 * (x1 - low) / diff) * diff)
        c2 = 0.5 * (x1 + x2 + beta_q(1.0 + 2.0 * (up - x2) / diff) * diff)
    c1 = np.minimum(np.maximum(c1, low), up)
    c2 = np.minimum(np.maximum(c2, low), up)
    new_a = np.where(swap, c2, c1)
    new_b = np.where(swap, c1, c2)
    a[...] = np.where(cross, new_a, a)
    b[...] = np.where(cross, new_b, b)


def sbx_rows(g: np.ndarray, rate: float, low: np.ndarray, up: np.ndarray, eta: float,
             bit_generator: np.random.BitGenerator) -> np.ndarray:
    """Bounded SBX, in place, of the row pairs ``(g[2p], g[2p + 1])`` of the genome matrix,
    each pair crossed with probability ``rate`` (DEAP's ``cxpb``); returns which rows were
    crossed. Draws from ``bit_generator``: ``random(n // 2)`` (``u < rate`` crosses a pair),
    ``random_raw(pairs * 2 * ceil(dim / 64))`` coin words for the crossed pairs (see
    :func:`sbx_bounded`), then one uniform per participating gene in row-major order."""
    rng = np.random.Generator(bit_generator)
    n, dim = g.shape
    first = 2 * np.flatnonzero(rng.random(n // 2) < rate)
    pairs = first.shape[0]
    nw = (dim + 63) // 64
    words = np.asarray(bit_generator.random_raw(pairs * 2 * nw), dtype=np.uint64)
    words = words.reshape(pairs, 2 * nw)
    take = np.unpackbits(words[:, :nw].copy().view(np.uint8), axis=1,
                         bitorder="little")[:, :dim]
    rand = rng.random(int(take.sum()))
    a, b = g[first], g[first + 1]
    sbx_bounded(a, b, low, up, eta, words, rand)
    g[first] = a
    g[first + 1] = b
    changed = np.zeros(n, dtype=bool)
    changed[first] = True
    changed[first + 1] = True
    return changed


def tournament(key: np.ndarray, contestants: np.ndarray) -> np.ndarray:
    """Winner of each row of ``contestants`` (indices into ``key``): the largest key, the
    first drawn among equals (DEAP's ``selTournament``)."""
    if contestants.size and (contestants.min() < 0 or contestants.max() >= key.shape[0]):
        raise ValueError(f"contestants outside 0..{key.shape[0] - 1}")
    winner = key[contestants].argmax(axis=1)
    return contestants[np.arange(contestants.shape[0]), winner]


def polynomial_rows(g: np.ndarray, rate: float, gene_rate: float, low: np.ndarray,
                    up: np.ndarray, eta: float, bit_generator: np.random.BitGenerator
                    ) -> np.ndarray:
    """Bounded polynomial mutation of the genome matrix ``g``, in place, drawing from
    ``bit_generator``; returns which rows changed.

    Each row is chosen with probability ``rate`` (one uniform per row, ``u < rate``); each gene
    of a chosen row is hit with probability ``gene_rate``. Hits are found as geometric gaps by
    inversion, ``floor(log(u) * (1 / log1p(-gene_rate))) + 1`` (no draw when ``gene_rate >= 1``),
    over the chosen rows' genes in row-major order, each gap draw followed by the hit gene's
    spread draw: the same distribution as one uniform per gene (DEAP's
    ``mutPolynomialBounded``), with about ``2 * gene_rate`` draws per gene instead of one.
    """
    rng = np.random.Generator(bit_generator)
    n, dim = g.shape
    chosen = np.flatnonzero(rng.random(n) < rate)
    total = chosen.size * dim
    pos, hits, rand = -1, [], []
    inv_lq = 1.0 / math.log1p(-gene_rate) if 0.0 < gene_rate < 1.0 else 0.0
    while gene_rate > 0.0:
        if gene_rate >= 1.0:
            pos += 1
        else:
            u = float(rng.random())
            step = math.floor(math.log(u if u > 0.0 else 1e-300) * inv_lq) + 1.0
            if pos + step >= total:
                break
            pos += int(step)
        if pos >= total:
            break
        hits.append(pos)
        rand.append(float(rng.random()))
    hit = np.array(hits, dtype=np.int64)
    rows = chosen[hit // dim] if hit.size else hit
    changed = np.zeros(n, dtype=bool)
    changed[rows] = True
    polynomial_bounded(g, low, up, eta, rows * dim + hit % dim, np.array(rand))
    return changed


def polynomial_bounded(x: np.ndarray, low: np.ndarray, up: np.ndarray, eta: float,
                       pos: np.ndarray, r: np.ndarray) -> None:
    """Bounded polynomial mutation, in place, of the genes at flat positions ``pos`` of the
    row-major ``x`` (distinct), gene ``pos[k]`` with uniform draw ``r[k]`` (DEAP's
    ``mutPolynomialBounded`` once a gene is chosen)."""
    n = pos.shape[0]
    if r.shape[0] < n:
        raise ValueError(f"r holds {r.shape[0]} draws for {n} positions")
    if n == 0:
        return
    if pos.min() < 0 or pos.max() >= x.size:
        raise ValueError(f"positions outside the {x.shape[0]}x{x.shape[1]} genomes")
    rows, cols = np.divmod(pos, x.shape[1])
    v = x[rows, cols]
    xl, xu = low[cols], up[cols]
    rand = r[:n]
    span = xu - xl
    d1 = (v - xl) / span
    d2 = (xu - v) / span
    p = 1.0 / (eta + 1.0)
    with np.errstate(invalid="ignore"):
        lo_val = 2.0 * rand + (1.0 - 2.0 * rand) * (1.0 - d1) ** (eta + 1.0)
        hi_val = 2.0 * (1.0 - rand) + 2.0 * (rand - 0.5) * (1.0 - d2) ** (eta + 1.0)
        dq = np.where(rand < 0.5, lo_val ** p - 1.0, 1.0 - hi_val ** p)
    x[rows, cols] = np.minimum(np.maximum(v + dq * span, xl), xu)


def ordered(a: np.ndarray, b: np.ndarray, cuts: np.ndarray) -> None:
    """Ordered crossover (OX) of permutation row pairs, in place.

    For cut points ``lo < hi`` (inclusive segment), child 1 takes ``b[lo..hi]`` and fills the
    other positions, from ``hi + 1`` on cyclically, with ``a``'s genes in ``a``'s cyclic order
    from ``hi + 1``, skipping those in the segment; child 2 symmetrically.
    """
    n = a.shape[1]
    for i in range(a.shape[0]):
        lo, hi = int(cuts[i, 0]), int(cuts[i, 1])
        pa, pb = a[i].copy(), b[i].copy()
        for child, keep, seg in ((a, pa, pb), (b, pb, pa)):
            in_seg = np.zeros(n, dtype=bool)
            in_seg[seg[lo:hi + 1]] = True
            k = hi + 1
            row = child[i]
            for j in range(n):
                v = keep[(j + hi + 1) % n]
                if not in_seg[v]:
                    row[k % n] = v
                    k += 1
            row[lo:hi + 1] = seg[lo:hi + 1]


def partially_matched(a: np.ndarray, b: np.ndarray, cuts: np.ndarray) -> None:
    """Partially matched crossover (PMX) of permutation row pairs, in place: for each position
    ``lo <= j < hi`` the two genes are exchanged and each child repairs itself by swapping."""
    n = a.shape[1]
    for i in range(a.shape[0]):
        r1, r2 = a[i], b[i]
        p1 = np.empty(n, dtype=np.int64)
        p2 = np.empty(n, dtype=np.int64)
        p1[r1] = np.arange(n)
        p2[r2] = np.arange(n)
        for j in range(int(cuts[i, 0]), int(cuts[i, 1])):
            t1, t2 = int(r1[j]), int(r2[j])
            r1[j], r1[p1[t2]] = t2, t1
            r2[j], r2[p2[t1]] = t1, t2
            p1[t1], p1[t2] = p1[t2], p1[t1]
            p2[t1], p2[t2] = p2[t2], p2[t1]


def shuffle_indexes(x: np.ndarray, indpb: float, u: np.ndarray) -> None:
    """Swap mutation, in place: gene ``j`` (when ``u[i, j, 0] < indpb``) is swapped with gene
    ``k = floor(u[i, j, 1] * (n - 1))``, plus one when ``k >= j`` (so never with itself)."""
    n = x.shape[1]
    if n < 2:
        return
    for i in range(x.shape[0]):
        row = x[i]
        for j in range(n):
            if u[i, j, 0] < indpb:
                k = min(int(u[i, j, 1] * (n - 1)), n - 2)
                if k >= j:
                    k += 1
                row[j], row[k] = row[k], row[j]


def invert(x: np.ndarray, cuts: np.ndarray) -> None:
    """Inversion mutation, in place: reverse ``x[i, lo..hi]`` (inclusive)."""
    for i in range(x.shape[0]):
        lo, hi = int(cuts[i, 0]), int(cuts[i, 1])
        x[i, lo:hi + 1] = x[i, lo:hi + 1][::-1].copy()


def bits_swap(g: np.ndarray, first: np.ndarray, mask: np.ndarray) -> None:
    """Exchange the masked bits between packed rows ``first[i]`` and ``first[i] + 1``."""
    a, b = g[first], g[first + 1]
    d = (a ^ b) & mask
    g[first] = a ^ d
    g[first + 1] = b ^ d


def bits_flip(g: np.ndarray, rows: np.ndarray, u: np.ndarray, p: float) -> np.ndarray:
    """Flip gene ``j`` of packed row ``rows[k]`` where ``u[k, j] < p``; returns which of the
    rows changed."""
    flips = u < p
    n_words = g.shape[1]
    padded = np.zeros((flips.shape[0], n_words * 64), dtype=bool)
    padded[:, :flips.shape[1]] = flips
    words = np.packbits(padded, axis=1, bitorder="little").view("<u8").astype(np.uint64)
    g[rows] ^= words
    return flips.any(axis=1)


def bits_swap_range(g: np.ndarray, first: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Exchange genes ``lo[i] <= j < hi[i]`` between packed rows ``first[i]`` and
    ``first[i] + 1``."""
    ones = np.array([(1 << k) - 1 for k in range(65)], dtype=np.uint64)
    base = 64 * np.arange(g.shape[1])
    a = np.clip(lo[:, None] - base, 0, 64)
    b = np.clip(hi[:, None] - base, 0, 64)
    bits_swap(g, first, ones[b] & ~ones[a])


def summary(f: np.ndarray, hashes: np.ndarray) -> tuple[float, float, int]:
    """Mean and (population) standard deviation of ``f``, and how many distinct values
    ``hashes`` holds: one generation's statistics in one call."""
    n = f.shape[0]
    mean = float(f.sum()) / n if n else 0.0
    d = f - mean
    std = float(np.sqrt(np.square(d).sum() / n)) if n else 0.0
    return mean, std, int(np.unique(hashes).size)


def tournament_draw(key: np.ndarray, k: int, size: int,
                    bit_generator: np.random.BitGenerator) -> np.ndarray:
    """``k`` tournaments of ``size`` contestants drawn uniformly with replacement,
    ``floor(u * n)`` from ``random((k, size))`` of ``bit_generator`` in row-major order;
    the winners (see :func:`tournament`)."""
    n = key.shape[0]
    if n < 1 or size < 1 or k < 0:
        raise ValueError(f"tournaments of {size} among {n} for {k} winners")
    u = np.random.Generator(bit_generator).random((k, size))
    contestants = np.minimum((u * n).astype(np.int64), n - 1)
    return tournament(key, contestants)
