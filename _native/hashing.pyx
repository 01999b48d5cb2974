# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
# distutils: extra_compile_args = -O3
"""Portable 64-bit hashing of record keys and the shuffle's partition-id kernel.

This module is responsible for one thing: a hash of keys that is the same in every process
and on every machine (Python's ``hash`` of ``str``/``bytes`` is salted per process, so it can
not place records into shuffle partitions), and the batch kernel that turns a column of keys
into partition ids. Moving records between partitions, combining and spilling them is left to
``dataflow``. ``_native/hashing_py.py`` is the pure-Python/NumPy twin with identical results.

Algorithm
---------
All arithmetic is on unsigned 64-bit words, modulo ``2**64``. With ``K1 = 0x9E3779B97F4A7C15``,
``K2 = 0xBF58476D1CE4E5B9`` and ``K3 = 0x94D049BB133111EB``::

    fmix(z)      = z ^= z >> 30; z *= K2; z ^= z >> 27; z *= K3; z ^= z >> 31
    absorb(h, w) = k = w * K1; k ^= k >> 32; h = (h ^ k) * K3; rotl(h, 27)
    words(seed, data, n) = fmix(absorb(...absorb(seed, w0)..., w_last) ^ n)

``fmix`` is a bijective finalizer with full avalanche; ``absorb`` folds one word into a running
state. Each kind of key starts from its own tag, the little-endian value of an 8-byte ASCII
name (``TAG_INT = "op.int.."``, ``"op.big.+"``, ``"op.big.-"``, ``"op.float"``,
``"op.str.."``, ``"op.bytes"``, ``"op.tuple"``, ``"op.none."``):

* ``int`` in ``[-2**63, 2**63)`` (``bool`` as its int): ``fmix(uint64(v) ^ TAG_INT)``.
* other ``int``: ``words(TAG_BIG±, limbs, len(limbs))`` over the little-endian 64-bit limbs
  of ``abs(v)`` (up to the highest non-zero limb), the tag carrying the sign.
* ``float``: NaNs hash as one canonical NaN; integral values (``-0.0`` included) hash as the
  equal ``int``; others as ``fmix(ieee754_bits(x) ^ TAG_FLOAT)``.
* ``str``: its UTF-8 bytes (surrogates encoded as by ``surrogatepass``) through ``words`` from
  ``TAG_STR``; ``bytes``/``bytearray``/``memoryview`` the same from ``TAG_BYTES``. Data is read
  as little-endian 8-byte words, the last partial word zero-padded, ``n`` = byte length.
* ``None``: ``fmix(TAG_NONE)``. ``tuple``: ``words(TAG_TUPLE, hashes of items, len)``.

Hence keys equal in Python hash equal (``1 == 1.0 == True``, ``0.0 == -0.0``, a namedtuple and
its tuple), while ``"a"`` and ``b"a"`` differ. Partition ids are ``hash % num_partitions``.

Examples
--------
>>> from _native import hashing
>>> hashing.portable_hash(1) == hashing.portable_hash(1.0) == hashing.portable_hash(True)
True
>>> hashing.partition_ids(["a", "b", "c", "d"], 3)
array([2, 0, 2, 0], dtype=int32)
"""
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.math cimport isinf
from libc.string cimport memcpy
from cpython.long cimport PyLong_AsLongLongAndOverflow

import operator

