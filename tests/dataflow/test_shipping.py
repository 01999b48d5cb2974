"""Context.addPyFile / addFile / SparkFiles on a real cluster, including executors that were
already running when the files were added."""
from __future__ import annotations

import pytest

from dataflow import Context, SparkFiles
from substrate import LocalCluster

pytestmark = pytest.mark.timeout(120)


def test_files_added_after_executors_started_reach_them(tmp_path):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "late_mod.py").write_text("def f(x):\n    return x + 100\n")
    pkg = mods / "late_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .inner import g\n")
    (pkg / "inner.py").write_text("def g(x):\n    return -x\n")
    data = tmp_path / "table.txt"
    data.write_text("7")
    with LocalCluster(agents=2, cpus=2, mem=2048) as cluster, \
            Context(cluster.master, progress=False) as ctx:
        assert ctx.parallelize(range(4), 4).map(lambda x: x).collect() == [0, 1, 2, 3]
        pids = dict(ctx._backend.executor_pids())
        assert pids
        ctx.addPyFile(str(mods / "late_mod.py"))
        ctx.addPyFile(str(pkg))
        ctx.addFile(str(data))
        got = ctx.parallelize(range(4), 4).map(
            lambda x: (__import__("late_mod").f(x), __import__("late_pkg").g(x),
                       int(open(SparkFiles.get("table.txt")).read()))).collect()
        assert got == [(100, 0, 7), (101, -1, 7), (102, -2, 7), (103, -3, 7)]
        # the same executor processes, not restarted
        assert set(pids.values()) <= set(ctx._backend.executor_pids().values())
        import late_mod  # the driver can import what it added, as in PySpark
        assert late_mod.f(1) == 101
        assert open(SparkFiles.get("table.txt")).read() == "7"


def test_add_file_errors_name_the_file(tmp_path):
    with Context("inline") as ctx:
        with pytest.raises(Exception, match="no-such.py"):
            ctx.addPyFile(str(tmp_path / "no-such.py"))
        with pytest.raises(ValueError, match="recursive=True"):
            ctx.addFile(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="never-added.txt"):
        SparkFiles.get("never-added.txt")
