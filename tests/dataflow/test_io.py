"""Text, pickle, Parquet and CSV input/output; atomic saves."""
from __future__ import annotations

import gzip
import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow import InputError, OutputExistsError, TaskFailedError

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
line = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
               max_size=12)


@SETTINGS
@given(lines=st.lists(line, max_size=40), parts=st.integers(1, 7), crlf=st.booleans())
def test_text_file_splits_keep_every_line_once(ctx, tmp_path_factory, lines, parts, crlf):
    d = tmp_path_factory.mktemp("txt")
    path = d / "f.txt"
    eol = "\r\n" if crlf else "\n"
    path.write_bytes("".join(x + eol for x in lines).encode("utf-8"))
    rdd = ctx.textFile(str(path), parts)
    assert rdd.collect() == lines


def test_text_file_dir_glob_gzip_and_bytes(ctx, tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo\n")
    (tmp_path / "b.txt").write_text("three")
    with gzip.open(tmp_path / "c.txt.gz", "wt") as f:
        f.write("four\nfive\n")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".hidden").write_text("no\n")
    assert ctx.textFile(str(tmp_path)).collect() == ["one", "two", "three", "four", "five"]
    assert ctx.textFile(str(tmp_path / "*.txt")).collect() == ["one", "two", "three"]
    both = f"{tmp_path / 'b.txt'},{tmp_path / 'a.txt'}"
    assert ctx.textFile(both).collect() == ["three", "one", "two"]
    assert ctx.textFile(str(tmp_path / "a.txt"), use_unicode=False).collect() == [b"one", b"two"]
    whole = dict(ctx.wholeTextFiles(str(tmp_path)).collect())
    assert whole == {f"file:{tmp_path / 'a.txt'}": "one\ntwo\n", f"file:{tmp_path / 'b.txt'}": "three",
                     f"file:{tmp_path / 'c.txt.gz'}": "four\nfive\n"}


