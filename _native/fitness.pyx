# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -O3 -ffast-math
# distutils: libraries = mvec m
"""Fitness kernels, compiled: whole population per call, typed memoryviews, no GIL inside.

Compiled with ``-ffast-math`` (compile step only, so the process's floating-point mode is not
touched): it lets GCC vectorise ``cos``/``exp``/``sin`` through glibc's libmvec, ~2.5x on
Rastrigin. Genomes are finite by construction, so the finite-math assumption holds; sums may
differ from the twin in the last bits (the equivalence tests use a tolerance).

The reference definitions (and the docstrings) live in ``_native/fitness_py.py``; this module
must agree with it within float tolerance. Bit genomes are packed little-endian (gene ``i`` is
bit ``i % 64`` of word ``i // 64``), padding bits zero.
"""
import numpy as np

from libc.math cimport cos, sin, sqrt, exp, fabs, pow, M_PI, M_E
from libc.stdint cimport uint64_t, int32_t

cdef extern from *:
    """
    /* The popcnt instruction is not in baseline x86-64: let GCC build both versions and pick
       one at load time (ifunc), so the module stays portable and uses popcnt where it can. */
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __attribute__((target_clones("popcnt", "default")))
    #endif
    static long op_popcount_words(const unsigned long long *p, Py_ssize_t n) {
        long c = 0;
        for (Py_ssize_t i = 0; i < n; i++) c += __builtin_popcountll(p[i]);
        return c;
    }
    /* Rastrigin as a plain loop GCC vectorises (cos through libmvec), in an AVX2 clone
       beside the baseline one. */
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __attribute__((target_clones("arch=x86-64-v3", "default")))
    #endif
    static void op_rastrigin(const double *restrict x, Py_ssize_t rows, Py_ssize_t n,
                             double *restrict out) {
        for (Py_ssize_t i = 0; i < rows; i++) {
            const double *r = x + i * n;
            double s = 10.0 * (double)n;
            for (Py_ssize_t j = 0; j < n; j++)
                s += r[j] * r[j] - 10.0 * cos(2.0 * M_PI * r[j]);
            out[i] = s;
        }
    }
    static inline int op_popcount64(unsigned long long x) { return __builtin_popcountll(x); }
    static inline int op_ctz64(unsigned long long x) { return __builtin_ctzll(x); }
    """
    long op_popcount_words(const unsigned long long *p, Py_ssize_t n) nogil
    int op_popcount64(unsigned long long x) nogil
    void op_rastrigin(const double *x, Py_ssize_t rows, Py_ssize_t n, double *out) nogil
    int op_ctz64(unsigned long long x) nogil

cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL
cdef uint64_t MULT = 0xD6E8FEB86659FD93ULL


def _out(out, n, cols=0):
    if out is None:
        return np.empty((n, cols) if cols else n, dtype=np.float64)
    return out


