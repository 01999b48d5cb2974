"""Pure-Python/NumPy twin of :mod:`_native.hashing`: the executable reference of the portable hash.

This module is responsible for giving exactly the same results as the compiled kernels, in
plain Python (object keys) and vectorised NumPy (int64/uint64/float64 arrays). It is what
:func:`_native.load` returns when the compiled module is missing or ``OFFERPOOL_PURE_KERNELS``
is set, and what the property tests compare the compiled module against. The algorithm
itself is specified in the docstring of ``_native/hashing.pyx``; the scalar functions below
are written to be read next to that specification. Speed is the compiled module's job.

Examples
--------
>>> from _native import hashing_py as h
>>> h.portable_hash(1) == h.portable_hash(1.0) == h.portable_hash(True)
True
>>> h.partition_ids(["a", "b", "c", "d"], 3)
array([2, 0, 2, 0], dtype=int32)
"""
from __future__ import annotations

import operator
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["portable_hash", "partition_ids", "hash_array", "MAX_DEPTH"]

#: Deepest tuple nesting accepted; deeper keys raise ``RecursionError`` in both backends.
MAX_DEPTH = 256

_M = (1 << 64) - 1
_K1 = 0x9E3779B97F4A7C15
_K2 = 0xBF58476D1CE4E5B9
_K3 = 0x94D049BB133111EB
_INT64_MIN = -(1 << 63)
_INT64_END = 1 << 63


def _tag(name: bytes) -> int:
    return int.from_bytes(name, "little")


_TAG_INT = _tag(b"op.int..")
_TAG_BIG_POS = _tag(b"op.big.+")
_TAG_BIG_NEG = _tag(b"op.big.-")
_TAG_FLOAT = _tag(b"op.float")
_TAG_STR = _tag(b"op.str..")
_TAG_BYTES = _tag(b"op.bytes")
_TAG_TUPLE = _tag(b"op.tuple")
_TAG_NONE = _tag(b"op.none.")
_CANONICAL_NAN_BITS = 0x7FF8000000000000
_DOUBLE = struct.Struct("<d")


def _fmix(z: int) -> int:
    z = ((z ^ (z >> 30)) * _K2) & _M
    z = ((z ^ (z >> 27)) * _K3) & _M
    return z ^ (z >> 31)


def _absorb(h: int, w: int) -> int:
    k = (w * _K1) & _M
    k ^= k >> 32
    h = ((h ^ k) * _K3) & _M
    return ((h << 27) & _M) | (h >> 37)


def _hash_words(seed: int, data: bytes) -> int:
    h = seed
    n = len(data)
    full = n - n % 8
    for w in struct.unpack_from(f"<{full // 8}Q", data):
        h = _absorb(h, w)
    if full < n:
        h = _absorb(h, int.from_bytes(data[full:], "little"))
    return _fmix(h ^ n)


def _hash_int(v: int) -> int:
    if _INT64_MIN <= v < _INT64_END:
        return _fmix((v & _M) ^ _TAG_INT)
    mag = -v if v < 0 else v
    h = _TAG_BIG_NEG if v < 0 else _TAG_BIG_POS
    nlimbs = (mag.bit_length() + 63) >> 6
    for i in range(nlimbs):
        h = _absorb(h, (mag >> (64 * i)) & _M)
    return _fmix(h ^ nlimbs)


_NAN_HASH = _fmix(_CANONICAL_NAN_BITS ^ _TAG_FLOAT)


def _hash_float(x: float) -> int:
    if x != x:
        return _NAN_HASH
    if x.is_integer():
        return _hash_int(int(x))
    (bits,) = struct.unpack("<Q", _DOUBLE.pack(x))
    return _fmix(bits ^ _TAG_FLOAT)


