# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# distutils: extra_compile_args = -O3 -ffast-math
# distutils: libraries = mvec m
"""Genetic-operator kernels, compiled. Reference definitions and docstrings:
``_native/operators_py.py``. Results are identical to the twin for the same draws (up to
float rounding in SBX and polynomial mutation). Most kernels take their random draws from
the caller; the whole-population ones (``sbx_rows``, ``polynomial_rows``,
``tournament_draw``) draw from the caller's NumPy bit generator themselves, in C, in the
order the twin documents and reproduces with ``numpy.random.Generator`` calls.

The random draws make every data-dependent branch a coin toss, and a mispredicted branch per
gene costs more than the arithmetic: bounded SBX therefore visits the participating genes by
their set bits, gathers them into small stack chunks, and computes the children in a
branch-free C loop that GCC vectorises (``exp``/``log`` through glibc's libmvec; an AVX2
clone beside the baseline one).
"""
import numpy as np

from libc.math cimport fabs, exp, log, log1p, floor, fmin, fmax
from libc.stdint cimport int32_t, int64_t, uint64_t, uint32_t
from cpython.pycapsule cimport PyCapsule_GetPointer


cdef extern from *:
    """
    /* NumPy's bit-generator interface (numpy/random/bitgen.h, a stable ABI since NumPy 1.17),
       declared here so that building needs no NumPy headers. */
    static inline int op_ctz64(uint64_t x) { return __builtin_ctzll(x); }
    static inline int op_popcount64(uint64_t x) { return __builtin_popcountll(x); }
    typedef struct op_bitgen {
        void *state;
        uint64_t (*next_uint64)(void *st);
        uint32_t (*next_uint32)(void *st);
        double (*next_double)(void *st);
        uint64_t (*next_raw)(void *st);
    } op_bitgen_t;
    """
    int op_ctz64(uint64_t x) nogil
    int op_popcount64(uint64_t x) nogil
    ctypedef struct op_bitgen_t:
        void *state
        uint64_t (*next_uint64)(void *st) nogil
        double (*next_double)(void *st) nogil


