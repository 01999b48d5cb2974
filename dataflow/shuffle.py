"""Shuffle: map-side partitioning and combining, bucket files on local disk, reduce-side reads.

A map task hands its records to :func:`write_map_output`. Records are partitioned with the
shuffle's partitioner and, when the shuffle has an aggregator, combined map-side first. Pairs of
plain ints (keys) and ints/floats (values) are combined in columnar batches by the
``_native.shuffle`` kernels when the combine function is ``add``/``min``/``max``; anything else
goes through a dict, merged by ``_native.columnar.combine_into`` (``count_into`` for ``add``
over ints). A columnar partition (:mod:`dataflow.batches`) hands its key/value arrays to those
kernels directly, and ``(w, c)`` pairs with an int ``c`` are counted per key
(:func:`_write_const_counts`; words of a text file on its bytes, :mod:`dataflow.words`).
Without an aggregator (``groupByKey``, ``sortByKey``, ``partitionBy``, ``join``)
chunks of such pairs still travel as columns when the partitioner can place a key column at
once (:meth:`~dataflow.partitioner.Partitioner.ids`), for :mod:`dataflow.columnar` to sort,
group or join on the reduce side. Each bucket becomes one file of lz4-compressed frames (pickled record
batches, or NumPy key/value columns) under ``<work>/shuffle/<shuffle>/<map>.<attempt>/``; the
directory is written under a temporary name and renamed, so a reader never sees half an output.

Reducers read through a :class:`BlockFetcher` (how to get the bytes of one map output's bucket)
wrapped by :class:`ShuffleReader` (decoding frames). :class:`LocalBlockFetcher` reads the local
disk; a remote fetch implements the same ``open`` method. Merging on the reduce side is
:mod:`dataflow.spill`'s job.

Examples
--------
>>> import operator
>>> agg = Aggregator.for_reduce(operator.add)
>>> agg.op, agg.merge_value(1, 2)
('add', 3)
>>> frames = list(decode_frames(encode_frame([("a", 1)]) + encode_columns([1, 2], [3, 4])))
>>> frames[0], [a.tolist() for a in frames[1]]
([('a', 1)], [[1, 2], [3, 4]])
"""
from __future__ import annotations

import io
import itertools
import operator
import os
import pickle
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any, BinaryIO

import lz4.block
import numpy as np

from _native import load as _load_kernel

from .errors import FetchFailedError, NotPairError
from .partitioner import HashPartitioner, Partitioner, partition_ids, partition_ids_any

_kernels = _load_kernel("shuffle")
_columnar = _load_kernel("columnar")

FRAME_RECORDS = 1024
COLUMN_CHUNK = 65536
_OPS = {operator.add: "add", min: "min", max: "max"}
_INT64_LIMIT = 2 ** 63
_OBJ, _COL = b"O", b"C"


@dataclass(frozen=True)
class Aggregator:
    """How values of one key become a combiner (PySpark's ``combineByKey`` triple).

    ``op`` names a built-in combine (``"add"``, ``"min"``, ``"max"``) that the columnar kernels
    can run; ``None`` means only the Python functions may be used.
    """

    create_combiner: Callable[[Any], Any]
    merge_value: Callable[[Any, Any], Any]
    merge_combiners: Callable[[Any, Any], Any]
    op: str | None = None

    @staticmethod
    def for_reduce(func: Callable[[Any, Any], Any]) -> Aggregator:
        """The aggregator of ``reduceByKey(func)``."""
        try:
            op = _OPS.get(func)
        except TypeError:
            op = None
        if op is None:
            from .vectorize import is_add
            op = "add" if is_add(func) else None  # ``lambda a, b: a + b`` is ``add``
        return Aggregator(_identity, func, func, op)


def _identity(x: Any) -> Any:
    return x


_MISSING = object()


@dataclass(frozen=True)
class MapStatus:
    """Where one map task's output lives and how big each bucket is (bytes)."""

    shuffle_id: int
    map_id: int
    attempt: int
    location: str
    sizes: tuple


