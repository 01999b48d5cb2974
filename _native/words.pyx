# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled word counting; ``_native/words_py.py`` is the reference twin.

``WordCounter`` counts the words of UTF-8 text blocks -- the runs of bytes between ASCII
whitespace (space, ``\\t \\n \\v \\f \\r``; a block with a byte ``0x1c``-``0x1f`` is refused) -- in its own hash table keyed by the words' bytes, so
no Python object is made per occurrence, only one ``str`` per distinct word at the end
(:meth:`items`, in order of first occurrence). Splitting UTF-8 bytes at ASCII whitespace gives
the words ``str.split()`` gives on the decoded text exactly when the text holds no other
character Python counts as whitespace; the caller checks that (see
``dataflow.textcount``) and hands such words over one by one with :meth:`add_words`.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy

import numpy as np


cdef inline bint _space(unsigned char c) noexcept nogil:
    return c == 32 or (9 <= c <= 13)


cdef inline uint64_t _hash(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t h = 14695981039346656037ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ p[i]) * 1099511628211ULL
    h ^= h >> 29
    return h


cdef class WordCounter:
    """Counts of distinct words (UTF-8 bytes), in order of first occurrence."""

    cdef bytearray arena
    cdef Py_ssize_t used, count
    cdef object off, length, hashes, counts, slots
    cdef int64_t[::1] off_v, len_v, cnt_v, slot_v
    cdef uint64_t[::1] hash_v

    def __init__(self):
        self.arena = bytearray(1 << 16)
        self.used = 0
        self.count = 0
        self._alloc(1 << 10)

    cdef _alloc(self, Py_ssize_t cap):
        old = self.count
        off = np.zeros(cap, dtype=np.int64)
        length = np.zeros(cap, dtype=np.int64)
        counts = np.zeros(cap, dtype=np.int64)
        h = np.zeros(cap, dtype=np.uint64)
        if old:
            off[:old] = self.off[:old]
            length[:old] = self.length[:old]
            counts[:old] = self.counts[:old]
            h[:old] = self.hashes[:old]
        self.off, self.length, self.counts, self.hashes = off, length, counts, h
        self.off_v, self.len_v, self.cnt_v = off, length, counts
        self.hash_v = h
        # the table has twice as many slots as entries can be: probes stay short
        self.slots = np.full(2 * cap, -1, dtype=np.int64)
        self.slot_v = self.slots
        cdef Py_ssize_t i
        cdef uint64_t mask = <uint64_t>(2 * cap - 1), s
        for i in range(old):
            s = self.hash_v[i] & mask
            while self.slot_v[s] >= 0:
                s = (s + 1) & mask
            self.slot_v[s] = i

    cdef void _add(self, const unsigned char* p, Py_ssize_t n, int64_t times) except *:
        cdef uint64_t h = _hash(p, n)
        cdef uint64_t mask = <uint64_t>(self.slot_v.shape[0] - 1)
        cdef uint64_t s = h & mask
        cdef int64_t e
        cdef char* base
        while True:
            e = self.slot_v[s]
            if e < 0:
                break
            if self.hash_v[e] == h and self.len_v[e] == n:
                base = <char*>self.arena
                if memcmp(base + self.off_v[e], p, n) == 0:
                    self.cnt_v[e] += times
                    return
            s = (s + 1) & mask
        if self.count == self.off_v.shape[0]:
            self._alloc(2 * self.off_v.shape[0])
            self._add(p, n, times)
            return
        while self.used + n > len(self.arena):
            self.arena.extend(bytes(len(self.arena)))
        base = <char*>self.arena
        memcpy(base + self.used, p, n)
        e = self.count
        self.off_v[e] = self.used
        self.len_v[e] = n
        self.hash_v[e] = h
        self.cnt_v[e] = times
        self.slot_v[s] = e
        self.used += n
        self.count += 1

    def add_block(self, bytes block):
        """Count the words of ``block`` (UTF-8 bytes split at ASCII whitespace) and return
        True; or return False, counting nothing, if it holds a byte ``0x1c``-``0x1f`` (which
        ``str.split`` takes for whitespace)."""
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(block)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(block), i = 0, start
        for i in range(n):
            if 0x1c <= p[i] <= 0x1f:
                return False
        i = 0
        while i < n:
            while i < n and _space(p[i]):
                i += 1
            if i >= n:
                break
            start = i
            while i < n and not _space(p[i]):
                i += 1
            self._add(p + start, i - start, 1)
        return True

    def add_words(self, words):
        """Count each ``str`` of ``words`` once."""
        cdef bytes b
        for w in words:
            b = w.encode("utf-8", "surrogatepass")
            self._add(<const unsigned char*>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), 1)

    def __len__(self):
        return self.count

    @property
    def nbytes(self):
        """Memory held, in bytes."""
        return len(self.arena) + self.off_v.shape[0] * 48

    def items(self):
        """``(word, count)`` pairs, words decoded, in order of first occurrence."""
        data = bytes(self.arena[:self.used])
        offs = self.off[:self.count].tolist()
        lens = self.length[:self.count].tolist()
        counts = self.counts[:self.count].tolist()
        return [(data[o:o + m].decode("utf-8", "surrogatepass"), c)
                for o, m, c in zip(offs, lens, counts)]