cdef extern from *:
    """
    #include <math.h>
    /* The children's arithmetic of bounded SBX over genes already gathered into contiguous
       arrays: no branch depends on data (selects and fmin/fmax only), so GCC vectorises it,
       pow/exp/log included through glibc's libmvec (-ffast-math). target_clones builds an
       AVX2 version beside the baseline one and picks at load time, so the module stays
       portable. */
    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __attribute__((target_clones("arch=x86-64-v3", "default")))
    #endif
    static void op_sbx_children(Py_ssize_t m, const double *restrict x1,
                                const double *restrict x2, const double *restrict lo,
                                const double *restrict hi, const double *restrict rnd,
                                const double *restrict swap, double eta,
                                double *restrict c1, double *restrict c2) {
        const double e1 = eta + 1.0, inv = 1.0 / (eta + 1.0);
        for (Py_ssize_t k = 0; k < m; k++) {
            double d = x2[k] - x1[k], s = x1[k] + x2[k];
            double b1 = 1.0 + 2.0 * (x1[k] - lo[k]) / d;
            double b2 = 1.0 + 2.0 * (hi[k] - x2[k]) / d;
            /* clamped: an exp that underflows sends libmvec to its slow scalar path, and
               near-equal parents (late in a run) make b1, b2 huge; the value is 2.0 anyway */
            double a1 = 2.0 - exp(fmax(-e1 * log(b1), -700.0));
            double a2 = 2.0 - exp(fmax(-e1 * log(b2), -700.0));
            double q1 = rnd[k] * a1, q2 = rnd[k] * a2;
            q1 = q1 <= 1.0 ? q1 : 1.0 / (2.0 - q1);
            q2 = q2 <= 1.0 ? q2 : 1.0 / (2.0 - q2);
            /* a draw of exactly 0.0 would take log(0), undefined under -ffast-math */
            q1 = fmax(q1, 1e-300);
            q2 = fmax(q2, 1e-300);
            double v1 = 0.5 * (s - exp(log(q1) * inv) * d);
            double v2 = 0.5 * (s + exp(log(q2) * inv) * d);
            v1 = fmin(fmax(v1, lo[k]), hi[k]);
            v2 = fmin(fmax(v2, lo[k]), hi[k]);
            /* DEAP's per-gene swap of the two children, as a select */
            c1[k] = swap[k] != 0.0 ? v2 : v1;
            c2[k] = swap[k] != 0.0 ? v1 : v2;
        }
    }

    #if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __attribute__((target_clones("arch=x86-64-v3", "default")))
    #endif
    static void op_polynomial(Py_ssize_t n, const double *restrict v,
                              const double *restrict lo, const double *restrict hi,
                              const double *restrict rnd, double eta, double *restrict out) {
        /* DEAP's two cases (rand below or above 0.5) as selects, so that it vectorises */
        const double e1 = eta + 1.0, p = 1.0 / (eta + 1.0);
        for (Py_ssize_t k = 0; k < n; k++) {
            double span = hi[k] - lo[k], r = rnd[k];
            int low_side = r < 0.5;
            double xy = low_side ? 1.0 - (v[k] - lo[k]) / span : 1.0 - (hi[k] - v[k]) / span;
            double t = exp(fmax(e1 * log(fmax(xy, 1e-300)), -700.0));
            double val = low_side ? 2.0 * r + (1.0 - 2.0 * r) * t
                                  : 2.0 * (1.0 - r) + 2.0 * (r - 0.5) * t;
            double pw = exp(p * log(fmax(val, 1e-300)));
            double dq = low_side ? pw - 1.0 : 1.0 - pw;
            out[k] = fmin(fmax(v[k] + dq * span, lo[k]), hi[k]);
        }
    }
    """
    void op_sbx_children(Py_ssize_t m, const double *x1, const double *x2, const double *lo,
                         const double *hi, const double *rnd, const double *swap, double eta,
                         double *c1, double *c2) nogil
    void op_polynomial(Py_ssize_t n, const double *v, const double *lo, const double *hi,
                       const double *rnd, double eta, double *out) nogil


cdef inline double _clip(double v, double lo, double hi) noexcept nogil:
    if v < lo:
        return lo
    if v > hi:
        return hi
    return v


cdef enum:
    CHUNK = 256


cdef void _sbx_flush(double[:, ::1] a, double[:, ::1] b, Py_ssize_t m, int32_t *wp,
                     int32_t *wj, double (*buf)[CHUNK], double eta) noexcept nogil:
    cdef Py_ssize_t k
    op_sbx_children(m, buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], eta, buf[6], buf[7])
    for k in range(m):
        a[wp[k], wj[k]] = buf[6][k]
        b[wp[k], wj[k]] = buf[7][k]


