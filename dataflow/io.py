"""Reading and writing files: text, pickle, Parquet and CSV; atomic output directories.

Inputs are resolved on the driver (a file, a directory, a glob, or a comma-separated list of
those; a missing path is an :class:`~dataflow.errors.InputError` right away) and cut into
splits; executors read the splits. Plain text files are split by byte ranges with Hadoop's
rule (a split owns the lines that start inside it), gzip files are read whole.

Every ``saveAs*`` writes the partitions into a hidden temporary directory next to the target and
renames it into place once every task succeeded, so a failed job leaves nothing behind. An
existing target is refused with :class:`~dataflow.errors.OutputExistsError` unless
``overwrite=True``. The temporary directory must be visible to every executor (a shared or local
file system), as with Hadoop's output committer.

Examples
--------
>>> import os, tempfile
>>> from dataflow import Context
>>> ctx = Context("inline")
>>> out = os.path.join(tempfile.mkdtemp(), "nums")
>>> ctx.parallelize(range(5), 2).saveAsTextFile(out)
>>> sorted(os.listdir(out))
['_SUCCESS', 'part-00000', 'part-00001']
>>> ctx.textFile(out).map(int).collect()
[0, 1, 2, 3, 4]
"""
from __future__ import annotations

import glob as _glob
import gzip
import itertools
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from .errors import InputError, OutputExistsError

GZIP_CODECS = ("gzip", "gz", "org.apache.hadoop.io.compress.GzipCodec")


# -- resolving inputs --------------------------------------------------------------------
def list_files(path: str) -> list[str]:
    """Files named by ``path`` (comma-separated; files, directories or globs), sorted."""
    files: list[str] = []
    for p in (s.strip() for s in str(path).split(",")):
        if p.startswith("file://"):
            p = p[len("file://"):]
        elif p.startswith("file:"):
            p = p[len("file:"):]
        matches = sorted(_glob.glob(p)) if _glob.has_magic(p) else ([p] if os.path.exists(p) else [])
        if not matches:
            raise InputError(f"Input path does not exist: {p}")
        for m in matches:
            if os.path.isdir(m):
                files.extend(sorted(os.path.join(m, f) for f in os.listdir(m)
                                    if not f.startswith((".", "_"))
                                    and os.path.isfile(os.path.join(m, f))))
            else:
                files.append(m)
    for f in files:
        if not os.access(f, os.R_OK):
            raise InputError(f"Input file is not readable: {f}")
    return [os.path.abspath(f) for f in files]


#: Bytes read at once by :func:`read_text_split` (whole lines are split and decoded per block).
TEXT_BLOCK = 1 << 20


def read_text_split(desc: tuple) -> Iterator:
    """Lines starting in ``(start, end]`` (or at 0) of one split ``(path, start, end, unicode)``.

    A split skips the line it starts inside (or exactly at) unless it starts at 0, and reads every
    line that starts at or before ``end``, so neighbouring splits share no line and lose none.
    ``end < 0`` means the whole file. Lines end at ``\n``; a ``\r`` before it (or at the end
    of the file) is dropped too.
    """
    path, start, end, use_unicode = desc
    if path.endswith(".gz"):
        return _read_lines_gzip(path, use_unicode)
    # blocks of whole lines are split and decoded at once, and chained in C: no Python frame
    # per line
    return itertools.chain.from_iterable(_line_blocks(path, start, end, use_unicode))


def _line_blocks(path: str, start: int, end: int, use_unicode: bool) -> Iterator[list]:
    for block in raw_blocks(path, start, end):
        yield _split_lines(block, use_unicode)


def raw_blocks(path: str, start: int, end: int) -> Iterator[bytes]:
    """The bytes of the whole lines of a split (see :func:`read_text_split`), in blocks."""
    with open(path, "rb") as f:
        pos = 0
        if start > 0:
            f.seek(start)
            pos = start + len(f.readline())
        while end < 0 or pos <= end:
            block = f.read(TEXT_BLOCK)
            if not block:
                return
            if block[-1:] != b"\n":
                block += f.readline()  # complete the last line
            last = end >= 0 and pos + len(block) - 1 > end
            if last:  # keep the lines that start at or before ``end``
                cut = block.find(b"\n", end - pos)
                block = block[:cut + 1] if cut >= 0 else block
            pos += len(block)
            yield block
            if last:
                return


