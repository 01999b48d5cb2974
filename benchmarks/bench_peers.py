"""Side-by-side benchmark: dataflow ``local[2]`` against PySpark RDD ``local[2]`` and Dask bag.

Workloads (issue "dataflow vs peers"; sizes at ``--scale 1``):

* W1 word count over ~200 MB of Zipf-distributed words in 16 text files;
* W2 ``reduceByKey(add)`` on 10M ``(int, int)`` pairs with 1M distinct keys;
* W3 ``groupByKey().mapValues(len)`` on the same pairs;
* W4 ``sortByKey()`` of the same pairs;
* W5 join of 5M and 1M rows on an int key;
* W6 ``parallelize(range(10M)).map(x * x).filter(even).sum()``;
* the Context start-up time and the latency of a tiny job on a warm context.

The pairs are generated inside the partitions, the same way in every system:
``range(n).map(lambda i: ((i * 7919) % keys, i))`` (7919 is prime, so every key occurs
n / keys times). The W1 files are generated once, seeded, under ``benchmarks/data/``
(gitignored) and reused.

Every system computes the same answer and the script checks it against a plain reference
computed once with NumPy (W1's word counts are taken while the files are generated):

* W1, W2, W3 collect the whole result (word -> count, key -> sum, key -> group size);
* W4 runs ``sortByKey().mapPartitions(summary)`` and checks that the partitions are sorted,
  in order, and hold all pairs (count, sum of keys, sum of values) -- collecting 10M pairs
  would time the driver, not the sort;
* W5 reduces the joined rows to ``(count, sum of left + right values)``;
* W6 compares the sum.

Dask bag has no sort, so W4 is "n/a" for Dask; its ``join`` is a broadcast hash join against
a one-partition bag (the only form it offers). Dask runs on the multiprocessing scheduler
with a persistent pool of 2 processes (the counterpart of ``local[2]``). PySpark runs the RDD
API with ``SparkContext("local[2]")``.

Times are wall seconds, the median of ``--repeat`` runs; the table also gives the CPU seconds
(user + system) of the benchmark process and all its descendants during each workload, which
moves less than wall time when other work shares the machine. Peers that are not installed (or
PySpark without a JVM) are reported as unavailable, not fatal. ``--install`` first runs
``pip install pyspark 'dask[bag]'`` (also available as the ``bench`` extra of the package).

Usage::

    python benchmarks/bench_peers.py [--scale 1.0] [--workloads W1,W2,...]
        [--peers offerpool,pyspark,dask] [--repeat 1] [--partitions 4] [--install]
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from operator import add
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
ALL_WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6"]
ALL_PEERS = ["offerpool", "pyspark", "dask"]
PRIME = 7919


# ----------------------------------------------------------------------------- sizes & data

class Sizes:
    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.w1_bytes = int(200e6 * scale)
        self.w1_files = 16
        self.w1_vocab = 1_000_000
        self.n_pairs = max(1, int(10_000_000 * scale))
        self.n_keys = max(1, int(1_000_000 * scale))
        self.n_left = max(1, int(5_000_000 * scale))
        self.n_right = max(1, int(1_000_000 * scale))
        self.n_range = max(1, int(10_000_000 * scale))


def word_of(k: int) -> str:
    """The k-th vocabulary word: k written in base 26 with letters (0 -> 'a', 26 -> 'ba')."""
    s = []
    while True:
        k, r = divmod(k, 26)
        s.append(chr(97 + r))
        if k == 0:
            return "".join(reversed(s))


def make_w1(sz: Sizes, seed: int = 20261123) -> tuple[str, dict[str, int]]:
    """Write (or reuse) the W1 files; return the directory and the reference word counts."""
    d = os.path.join(DATA, f"w1_zipf_{sz.w1_bytes}b_{sz.w1_files}f_s{seed}")
    counts_path = os.path.join(d, "_counts.npy")
    vocab = [word_of(k) for k in range(sz.w1_vocab)]
    if not os.path.exists(counts_path):
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        rng = np.random.default_rng(seed)
        # Zipf with exponent 1.1 over a finite vocabulary; the most frequent words get the
        # shortest spellings, as in natural text.
        p = 1.0 / np.arange(1, sz.w1_vocab + 1) ** 1.1
        p /= p.sum()
        lengths = np.fromiter((len(w) + 1 for w in vocab), dtype=np.float64, count=len(vocab))
        words_per_file = max(1, int(sz.w1_bytes / sz.w1_files / float(p @ lengths)))
        counts = np.zeros(sz.w1_vocab, dtype=np.int64)
        cdf = np.cumsum(p)
        for f in range(sz.w1_files):
            ranks = np.searchsorted(cdf, rng.random(words_per_file), side="right")
            ranks = np.minimum(ranks, sz.w1_vocab - 1)
            counts += np.bincount(ranks, minlength=sz.w1_vocab)
            ws = [vocab[r] for r in ranks.tolist()]
            with open(os.path.join(d, f"part-{f:05d}.txt.tmp"), "w") as out:
                out.writelines(" ".join(ws[i:i + 12]) + "\n" for i in range(0, len(ws), 12))
            os.replace(os.path.join(d, f"part-{f:05d}.txt.tmp"), os.path.join(d, f"part-{f:05d}.txt"))
        np.save(counts_path, counts)
    counts = np.load(counts_path)
    nz = np.nonzero(counts)[0]
    return d, {vocab[k]: int(counts[k]) for k in nz.tolist()}


def w1_glob(d: str) -> str:
    return os.path.join(d, "part-*.txt")


class Reference:
    """Plain answers, computed once with NumPy (cheap) and shared by all systems."""

    def __init__(self, sz: Sizes, workloads: list[str]) -> None:
        self.sz = sz
        if any(w in workloads for w in ("W2", "W3", "W4")):
            i = np.arange(sz.n_pairs, dtype=np.int64)
            keys = (i * PRIME) % sz.n_keys
            self.group_len = np.bincount(keys, minlength=sz.n_keys)
            self.key_sum = np.bincount(keys, weights=i.astype(np.float64), minlength=sz.n_keys)
            assert sz.n_pairs ** 2 < 2 ** 53  # float64 sums are exact
            self.key_sum = self.key_sum.astype(np.int64)
            self.w4 = (sz.n_pairs, int(keys.sum()), int(i.sum()))
        if "W5" in workloads:
            i = np.arange(sz.n_left, dtype=np.int64)
            lk = (i * PRIME) % sz.n_keys
            # right side: (2j, 3j) for j < n_right -> only even keys below 2 * n_right match
            m = (lk % 2 == 0) & (lk < 2 * sz.n_right)
            self.w5 = (int(m.sum()), int(i[m].sum() + (3 * (lk[m] // 2)).sum()))
        if "W6" in workloads:
            # sum of (2k)^2 for 0 <= 2k < n, in closed form (exact Python ints)
            m = (sz.n_range + 1) // 2
            self.w6 = 4 * (m - 1) * m * (2 * m - 1) // 6

    def check_keyed(self, got: Any, expect: np.ndarray) -> bool:
        """``got``: list of (key, value) over keys 0..n_keys-1."""
        if len(got) != len(expect):
            return False
        arr = np.array(got, dtype=np.int64)
        order = np.argsort(arr[:, 0])
        return bool((arr[order, 0] == np.arange(len(expect))).all()
                    and (arr[order, 1] == expect).all())

    def check_w4(self, parts: list) -> bool:
        parts = [p for p in parts if p[0]]
        n = sum(p[0] for p in parts)
        ks = sum(p[1] for p in parts)
        vs = sum(p[2] for p in parts)
        ordered = all(p[5] for p in parts) and all(
            a[4] <= b[3] for a, b in itertools.pairwise(parts))
        return ordered and (n, ks, vs) == self.w4


def summarize_sorted(it: Any) -> list:
    """One partition of W4 -> [(count, sum keys, sum values, first key, last key, sorted?)]."""
    n = ks = vs = 0
    first = last = None
    ok = True
    for k, v in it:
        if last is not None and k < last:
            ok = False
        if first is None:
            first = k
        last = k
        n += 1
        ks += k
        vs += v
    return [(n, ks, vs, first, last, ok)]


def w5_fold(a: tuple, b: tuple) -> tuple:
    return (a[0] + b[0], a[1] + b[1])


# ----------------------------------------------------------------------------- the systems
# Each system: start() -> seconds, tiny() -> seconds of one warm tiny job, run(W) -> answer,
# stop(). offerpool and PySpark run the very same RDD program (that is the point of the API
# compatibility); only how the context is made differs. Dask bag has its own API.

class RddSystem:
    """The workloads written once against PySpark's RDD API; subclasses make the context."""

    name = ""

    def __init__(self, sz: Sizes, parts: int, w1_dir: str) -> None:
        self.sz, self.parts, self.w1_dir = sz, parts, w1_dir
        self.ctx: Any = None

    def start(self) -> float:
        raise NotImplementedError

    def tiny(self) -> float:
        t0 = time.perf_counter()
        assert self.ctx.parallelize([1, 2, 3], 2).count() == 3
        return time.perf_counter() - t0

    def pairs(self) -> Any:
        nk = self.sz.n_keys
        return self.ctx.range(self.sz.n_pairs, numSlices=self.parts).map(
            lambda i: ((i * 7919) % nk, i))

    def run(self, w: str) -> Any:
        ctx, sz, parts = self.ctx, self.sz, self.parts
        if w == "W1":
            return dict(ctx.textFile(self.w1_dir).flatMap(str.split)
                        .map(lambda x: (x, 1)).reduceByKey(add).collect())
        if w == "W2":
            return self.pairs().reduceByKey(add).collect()
        if w == "W3":
            return self.pairs().groupByKey().mapValues(len).collect()
        if w == "W4":
            return self.pairs().sortByKey().mapPartitions(summarize_sorted).collect()
        if w == "W5":
            nk = sz.n_keys
            left = ctx.range(sz.n_left, numSlices=parts).map(lambda i: ((i * 7919) % nk, i))
            right = ctx.range(sz.n_right, numSlices=parts).map(lambda j: (2 * j, 3 * j))
            return (left.join(right).map(lambda kv: (1, kv[1][0] + kv[1][1]))
                    .reduce(w5_fold))
        if w == "W6":
            return (ctx.parallelize(range(sz.n_range), parts).map(lambda x: x * x)
                    .filter(lambda x: x % 2 == 0).sum())
        raise ValueError(w)

    def stop(self) -> None:
        self.ctx.stop()


