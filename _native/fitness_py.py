"""Fitness kernels, NumPy twin: the reference definitions for ``_native/fitness.pyx``.

Every function evaluates a whole population in one call and writes into ``out`` (allocated when
omitted), returning it. Definitions follow DEAP's ``benchmarks`` module (and its ``binary``
module for the trap function); the compiled module must agree with these within float
tolerance, which ``tests/native/test_fitness.py`` checks.

Bit genomes are packed little-endian: gene ``i`` is bit ``i % 64`` of word ``i // 64``; padding
bits past ``n_bits`` are zero. The engine (``genetic``) owns the layout; these kernels only read
it.
"""
from __future__ import annotations

import math

import numpy as np

_U64 = np.uint64
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MULT = 0xD6E8FEB86659FD93


def _out(out: np.ndarray | None, n: int, cols: int = 0) -> np.ndarray:
    if out is None:
        return np.empty((n, cols) if cols else n, dtype=np.float64)
    return out


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return np.unpackbits(words.view(np.uint8), axis=-1).reshape(*words.shape, 64).sum(-1)


def unpack(bits: np.ndarray, n_bits: int) -> np.ndarray:
    """Unpack packed rows to a ``(pop, n_bits)`` uint8 array of 0/1."""
    bits = np.ascontiguousarray(bits, dtype=np.uint64)
    as_bytes = bits.view(np.uint8).reshape(bits.shape[0], -1)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :n_bits]


