# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled shuffle kernels; ``_native/shuffle_py.py`` is the reference twin.

* ``hash_aggregate(keys, values, op)``: open-addressing hash table over int64 keys, combining
  int64/float64 values with add/min/max; output in first-occurrence order.
* ``bucket_order(pids, n)``: stable counting sort by partition id, with offsets.
* ``argsort(keys)``: stable LSD radix argsort of int64 keys (16-bit digits, skipping passes
  whose digit is constant).
"""
import numpy as np
from libc.stdint cimport int64_t, uint64_t


OPS = ("add", "min", "max")

ctypedef fused num_t:
    int64_t
    double


cdef inline uint64_t _mix(uint64_t x) nogil:
    x ^= x >> 33
    x *= 0xff51afd7ed558ccdULL
    x ^= x >> 33
    x *= 0xc4ceb9fe1a85ec53ULL
    x ^= x >> 33
    return x


cdef Py_ssize_t _aggregate(const int64_t[::1] keys, const num_t[::1] vals, int op,
                           int64_t[::1] table, int64_t[::1] out_k, num_t[::1] out_v) noexcept nogil:
    cdef Py_ssize_t n = keys.shape[0], i, count = 0
    cdef uint64_t mask = <uint64_t>table.shape[0] - 1, h
    cdef int64_t k, slot
    cdef num_t v
    for i in range(n):
        k = keys[i]
        v = vals[i]
        h = _mix(<uint64_t>k) & mask
        while True:
            slot = table[h]
            if slot == 0:
                table[h] = count + 1
                out_k[count] = k
                out_v[count] = v
                count += 1
                break
            if out_k[slot - 1] == k:
                if op == 0:
                    out_v[slot - 1] = out_v[slot - 1] + v
                elif op == 1:
                    if v < out_v[slot - 1]:
                        out_v[slot - 1] = v
                else:
                    if v > out_v[slot - 1]:
                        out_v[slot - 1] = v
                break
            h = (h + 1) & mask
    return count


def hash_aggregate(keys, values, str op):
    """Combine values of equal int64 keys with ``op``; keys in first-occurrence order."""
    if op not in OPS:
        raise ValueError(f"unknown aggregation op {op!r}; expected one of {OPS}")
    cdef int opcode = OPS.index(op)
    k = np.ascontiguousarray(keys, dtype=np.int64)
    v = np.ascontiguousarray(values)
    if v.dtype != np.int64 and v.dtype != np.float64:
        raise TypeError(f"values must be int64 or float64, got {v.dtype}")
    if k.shape[0] != v.shape[0]:
        raise ValueError("keys and values differ in length")
    cdef Py_ssize_t n = k.shape[0], cap = 16, count
    while cap < 2 * n:
        cap *= 2
    table = np.zeros(cap, dtype=np.int64)
    out_k = np.empty(n, dtype=np.int64)
    out_v = np.empty(n, dtype=v.dtype)
    cdef const int64_t[::1] kv = k
    cdef int64_t[::1] tv = table
    cdef int64_t[::1] okv = out_k
    cdef const int64_t[::1] vi
    cdef const double[::1] vf
    cdef int64_t[::1] ovi
    cdef double[::1] ovf
    if v.dtype == np.int64:
        vi = v
        ovi = out_v
        with nogil:
            count = _aggregate(kv, vi, opcode, tv, okv, ovi)
    else:
        vf = v
        ovf = out_v
        with nogil:
            count = _aggregate(kv, vf, opcode, tv, okv, ovf)
    return out_k[:count].copy(), out_v[:count].copy()


def bucket_order(pids, Py_ssize_t num_buckets):
    """Stable permutation grouping records by bucket, and ``num_buckets + 1`` offsets."""
    p = np.ascontiguousarray(pids, dtype=np.int64)
    cdef const int64_t[::1] pv = p
    cdef Py_ssize_t n = p.shape[0], i
    offsets = np.zeros(num_buckets + 1, dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    pos = np.empty(num_buckets, dtype=np.int64)
    cdef int64_t[::1] off = offsets
    cdef int64_t[::1] ov = order
    cdef int64_t[::1] posv = pos
    cdef int64_t b
    cdef bint bad = False
    with nogil:
        for i in range(n):
            b = pv[i]
            if b < 0 or b >= num_buckets:
                bad = True
                break
            off[b + 1] += 1
        if not bad:
            for i in range(num_buckets):
                off[i + 1] += off[i]
                posv[i] = off[i]
            for i in range(n):
                b = pv[i]
                ov[posv[b]] = i
                posv[b] += 1
    if bad:
        raise ValueError("partition id out of range")
    return order, offsets


def argsort(keys):
    """Stable argsort of an int64 column (LSD radix sort)."""
    k = np.ascontiguousarray(keys, dtype=np.int64)
    cdef Py_ssize_t n = k.shape[0], i
    ukeys = np.empty(n, dtype=np.uint64)
    order = np.arange(n, dtype=np.int64)
    tmp = np.empty(n, dtype=np.int64)
    counts = np.zeros(65537, dtype=np.int64)
    cdef const int64_t[::1] kv = k
    cdef uint64_t[::1] uk = ukeys
    cdef int64_t[::1] src = order
    cdef int64_t[::1] dst = tmp
    cdef int64_t[::1] cnt = counts
    cdef int64_t[::1] swap
    cdef int shift, d
    cdef uint64_t first_digit
    cdef bint constant
    with nogil:
        for i in range(n):
            uk[i] = (<uint64_t>kv[i]) ^ (<uint64_t>1 << 63)
        for shift in range(0, 64, 16):
            if n == 0:
                break
            first_digit = (uk[0] >> shift) & 0xFFFF
            constant = True
            for i in range(n):
                if ((uk[i] >> shift) & 0xFFFF) != first_digit:
                    constant = False
                    break
            if constant:
                continue
            for d in range(65537):
                cnt[d] = 0
            for i in range(n):
                cnt[((uk[src[i]] >> shift) & 0xFFFF) + 1] += 1
            for d in range(65536):
                cnt[d + 1] += cnt[d]
            for i in range(n):
                d = (uk[src[i]] >> shift) & 0xFFFF
                dst[cnt[d]] = src[i]
                cnt[d] += 1
            swap = src
            src = dst
            dst = swap
    return np.asarray(src).copy()