def _split_lines(block: bytes, use_unicode: bool) -> list:
    text: Any = block.decode("utf-8") if use_unicode else block
    nl, cr = ("\n", "\r") if use_unicode else (b"\n", b"\r")
    lines = text.split(nl)
    if lines[-1] == text[:0]:  # the block ended with a newline
        lines.pop()
    if cr in text:
        lines = [x[:-1] if x.endswith(cr) else x for x in lines]
    return lines


def _read_lines_gzip(path: str, use_unicode: bool) -> Iterator:
    with gzip.open(path, "rb") as f:
        for line in f:
            if line[-1:] == b"\n":
                line = line[:-2] if line[-2:-1] == b"\r" else line[:-1]
            elif line[-1:] == b"\r":
                line = line[:-1]
            yield line.decode("utf-8") if use_unicode else line


def text_file(ctx: Any, name: str, min_partitions: int, use_unicode: bool) -> Any:
    from .rdd import SourceRDD
    files = list_files(name)
    plain = [f for f in files if not f.endswith(".gz")]
    total = sum(os.path.getsize(f) for f in plain)
    goal = max(1, total // max(1, min_partitions))
    splits: list[tuple] = []
    for f in files:
        size = os.path.getsize(f)
        if f.endswith(".gz") or size == 0:
            splits.append((f, 0, -1, use_unicode))
            continue
        start = 0
        while size - start > goal * 1.1:
            splits.append((f, start, start + goal, use_unicode))
            start += goal
        splits.append((f, start, size, use_unicode))
    return SourceRDD(ctx, splits, read_text_split).setName(name)


def read_whole_files(desc: tuple) -> Iterator:
    paths, use_unicode = desc
    for p in paths:
        opener = gzip.open if p.endswith(".gz") else open
        with opener(p, "rb") as f:
            data = f.read()
        yield "file:" + p, data.decode("utf-8") if use_unicode else data


def whole_text_files(ctx: Any, path: str, min_partitions: int, use_unicode: bool) -> Any:
    from .rdd import SourceRDD
    files = list_files(path)
    n = max(1, min(min_partitions, len(files)))
    groups = [(files[i * len(files) // n:(i + 1) * len(files) // n], use_unicode) for i in range(n)]
    return SourceRDD(ctx, groups, read_whole_files).setName(path)


def read_pickle_part(path: str) -> Iterator:
    from .serialize import loads
    with open(path, "rb") as f:
        while True:
            head = f.read(8)
            if not head:
                return
            yield from loads(f.read(int.from_bytes(head, "little")))


def pickle_file(ctx: Any, name: str, min_partitions: int | None) -> Any:
    from .rdd import SourceRDD
    return SourceRDD(ctx, list_files(name), read_pickle_part).setName(name)


def read_table_part(desc: tuple) -> Iterator:
    path, fmt, index, columns, header = desc
    if fmt == "parquet":
        import pyarrow.parquet as pq
        table = pq.ParquetFile(path).read_row_group(index, columns=columns)
    else:
        import pyarrow.csv as pacsv
        opts = pacsv.ReadOptions(autogenerate_column_names=not header)
        conv = pacsv.ConvertOptions(include_columns=columns) if columns else None
        table = pacsv.read_csv(path, read_options=opts, convert_options=conv)
    rows = table.to_pylist()
    if fmt == "csv" and not header:
        return (tuple(r.values()) for r in rows)
    return iter(rows)


def parquet_file(ctx: Any, path: str, columns: list | None) -> Any:
    import pyarrow.parquet as pq

    from .rdd import SourceRDD
    splits = []
    for f in list_files(path):
        try:
            groups = pq.ParquetFile(f).num_row_groups
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several unrelated types
            raise InputError(f"cannot read Parquet file {f}: {exc}") from None
        splits.extend((f, "parquet", g, columns, True) for g in range(groups))
    return SourceRDD(ctx, splits, read_table_part).setName(path)


def csv_file(ctx: Any, path: str, header: bool, columns: list | None) -> Any:
    from .rdd import SourceRDD
    splits = [(f, "csv", 0, columns, header) for f in list_files(path)]
    return SourceRDD(ctx, splits, read_table_part).setName(path)


# -- atomic output -----------------------------------------------------------------------
def _save(rdd: Any, path: str, overwrite: bool,
          write_part: Callable[[str, int, Iterator], None]) -> None:
    path = os.path.abspath(path)
    if os.path.exists(path) and not overwrite:
        raise OutputExistsError(f"Output directory {path} already exists "
                                f"(pass overwrite=True to replace it)")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{uuid.uuid4().hex}")
    os.makedirs(tmp)

    def task(tc: Any, it: Iterator) -> None:
        write_part(tmp, tc.partitionId(), it)

    try:
        rdd.ctx._run(rdd, task)
        with open(os.path.join(tmp, "_SUCCESS"), "wb"):
            pass
        if os.path.exists(path):
            trash = f"{tmp}.old"
            os.replace(path, trash)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _commit_file(directory: str, name: str, write: Callable[[str], None]) -> None:
    """Write one part file under a temporary name, then rename (speculative copies race safely)."""
    final = os.path.join(directory, name)
    tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}")
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_as_text_file(rdd: Any, path: str, codec: str | None, overwrite: bool) -> None:
    if codec is not None and codec not in GZIP_CODECS:
        raise ValueError(f"unsupported compression codec {codec!r}; use one of {GZIP_CODECS}")
    suffix = ".gz" if codec else ""

    def write_part(d: str, split: int, it: Iterator) -> None:
        def write(tmp: str) -> None:
            with (gzip.open(tmp, "wb", compresslevel=6) if codec else open(tmp, "wb")) as f:
                for x in it:
                    f.write((x if isinstance(x, bytes) else str(x).encode("utf-8")) + b"\n")
        _commit_file(d, f"part-{split:05d}{suffix}", write)

    _save(rdd, path, overwrite, write_part)


def save_as_pickle_file(rdd: Any, path: str, batch_size: int, overwrite: bool) -> None:
    def write_part(d: str, split: int, it: Iterator) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                batch: list = []
                for x in it:
                    batch.append(x)
                    if len(batch) >= batch_size:
                        _write_batch(f, batch)
                        batch = []
                if batch:
                    _write_batch(f, batch)
        _commit_file(d, f"part-{split:05d}", write)

    _save(rdd, path, overwrite, write_part)


def _write_batch(f: Any, batch: list) -> None:
    from .serialize import dumps
    blob = dumps(batch, "records saved with saveAsPickleFile")
    f.write(len(blob).to_bytes(8, "little"))
    f.write(blob)


def _to_table(records: list) -> Any:
    import pyarrow as pa
    if records and isinstance(records[0], dict):
        return pa.Table.from_pylist(records)
    cols = list(zip(*[r if isinstance(r, (tuple, list)) else (r,) for r in records]))
    return pa.table({f"_{i + 1}": list(c) for i, c in enumerate(cols)})


def save_as_table(rdd: Any, path: str, fmt: str, overwrite: bool) -> None:
    def write_part(d: str, split: int, it: Iterator) -> None:
        records = list(it)
        if not records:
            return

        def write(tmp: str) -> None:
            table = _to_table(records)
            if fmt == "parquet":
                import pyarrow.parquet as pq
                pq.write_table(table, tmp)
            else:
                import pyarrow.csv as pacsv
                pacsv.write_csv(table, tmp)
        _commit_file(d, f"part-{split:05d}.{fmt}", write)

    _save(rdd, path, overwrite, write_part)


def write_checkpoint(rdd: Any) -> None:
    """Save ``rdd`` under the checkpoint directory and make it read from there from now on."""
    from .plan import SourceNode
    rdd._checkpoint_requested = False
    path = os.path.join(rdd.ctx.checkpoint_dir, f"rdd-{rdd.id()}-{uuid.uuid4().hex[:8]}")
    save_as_pickle_file(rdd, path, 1024, False)
    files = [os.path.join(path, f"part-{i:05d}") for i in range(rdd.getNumPartitions())]
    rdd._checkpoint = (path, SourceNode(dict(enumerate(files)), read_pickle_part))


# -- external commands -------------------------------------------------------------------
def pipe_partition(command: str, env: dict | None, checkCode: bool) -> Callable[[Iterator], Iterator]:
    """The partition function of ``RDD.pipe``: feed lines to ``command``, yield its output lines."""
    def part(it: Iterator) -> Iterator:
        proc = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env)

        def feed() -> None:
            try:
                for x in it:
                    proc.stdin.write(str(x).encode("utf-8") + b"\n")  # type: ignore[union-attr]
            except BrokenPipeError:  # the command stopped reading; its exit code tells
                pass
            except BaseException as exc:  # noqa: BLE001 - user code failed: re-raised below
                failed.append(exc)
            finally:
                try:
                    proc.stdin.close()  # type: ignore[union-attr]
                except BrokenPipeError:
                    pass

        failed: list = []
        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        for line in proc.stdout:  # type: ignore[union-attr]
            yield line.decode("utf-8").rstrip("\n")
        writer.join()
        code = proc.wait()
        if failed:
            raise failed[0]
        if checkCode and code:
            raise RuntimeError(f"Pipe function `{command}' exited with error code {code}")

    return part