@dataclass(frozen=True)
class ShuffleWriteSpec:
    """What a map task does with its records."""

    shuffle_id: int
    partitioner: Partitioner
    aggregator: Aggregator | None = None
    map_side_combine: bool = True


def encode_frame(records: list) -> bytes:
    blob = lz4.block.compress(pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))
    return _OBJ + len(blob).to_bytes(4, "little") + blob


def encode_columns(keys: Any, values: Any) -> bytes:
    k = np.ascontiguousarray(keys, dtype=np.int64)
    v = np.ascontiguousarray(values)
    raw = (len(k).to_bytes(8, "little") + v.dtype.str.encode().ljust(8) + k.tobytes() + v.tobytes())
    blob = lz4.block.compress(raw)
    return _COL + len(blob).to_bytes(4, "little") + blob


def decode_frames(data: bytes | BinaryIO) -> Iterator[Any]:
    """Yield record lists (pickled frames) and ``(keys, values)`` array pairs (columnar)."""
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    while True:
        head = f.read(5)
        if not head:
            return
        kind, size = head[:1], int.from_bytes(head[1:5], "little")
        raw = lz4.block.decompress(f.read(size))
        if kind == _OBJ:
            yield pickle.loads(raw)
        else:
            n = int.from_bytes(raw[:8], "little")
            dt = np.dtype(raw[8:16].strip().decode())
            k = np.frombuffer(raw, dtype=np.int64, count=n, offset=16)
            yield k, np.frombuffer(raw, dtype=dt, count=n, offset=16 + 8 * n)


def map_output_dir(shuffle_root: str, shuffle_id: int, map_id: int, attempt: int) -> str:
    return os.path.join(shuffle_root, str(shuffle_id), f"{map_id}.{attempt}")


class _BucketFiles:
    """One append-only file per bucket, opened lazily, in a temporary directory."""

    def __init__(self, tmp_dir: str, n: int) -> None:
        os.makedirs(tmp_dir, exist_ok=True)
        self.dir = tmp_dir
        self.files: dict[int, BinaryIO] = {}
        self.n = n
        self.bytes_written = 0

    def write(self, bucket: int, frame: bytes) -> None:
        f = self.files.get(bucket)
        if f is None:
            # kept open across writes, closed in close()
            f = self.files[bucket] = open(os.path.join(self.dir, str(bucket)), "wb")  # noqa: SIM115
        f.write(frame)
        self.bytes_written += len(frame)

    def close(self) -> tuple:
        sizes = []
        for b in range(self.n):
            f = self.files.get(b)
            sizes.append(f.tell() if f else 0)
            if f:
                f.close()
        return tuple(sizes)


def _not_pair(record: Any, what: str) -> NotPairError:
    return NotPairError(f"{what} needs (key, value) pairs, got a record of type "
                        f"{type(record).__name__}: {record!r:.80}")