class Offerpool(RddSystem):
    name = "offerpool"

    def start(self) -> float:
        from dataflow import Context
        t0 = time.perf_counter()
        self.ctx = Context("local[2]")
        return time.perf_counter() - t0


class PySpark(RddSystem):
    name = "pyspark"

    def start(self) -> float:
        from pyspark import SparkConf, SparkContext
        conf = (SparkConf().setMaster("local[2]").setAppName("bench_peers")
                .set("spark.ui.enabled", "false")
                .set("spark.ui.showConsoleProgress", "false")
                .set("spark.driver.memory", "4g"))
        t0 = time.perf_counter()
        self.ctx = SparkContext(conf=conf)
        elapsed = time.perf_counter() - t0
        self.ctx.setLogLevel("ERROR")
        return elapsed


class Dask:
    name = "dask"

    def __init__(self, sz: Sizes, parts: int, w1_dir: str) -> None:
        self.sz, self.parts, self.w1_dir = sz, parts, w1_dir

    def start(self) -> float:
        """Dask bag has no context: start-up = make a 2-process pool and run a first job."""
        import concurrent.futures
        import multiprocessing

        import dask
        import dask.bag as db
        self.db = db
        t0 = time.perf_counter()
        self.pool = concurrent.futures.ProcessPoolExecutor(
            2, mp_context=multiprocessing.get_context("spawn"))
        self.cfg = dask.config.set(scheduler="processes", pool=self.pool, num_workers=2)
        self.cfg.__enter__()
        assert db.from_sequence([1, 2, 3], npartitions=2).count().compute() == 3
        return time.perf_counter() - t0

    def tiny(self) -> float:
        t0 = time.perf_counter()
        assert self.db.from_sequence([1, 2, 3], npartitions=2).count().compute() == 3
        return time.perf_counter() - t0

    def pairs(self) -> Any:
        nk = self.sz.n_keys
        return self.db.range(self.sz.n_pairs, npartitions=self.parts).map(
            lambda i: ((i * 7919) % nk, i))

    def run(self, w: str) -> Any:
        db, sz, parts = self.db, self.sz, self.parts
        if w == "W1":
            return dict(db.read_text(w1_glob(self.w1_dir)).map(str.split).flatten()
                        .frequencies().compute())
        if w == "W2":
            return self.pairs().foldby(lambda kv: kv[0], lambda acc, kv: acc + kv[1], 0,
                                       add, 0).compute()
        if w == "W3":
            return (self.pairs().groupby(lambda kv: kv[0])
                    .map(lambda kg: (kg[0], len(kg[1]))).compute())
        if w == "W4":
            return None  # dask.bag has no sort
        if w == "W5":
            nk = sz.n_keys
            left = db.range(sz.n_left, npartitions=parts).map(lambda i: ((i * 7919) % nk, i))
            right = db.range(sz.n_right, npartitions=1).map(lambda j: (2 * j, 3 * j))
            # bag.join yields (right element, left element) for matching keys
            return (left.join(right, on_self=lambda kv: kv[0], on_other=lambda kv: kv[0])
                    .map(lambda rl: (1, rl[1][1] + rl[0][1]))
                    .fold(w5_fold, initial=(0, 0)).compute())
        if w == "W6":
            return (db.range(sz.n_range, npartitions=parts).map(lambda x: x * x)
                    .filter(lambda x: x % 2 == 0).sum().compute())
        raise ValueError(w)

    def stop(self) -> None:
        self.cfg.__exit__(None, None, None)
        self.pool.shutdown()


