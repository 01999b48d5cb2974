# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Genetic-operator kernels, compiled. Reference definitions and docstrings:
``_native/operators_py.py``. Random draws come from the caller; results are identical to the
twin for the same draws (up to float rounding in SBX and polynomial mutation).

The random draws make every data-dependent branch a coin toss, and a mispredicted branch per
gene costs more than the arithmetic: bounded SBX therefore first compacts the crossing genes
without branching, then computes them with conditional moves (``fmin``/``fmax``, selects).
"""
import numpy as np

from libc.math cimport pow, fabs, exp, log, fmin, fmax
from libc.stdint cimport int32_t, int64_t, uint64_t


cdef inline double _powe(double x, double e) noexcept nogil:
    # x ** e; exponentiation by squaring when e is a small whole number (eta + 1 usually is)
    cdef long k
    cdef double r = 1.0
    if e == <double><long>e and 0 < e <= 64:
        k = <long>e
        while k:
            if k & 1:
                r *= x
            x *= x
            k >>= 1
        return r
    return pow(x, e)


cdef inline double _beta_q(double beta, double rand, double eta) noexcept nogil:
    cdef double alpha = 2.0 - 1.0 / _powe(beta, eta + 1.0)
    # exp(log(.) / (eta + 1)) rather than pow: about twice as fast, same value to ~1 ulp
    if rand <= 1.0 / alpha:
        return exp(log(rand * alpha) / (eta + 1.0))
    return exp(-log(2.0 - rand * alpha) / (eta + 1.0))


cdef inline double _clip(double v, double lo, double hi) noexcept nogil:
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


def sbx_bounded(double[:, ::1] a, double[:, ::1] b, const double[::1] low,
                const double[::1] up, double eta, const double[:, :, ::1] u):
    cdef Py_ssize_t pairs = a.shape[0], dim = a.shape[1]
    where_arr = np.empty(pairs * dim + 1, dtype=np.int64)
    cdef int64_t[::1] where = where_arr
    cdef Py_ssize_t i, j, k, m = 0
    cdef double x1, x2, d, rand, al, ar, c1, c2, q1, q2, e = 1.0 / (eta + 1.0)
    with nogil:
        # pass 1: the genes that cross, compacted without a branch
        for i in range(pairs):
            for j in range(dim):
                where[m] = i * dim + j
                m += (u[i, j, 0] <= 0.5) & (fabs(a[i, j] - b[i, j]) > 1e-14)
        # pass 2: their children
        for k in range(m):
            i = where[k] // dim
            j = where[k] - i * dim
            x1 = fmin(a[i, j], b[i, j])
            x2 = fmax(a[i, j], b[i, j])
            d = x2 - x1
            rand = u[i, j, 1]
            al = 2.0 - 1.0 / _powe(1.0 + 2.0 * (x1 - low[j]) / d, eta + 1.0)
            ar = 2.0 - 1.0 / _powe(1.0 + 2.0 * (up[j] - x2) / d, eta + 1.0)
            q1 = rand * al
            q1 = q1 if q1 <= 1.0 else 1.0 / (2.0 - q1)
            q2 = rand * ar
            q2 = q2 if q2 <= 1.0 else 1.0 / (2.0 - q2)
            c1 = fmin(fmax(0.5 * (x1 + x2 - exp(log(q1) * e) * d), low[j]), up[j])
            c2 = fmin(fmax(0.5 * (x1 + x2 + exp(log(q2) * e) * d), low[j]), up[j])
            rand = u[i, j, 2]
            a[i, j] = c2 if rand <= 0.5 else c1
            b[i, j] = c1 if rand <= 0.5 else c2


def polynomial_bounded(double[:, ::1] x, const double[::1] low, const double[::1] up,
                       double eta, const unsigned char[:, ::1] hit, const double[::1] r):
    cdef Py_ssize_t i, j, t = 0
    cdef double v, xl, xu, span, rand, p = 1.0 / (eta + 1.0), dq
    with nogil:
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                if not hit[i, j]:
                    continue
                v = x[i, j]
                xl = low[j]
                xu = up[j]
                span = xu - xl
                rand = r[t]
                t += 1
                if rand < 0.5:
                    dq = pow(2.0 * rand + (1.0 - 2.0 * rand)
                             * _powe(1.0 - (v - xl) / span, eta + 1.0), p) - 1.0
                else:
                    dq = 1.0 - pow(2.0 * (1.0 - rand) + 2.0 * (rand - 0.5)
                                   * _powe(1.0 - (xu - v) / span, eta + 1.0), p)
                x[i, j] = _clip(v + dq * span, xl, xu)


def ordered(int32_t[:, ::1] a, int32_t[:, ::1] b, const int64_t[:, ::1] cuts):
    cdef Py_ssize_t n = a.shape[1], i, j, k, lo, hi, side
    scratch = np.empty((4, n), dtype=np.int32)
    cdef int32_t[:, ::1] s = scratch
    cdef int32_t v
    cdef int32_t[:, ::1] child
    with nogil:
        for i in range(a.shape[0]):
            lo = cuts[i, 0]
            hi = cuts[i, 1]
            for j in range(n):
                s[0, j] = a[i, j]
                s[1, j] = b[i, j]
            for side in range(2):
                # s[2] marks genes of the other parent's segment
                for j in range(n):
                    s[2, j] = 0
                for j in range(lo, hi + 1):
                    s[2, s[1 - side, j]] = 1
                k = hi + 1
                for j in range(n):
                    v = s[side, (j + hi + 1) % n]
                    if not s[2, v]:
                        if side == 0:
                            a[i, k % n] = v
                        else:
                            b[i, k % n] = v
                        k += 1
                for j in range(lo, hi + 1):
                    if side == 0:
                        a[i, j] = s[1, j]
                    else:
                        b[i, j] = s[0, j]


def partially_matched(int32_t[:, ::1] a, int32_t[:, ::1] b, const int64_t[:, ::1] cuts):
    cdef Py_ssize_t n = a.shape[1], i, j
    pos = np.empty((2, n), dtype=np.int64)
    cdef int64_t[:, ::1] p = pos
    cdef int32_t t1, t2
    cdef int64_t tmp
    with nogil:
        for i in range(a.shape[0]):
            for j in range(n):
                p[0, a[i, j]] = j
                p[1, b[i, j]] = j
            for j in range(cuts[i, 0], cuts[i, 1]):
                t1 = a[i, j]
                t2 = b[i, j]
                a[i, j] = t2
                a[i, p[0, t2]] = t1
                b[i, j] = t1
                b[i, p[1, t1]] = t2
                tmp = p[0, t1]; p[0, t1] = p[0, t2]; p[0, t2] = tmp
                tmp = p[1, t1]; p[1, t1] = p[1, t2]; p[1, t2] = tmp


def shuffle_indexes(int32_t[:, ::1] x, double indpb, const double[:, :, ::1] u):
    cdef Py_ssize_t n = x.shape[1], i, j, k
    cdef int32_t t
    if n < 2:
        return
    with nogil:
        for i in range(x.shape[0]):
            for j in range(n):
                if u[i, j, 0] < indpb:
                    k = <Py_ssize_t>(u[i, j, 1] * (n - 1))
                    if k > n - 2:
                        k = n - 2
                    if k >= j:
                        k += 1
                    t = x[i, j]
                    x[i, j] = x[i, k]
                    x[i, k] = t


def invert(int32_t[:, ::1] x, const int64_t[:, ::1] cuts):
    cdef Py_ssize_t i, lo, hi
    cdef int32_t t
    with nogil:
        for i in range(x.shape[0]):
            lo = cuts[i, 0]
            hi = cuts[i, 1]
            while lo < hi:
                t = x[i, lo]
                x[i, lo] = x[i, hi]
                x[i, hi] = t
                lo += 1
                hi -= 1


def bits_swap(uint64_t[:, ::1] g, const int64_t[::1] first, const uint64_t[:, ::1] mask):
    cdef Py_ssize_t i, w, r
    cdef uint64_t d
    with nogil:
        for i in range(first.shape[0]):
            r = first[i]
            for w in range(g.shape[1]):
                d = (g[r, w] ^ g[r + 1, w]) & mask[i, w]
                g[r, w] ^= d
                g[r + 1, w] ^= d


def bits_flip(uint64_t[:, ::1] g, const int64_t[::1] rows, const double[:, ::1] u, double p):
    changed_arr = np.zeros(rows.shape[0], dtype=bool)
    cdef unsigned char[::1] changed = changed_arr.view(np.uint8)
    cdef Py_ssize_t k, j, r
    with nogil:
        for k in range(rows.shape[0]):
            r = rows[k]
            for j in range(u.shape[1]):
                if u[k, j] < p:
                    g[r, j >> 6] ^= (<uint64_t>1) << (j & 63)
                    changed[k] = 1
    return changed_arr


def bits_swap_range(uint64_t[:, ::1] g, const int64_t[::1] first, const int64_t[::1] lo,
                    const int64_t[::1] hi):
    cdef Py_ssize_t i, w, r
    cdef long a, b
    cdef uint64_t d, m
    with nogil:
        for i in range(first.shape[0]):
            r = first[i]
            for w in range(g.shape[1]):
                a = lo[i] - 64 * w
                b = hi[i] - 64 * w
                a = 0 if a < 0 else (64 if a > 64 else a)
                b = 0 if b < 0 else (64 if b > 64 else b)
                if b <= a:
                    continue
                m = (0xFFFFFFFFFFFFFFFFULL if b == 64 else ((<uint64_t>1 << b) - 1))
                m &= ~(0xFFFFFFFFFFFFFFFFULL if a == 64 else ((<uint64_t>1 << a) - 1))
                d = (g[r, w] ^ g[r + 1, w]) & m
                g[r, w] ^= d
                g[r + 1, w] ^= d
