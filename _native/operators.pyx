# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Genetic-operator kernels, compiled. Reference definitions and docstrings:
``_native/operators_py.py``. Random draws come from the caller; results are identical to the
twin for the same draws (up to float rounding in SBX and polynomial mutation)."""
import numpy as np

from libc.math cimport pow, fabs
from libc.stdint cimport int32_t, int64_t


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
    if rand <= 1.0 / alpha:
        return pow(rand * alpha, 1.0 / (eta + 1.0))
    return pow(1.0 / (2.0 - rand * alpha), 1.0 / (eta + 1.0))


cdef inline double _clip(double v, double lo, double hi) noexcept nogil:
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


def sbx_bounded(double[:, ::1] a, double[:, ::1] b, const double[::1] low,
                const double[::1] up, double eta, const double[:, :, ::1] u):
    cdef Py_ssize_t i, j
    cdef double x1, x2, xl, xu, rand, c1, c2, d
    with nogil:
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                if u[i, j, 0] > 0.5 or fabs(a[i, j] - b[i, j]) <= 1e-14:
                    continue
                x1 = a[i, j]
                x2 = b[i, j]
                if x1 > x2:
                    x1, x2 = x2, x1
                xl = low[j]
                xu = up[j]
                rand = u[i, j, 1]
                d = x2 - x1
                c1 = 0.5 * (x1 + x2 - _beta_q(1.0 + 2.0 * (x1 - xl) / d, rand, eta) * d)
                c2 = 0.5 * (x1 + x2 + _beta_q(1.0 + 2.0 * (xu - x2) / d, rand, eta) * d)
                c1 = _clip(c1, xl, xu)
                c2 = _clip(c2, xl, xu)
                if u[i, j, 2] <= 0.5:
                    a[i, j] = c2
                    b[i, j] = c1
                else:
                    a[i, j] = c1
                    b[i, j] = c2


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