def _columns(chunk: list, op: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Columns for a chunk of plain (int, int|float) pairs, or None if it does not fit."""
    cols = _columnar.pair_columns(chunk)
    if cols is None or not len(cols[0]):
        return None
    k, v = cols
    if v.dtype == np.int64:
        if op == "add" and len(v) * max(int(v.max()), -int(v.min())) >= _INT64_LIMIT:
            return None
    elif op is not None and op != "add" and np.isnan(v).any():
        return None
    return k, v


def write_map_output(spec: ShuffleWriteSpec, records: Any, shuffle_root: str,
                     map_id: int, attempt: int, location: str, budget: int) -> tuple[MapStatus, int]:
    """Partition (and combine) ``records`` into bucket files; return the status and bytes written.

    ``records`` is an iterable of records or a columnar partition (:mod:`dataflow.batches`).
    """
    from .batches import Columnar, ConstPairs, as_records
    part = spec.partitioner
    n = part.num_partitions
    final = map_output_dir(shuffle_root, spec.shuffle_id, map_id, attempt)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    out = _BucketFiles(tmp, n)
    agg = spec.aggregator if spec.map_side_combine else None
    columnar = (agg is not None and agg.op is not None and isinstance(part, HashPartitioner)
                and part.is_portable)
    try:
        it: Iterator | None
        if isinstance(records, ConstPairs) and agg is not None and agg.op == "add" \
                and agg.create_combiner is _identity and type(records.c) is int:
            it = _write_const_counts(records, part, out, budget)
        elif columnar:
            chunks = records.items if isinstance(records, Columnar) else iter(as_records(records))
            it = _write_columnar(_column_chunks(chunks, agg.op, isinstance(records, Columnar)),
                                 agg, n, out, budget)
        elif agg is None and isinstance(records, Columnar) and \
                part.ids(np.zeros(1, dtype=np.int64)) is not None:
            _write_batches(records.items, part, out, budget)
            it = None
        else:
            it = iter(as_records(records))
        if it is not None:
            if agg is not None:
                _write_combined(it, agg, part, out, budget)
            else:
                _write_plain(it, part, out, budget)
        sizes = out.close()
    except BaseException:
        out.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return MapStatus(spec.shuffle_id, map_id, attempt, location, sizes), out.bytes_written


def _flush_columns(keys: np.ndarray, vals: np.ndarray, n: int, out: _BucketFiles,
                   pids: np.ndarray | None = None) -> None:
    if pids is None:
        pids = partition_ids(keys, n)
    order, offsets = _kernels.bucket_order(pids, n)
    keys, vals = keys[order], vals[order]
    for b in range(n):
        lo, hi = int(offsets[b]), int(offsets[b + 1])
        if hi > lo:
            out.write(b, encode_columns(keys[lo:hi], vals[lo:hi]))


def _write_const_counts(pairs: Any, part: Partitioner, out: _BucketFiles,
                        budget: int) -> None:
    """``reduceByKey(add)`` of ``(k, c)`` records: count the keys in C, then times ``c``.

    Exact for an int ``c``: ``c + c + ...`` (n times) is ``n * c``; the first key object of
    each group is kept, as the dict of the general path keeps it.
    """
    from collections import Counter

    from .batches import as_records
    from .spill import estimate_entry_size
    from .words import Words, count_words
    c = pairs.c
    if isinstance(pairs.keys, Words):  # the words of a text file: counted on its bytes
        for items in count_words(pairs.keys, budget):
            _write_records(_times(items, c), part, out)
        return
    keys = iter(as_records(pairs.keys))
    counts: Counter = Counter()
    entry = 0.0
    chunks = 0
    while True:
        chunk = list(islice(keys, COLUMN_CHUNK))
        if not chunk:
            break
        counts.update(chunk)  # C: no Python frame per key
        if chunks % 8 == 0:  # the estimate pickles a sample: not on every chunk
            entry = estimate_entry_size(list(islice(counts.items(), 32)))
        chunks += 1
        if len(counts) * entry > budget:  # emit partial sums, keep memory bounded
            _write_records(_times(counts, c), part, out)
            counts = Counter()
    _write_records(_times(counts, c), part, out)


def _times(counts: Any, c: int) -> Iterable:
    items = counts.items() if isinstance(counts, dict) else counts
    if c == 1:
        return items
    return ((k, n * c) for k, n in items)


def _int_pairs(value: Any) -> bool:
    """A batch's value is ``(int, int | float)`` pairs: what a column frame holds."""
    return isinstance(value, tuple) and len(value) == 2 and value[0].kind == "i" \
        and value[1].kind in "if"


def _column_chunks(items: Iterator, op: str | None, batched: bool) -> Iterator:
    """``(keys, values)`` int64/float columns, or lists of records where that cannot be.

    ``items`` are records (``batched`` False, cut into chunks here) or the items of a
    columnar partition (:class:`~dataflow.batches.Batch` objects and iterables of records).
    """
    from .batches import Batch
    if not batched:
        while True:
            chunk = list(islice(items, COLUMN_CHUNK))
            if not chunk:
                return
            cols = _columns(chunk, op)
            yield chunk if cols is None else cols
    for item in items:
        if not isinstance(item, Batch):
            yield from _column_chunks(iter(item), op, False)
            continue
        v = item.value
        if not item.n:
            continue
        if _int_pairs(v) and not (v[1].kind == "f" and op not in (None, "add")
                                  and np.isnan(v[1].arr).any()):
            yield v[0].arr, v[1].arr
        else:
            yield item.records()


def _write_columnar(chunks: Iterator, agg: Aggregator, n: int, out: _BucketFiles,
                    budget: int) -> Iterator | None:
    """Combine column chunks; return the rest of the records if they stop fitting, else None."""
    acc_k: list[np.ndarray] = []
    acc_v: list[np.ndarray] = []
    acc_n = 0
    compacted = 0  # size after the last compaction: compact again only once it doubled
    bound = 0
    for cols in chunks:
        if isinstance(cols, list) or (acc_v and cols[1].dtype != acc_v[0].dtype):
            rest = _chain(_chunk_records(cols), _records_of_chunks(chunks))
            if acc_k:  # hand what was combined so far to the object path as records
                k, v = _kernels.hash_aggregate(np.concatenate(acc_k), np.concatenate(acc_v), agg.op)
                rest = _chain(list(zip(k.tolist(), v.tolist())), rest)
            return rest
        if cols[1].dtype == np.int64 and agg.op == "add":
            size = len(cols[1]) * max(int(cols[1].max()), -int(cols[1].min()))
            if size >= _INT64_LIMIT:
                return _overflowed(cols, acc_k, acc_v, chunks)
        # a chunk of int records is combined at once (it is small); big batches of a columnar
        # partition are combined together, once, unless memory runs short. Float values are
        # never combined per chunk: combining the accumulated columns in arrival order adds
        # each key's values one after the other, as Python would, whatever the chunk sizes,
        # so the columnar and the record paths round alike (short of memory pressure)
        small = len(cols[0]) <= COLUMN_CHUNK and cols[1].dtype == np.int64
        k, v = _kernels.hash_aggregate(cols[0], cols[1], agg.op) if small else cols
        if v.dtype == np.int64 and agg.op == "add":
            bound += size
            if bound >= _INT64_LIMIT:
                return _overflowed((k, v), acc_k, acc_v, chunks)
        acc_k.append(k)
        acc_v.append(v)
        acc_n += len(k)
        if len(acc_k) > 1 and ((small and acc_n > max(COLUMN_CHUNK, 2 * compacted))
                               or acc_n * 32 > budget):
            k, v = _kernels.hash_aggregate(np.concatenate(acc_k), np.concatenate(acc_v), agg.op)
            acc_k, acc_v, acc_n = [k], [v], len(k)
            compacted = acc_n
            if acc_n * 16 > budget:  # no room to combine further: write partial combiners
                _flush_columns(k, v, n, out)
                acc_k, acc_v, acc_n, compacted = [], [], 0, 0
    if acc_k:
        k, v = _kernels.hash_aggregate(np.concatenate(acc_k), np.concatenate(acc_v), agg.op)
        _flush_columns(k, v, n, out)
    return None


def _overflowed(cols: tuple, acc_k: list, acc_v: list, chunks: Iterator) -> Iterator:
    """Int sums that might leave int64: everything goes on as Python records."""
    done = [kv for a, b in zip(acc_k, acc_v) for kv in zip(a.tolist(), b.tolist())]
    return _chain(list(zip(cols[0].tolist(), cols[1].tolist())) + done,
                  _records_of_chunks(chunks))


def _chunk_records(cols: Any) -> list:
    return cols if isinstance(cols, list) else list(zip(cols[0].tolist(), cols[1].tolist()))


def _records_of_chunks(chunks: Iterator) -> Iterator:
    return itertools.chain.from_iterable(map(_chunk_records, chunks))


def _chain(first: list, rest: Iterator) -> Iterator:
    return itertools.chain(first, rest)  # C-level: no Python frame per record


def _write_combined(it: Iterator, agg: Aggregator, part: Partitioner, out: _BucketFiles,
                    budget: int) -> None:
    from .spill import estimate_entry_size
    combined: dict = {}
    create = None if agg.create_combiner is _identity else agg.create_combiner
    merge = agg.merge_value
    record: Any = _MISSING
    entry = 0.0
    chunks = 0
    if create is None and merge is operator.add:  # reduceByKey(add): sums in an int64 array
        combined, it = _write_counted(it, part, out, budget)
    try:
        while True:
            chunk = list(islice(it, 1024))
            if not chunk:
                break
            # the loop runs in C up to the first record that is not a tuple of two
            used = _columnar.combine_into(combined, chunk, create, merge, merge is operator.add)
            for record in itertools.islice(chunk, used, None):
                k, v = record
                c = combined.get(k, _MISSING)
                if c is _MISSING:
                    combined[k] = v if create is None else create(v)
                else:
                    combined[k] = merge(c, v)
            record = _MISSING
            if chunks % 8 == 0:  # the estimate pickles a sample: not on every chunk
                entry = estimate_entry_size(list(islice(combined.items(), 32)))
            chunks += 1
            if len(combined) * entry > budget:  # emit partial combiners, keep memory bounded
                _write_records(combined.items(), part, out)
                combined = {}
    except (TypeError, ValueError):
        # _MISSING: the error came from the user's function on a proper pair
        if record is not _MISSING and not (isinstance(record, (tuple, list)) and len(record) == 2):
            raise _not_pair(record, "a by-key operation") from None
        raise
    _write_records(combined.items(), part, out)


def _write_counted(it: Iterator, part: Partitioner, out: _BucketFiles,
                   budget: int) -> tuple[dict, Iterator]:
    """Sum int values per key with ``_native.columnar.count_into`` while the records allow it.

    Returns the combined entries and the records not consumed yet (empty when all were), for
    the general loop to go on from the first record the kernel could not take (a non-tuple
    pair, a value that is not an int, an int64 overflow).
    """
    from .spill import estimate_entry_size
    index: dict = {}
    sums = np.empty(COLUMN_CHUNK, dtype=np.int64)
    entry = 0.0
    chunks = 0
    while True:
        chunk = list(islice(it, 1024))
        if not chunk:
            return dict(zip(index, sums[:len(index)].tolist())), iter(())
        pos = 0
        while pos < len(chunk):
            pos = _columnar.count_into(index, chunk, pos, sums)
            if pos == len(chunk):
                break
            if len(index) == len(sums):  # out of slots: grow, then go on
                sums = np.concatenate([sums, np.empty_like(sums)])
                continue
            combined = dict(zip(index, sums[:len(index)].tolist()))
            return combined, itertools.chain(chunk[pos:], it)
        if chunks % 8 == 0:
            entry = estimate_entry_size(list(zip(islice(index, 32), sums[:32].tolist())))
        chunks += 1
        if len(index) * entry > budget:  # emit partial sums, keep memory bounded
            _write_records(zip(index, sums[:len(index)].tolist()), part, out)
            index = {}


def _write_records(items: Iterable, part: Partitioner, out: _BucketFiles) -> None:
    """Write pairs to their buckets; ids come from the batch kernel for the portable hash."""
    portable = isinstance(part, HashPartitioner) and part.is_portable
    n = part.num_partitions
    it = iter(items)
    bufs: list[list] = [[] for _ in range(n)]
    while True:
        chunk = list(islice(it, 4 * FRAME_RECORDS))
        if not chunk:
            break
        keys = [k for k, _v in chunk]  # also rejects records that are not pairs
        pids = partition_ids_any(keys, n) if portable else [part(k) for k in keys]
        # a stable counting sort by bucket, then whole slices per bucket (no loop per record)
        order, offsets = _kernels.bucket_order(np.asarray(pids, dtype=np.int64), n)
        ordered = list(map(chunk.__getitem__, order.tolist()))
        bounds = offsets.tolist()
        for b in range(n):
            lo, hi = bounds[b], bounds[b + 1]
            if hi > lo:
                buf = bufs[b]
                buf.extend(ordered[lo:hi])
                if len(buf) >= FRAME_RECORDS:
                    out.write(b, encode_frame(buf))
                    bufs[b] = []
    for b, buf in enumerate(bufs):
        if buf:
            out.write(b, encode_frame(buf))


def _write_batches(items: Iterable, part: Partitioner, out: _BucketFiles, budget: int) -> None:
    """A columnar partition without a combine (``groupByKey``, ``sortByKey``, ``join``...):
    its batches of ``(int, int | float)`` pairs go out as columns as they are, without being
    turned into records and back; anything else goes through :func:`_write_plain`, in order."""
    from .batches import Batch
    for item in items:
        if isinstance(item, Batch):
            v = item.value
            if _int_pairs(v):
                keys, vals = v[0].arr, v[1].arr
                for lo in range(0, item.n, COLUMN_CHUNK):   # frames as _write_plain makes them
                    k = keys[lo:lo + COLUMN_CHUNK]
                    _flush_columns(k, vals[lo:lo + COLUMN_CHUNK], part.num_partitions, out,
                                   part.ids(k))
                continue
            item = item.records()
        _write_plain(iter(item), part, out, budget)


def _write_plain(it: Iterator, part: Partitioner, out: _BucketFiles, budget: int) -> None:
    # chunks of plain (int, int|float) pairs go as columns when the partitioner can place a
    # whole key column at once; any other chunk goes as pickled records (frames of both kinds
    # may share a bucket, in order)
    columnar = part.ids(np.zeros(1, dtype=np.int64)) is not None
    size = small = FRAME_RECORDS * 4  # big chunks only while records are small and plain
    chunk: list = []
    try:
        while True:
            chunk = list(islice(it, size))
            if not chunk:
                break
            cols = _columns(chunk, None) if columnar else None
            if cols is None:
                _write_records(chunk, part, out)
                size = small
            else:
                _flush_columns(cols[0], cols[1], part.num_partitions, out, part.ids(cols[0]))
                size = COLUMN_CHUNK
    except (TypeError, ValueError):
        bad = [r for r in chunk if not (isinstance(r, (tuple, list)) and len(r) == 2)]
        if bad:
            raise _not_pair(bad[0], "a by-key operation") from None
        raise


class BlockFetcher:
    """Gives the bytes of one bucket of one map output. Implement ``open`` for a remote fetch."""

    def open(self, status: MapStatus, reduce_id: int) -> BinaryIO:
        raise NotImplementedError


class LocalBlockFetcher(BlockFetcher):
    """Reads map outputs from this machine's shuffle directory."""

    def __init__(self, shuffle_root: str) -> None:
        self.shuffle_root = shuffle_root

    def open(self, status: MapStatus, reduce_id: int) -> BinaryIO:
        d = map_output_dir(self.shuffle_root, status.shuffle_id, status.map_id, status.attempt)
        if status.sizes[reduce_id] == 0:
            if not os.path.isdir(d):
                raise FetchFailedError(status.shuffle_id, status.map_id, reduce_id,
                                       status.location, "map output is missing")
            return io.BytesIO(b"")
        try:
            return open(os.path.join(d, str(reduce_id)), "rb")
        except OSError as exc:
            raise FetchFailedError(status.shuffle_id, status.map_id, reduce_id,
                                   status.location, str(exc)) from None


class ShuffleReader:
    """Decodes the frames of every map output's bucket for one reduce partition."""

    def __init__(self, fetcher: BlockFetcher) -> None:
        self.fetcher = fetcher

    def frames(self, statuses: list, reduce_id: int) -> Iterator[Any]:
        for status in statuses:
            f = self.fetcher.open(status, reduce_id)
            try:
                yield from decode_frames(f)
            except FetchFailedError:
                raise
            except Exception as exc:  # noqa: BLE001 - lz4/pickle errors on bad bytes: recompute
                raise FetchFailedError(status.shuffle_id, status.map_id, reduce_id,
                                       status.location, f"corrupt block: {exc}") from None
            finally:
                f.close()

    def records(self, statuses: list, reduce_id: int) -> Iterator[Any]:
        for frame in self.frames(statuses, reduce_id):
            if isinstance(frame, list):
                yield from frame
            else:
                yield from zip(frame[0].tolist(), frame[1].tolist())
