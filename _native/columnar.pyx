# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled grouping and join kernels over int64 key columns; ``_native/columnar_py.py`` is the
reference twin.

* ``group_index(keys)``: groups in order of first occurrence, each group's record indices in
  arrival order -- ``(starts, order)`` with ``order[starts[g]:starts[g + 1]]`` the records of
  group ``g``. One pass with an open-addressing hash table, one counting pass.
* ``join_index(left, right)``: every pair ``(i, j)`` with ``left[i] == right[j]``, ordered by
  ``i`` then ``j`` -- ``(li, ri)``. A hash table over the right keys, two passes over the left.
* ``pair_columns(records)``: a list of plain ``(int, int | float)`` tuples as two arrays (keys
  int64, values int64 or float64), or None when any record does not fit; one pass in C
  instead of Python loops over the list.
* ``combine_into(combined, records, create, merge, add)``: the map-side combine / reduce-side
  merge loop of ``combineByKey`` over a list of pairs into a dict, in C.
* ``count_into(index, records, start, sums)``: the same for ``add`` over exact int values, with
  the sums in an int64 array (one dict operation per record, no int objects).
"""
import numpy as np
from libc.stdint cimport int64_t, uint64_t


cdef inline uint64_t _mix(uint64_t x) noexcept nogil:
    x ^= x >> 33
    x *= 0xff51afd7ed558ccdULL
    x ^= x >> 33
    x *= 0xc4ceb9fe1a85ec53ULL
    x ^= x >> 33
    return x


cdef Py_ssize_t _table_size(Py_ssize_t n):
    cdef Py_ssize_t size = 16
    while size < 2 * n:
        size *= 2
    return size


cdef Py_ssize_t _assign(const int64_t[::1] keys, int64_t[::1] table, int64_t[::1] group_keys,
                        int64_t[::1] gids, int64_t[::1] counts) noexcept nogil:
    """gids[i] = group of keys[i] (numbered by first occurrence); returns the group count."""
    cdef Py_ssize_t n = keys.shape[0], i, groups = 0
    cdef uint64_t mask = <uint64_t>table.shape[0] - 1, h
    cdef int64_t k, slot
    for i in range(n):
        k = keys[i]
        h = _mix(<uint64_t>k) & mask
        while True:
            slot = table[h]
            if slot == 0:
                table[h] = groups + 1
                group_keys[groups] = k
                gids[i] = groups
                counts[groups] = 1
                groups += 1
                break
            if group_keys[slot - 1] == k:
                gids[i] = slot - 1
                counts[slot - 1] += 1
                break
            h = (h + 1) & mask
    return groups


cdef void _scatter(const int64_t[::1] gids, int64_t[::1] starts, int64_t[::1] order,
                   Py_ssize_t groups) noexcept nogil:
    cdef Py_ssize_t n = gids.shape[0], i, g
    cdef int64_t acc = 0, c
    for g in range(groups + 1):  # counts (in starts[1:]) -> exclusive offsets
        c = starts[g]
        starts[g] = acc
        acc += c
    for i in range(n):
        g = gids[i]
        order[starts[g]] = i
        starts[g] += 1
    for g in range(groups, 0, -1):  # shifted by one group: restore the start offsets
        starts[g] = starts[g - 1]
    starts[0] = 0


def _group(keys):
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    cdef Py_ssize_t n = keys.shape[0], groups
    table = np.zeros(_table_size(n), dtype=np.int64)
    group_keys = np.empty(n, dtype=np.int64)
    gids = np.empty(n, dtype=np.int64)
    counts = np.zeros(n + 1, dtype=np.int64)
    cdef const int64_t[::1] k = keys
    cdef int64_t[::1] t = table, gk = group_keys, gi = gids, c = counts
    with nogil:
        groups = _assign(k, t, gk, gi, c)
    starts = np.zeros(groups + 1, dtype=np.int64)
    starts[:groups] = counts[:groups]
    order = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] s = starts, o = order
    with nogil:
        _scatter(gi, s, o, groups)
    return starts, order, table, group_keys[:groups]


def group_index(keys):
    """``(starts, order)``: groups of equal keys in first-occurrence order, stable within."""
    starts, order, _, _ = _group(keys)
    return starts, order


cdef inline int64_t _lookup(int64_t k, const int64_t[::1] table,
                            const int64_t[::1] group_keys) noexcept nogil:
    cdef uint64_t mask = <uint64_t>table.shape[0] - 1
    cdef uint64_t h = _mix(<uint64_t>k) & mask
    cdef int64_t slot
    while True:
        slot = table[h]
        if slot == 0:
            return -1
        if group_keys[slot - 1] == k:
            return slot - 1
        h = (h + 1) & mask


def join_index(left, right):
    """``(li, ri)``: all pairs of equal keys, by left index then right index."""
    left = np.ascontiguousarray(left, dtype=np.int64)
    starts, order, table, group_keys = _group(right)
    cdef Py_ssize_t n = left.shape[0], i, j, t = 0
    cdef int64_t g, total = 0
    cdef const int64_t[::1] lk = left, tb = table, gk = group_keys, st = starts, od = order
    matches = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] m = matches
    with nogil:
        for i in range(n):
            g = _lookup(lk[i], tb, gk)
            m[i] = g
            if g >= 0:
                total += st[g + 1] - st[g]
    li = np.empty(total, dtype=np.int64)
    ri = np.empty(total, dtype=np.int64)
    cdef int64_t[::1] lo = li, ro = ri
    with nogil:
        for i in range(n):
            g = m[i]
            if g >= 0:
                for j in range(st[g], st[g + 1]):
                    lo[t] = i
                    ro[t] = od[j]
                    t += 1
    return li, ri


from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.long cimport PyLong_CheckExact
from cpython.tuple cimport PyTuple_CheckExact, PyTuple_GET_ITEM, PyTuple_GET_SIZE


cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object, int *) except? -1


def pair_columns(list records):
    """``(keys, values)`` arrays for a list of exact ``(int, int)`` / ``(int, float)`` tuples
    (one value type for the whole list, ints within int64), else None."""
    cdef Py_ssize_t n = PyList_GET_SIZE(records), i
    cdef int overflow = 0, floats = -1
    cdef object rec, k, v
    keys = np.empty(n, dtype=np.int64)
    ivals = np.empty(n, dtype=np.int64)
    fvals = np.empty(n, dtype=np.float64)
    cdef int64_t[::1] ko = keys, io = ivals
    cdef double[::1] fo = fvals
    for i in range(n):
        rec = <object>PyList_GET_ITEM(records, i)
        if not PyTuple_CheckExact(rec) or PyTuple_GET_SIZE(rec) != 2:
            return None
        k = <object>PyTuple_GET_ITEM(rec, 0)
        v = <object>PyTuple_GET_ITEM(rec, 1)
        if not PyLong_CheckExact(k):
            return None
        ko[i] = PyLong_AsLongLongAndOverflow(k, &overflow)
        if overflow:
            return None
        if floats == -1:
            floats = 1 if PyFloat_CheckExact(v) else 0
        if floats:
            if not PyFloat_CheckExact(v):
                return None
            fo[i] = PyFloat_AS_DOUBLE(v)
        else:
            if not PyLong_CheckExact(v):
                return None
            io[i] = PyLong_AsLongLongAndOverflow(v, &overflow)
            if overflow:
                return None
    return keys, (fvals if floats == 1 else ivals)


from cpython.object cimport PyObject


cdef extern from "Python.h":
    PyObject* PyDict_GetItemWithError(object, object) except? NULL


def combine_into(dict combined, list records, object create, object merge, bint add):
    """Merge ``(key, value)`` tuples into ``combined`` in order: a new key gets
    ``create(value)`` (the value itself when ``create`` is None), a known one
    ``merge(current, value)`` (``current + value`` when ``add``). Returns how many records were
    consumed: it stops before the first record that is not an exact tuple of two."""
    cdef Py_ssize_t n = PyList_GET_SIZE(records), i
    cdef PyObject* cur
    cdef object rec, k, v
    for i in range(n):
        rec = <object>PyList_GET_ITEM(records, i)
        if not PyTuple_CheckExact(rec) or PyTuple_GET_SIZE(rec) != 2:
            return i
        k = <object>PyTuple_GET_ITEM(rec, 0)
        v = <object>PyTuple_GET_ITEM(rec, 1)
        cur = PyDict_GetItemWithError(combined, k)
        if cur == NULL:
            combined[k] = v if create is None else create(v)
        elif add:
            combined[k] = <object>cur + v
        else:
            combined[k] = merge(<object>cur, v)
    return n


cdef extern from "Python.h":
    PyObject* PyDict_SetDefault(object, object, object) except NULL

cdef extern from *:
    bint __builtin_add_overflow(int64_t, int64_t, int64_t *) nogil


def count_into(dict index, list records, Py_ssize_t start, int64_t[::1] sums):
    """``reduceByKey(add)`` of ``(key, int)`` tuples from ``records[start:]``: ``index`` maps
    each key to its slot in ``sums`` (slots in first-occurrence order). Returns how far it
    got: it stops before a record that is not an exact tuple of two with an exact int value,
    whose sum would leave int64, or that needs a slot when ``sums`` is full."""
    cdef Py_ssize_t n = PyList_GET_SIZE(records), i, slot, used = len(index)
    cdef Py_ssize_t cap = sums.shape[0]
    cdef int overflow = 0
    cdef long long v
    cdef int64_t total
    cdef object rec, k, fresh, val
    cdef PyObject* got
    for i in range(start, n):
        rec = <object>PyList_GET_ITEM(records, i)
        if not PyTuple_CheckExact(rec) or PyTuple_GET_SIZE(rec) != 2:
            return i
        val = <object>PyTuple_GET_ITEM(rec, 1)
        if not PyLong_CheckExact(val):
            return i
        v = PyLong_AsLongLongAndOverflow(val, &overflow)
        if overflow:
            return i
        k = <object>PyTuple_GET_ITEM(rec, 0)
        if used == cap:
            got = PyDict_GetItemWithError(index, k)
            if got == NULL:
                return i  # a new key and no room: the caller grows ``sums``
        else:
            fresh = used
            got = PyDict_SetDefault(index, k, fresh)
        slot = <Py_ssize_t>(<object>got)
        if slot == used:
            sums[slot] = v
            used += 1
        else:
            if __builtin_add_overflow(sums[slot], <int64_t>v, &total):
                return i
            sums[slot] = total
    return n