SYSTEMS = {"offerpool": Offerpool, "pyspark": PySpark, "dask": Dask}


# ----------------------------------------------------------------------------- cpu time

def cpu_seconds() -> float:
    """User + system CPU seconds of this process and all its live descendants (the executors,
    the JVM and its Python workers, the Dask pool): on a shared machine CPU time is steadier
    than wall time."""
    import psutil
    total = 0.0
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue  # ended in between
        total += t.user + t.system + (t.children_user + t.children_system if p is me else 0.0)
    return total


# ----------------------------------------------------------------------------- availability

def java_version() -> str | None:
    java = shutil.which("java")
    if java is None:
        return None
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (out.stderr or out.stdout).strip().splitlines()
    return lines[0] if lines else None


def unavailable(peer: str) -> str | None:
    """Why ``peer`` cannot run here, or None."""
    try:
        if peer == "pyspark":
            import pyspark  # noqa: F401
            if java_version() is None:
                return ("no JVM: install one, e.g. `apt-get update && "
                        "apt-get install -y openjdk-17-jre-headless`")
        elif peer == "dask":
            import dask.bag  # noqa: F401
    except ImportError as e:
        return f"not installed ({e}); run with --install or `pip install '.[bench]'`"
    return None


def install() -> None:
    cmd = [sys.executable, "-m", "pip", "install", "pyspark", "dask[bag]"]
    print("installing:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=False)
    if java_version() is None:
        print("PySpark needs a JVM and `java` was not found; on Debian/Ubuntu: "
              "apt-get update && apt-get install -y openjdk-17-jre-headless", flush=True)


# ----------------------------------------------------------------------------- main

DESCRIPTIONS = {
    "W1": lambda sz: f"W1 word count, {sz.w1_bytes / 1e6:g} MB Zipf words, {sz.w1_files} files",
    "W2": lambda sz: f"W2 reduceByKey(add), {sz.n_pairs / 1e6:g}M pairs / {sz.n_keys / 1e6:g}M keys",
    "W3": lambda sz: "W3 groupByKey().mapValues(len), same pairs",
    "W4": lambda sz: "W4 sortByKey, same pairs",
    "W5": lambda sz: f"W5 join {sz.n_left / 1e6:g}M x {sz.n_right / 1e6:g}M rows on int key",
    "W6": lambda sz: f"W6 range({sz.n_range / 1e6:g}M).map(x*x).filter(even).sum()",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full sizes")
    ap.add_argument("--workloads", default=",".join(ALL_WORKLOADS))
    ap.add_argument("--peers", default=",".join(ALL_PEERS))
    ap.add_argument("--repeat", type=int, default=1, help="runs per workload; the median is shown")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of generated data")
    ap.add_argument("--tiny-runs", type=int, default=20)
    ap.add_argument("--install", action="store_true", help="pip install pyspark 'dask[bag]' first")
    args = ap.parse_args(argv)
    workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    peers = [p.strip().lower() for p in args.peers.split(",") if p.strip()]
    for w in workloads:
        if w not in ALL_WORKLOADS:
            ap.error(f"unknown workload {w}")
    for p in peers:
        if p not in ALL_PEERS:
            ap.error(f"unknown peer {p}")
    if args.install:
        install()
    sz = Sizes(args.scale)

    jv = java_version()
    versions = []
    for mod in ("pyspark", "dask"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} not installed")
    print(f"command : {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine : {platform.platform()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}")
    print(f"java    : {jv or 'not found'}")
    print(f"peers   : {', '.join(versions)}")
    print(f"sizes   : scale {args.scale:g}, {args.partitions} partitions of generated data, "
          f"median of {args.repeat}")
    print(flush=True)

    t0 = time.perf_counter()
    w1_dir, w1_ref = make_w1(sz) if "W1" in workloads else ("", {})
    ref = Reference(sz, workloads)
    print(f"data and references ready in {time.perf_counter() - t0:.1f} s\n", flush=True)

    def check(w: str, got: Any) -> bool:
        if w == "W1":
            return got == w1_ref
        if w == "W2":
            return ref.check_keyed(list(got), ref.key_sum)
        if w == "W3":
            return ref.check_keyed(list(got), ref.group_len)
        if w == "W4":
            return ref.check_w4(list(got))
        if w == "W5":
            return tuple(got) == ref.w5
        if w == "W6":
            return got == ref.w6
        raise ValueError(w)

    # results[peer][row] = (seconds or None, status); rows: "start", "tiny", W1..W6
    results: dict[str, dict[str, tuple[float | None, str]]] = {}
    cpu: dict[str, dict[str, float]] = {p: {} for p in peers}
    for peer in peers:
        res: dict[str, tuple[float | None, str]] = {}
        results[peer] = res
        why = unavailable(peer) if peer != "offerpool" else None
        if why:
            print(f"[{peer}] unavailable: {why}", flush=True)
            continue
        system = SYSTEMS[peer](sz, args.partitions, w1_dir)
        try:
            res["start"] = (system.start(), "")
        except Exception as e:  # noqa: BLE001 -- a peer failing must not stop the others
            print(f"[{peer}] failed to start: {type(e).__name__}: {e}", flush=True)
            continue
        try:
            system.tiny()  # warm-up
            tinies = sorted(system.tiny() for _ in range(args.tiny_runs))
            res["tiny"] = (statistics.median(tinies), "")
            print(f"[{peer}] start-up {res['start'][0]:.3f} s, tiny job median "
                  f"{res['tiny'][0] * 1e3:.1f} ms", flush=True)
            for w in workloads:
                times, cpus, ok, status = [], [], True, ""
                for _ in range(args.repeat):
                    c = cpu_seconds()
                    t = time.perf_counter()
                    try:
                        got = system.run(w)
                    except Exception as e:  # noqa: BLE001
                        status = f"error: {type(e).__name__}: {str(e)[:200]}"
                        break
                    dt = time.perf_counter() - t
                    if got is None:
                        status = "n/a"
                        break
                    times.append(dt)
                    cpus.append(cpu_seconds() - c)
                    ok = ok and check(w, got)
                    del got
                if times:
                    res[w] = (statistics.median(times), "ok" if ok else "WRONG")
                    cpu[peer][w] = statistics.median(cpus)
                else:
                    res[w] = (None, status)
                shown = (f"{res[w][0]:.2f} s (cpu {cpu[peer][w]:.2f} s)"
                         if res[w][0] is not None else "")
                print(f"[{peer}] {w} {shown} {res[w][1]}", flush=True)
        finally:
            system.stop()
    print()

    rows = [("start", "Context start-up (s)")] + [("tiny", "tiny job, warm, median (ms)")]
    rows += [(w, DESCRIPTIONS[w](sz)) for w in workloads]
    header = ["workload", "offerpool local[2] s", "PySpark s", "Dask s",
              "CPU s offerpool / PySpark / Dask",
              "PySpark/offerpool", "Dask/offerpool", "check"]
    table = []
    for key, label in rows:
        def cell(peer: str, key: str = key) -> str:
            if peer not in peers:
                return "not run"
            r = results[peer].get(key)
            if r is None:
                return "unavailable" if not results[peer] else "-"
            t, st = r
            if t is None:
                return st if len(st) < 40 else st[:37] + "..."
            return f"{t * 1e3:.1f}" if key == "tiny" else f"{t:.3f}" if key == "start" else f"{t:.2f}"

        def ratio(peer: str, key: str = key) -> str:
            a = results.get("offerpool", {}).get(key)
            b = results.get(peer, {}).get(key)
            if not a or not b or a[0] is None or b[0] is None:
                return "-"
            return f"{b[0] / a[0]:.2f}x"

        checks = sorted({f"{p}: {results[p][key][1]}" for p in peers
                         if key in results[p] and results[p][key][1] not in ("", "ok")})
        if key in ("start", "tiny"):
            check_s = "-"
        else:
            check_s = "; ".join(checks) if checks else "ok"
        cpus = " / ".join(f"{cpu[p][key]:.1f}" if key in cpu.get(p, {}) else "-"
                          for p in ALL_PEERS)
        table.append([label, cell("offerpool"), cell("pyspark"), cell("dask"), cpus,
                      ratio("pyspark"), ratio("dask"), check_s])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join([" --- "] + [" ---: "] * 6 + [" --- "]) + "|")
    for r in table:
        print("| " + " | ".join(r) + " |")
    bad = any(results[p].get(w, (0, "ok"))[1] == "WRONG" for p in peers for w in workloads)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
