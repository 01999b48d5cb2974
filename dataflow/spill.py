"""Reduce-side merging with a memory budget: aggregation and sorting that spill to disk.

:class:`ExternalAggregator` merges ``(key, combiner)`` records in a dict; when the estimated
size of the dict passes the budget it writes the entries, sorted by Python's ``hash`` of the
key, to a run file (lz4-compressed pickled batches) and starts again. At the end the runs and
the in-memory entries are merged with a k-way heap merge, so at most one batch per run and
the entries of one hash value are in memory at once. Python's salted ``hash`` is fine here
because runs never leave the process that wrote them.

A columnar fast path keeps int64 keys with int64/float64 values in NumPy arrays and combines
them with ``_native.shuffle.hash_aggregate`` when the combine function is ``add``, ``min`` or
``max``; if the arrays outgrow the budget or a batch does not fit the types, the data moves to
the dict path. :class:`ExternalSorter` does the same for sorting (``sortByKey``).

Examples
--------
>>> import operator, tempfile
>>> from dataflow.shuffle import Aggregator
>>> agg = ExternalAggregator(Aggregator.for_reduce(operator.add), budget=1, spill_dir=tempfile.mkdtemp())
>>> agg.insert_combiners([("a", 1), ("b", 2), ("a", 3)])
>>> sorted(agg.items()), agg.spill_files > 0
([('a', 4), ('b', 2)], True)
>>> s = ExternalSorter(lambda k: k, ascending=False, budget=1, spill_dir=tempfile.mkdtemp())
>>> s.insert_all([(2, "x"), (5, "y"), (1, "z")])
>>> list(s.items())
[(5, 'y'), (2, 'x'), (1, 'z')]
"""
from __future__ import annotations

import heapq
import operator
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby, islice
from typing import Any

import lz4.block
import numpy as np

from _native import load as _load_kernel

_kernels = _load_kernel("shuffle")
_columnar = _load_kernel("columnar")

#: Records per batch in a run file.
RUN_BATCH = 2048
#: Target in-memory bytes of one run batch.
RUN_BYTES = 32 * 1024
#: Runs merged into one when this many exist (bounds the final merge's memory).
MAX_RUNS = 32
#: How often (in inserts) the size estimate is checked.
CHECK_EVERY = 512
_INT64_LIMIT = 2 ** 63


def estimate_entry_size(sample: list) -> float:
    """Rough in-memory bytes per entry, from the pickled size of a sample plus object overhead."""
    if not sample:
        return 64.0
    return 3.0 * len(pickle.dumps(sample, protocol=pickle.HIGHEST_PROTOCOL)) / len(sample) + 64.0