import numpy as np

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    static inline uint64_t op_load_le64(const unsigned char *p) {
        uint64_t v;
        memcpy(&v, p, 8);
    #if defined(__BYTE_ORDER__) && defined(__ORDER_BIG_ENDIAN__) \\
        && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap64(v);
    #endif
        return v;
    }
    #define OP_K1 0x9E3779B97F4A7C15ULL
    #define OP_K2 0xBF58476D1CE4E5B9ULL
    #define OP_K3 0x94D049BB133111EBULL
    #define OP_TAG_INT 0x2e2e746e692e706fULL
    #define OP_TAG_BIG_POS 0x2b2e6769622e706fULL
    #define OP_TAG_BIG_NEG 0x2d2e6769622e706fULL
    #define OP_TAG_FLOAT 0x74616f6c662e706fULL
    #define OP_TAG_STR 0x2e2e7274732e706fULL
    #define OP_TAG_BYTES 0x73657479622e706fULL
    #define OP_TAG_TUPLE 0x656c7075742e706fULL
    #define OP_TAG_NONE 0x2e656e6f6e2e706fULL
    #define OP_NAN_BITS 0x7FF8000000000000ULL
    """
    uint64_t op_load_le64(const unsigned char *p) noexcept nogil
    uint64_t OP_K1, OP_K2, OP_K3
    uint64_t OP_TAG_INT, OP_TAG_BIG_POS, OP_TAG_BIG_NEG, OP_TAG_FLOAT
    uint64_t OP_TAG_STR, OP_TAG_BYTES, OP_TAG_TUPLE, OP_TAG_NONE, OP_NAN_BITS

cdef extern from "Python.h":
    bint PyLong_CheckExact(object o)
    bint PyFloat_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyBytes_CheckExact(object o)
    bint PyTuple_CheckExact(object o)
    double PyFloat_AS_DOUBLE(object o)
    char *PyBytes_AS_STRING(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)
    char *PyByteArray_AS_STRING(object o)
    Py_ssize_t PyByteArray_GET_SIZE(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    int PyUnicode_KIND(object o)
    void *PyUnicode_DATA(object o)
    bint PyUnicode_IS_ASCII(object o)
    uint32_t PyUnicode_READ(int kind, const void *data, Py_ssize_t index) noexcept nogil

#: Deepest tuple nesting accepted; deeper keys raise ``RecursionError`` in both backends.
MAX_DEPTH = 256
cdef int _MAX_DEPTH = MAX_DEPTH

cdef double _TWO63 = 9223372036854775808.0


cdef inline uint64_t _fmix(uint64_t z) noexcept nogil:
    z = (z ^ (z >> 30)) * OP_K2
    z = (z ^ (z >> 27)) * OP_K3
    return z ^ (z >> 31)


cdef inline uint64_t _absorb(uint64_t h, uint64_t w) noexcept nogil:
    cdef uint64_t k = w * OP_K1
    k ^= k >> 32
    h = (h ^ k) * OP_K3
    return (h << 27) | (h >> 37)


cdef inline uint64_t _hash_i64(int64_t v) noexcept nogil:
    return _fmix(<uint64_t>v ^ OP_TAG_INT)


cdef uint64_t _hash_bytes(uint64_t seed, const unsigned char *p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = seed, w = 0
    cdef Py_ssize_t i = 0, j
    while i + 8 <= n:
        h = _absorb(h, op_load_le64(p + i))
        i += 8
    if i < n:
        for j in range(n - i):
            w |= (<uint64_t>p[i + j]) << (8 * j)
        h = _absorb(h, w)
    return _fmix(h ^ <uint64_t>n)


cdef inline uint64_t _hash_u64(uint64_t v) noexcept nogil:
    if v < (<uint64_t>1 << 63):
        return _hash_i64(<int64_t>v)
    return _fmix(_absorb(OP_TAG_BIG_POS, v) ^ 1)


cdef uint64_t _hash_big_double(double x) noexcept nogil:
    # |x| >= 2**63 and finite, so x = m * 2**s exactly with a 53-bit m and s >= 11: its
    # magnitude's limbs are q zero limbs, then m << r and the bits of m shifted past 64.
    cdef uint64_t bits, m, hi, h, nlimbs
    cdef int s, q, r, i
    memcpy(&bits, &x, 8)
    m = (bits & ((<uint64_t>1 << 52) - 1)) | (<uint64_t>1 << 52)
    s = <int>((bits >> 52) & 0x7FF) - 1075
    q = s >> 6
    r = s & 63
    h = OP_TAG_BIG_NEG if (bits >> 63) else OP_TAG_BIG_POS
    for i in range(q):
        h = _absorb(h, 0)
    h = _absorb(h, m << r)
    nlimbs = q + 1
    hi = (m >> (64 - r)) if r else 0
    if hi:
        h = _absorb(h, hi)
        nlimbs += 1
    return _fmix(h ^ nlimbs)


cdef inline uint64_t _hash_double(double x) noexcept nogil:
    cdef uint64_t bits
    if x != x:
        return _fmix(OP_NAN_BITS ^ OP_TAG_FLOAT)
    if -_TWO63 <= x < _TWO63:
        # In this range the truncating cast is defined, and exact iff x is integral.
        if <double>(<int64_t>x) == x:
            return _hash_i64(<int64_t>x)
    elif not isinf(x):  # |x| >= 2**63 and finite, hence integral: hash as the big int
        return _hash_big_double(x)
    memcpy(&bits, &x, 8)
    return _fmix(bits ^ OP_TAG_FLOAT)


cdef uint64_t _hash_bigint(object v) except? 0:
    cdef bint neg = v < 0
    mag = -v if neg else v
    cdef Py_ssize_t nlimbs = (mag.bit_length() + 63) >> 6, i
    cdef bytes raw = mag.to_bytes(nlimbs * 8, "little")
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef uint64_t h = OP_TAG_BIG_NEG if neg else OP_TAG_BIG_POS
    for i in range(nlimbs):
        h = _absorb(h, op_load_le64(p + 8 * i))
    return _fmix(h ^ <uint64_t>nlimbs)


cdef uint64_t _hash_int(object v) except? 0:
    cdef int overflow = 0
    cdef long long x = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow:
        return _hash_bigint(v)
    return _hash_i64(x)


cdef inline void _push(uint64_t *h, uint64_t *acc, int *nacc, uint64_t b) noexcept nogil:
    acc[0] |= b << (8 * nacc[0])
    nacc[0] += 1
    if nacc[0] == 8:
        h[0] = _absorb(h[0], acc[0])
        acc[0] = 0
        nacc[0] = 0


cdef uint64_t _hash_str(object s) except? 0:
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef const void *data = PyUnicode_DATA(s)
    cdef int kind = PyUnicode_KIND(s)
    if PyUnicode_IS_ASCII(s):
        return _hash_bytes(OP_TAG_STR, <const unsigned char *>data, n)
    # Encode to UTF-8 on the fly, so that no encoded copy is allocated or cached on the str.
    cdef uint64_t h = OP_TAG_STR, acc = 0, total = 0
    cdef int nacc = 0
    cdef uint32_t c
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if c < 0x80:
            _push(&h, &acc, &nacc, c)
            total += 1
        elif c < 0x800:
            _push(&h, &acc, &nacc, 0xC0 | (c >> 6))
            _push(&h, &acc, &nacc, 0x80 | (c & 0x3F))
            total += 2
        elif c < 0x10000:
            _push(&h, &acc, &nacc, 0xE0 | (c >> 12))
            _push(&h, &acc, &nacc, 0x80 | ((c >> 6) & 0x3F))
            _push(&h, &acc, &nacc, 0x80 | (c & 0x3F))
            total += 3
        else:
            _push(&h, &acc, &nacc, 0xF0 | (c >> 18))
            _push(&h, &acc, &nacc, 0x80 | ((c >> 12) & 0x3F))
            _push(&h, &acc, &nacc, 0x80 | ((c >> 6) & 0x3F))
            _push(&h, &acc, &nacc, 0x80 | (c & 0x3F))
            total += 4
    if nacc:
        h = _absorb(h, acc)
    return _fmix(h ^ total)


cdef uint64_t _hash_tuple(object t, int depth) except? 0:
    if depth >= _MAX_DEPTH:
        raise RecursionError(f"portable_hash: tuple nesting deeper than {_MAX_DEPTH}")
    cdef uint64_t h = OP_TAG_TUPLE
    for item in t:
        h = _absorb(h, _hash(item, depth + 1))
    return _fmix(h ^ <uint64_t>len(t))


cdef uint64_t _hash(object key, int depth) except? 0:
    if PyLong_CheckExact(key):
        return _hash_int(key)
    if PyUnicode_CheckExact(key):
        return _hash_str(key)
    if PyFloat_CheckExact(key):
        return _hash_double(PyFloat_AS_DOUBLE(key))
    if PyBytes_CheckExact(key):
        return _hash_bytes(OP_TAG_BYTES, <const unsigned char *>PyBytes_AS_STRING(key),
                           PyBytes_GET_SIZE(key))
    if PyTuple_CheckExact(key):
        return _hash_tuple(key, depth)
    if key is None:
        return _fmix(OP_TAG_NONE)
    # Subclasses (bool, IntEnum, namedtuple, np.float64, np.str_, ...) and NumPy scalars:
    # hash by the equal builtin value, so that equal keys still hash equal.
    if isinstance(key, int):
        return _hash_int(key)
    if isinstance(key, float):
        return _hash_double(key)
    if isinstance(key, str):
        return _hash_str(key)
    if isinstance(key, bytes):
        return _hash_bytes(OP_TAG_BYTES, <const unsigned char *>PyBytes_AS_STRING(key),
                           PyBytes_GET_SIZE(key))
    if isinstance(key, bytearray):
        return _hash_bytes(OP_TAG_BYTES, <const unsigned char *>PyByteArray_AS_STRING(key),
                           PyByteArray_GET_SIZE(key))
    if isinstance(key, memoryview):
        raw = bytes(key)
        return _hash_bytes(OP_TAG_BYTES, <const unsigned char *>PyBytes_AS_STRING(raw),
                           PyBytes_GET_SIZE(raw))
    if isinstance(key, tuple):
        return _hash_tuple(key, depth)
    if isinstance(key, (np.integer, np.bool_)):
        return _hash_int(int(key))
    if isinstance(key, np.floating):
        return _hash_double(float(key))
    cls = type(key)
    raise TypeError(f"portable_hash: unsupported key type {cls.__module__}.{cls.__qualname__}")


def portable_hash(key):
    """Return the portable 64-bit hash of ``key``: identical in every process and machine.

    Parameters
    ----------
    key : str, bytes, bytearray, memoryview, int, bool, float, None or tuple of these
        NumPy integer, bool and float scalars are hashed as the equal Python number.

    Returns
    -------
    int
        An integer in ``[0, 2**64)``.

    Raises
    ------
    TypeError
        If ``key`` (or an item of a tuple key) has an unsupported type.
    RecursionError
        If tuples are nested deeper than :data:`MAX_DEPTH`.

    Examples
    --------
    >>> portable_hash(1) == portable_hash(1.0) == portable_hash(True)
    True
    >>> portable_hash(float("nan")) == portable_hash(-float("nan"))
    True
    >>> hex(portable_hash(("user", 42)))
    '0xa908c9fe99a7965a'
    """
    return _hash(key, 0)


cdef uint64_t _partition_count(object num_partitions) except 0:
    n = operator.index(num_partitions)
    if n < 1 or n > 2**31 - 1:
        raise ValueError(f"num_partitions must be in [1, 2**31 - 1], got {n}")
    return n


cdef object _typed_array(object keys):
    """Return ``keys`` as a native int64/uint64/float64 array, or as a list of objects."""
    if keys.ndim != 1:
        raise ValueError(f"keys array must be 1-D, got {keys.ndim} dimensions")
    kind, size = keys.dtype.kind, keys.dtype.itemsize
    if kind in "bi" or (kind == "u" and size < 8):
        return keys.astype(np.int64, copy=False)
    if kind == "u":
        return keys.astype(np.uint64, copy=False)
    if kind == "f" and size <= 8:
        return keys.astype(np.float64, copy=False)
    if kind in "fOUS":
        return keys.tolist() if kind in "US" else list(keys)
    raise TypeError(f"unsupported keys array dtype {keys.dtype}")


ctypedef fused number:
    int64_t
    uint64_t
    double


cdef inline uint64_t _hash_number(number v) noexcept nogil:
    if number is int64_t:
        return _hash_i64(v)
    elif number is uint64_t:
        return _hash_u64(v)
    else:
        return _hash_double(v)


cdef void _hash_loop(const number[:] a, uint64_t[::1] out) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(a.shape[0]):
        out[i] = _hash_number(a[i])


cdef void _ids_loop(const number[:] a, int32_t[::1] out, uint64_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(a.shape[0]):
        out[i] = <int32_t>(_hash_number(a[i]) % n)


def hash_array(keys):
    """Return :func:`portable_hash` of each key, as a ``uint64`` array.

    Parameters
    ----------
    keys : numpy.ndarray or iterable
        A 1-D array (integer, bool and float dtypes take the vectorised path; object, str and
        bytes dtypes the per-object path) or any iterable of supported keys.

    Returns
    -------
    numpy.ndarray of uint64
        ``hash_array(keys)[i] == portable_hash(keys[i])``.

    Examples
    --------
    >>> import numpy as np
    >>> a = hash_array(np.array([1.0, 2.5, float("nan")]))
    >>> int(a[0]) == portable_hash(1), int(a[2]) == portable_hash(float("nan"))
    (True, True)
    """
    cdef uint64_t[::1] ov
    cdef const int64_t[:] ai
    cdef const uint64_t[:] au
    cdef const double[:] af
    cdef Py_ssize_t i = 0
    if isinstance(keys, np.ndarray):
        typed = _typed_array(keys)
        if isinstance(typed, np.ndarray):
            out = np.empty(typed.shape[0], dtype=np.uint64)
            ov = out
            if typed.dtype == np.int64:
                ai = typed
                with nogil:
                    _hash_loop(ai, ov)
            elif typed.dtype == np.uint64:
                au = typed
                with nogil:
                    _hash_loop(au, ov)
            else:
                af = typed
                with nogil:
                    _hash_loop(af, ov)
            return out
        keys = typed
    elif not isinstance(keys, (list, tuple)):
        keys = list(keys)
    out = np.empty(len(keys), dtype=np.uint64)
    ov = out
    for key in keys:
        ov[i] = _hash(key, 0)
        i += 1
    return out


def partition_ids(keys, num_partitions):
    """Return ``portable_hash(key) % num_partitions`` for each key, as an ``int32`` array.

    Parameters
    ----------
    keys : numpy.ndarray or iterable
        As for :func:`hash_array`. Integer and float arrays give the same ids as a list of the
        equal Python numbers, without creating Python objects and without the GIL.
    num_partitions : int
        Number of partitions, in ``[1, 2**31 - 1]``.

    Returns
    -------
    numpy.ndarray of int32
        One partition id in ``[0, num_partitions)`` per key.

    Raises
    ------
    ValueError
        If ``num_partitions`` is out of range or a keys array is not 1-D.
    TypeError
        If a key has an unsupported type.

    Examples
    --------
    >>> import numpy as np
    >>> partition_ids([1, 2, 3, "x", None], 8)
    array([0, 0, 6, 5, 5], dtype=int32)
    >>> partition_ids(np.array([1, 2, 3]), 8)
    array([0, 0, 6], dtype=int32)
    """
    cdef uint64_t n = _partition_count(num_partitions)
    cdef int32_t[::1] ov
    cdef const int64_t[:] ai
    cdef const uint64_t[:] au
    cdef const double[:] af
    cdef Py_ssize_t i = 0
    if isinstance(keys, np.ndarray):
        typed = _typed_array(keys)
        if isinstance(typed, np.ndarray):
            out = np.empty(typed.shape[0], dtype=np.int32)
            ov = out
            if typed.dtype == np.int64:
                ai = typed
                with nogil:
                    _ids_loop(ai, ov, n)
            elif typed.dtype == np.uint64:
                au = typed
                with nogil:
                    _ids_loop(au, ov, n)
            else:
                af = typed
                with nogil:
                    _ids_loop(af, ov, n)
            return out
        keys = typed
    elif not isinstance(keys, (list, tuple)):
        keys = list(keys)
    out = np.empty(len(keys), dtype=np.int32)
    ov = out
    for key in keys:
        ov[i] = <int32_t>(_hash(key, 0) % n)
        i += 1
    return out