def _hash(key: Any, depth: int) -> int:
    cls = type(key)
    if cls is int or cls is bool:
        return _hash_int(int(key))
    if cls is str:
        return _hash_words(_TAG_STR, key.encode("utf-8", "surrogatepass"))
    if cls is float:
        return _hash_float(key)
    if cls is bytes:
        return _hash_words(_TAG_BYTES, key)
    if cls is tuple:
        return _hash_tuple(key, depth)
    if key is None:
        return _fmix(_TAG_NONE)
    # Subclasses (IntEnum, namedtuple, np.float64, np.str_, ...) and NumPy scalars: hash
    # by the equal builtin value, so that equal keys still hash equal.
    if isinstance(key, int):
        return _hash_int(int(key))
    if isinstance(key, float):
        return _hash_float(float(key))
    if isinstance(key, str):
        return _hash_words(_TAG_STR, str.encode(key, "utf-8", "surrogatepass"))
    if isinstance(key, (bytes, bytearray, memoryview)):
        return _hash_words(_TAG_BYTES, bytes(key))
    if isinstance(key, tuple):
        return _hash_tuple(key, depth)
    if isinstance(key, (np.integer, np.bool_)):
        return _hash_int(int(key))
    if isinstance(key, np.floating):
        return _hash_float(float(key))
    raise TypeError(f"portable_hash: unsupported key type {cls.__module__}.{cls.__qualname__}")


def _hash_tuple(key: tuple[Any, ...], depth: int) -> int:
    if depth >= MAX_DEPTH:
        raise RecursionError(f"portable_hash: tuple nesting deeper than {MAX_DEPTH}")
    h = _TAG_TUPLE
    for item in key:
        h = _absorb(h, _hash(item, depth + 1))
    return _fmix(h ^ len(key))


def portable_hash(key: Any) -> int:
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


def _partition_count(num_partitions: int) -> int:
    n = operator.index(num_partitions)
    if n < 1 or n > 2**31 - 1:
        raise ValueError(f"num_partitions must be in [1, 2**31 - 1], got {n}")
    return n


def _fmix_np(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z ^= z >> np.uint64(30)
    z *= np.uint64(_K2)
    z ^= z >> np.uint64(27)
    z *= np.uint64(_K3)
    z ^= z >> np.uint64(31)
    return z


def _absorb_np(h: npt.NDArray[np.uint64], w: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    k = w * np.uint64(_K1)
    k ^= k >> np.uint64(32)
    h = (h ^ k) * np.uint64(_K3)
    return (h << np.uint64(27)) | (h >> np.uint64(37))


def _hash_i64_np(a: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    return _fmix_np(a.view(np.uint64) ^ np.uint64(_TAG_INT))


def _hash_u64_np(a: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    out = _fmix_np(a ^ np.uint64(_TAG_INT))
    big = a >= np.uint64(_INT64_END)
    if big.any():
        limb = a[big]
        h = _absorb_np(np.full(limb.shape, _TAG_BIG_POS, dtype=np.uint64), limb)
        out[big] = _fmix_np(h ^ np.uint64(1))
    return out


def _hash_f64_np(a: npt.NDArray[np.float64]) -> npt.NDArray[np.uint64]:
    a = np.ascontiguousarray(a)
    out = _fmix_np(a.view(np.uint64) ^ np.uint64(_TAG_FLOAT))
    with np.errstate(invalid="ignore"):
        small = (a >= -(2.0**63)) & (a < 2.0**63)
        integral = small & (a == np.floor(a))
    out[integral] = _hash_i64_np(a[integral].astype(np.int64))
    out[np.isnan(a)] = _NAN_HASH
    # Integral floats beyond int64 are rare; the scalar path gives their big-int hash.
    for i in np.flatnonzero(np.isfinite(a) & ~small):
        out[i] = _hash_float(float(a[i]))
    return out


def _typed_array(keys: np.ndarray) -> np.ndarray | list[Any]:
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


def hash_array(keys: np.ndarray | Iterable[Any]) -> npt.NDArray[np.uint64]:
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
    if isinstance(keys, np.ndarray):
        typed = _typed_array(keys)
        if isinstance(typed, np.ndarray):
            if typed.dtype == np.int64:
                return _hash_i64_np(typed)
            if typed.dtype == np.uint64:
                return _hash_u64_np(typed)
            return _hash_f64_np(typed)
        keys = typed
    return np.fromiter((_hash(k, 0) for k in keys), dtype=np.uint64)


def partition_ids(keys: np.ndarray | Iterable[Any], num_partitions: int) -> npt.NDArray[np.int32]:
    """Return ``portable_hash(key) % num_partitions`` for each key, as an ``int32`` array.

    Parameters
    ----------
    keys : numpy.ndarray or iterable
        As for :func:`hash_array`. Integer and float arrays give the same ids as a list of the
        equal Python numbers.
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
    n = _partition_count(num_partitions)
    return (hash_array(keys) % np.uint64(n)).astype(np.int32)