def sbx_bounded(double[:, ::1] a, double[:, ::1] b, const double[::1] low,
                const double[::1] up, double eta, const uint64_t[:, ::1] words,
                const double[::1] rand):
    cdef Py_ssize_t pairs = a.shape[0], dim = a.shape[1], nw = (a.shape[1] + 63) // 64
    if words.shape[0] != pairs or words.shape[1] != 2 * nw:
        raise ValueError(f"words must have shape ({pairs}, {2 * nw})")
    cdef Py_ssize_t i, j, wi, m = 0, r = 0, need = 0
    cdef uint64_t w
    cdef double x, y
    # chunks of genes gathered on the stack: L1-resident, nothing allocated per call
    cdef int32_t wp[CHUNK]
    cdef int32_t wj[CHUNK]
    cdef double buf[8][CHUNK]
    for i in range(pairs):
        for wi in range(nw):
            need += op_popcount64(_word(words, i, wi, nw, dim))
    if need > rand.shape[0]:
        raise ValueError(f"rand holds {rand.shape[0]} draws, {need} genes participate")
    with nogil:
        for i in range(pairs):
            for wi in range(nw):
                # the participating genes: set bits, visited without a coin-toss branch;
                # each consumes one spread draw, in row-major order
                w = _word(words, i, wi, nw, dim)
                while w:
                    j = (wi << 6) + op_ctz64(w)
                    w &= w - 1
                    x = a[i, j]
                    y = b[i, j]
                    wp[m] = <int32_t>i
                    wj[m] = <int32_t>j
                    buf[0][m] = fmin(x, y)
                    buf[1][m] = fmax(x, y)
                    buf[2][m] = low[j]
                    buf[3][m] = up[j]
                    buf[4][m] = rand[r]
                    buf[5][m] = <double>((words[i, nw + wi] >> (j & 63)) & 1)
                    r += 1
                    m += fabs(x - y) > 1e-14
                    if m == CHUNK:
                        _sbx_flush(a, b, m, wp, wj, buf, eta)
                        m = 0
        _sbx_flush(a, b, m, wp, wj, buf, eta)


cdef inline uint64_t _word(const uint64_t[:, ::1] words, Py_ssize_t i, Py_ssize_t wi,
                           Py_ssize_t nw, Py_ssize_t dim) noexcept nogil:
    # participation word ``wi`` of pair ``i``, bits past ``dim`` cleared
    cdef uint64_t w = words[i, wi]
    if wi == nw - 1 and dim & 63:
        w &= ((<uint64_t>1) << (dim & 63)) - 1
    return w