def onemax(const uint64_t[:, ::1] bits, out=None):
    out = _out(out, bits.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i
    if bits.shape[1] == 0:
        o[:] = 0.0
        return out
    with nogil:
        for i in range(bits.shape[0]):
            o[i] = op_popcount_words(<const unsigned long long *>&bits[i, 0], bits.shape[1])
    return out


def leading_ones(const uint64_t[:, ::1] bits, Py_ssize_t n_bits, out=None):
    out = _out(out, bits.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i, j, valid
    cdef long c
    cdef uint64_t w, mask
    with nogil:
        for i in range(bits.shape[0]):
            c = 0
            for j in range(bits.shape[1]):
                valid = n_bits - 64 * j
                if valid <= 0:
                    break
                if valid >= 64:
                    mask = 0xFFFFFFFFFFFFFFFFULL
                    valid = 64
                else:
                    mask = (1ULL << valid) - 1
                w = bits[i, j] & mask
                if w == mask:
                    c += valid
                else:
                    c += op_ctz64(~w)
                    break
            o[i] = c
    return out


def trap(const uint64_t[:, ::1] bits, Py_ssize_t n_bits, Py_ssize_t k, out=None):
    out = _out(out, bits.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i, b, g, pos
    cdef long u, total
    with nogil:
        for i in range(bits.shape[0]):
            total = 0
            for b in range(n_bits // k):
                u = 0
                for g in range(k):
                    pos = b * k + g
                    u += (bits[i, pos >> 6] >> (pos & 63)) & 1
                total += k if u == k else k - 1 - u
            o[i] = total
    return out


def knapsack(const uint64_t[:, ::1] bits, Py_ssize_t n_bits, const double[::1] values,
             const double[::1] weights, double capacity, double penalty, out=None):
    out = _out(out, bits.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i, g
    cdef double value, weight
    with nogil:
        for i in range(bits.shape[0]):
            value = 0.0
            weight = 0.0
            for g in range(n_bits):
                if (bits[i, g >> 6] >> (g & 63)) & 1:
                    value += values[g]
                    weight += weights[g]
            o[i] = value - penalty * (weight - capacity if weight > capacity else 0.0)
    return out


def tsp_length(const int32_t[:, ::1] tours, const double[:, ::1] dist, out=None):
    out = _out(out, tours.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i, j, n = tours.shape[1]
    cdef double s
    with nogil:
        for i in range(tours.shape[0]):
            s = 0.0
            for j in range(n - 1):
                s += dist[tours[i, j], tours[i, j + 1]]
            if n > 0:
                s += dist[tours[i, n - 1], tours[i, 0]]
            o[i] = s
    return out


def sphere(const double[:, ::1] x, out=None):
    out = _out(out, x.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i, j
    cdef double s
    with nogil:
        for i in range(x.shape[0]):
            s = 0.0
            for j in range(x.shape[1]):
                s += x[i, j] * x[i, j]
            o[i] = s
    return out


def rastrigin(const double[:, ::1] x, out=None):
    out = _out(out, x.shape[0])
    cdef double[::1] o = out
    if x.shape[0] and x.shape[1]:
        with nogil:
            op_rastrigin(&x[0, 0], x.shape[0], x.shape[1], &o[0])
    else:
        out[:] = 0.0
    return out


def rosenbrock(const double[:, ::1] x, out=None):
    out = _out(out, x.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i, j
    cdef double s, a, b
    with nogil:
        for i in range(x.shape[0]):
            s = 0.0
            for j in range(x.shape[1] - 1):
                a = x[i, j]
                b = x[i, j + 1]
                s += 100.0 * (a * a - b) * (a * a - b) + (1.0 - a) * (1.0 - a)
            o[i] = s
    return out


def ackley(const double[:, ::1] x, out=None):
    out = _out(out, x.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i, j, n = x.shape[1]
    cdef double sq, cs, v
    with nogil:
        for i in range(x.shape[0]):
            sq = 0.0
            cs = 0.0
            for j in range(n):
                v = x[i, j]
                sq += v * v
                cs += cos(2.0 * M_PI * v)
            o[i] = 20.0 - 20.0 * exp(-0.2 * sqrt(sq / n)) + M_E - exp(cs / n)
    return out


def schwefel(const double[:, ::1] x, out=None):
    out = _out(out, x.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i, j
    cdef double s, v
    with nogil:
        for i in range(x.shape[0]):
            s = 0.0
            for j in range(x.shape[1]):
                v = x[i, j]
                s += v * sin(sqrt(fabs(v)))
            o[i] = 418.9828872724339 * x.shape[1] - s
    return out


def griewank(const double[:, ::1] x, out=None):
    out = _out(out, x.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i, j
    cdef double s, p, v
    with nogil:
        for i in range(x.shape[0]):
            s = 0.0
            p = 1.0
            for j in range(x.shape[1]):
                v = x[i, j]
                s += v * v
                p *= cos(v / sqrt(j + 1.0))
            o[i] = s / 4000.0 - p + 1.0
    return out


cdef inline double _row_sum_tail(const double[:, ::1] x, Py_ssize_t i) noexcept nogil:
    cdef double s = 0.0
    cdef Py_ssize_t j
    for j in range(1, x.shape[1]):
        s += x[i, j]
    return s


def _zdt(const double[:, ::1] x, int which, out):
    out = _out(out, x.shape[0], 2)
    cdef double[:, ::1] o = out
    cdef Py_ssize_t i, j, n = x.shape[1]
    cdef double g, f1, v, r
    with nogil:
        for i in range(x.shape[0]):
            f1 = x[i, 0]
            if which == 4:
                g = 1.0 + 10.0 * (n - 1)
                for j in range(1, n):
                    v = x[i, j]
                    g += v * v - 10.0 * cos(4.0 * M_PI * v)
            elif which == 6:
                g = 1.0 + 9.0 * pow(_row_sum_tail(x, i) / (n - 1), 0.25)
                v = sin(6.0 * M_PI * f1)
                f1 = 1.0 - exp(-4.0 * f1) * v * v * v * v * v * v
            else:
                g = 1.0 + 9.0 * _row_sum_tail(x, i) / (n - 1)
            r = f1 / g
            o[i, 0] = f1
            if which == 1 or which == 4:
                o[i, 1] = g * (1.0 - sqrt(r))
            elif which == 2 or which == 6:
                o[i, 1] = g * (1.0 - r * r)
            else:
                o[i, 1] = g * (1.0 - sqrt(r) - r * sin(10.0 * M_PI * f1))
    return out


def zdt1(x, out=None):
    return _zdt(x, 1, out)


def zdt2(x, out=None):
    return _zdt(x, 2, out)


def zdt3(x, out=None):
    return _zdt(x, 3, out)


def zdt4(x, out=None):
    return _zdt(x, 4, out)


def zdt6(x, out=None):
    return _zdt(x, 6, out)


cdef inline uint64_t _mix(uint64_t h) noexcept nogil:
    h ^= h >> 30
    h *= 0xBF58476D1CE4E5B9ULL
    h ^= h >> 27
    h *= 0x94D049BB133111EBULL
    return h ^ (h >> 31)


def row_hash(const uint64_t[:, ::1] words, uint64_t seed=0, out=None):
    if out is None:
        out = np.empty(words.shape[0], dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef Py_ssize_t i, j, m = words.shape[1], n = words.shape[0]
    cdef uint64_t h, h0, h1, h2, h3, start = _mix(seed ^ GOLDEN ^ <uint64_t>words.shape[1])
    with nogil:
        # four rows at a time: each row's hash is a serial multiply chain, so interleaving
        # independent rows keeps the multiplier busy (same values as one row at a time)
        i = 0
        while i + 4 <= n:
            h0 = h1 = h2 = h3 = start
            for j in range(m):
                h0 = (h0 ^ words[i, j]) * MULT
                h1 = (h1 ^ words[i + 1, j]) * MULT
                h2 = (h2 ^ words[i + 2, j]) * MULT
                h3 = (h3 ^ words[i + 3, j]) * MULT
                h0 ^= h0 >> 32
                h1 ^= h1 >> 32
                h2 ^= h2 >> 32
                h3 ^= h3 >> 32
            o[i] = _mix(h0)
            o[i + 1] = _mix(h1)
            o[i + 2] = _mix(h2)
            o[i + 3] = _mix(h3)
            i += 4
        while i < n:
            h = start
            for j in range(m):
                h = (h ^ words[i, j]) * MULT
                h ^= h >> 32
            o[i] = _mix(h)
            i += 1
    return out


def unpack(bits, Py_ssize_t n_bits):
    """Unpack packed rows to ``(pop, n_bits)`` uint8 0/1 (NumPy; not a hot path)."""
    bits = np.ascontiguousarray(bits, dtype=np.uint64)
    as_bytes = bits.view(np.uint8).reshape(bits.shape[0], -1)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :n_bits]
