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
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcmp, memcpy, memset


cdef struct Entry:
    # one cache line per lookup: the hash is checked before the word's bytes are compared
    uint64_t hash
    int64_t count
    int64_t off
    int64_t length


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

    cdef unsigned char* arena
    cdef Py_ssize_t arena_cap, used, count, cap
    cdef Entry* entries
    cdef int64_t* slots  # entry index + 1; 0 is an empty slot
    cdef uint64_t mask

    def __cinit__(self):
        self.arena_cap = 1 << 16
        self.arena = <unsigned char*>PyMem_Malloc(self.arena_cap)
        self.cap = 1 << 10
        self.entries = <Entry*>PyMem_Malloc(self.cap * sizeof(Entry))
        self.slots = <int64_t*>PyMem_Malloc(2 * self.cap * sizeof(int64_t))
        if self.arena == NULL or self.entries == NULL or self.slots == NULL:
            raise MemoryError()
        memset(self.slots, 0, 2 * self.cap * sizeof(int64_t))
        self.mask = 2 * self.cap - 1
        self.used = 0
        self.count = 0

    def __dealloc__(self):
        PyMem_Free(self.arena)
        PyMem_Free(self.entries)
        PyMem_Free(self.slots)

    cdef int _grow(self) except -1:
        cdef Py_ssize_t cap = 2 * self.cap, i
        cdef Entry* e = <Entry*>PyMem_Realloc(self.entries, cap * sizeof(Entry))
        if e == NULL:
            raise MemoryError()
        self.entries = e
        cdef int64_t* slots = <int64_t*>PyMem_Malloc(2 * cap * sizeof(int64_t))
        if slots == NULL:
            raise MemoryError()
        memset(slots, 0, 2 * cap * sizeof(int64_t))
        PyMem_Free(self.slots)
        self.slots = slots
        self.cap = cap
        # twice as many slots as entries can be: probes stay short
        self.mask = 2 * cap - 1
        cdef uint64_t s
        for i in range(self.count):
            s = self.entries[i].hash & self.mask
            while self.slots[s]:
                s = (s + 1) & self.mask
            self.slots[s] = i + 1
        return 0

    cdef int _add(self, const unsigned char* p, Py_ssize_t n, int64_t times) except -1:
        cdef uint64_t h = _hash(p, n)
        cdef uint64_t s = h & self.mask
        cdef int64_t i
        cdef Entry* e
        cdef unsigned char* a
        while True:
            i = self.slots[s]
            if i == 0:
                break
            e = &self.entries[i - 1]
            if e.hash == h and e.length == n and memcmp(self.arena + e.off, p, n) == 0:
                e.count += times
                return 0
            s = (s + 1) & self.mask
        if self.count == self.cap:
            self._grow()
            return self._add(p, n, times)
        if self.used + n > self.arena_cap:
            while self.used + n > self.arena_cap:
                self.arena_cap *= 2
            a = <unsigned char*>PyMem_Realloc(self.arena, self.arena_cap)
            if a == NULL:
                raise MemoryError()
            self.arena = a
        memcpy(self.arena + self.used, p, n)
        e = &self.entries[self.count]
        e.hash = h
        e.count = times
        e.off = self.used
        e.length = n
        self.count += 1
        self.slots[s] = self.count
        self.used += n
        return 0

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
        return self.arena_cap + self.cap * (sizeof(Entry) + 2 * sizeof(int64_t))

    def items(self):
        """``(word, count)`` pairs, words decoded, in order of first occurrence."""
        cdef Py_ssize_t i
        cdef Entry* e
        out = []
        for i in range(self.count):
            e = &self.entries[i]
            out.append(((<char*>self.arena)[e.off:e.off + e.length].decode("utf-8", "surrogatepass"),
                        e.count))
        return out