def test_missing_input_is_clear(ctx, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        ctx.textFile(str(tmp_path / "nope.txt"))
    with pytest.raises(InputError):
        ctx.textFile(str(tmp_path / "*.none"))
    with pytest.raises(InputError):
        ctx.pickleFile(str(tmp_path / "nothing"))
    with pytest.raises(InputError):
        ctx.parquetFile(str(tmp_path / "x.parquet"))
    assert ctx.parallelize([1]).count() == 1


def test_unreadable_file_is_a_task_error(ctx, tmp_path):
    (tmp_path / "bad.gz").write_bytes(b"this is not gzip")
    with pytest.raises(TaskFailedError, match="BadGzipFile"):
        ctx.textFile(str(tmp_path / "bad.gz")).collect()
    assert ctx.parallelize([1]).count() == 1


def test_save_text_roundtrip_gzip_and_overwrite(ctx, tmp_path):
    out = str(tmp_path / "out")
    rdd = ctx.parallelize(["a", "b", 3, b"raw"], 2)
    rdd.saveAsTextFile(out)
    assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000", "part-00001"]
    assert ctx.textFile(out).collect() == ["a", "b", "3", "raw"]
    with pytest.raises(OutputExistsError):
        rdd.saveAsTextFile(out)
    ctx.parallelize(["x"], 1).saveAsTextFile(out, "org.apache.hadoop.io.compress.GzipCodec",
                                             overwrite=True)
    assert sorted(os.listdir(out)) == ["_SUCCESS", "part-00000.gz"]
    assert ctx.textFile(out).collect() == ["x"]
    with pytest.raises(ValueError):
        rdd.saveAsTextFile(str(tmp_path / "o2"), "snappy")
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []


def test_failed_save_leaves_nothing(ctx, tmp_path):
    out = tmp_path / "out"

    def fail(x):
        if x == 5:
            raise ValueError("bad record")
        return x

    with pytest.raises(TaskFailedError, match="bad record"):
        ctx.parallelize(range(10), 3).map(fail).saveAsTextFile(str(out))
    assert os.listdir(tmp_path) == []
    out.mkdir()
    (out / "keep").write_text("old")
    with pytest.raises(TaskFailedError):
        ctx.parallelize(range(10), 3).map(fail).saveAsTextFile(str(out), overwrite=True)
    assert os.listdir(out) == ["keep"] and sorted(os.listdir(tmp_path)) == ["out"]


def test_pickle_file_roundtrip(ctx, tmp_path):
    data = [(i, {"x": [i, str(i)]}, None) for i in range(25)] + [lambda: 1]
    out = str(tmp_path / "p")
    ctx.parallelize(data, 3).saveAsPickleFile(out, batchSize=4)
    back = ctx.pickleFile(out).collect()
    assert back[:-1] == data[:-1] and back[-1]() == 1
    with pytest.raises(OutputExistsError):
        ctx.parallelize([1]).saveAsPickleFile(out)
    ctx.parallelize([1]).saveAsPickleFile(out, overwrite=True)
    assert ctx.pickleFile(out).collect() == [1]


def test_parquet_roundtrip(ctx, tmp_path):
    rows = [{"id": i, "name": f"n{i}", "score": i / 2} for i in range(30)]
    out = str(tmp_path / "pq")
    ctx.parallelize(rows, 3).saveAsParquetFile(out)
    assert len([f for f in os.listdir(out) if f.endswith(".parquet")]) == 3
    back = ctx.parquetFile(out)
    assert back.getNumPartitions() == 3 and back.collect() == rows
    assert ctx.parquetFile(out, columns=["id"]).map(lambda r: r["id"]).sum() == sum(range(30))
    ctx.parallelize([(1, "a"), (2, "b")], 1).saveAsParquetFile(str(tmp_path / "t"))
    assert ctx.parquetFile(str(tmp_path / "t")).collect() == [{"_1": 1, "_2": "a"}, {"_1": 2, "_2": "b"}]
    with pytest.raises(OutputExistsError):
        ctx.parallelize(rows).saveAsParquetFile(out)


def test_csv_roundtrip(ctx, tmp_path):
    rows = [{"id": i, "word": w} for i, w in enumerate(["x", "y", "z"])]
    out = str(tmp_path / "csv")
    ctx.parallelize(rows, 2).saveAsCsvFile(out)
    assert ctx.csvFile(out).collect() == rows
    src = tmp_path / "raw.csv"
    src.write_text("1,a\n2,b\n")
    assert ctx.csvFile(str(src), header=False).collect() == [(1, "a"), (2, "b")]
    assert ctx.csvFile(out, columns=["word"]).collect() == [{"word": w} for w in "xyz"]


def _model_split(data: bytes, start: int, end: int) -> list:
    """Line by line: the lines starting in (start, end] (or at 0), as bytes."""
    out, pos = [], 0
    for raw in data.splitlines(keepends=True) if b"\r" not in data else _nl_lines(data):
        line_start, pos = pos, pos + len(raw)
        if (start > 0 and line_start <= start) or (end >= 0 and line_start > end):
            continue
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        elif raw.endswith(b"\r"):
            raw = raw[:-1]
        out.append(raw)
    return out


def _nl_lines(data: bytes) -> list:
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    return lines + ([parts[-1]] if parts[-1] else [])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=60).map(lambda b: b.replace(b"\x00", b"\n")),
       cuts=st.lists(st.integers(0, 60), max_size=4), block=st.integers(1, 9))
def test_read_text_split_blocks_match_line_by_line_reading(tmp_path_factory, data, cuts, block):
    import dataflow.io as dio
    path = str(tmp_path_factory.mktemp("blocks") / "f")
    with open(path, "wb") as f:
        f.write(data)
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    old = dio.TEXT_BLOCK
    dio.TEXT_BLOCK = block
    try:
        got = [line for a, b in itertools.pairwise(bounds)
               for line in dio.read_text_split((path, a, b, False))]
        whole = list(dio.read_text_split((path, 0, -1, False)))
    finally:
        dio.TEXT_BLOCK = old
    expect = [line for a, b in itertools.pairwise(bounds) for line in _model_split(data, a, b)]
    assert got == expect
    assert whole == _model_split(data, 0, -1)
    if len(bounds) > 1:
        assert got == whole  # splits lose no line and share none