def _write_run(path: str, items: Iterable, batch_records: int = RUN_BATCH) -> None:
    with open(path, "wb") as f:
        it = iter(items)
        while True:
            batch = list(islice(it, batch_records))
            if not batch:
                break
            blob = lz4.block.compress(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
            f.write(len(blob).to_bytes(8, "little"))
            f.write(blob)


def _read_run(path: str) -> Iterator:
    try:
        with open(path, "rb") as f:
            while True:
                head = f.read(8)
                if not head:
                    break
                yield from pickle.loads(lz4.block.decompress(f.read(int.from_bytes(head, "little"))))
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class _Spiller:
    """Shared budget accounting and run-file bookkeeping."""

    def __init__(self, budget: int, spill_dir: str) -> None:
        self.budget = max(1, int(budget))
        self.spill_dir = spill_dir
        self.runs: list[str] = []
        self.spill_files = 0
        self.spilled_records = 0
        self._entry_size = 0.0
        self._since_check = 0

    def _over_budget(self, count: int, sample_source: Callable[[], list]) -> bool:
        self._since_check += 1
        if self._since_check < CHECK_EVERY and self._entry_size:
            return count * self._entry_size > self.budget
        self._since_check = 0
        self._entry_size = estimate_entry_size(sample_source())
        return count * self._entry_size > self.budget

    def _new_run(self, items: Iterable, count: int) -> None:
        os.makedirs(self.spill_dir, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="run-", suffix=".spill", dir=self.spill_dir)
        os.close(fd)
        # the merge holds one batch per run: keep batches near RUN_BYTES so memory stays bounded
        batch = max(16, min(RUN_BATCH, int(RUN_BYTES / max(self._entry_size, 1.0))))
        _write_run(path, items, batch)
        self.runs.append(path)
        self.spill_files += 1
        self.spilled_records += count
        if len(self.runs) >= MAX_RUNS:
            # merge the runs into one so the final merge never holds more than MAX_RUNS batches
            runs, self.runs = self.runs, []
            fd, merged = tempfile.mkstemp(prefix="run-", suffix=".spill", dir=self.spill_dir)
            os.close(fd)
            _write_run(merged, self._merge([_read_run(p) for p in runs]), batch)
            self.runs.append(merged)

    def _merge(self, streams: list) -> Iterator:
        raise NotImplementedError


class ExternalAggregator(_Spiller):
    """Merge ``(key, value)`` or ``(key, combiner)`` records within a memory budget."""

    def __init__(self, aggregator: Any, budget: int, spill_dir: str) -> None:
        super().__init__(budget, spill_dir)
        self.agg = aggregator
        self.map: dict = {}
        self._cols: list[tuple[np.ndarray, np.ndarray]] = []
        self._col_len = 0
        self._col_bound = 0  # sum over batches of len * max|v|: a bound on any int64 sum

    # -- columnar path -------------------------------------------------------------------
    def insert_columns(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Insert combiners as columns; falls back to the dict path when it must."""
        op = self.agg.op
        if op is None or self.map or self.runs:
            self.insert_combiners(zip(keys.tolist(), values.tolist()))
            return
        if len(keys) == 0:
            return
        if values.dtype == np.int64 and op == "add":
            self._col_bound += len(values) * max(int(values.max()), -int(values.min()))
            if self._col_bound >= _INT64_LIMIT:
                self._to_dict()
                self.insert_combiners(zip(keys.tolist(), values.tolist()))
                return
        if self._cols and self._cols[0][1].dtype != values.dtype:
            self._to_dict()
            self.insert_combiners(zip(keys.tolist(), values.tolist()))
            return
        self._cols.append((keys, values))
        self._col_len += len(keys)
        if self._col_len * 16 > self.budget:
            self._compact()
            if self._col_len * 32 > self.budget:  # would re-compact at once: go to the dict
                self._to_dict()

    def columns(self) -> tuple[np.ndarray, np.ndarray] | None:
        """All merged entries as key/value arrays when they are all still columns, else None
        (then :meth:`items` gives them); consumes the aggregator when it returns arrays."""
        if not self._cols or self.map or self.runs:
            return None
        self._compact()
        (k, v), self._cols = self._cols[0], []
        return k, v

    def _compact(self) -> None:
        if len(self._cols) > 1:
            k = np.concatenate([c[0] for c in self._cols])
            v = np.concatenate([c[1] for c in self._cols])
        else:
            k, v = self._cols[0]
        k, v = _kernels.hash_aggregate(k, v, self.agg.op)
        self._cols = [(k, v)]
        self._col_len = len(k)

    def _to_dict(self) -> None:
        cols, self._cols, self._col_len = self._cols, [], 0
        for k, v in cols:
            self.insert_combiners(zip(k.tolist(), v.tolist()))

    # -- dict path -----------------------------------------------------------------------
    def insert_combiners(self, records: Iterable) -> None:
        """Insert ``(key, combiner)`` records, merging equal keys with ``merge_combiners``."""
        self._insert(records, self.agg.merge_combiners, None)

    def insert_values(self, records: Iterable) -> None:
        """Insert ``(key, value)`` records, combining with ``create_combiner``/``merge_value``."""
        self._insert(records, self.agg.merge_value, self.agg.create_combiner)

    def _insert(self, records: Iterable, merge: Callable, create: Callable | None) -> None:
        if self._cols:
            self._to_dict()
        it = iter(records)
        add = merge is operator.add
        while True:
            # the merge loop runs in C over a batch; the budget is checked between batches
            batch = list(islice(it, CHECK_EVERY))
            if not batch:
                return
            m = self.map
            used = _columnar.combine_into(m, batch, create, merge, add)
            for k, v in islice(batch, used, None):  # pairs that are not tuples
                if k in m:
                    m[k] = merge(m[k], v)
                else:
                    m[k] = v if create is None else create(v)
            self._since_check += 31  # re-estimate the entry size every 16 batches
            if self._over_budget(len(m), lambda m=m: list(islice(m.items(), 32))):
                self._spill()

    def _spill(self) -> None:
        items = sorted(self.map.items(), key=lambda kv: hash(kv[0]))
        self.map = {}
        self._new_run(items, len(items))

    def items(self) -> Iterator[tuple]:
        """All merged ``(key, combiner)`` entries; consumes the aggregator."""
        # plain iterators where possible: a generator here costs a frame switch per entry
        if self._cols:
            self._compact()
            k, v = self._cols[0]
            self._cols = []
            return zip(k.tolist(), v.tolist())
        if not self.runs:
            m, self.map = self.map, {}
            return iter(m.items())
        mem = sorted(self.map.items(), key=lambda kv: hash(kv[0]))
        self.map = {}
        streams = [_read_run(p) for p in self.runs] + [iter(mem)]
        self.runs = []
        return self._merge(streams)

    def _merge(self, streams: list) -> Iterator:
        """Merge hash-sorted streams, combining equal keys; output is hash-sorted too."""
        merge = self.agg.merge_combiners
        for _, group in groupby(heapq.merge(*streams, key=lambda kv: hash(kv[0])),
                                key=lambda kv: hash(kv[0])):
            merged: dict = {}
            for k, c in group:
                merged[k] = merge(merged[k], c) if k in merged else c
            yield from merged.items()


class ExternalSorter(_Spiller):
    """Sort records by ``keyfunc(record[0])`` within a memory budget."""

    def __init__(self, keyfunc: Callable[[Any], Any], ascending: bool, budget: int,
                 spill_dir: str) -> None:
        super().__init__(budget, spill_dir)
        self.keyfunc = keyfunc
        self.ascending = ascending
        self.buf: list = []

    def _sortkey(self) -> Callable[[Any], Any]:
        kf = self.keyfunc
        return lambda kv: kf(kv[0])

    def _sorted(self, records: list) -> list:
        if (self.ascending and self.keyfunc is identity and records
                and all(type(r[0]) is int for r in records)):
            try:
                keys = np.fromiter((r[0] for r in records), dtype=np.int64, count=len(records))
            except OverflowError:
                keys = None
            if keys is not None:
                order = _kernels.argsort(keys)
                return [records[i] for i in order.tolist()]
        return sorted(records, key=self._sortkey(), reverse=not self.ascending)

    def insert_all(self, records: Iterable) -> None:
        buf = self.buf
        for r in records:
            buf.append(r)
            if self._over_budget(len(buf), lambda buf=buf: buf[-16:]):
                self._new_run(self._sorted(buf), len(buf))
                buf = self.buf = []

    def items(self) -> Iterator:
        """All records in order; consumes the sorter."""
        mem = self._sorted(self.buf)
        self.buf = []
        if not self.runs:
            yield from mem
            return
        streams = [_read_run(p) for p in self.runs] + [iter(mem)]
        self.runs = []
        yield from self._merge(streams)

    def _merge(self, streams: list) -> Iterator:
        return heapq.merge(*streams, key=self._sortkey(), reverse=not self.ascending)


def identity(x: Any) -> Any:
    return x