def sbx_rows(double[:, ::1] g, double rate, const double[::1] low, const double[::1] up,
             double eta, bit_generator):
    """See ``operators_py.sbx_rows``."""
    cdef Py_ssize_t n = g.shape[0], dim = g.shape[1], nw = (g.shape[1] + 63) // 64
    cdef Py_ssize_t i, j, p, wi, m = 0, pairs = 0
    cdef uint64_t w
    changed_arr = np.zeros(n, dtype=bool)
    first_arr = np.empty(n // 2 + 1, dtype=np.int64)
    words_arr = np.empty((n // 2 + 1, 2 * nw), dtype=np.uint64)
    cdef unsigned char[::1] changed = changed_arr.view(np.uint8)
    cdef int64_t[::1] first = first_arr
    cdef uint64_t[:, ::1] words = words_arr
    cdef double x, y
    cdef int32_t wp[CHUNK]
    cdef int32_t wj[CHUNK]
    cdef double buf[8][CHUNK]
    cdef op_bitgen_t *rng = <op_bitgen_t *>PyCapsule_GetPointer(bit_generator.capsule,
                                                                "BitGenerator")
    with bit_generator.lock, nogil:
        # the stream the twin draws: ``random(n // 2)`` for the pairs that cross, then
        # ``random_raw(pairs * 2 * nw)`` for their coins, then one ``random()`` per
        # participating gene
        for p in range(n // 2):
            first[pairs] = 2 * p
            pairs += rng.next_double(rng.state) < rate
        for p in range(pairs):
            changed[first[p]] = 1
            changed[first[p] + 1] = 1
            for j in range(2 * nw):
                words[p, j] = rng.next_uint64(rng.state)
        for p in range(pairs):
            i = first[p]
            for wi in range(nw):
                w = _word(words, p, wi, nw, dim)
                while w:
                    j = (wi << 6) + op_ctz64(w)
                    w &= w - 1
                    x = g[i, j]
                    y = g[i + 1, j]
                    wp[m] = <int32_t>i
                    wj[m] = <int32_t>j
                    buf[0][m] = fmin(x, y)
                    buf[1][m] = fmax(x, y)
                    buf[2][m] = low[j]
                    buf[3][m] = up[j]
                    buf[4][m] = rng.next_double(rng.state)
                    buf[5][m] = <double>((words[p, nw + wi] >> (j & 63)) & 1)
                    m += fabs(x - y) > 1e-14
                    if m == CHUNK:
                        _sbx_flush_pairs(g, m, wp, wj, buf, eta)
                        m = 0
        _sbx_flush_pairs(g, m, wp, wj, buf, eta)
    return changed_arr


cdef void _sbx_flush_pairs(double[:, ::1] g, Py_ssize_t m, int32_t *wp, int32_t *wj,
                           double (*buf)[CHUNK], double eta) noexcept nogil:
    cdef Py_ssize_t k
    op_sbx_children(m, buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], eta, buf[6], buf[7])
    for k in range(m):
        g[wp[k], wj[k]] = buf[6][k]
        g[wp[k] + 1, wj[k]] = buf[7][k]


def tournament(const double[::1] key, const int64_t[:, ::1] contestants):
    """See ``operators_py.tournament``."""
    out_arr = np.empty(contestants.shape[0], dtype=np.int64)
    cdef int64_t[::1] out = out_arr
    cdef Py_ssize_t i, j, n = key.shape[0]
    cdef int64_t best, c
    for i in range(contestants.shape[0]):
        for j in range(contestants.shape[1]):
            if not 0 <= contestants[i, j] < n:
                raise ValueError(f"contestant {contestants[i, j]} outside 0..{n - 1}")
    with nogil:
        for i in range(contestants.shape[0]):
            best = contestants[i, 0]
            for j in range(1, contestants.shape[1]):
                c = contestants[i, j]
                if key[c] > key[best]:
                    best = c
            out[i] = best
    return out_arr


def polynomial_rows(double[:, ::1] g, double rate, double gene_rate, const double[::1] low,
                    const double[::1] up, double eta, bit_generator):
    """See ``operators_py.polynomial_rows``."""
    cdef Py_ssize_t n = g.shape[0], dim = g.shape[1], i, k = 0, m = 0, rows = 0
    changed_arr = np.zeros(n, dtype=bool)
    chosen_arr = np.empty(n + 1, dtype=np.int64)
    cdef unsigned char[::1] changed = changed_arr.view(np.uint8)
    cdef int64_t[::1] chosen = chosen_arr
    cdef double total, posf = -1.0
    # a multiplication by a precomputed reciprocal, not a division, so that -ffast-math
    # has nothing to rewrite and the twin computes the very same gaps
    cdef double inv_lq = 1.0 / log1p(-gene_rate) if 0.0 < gene_rate < 1.0 else 0.0
    cdef double u
    cdef int32_t wp[CHUNK]
    cdef int32_t wj[CHUNK]
    cdef double buf[5][CHUNK]
    cdef op_bitgen_t *rng = <op_bitgen_t *>PyCapsule_GetPointer(bit_generator.capsule,
                                                                "BitGenerator")
    with bit_generator.lock, nogil:
        for i in range(n):
            chosen[rows] = i
            rows += rng.next_double(rng.state) < rate
        total = <double>rows * <double>dim
        if gene_rate > 0.0:
            while True:
                # the next hit gene among the chosen rows' genes: a geometric gap, by inversion
                if gene_rate >= 1.0:
                    posf += 1.0
                else:
                    u = rng.next_double(rng.state)
                    posf += floor(log(u if u > 0.0 else 1e-300) * inv_lq) + 1.0
                if posf >= total:
                    break
                k = <Py_ssize_t>posf
                i = chosen[k // dim]
                changed[i] = 1
                wp[m] = <int32_t>i
                wj[m] = <int32_t>(k - (k // dim) * dim)
                buf[0][m] = g[i, wj[m]]
                buf[1][m] = low[wj[m]]
                buf[2][m] = up[wj[m]]
                buf[3][m] = rng.next_double(rng.state)
                m += 1
                if m == CHUNK:
                    _poly_flush(g, m, wp, wj, buf, eta)
                    m = 0
        _poly_flush(g, m, wp, wj, buf, eta)
    return changed_arr


cdef void _poly_flush(double[:, ::1] g, Py_ssize_t m, int32_t *wp, int32_t *wj,
                      double (*buf)[CHUNK], double eta) noexcept nogil:
    cdef Py_ssize_t k
    op_polynomial(m, buf[0], buf[1], buf[2], buf[3], eta, buf[4])
    for k in range(m):
        g[wp[k], wj[k]] = buf[4][k]


def polynomial_bounded(double[:, ::1] x, const double[::1] low, const double[::1] up,
                       double eta, const int64_t[::1] pos, const double[::1] r):
    cdef Py_ssize_t dim = x.shape[1], size = x.shape[0] * x.shape[1], k, n = pos.shape[0]
    cdef Py_ssize_t i, j
    if r.shape[0] < n:
        raise ValueError(f"r holds {r.shape[0]} draws for {n} positions")
    buf_arr = np.empty((5, n + 1), dtype=np.float64)
    cdef double[:, ::1] buf = buf_arr
    for k in range(n):
        if not 0 <= pos[k] < size:
            raise ValueError(f"position {pos[k]} outside the {x.shape[0]}x{dim} genomes")
    with nogil:
        for k in range(n):
            i = pos[k] // dim
            j = pos[k] - i * dim
            buf[0, k] = x[i, j]
            buf[1, k] = low[j]
            buf[2, k] = up[j]
        op_polynomial(n, &buf[0, 0], &buf[1, 0], &buf[2, 0], &r[0] if n else NULL, eta,
                      &buf[3, 0])
        for k in range(n):
            i = pos[k] // dim
            x[i, pos[k] - i * dim] = buf[3, k]


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


def summary(const double[::1] f, const uint64_t[::1] hashes):
    """See ``operators_py.summary``."""
    cdef Py_ssize_t n = f.shape[0], m = hashes.shape[0], i, size = 16, slot
    cdef double s = 0.0, ss = 0.0, d, mean
    cdef long distinct = 0
    cdef uint64_t h
    while size < 2 * m:
        size <<= 1
    table_arr = np.empty(size, dtype=np.uint64)
    used_arr = np.zeros(size, dtype=np.uint8)
    cdef uint64_t[::1] table = table_arr
    cdef unsigned char[::1] used = used_arr
    with nogil:
        for i in range(n):
            s += f[i]
        mean = s / n if n else 0.0
        for i in range(n):
            d = f[i] - mean
            ss += d * d
        # distinct genome hashes: an open-addressing set (the hashes are already mixed)
        for i in range(m):
            h = hashes[i]
            slot = <Py_ssize_t>(h & (size - 1))
            while used[slot] and table[slot] != h:
                slot = (slot + 1) & (size - 1)
            if not used[slot]:
                used[slot] = 1
                table[slot] = h
                distinct += 1
    return mean, (ss / n) ** 0.5 if n else 0.0, distinct


def tournament_draw(const double[::1] key, Py_ssize_t k, Py_ssize_t size, bit_generator):
    """See ``operators_py.tournament_draw``."""
    cdef Py_ssize_t n = key.shape[0], i, j
    cdef int64_t best, c
    if n < 1 or size < 1 or k < 0:
        raise ValueError(f"tournaments of {size} among {n} for {k} winners")
    out_arr = np.empty(k, dtype=np.int64)
    cdef int64_t[::1] out = out_arr
    cdef op_bitgen_t *rng = <op_bitgen_t *>PyCapsule_GetPointer(bit_generator.capsule,
                                                                "BitGenerator")
    with bit_generator.lock, nogil:
        for i in range(k):
            best = -1
            for j in range(size):
                c = <int64_t>(rng.next_double(rng.state) * n)
                if c > n - 1:
                    c = n - 1
                if best < 0 or key[c] > key[best]:
                    best = c
            out[i] = best
    return out_arr