def onemax(bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Number of ones per packed row."""
    out = _out(out, bits.shape[0])
    out[:] = _popcount(np.asarray(bits, dtype=np.uint64)).sum(axis=1)
    return out


def leading_ones(bits: np.ndarray, n_bits: int, out: np.ndarray | None = None) -> np.ndarray:
    """Number of consecutive ones from gene 0 on."""
    out = _out(out, bits.shape[0])
    ones = unpack(bits, n_bits)
    zero = ones == 0
    first_zero = np.where(zero.any(axis=1), zero.argmax(axis=1), n_bits)
    out[:] = first_zero
    return out


def trap(bits: np.ndarray, n_bits: int, k: int, out: np.ndarray | None = None) -> np.ndarray:
    """Concatenated deceptive trap-k: each block of ``k`` genes with ``u`` ones scores ``k`` if
    ``u == k`` else ``k - 1 - u`` (DEAP's ``benchmarks.binary.trap`` per block)."""
    out = _out(out, bits.shape[0])
    u = unpack(bits, n_bits).reshape(bits.shape[0], n_bits // k, k).sum(axis=2)
    out[:] = np.where(u == k, k, k - 1 - u).sum(axis=1)
    return out


def knapsack(bits: np.ndarray, n_bits: int, values: np.ndarray, weights: np.ndarray,
             capacity: float, penalty: float, out: np.ndarray | None = None) -> np.ndarray:
    """0/1 knapsack: total value minus ``penalty * max(0, total weight - capacity)``."""
    out = _out(out, bits.shape[0])
    x = unpack(bits, n_bits).astype(np.float64)
    value = x @ np.asarray(values, dtype=np.float64)
    weight = x @ np.asarray(weights, dtype=np.float64)
    out[:] = value - penalty * np.maximum(0.0, weight - capacity)
    return out


def tsp_length(tours: np.ndarray, dist: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Closed tour length: sum of ``dist[t[i], t[i+1]]`` plus the edge back to the start."""
    out = _out(out, tours.shape[0])
    nxt = np.roll(tours, -1, axis=1)
    out[:] = np.asarray(dist)[tours, nxt].sum(axis=1)
    return out


def sphere(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Sum of squares."""
    out = _out(out, x.shape[0])
    out[:] = (x * x).sum(axis=1)
    return out


def rastrigin(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``10 N + sum(x^2 - 10 cos(2 pi x))``."""
    out = _out(out, x.shape[0])
    out[:] = 10.0 * x.shape[1] + (x * x - 10.0 * np.cos(2.0 * math.pi * x)).sum(axis=1)
    return out


def rosenbrock(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``sum(100 (x_i^2 - x_{i+1})^2 + (1 - x_i)^2)``."""
    out = _out(out, x.shape[0])
    a, b = x[:, :-1], x[:, 1:]
    out[:] = (100.0 * (a * a - b) ** 2 + (1.0 - a) ** 2).sum(axis=1)
    return out


def ackley(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``20 - 20 exp(-0.2 sqrt(mean(x^2))) + e - exp(mean(cos(2 pi x)))``."""
    out = _out(out, x.shape[0])
    n = x.shape[1]
    out[:] = (20.0 - 20.0 * np.exp(-0.2 * np.sqrt((x * x).sum(axis=1) / n)) + math.e
              - np.exp(np.cos(2.0 * math.pi * x).sum(axis=1) / n))
    return out


def schwefel(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``418.9828872724339 N - sum(x sin(sqrt(|x|)))``."""
    out = _out(out, x.shape[0])
    out[:] = 418.9828872724339 * x.shape[1] - (x * np.sin(np.sqrt(np.abs(x)))).sum(axis=1)
    return out


def griewank(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``sum(x^2)/4000 - prod(cos(x_i / sqrt(i + 1))) + 1``."""
    out = _out(out, x.shape[0])
    scale = np.sqrt(np.arange(1, x.shape[1] + 1, dtype=np.float64))
    out[:] = (x * x).sum(axis=1) / 4000.0 - np.cos(x / scale).prod(axis=1) + 1.0
    return out


def _zdt_g_linear(x: np.ndarray) -> np.ndarray:
    return 1.0 + 9.0 * x[:, 1:].sum(axis=1) / (x.shape[1] - 1)


def zdt1(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """ZDT1: ``f1 = x0``, ``f2 = g (1 - sqrt(f1 / g))``; both minimised."""
    out = _out(out, x.shape[0], 2)
    g = _zdt_g_linear(x)
    f1 = x[:, 0]
    out[:, 0] = f1
    out[:, 1] = g * (1.0 - np.sqrt(f1 / g))
    return out


def zdt2(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """ZDT2: ``f2 = g (1 - (f1 / g)^2)``."""
    out = _out(out, x.shape[0], 2)
    g = _zdt_g_linear(x)
    f1 = x[:, 0]
    out[:, 0] = f1
    out[:, 1] = g * (1.0 - (f1 / g) ** 2)
    return out


def zdt3(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """ZDT3: ``f2 = g (1 - sqrt(f1/g) - f1/g sin(10 pi f1))``."""
    out = _out(out, x.shape[0], 2)
    g = _zdt_g_linear(x)
    f1 = x[:, 0]
    out[:, 0] = f1
    out[:, 1] = g * (1.0 - np.sqrt(f1 / g) - f1 / g * np.sin(10.0 * math.pi * f1))
    return out


def zdt4(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """ZDT4: ``g = 1 + 10 (n - 1) + sum(x_i^2 - 10 cos(4 pi x_i))`` over ``i >= 1``."""
    out = _out(out, x.shape[0], 2)
    rest = x[:, 1:]
    g = 1.0 + 10.0 * (x.shape[1] - 1) + (rest * rest - 10.0 * np.cos(4.0 * math.pi * rest)).sum(1)
    f1 = x[:, 0]
    out[:, 0] = f1
    out[:, 1] = g * (1.0 - np.sqrt(f1 / g))
    return out


def zdt6(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """ZDT6: ``f1 = 1 - exp(-4 x0) sin(6 pi x0)^6``, ``g = 1 + 9 (mean(x[1:]))^0.25``."""
    out = _out(out, x.shape[0], 2)
    g = 1.0 + 9.0 * (x[:, 1:].sum(axis=1) / (x.shape[1] - 1)) ** 0.25
    f1 = 1.0 - np.exp(-4.0 * x[:, 0]) * np.sin(6.0 * math.pi * x[:, 0]) ** 6
    out[:, 0] = f1
    out[:, 1] = g * (1.0 - (f1 / g) ** 2)
    return out


def _mix(h: np.ndarray) -> np.ndarray:
    # splitmix64's finaliser; uint64 arithmetic wraps, which is the point.
    h = h ^ (h >> _U64(30))
    h = h * _U64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> _U64(27))
    h = h * _U64(0x94D049BB133111EB)
    return h ^ (h >> _U64(31))


def row_hash(words: np.ndarray, seed: int = 0, out: np.ndarray | None = None) -> np.ndarray:
    """64-bit hash of each row of a uint64 matrix (for genome dedup).

    ``h = mix(seed ^ golden ^ ncols)``; for each word ``h = (h ^ w_j) * M; h ^= h >> 32``;
    the result is ``mix(h)`` (``mix`` is splitmix64's finaliser, ``M`` an odd constant).
    """
    words = np.asarray(words, dtype=np.uint64)
    n, m = words.shape
    if out is None:
        out = np.empty(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(n, (int(seed) ^ _GOLDEN ^ m) & _MASK64, dtype=np.uint64)
        h = _mix(h)
        for j in range(m):
            h = (h ^ words[:, j]) * _U64(_MULT)
            h ^= h >> _U64(32)
        h = _mix(h)
    out[:] = h
    return out
