"""Checkpoints: every island's population, hall of fame and NSGA-II ranks as one Arrow IPC file
(lz4-compressed), with generation counters, RNG states and the run's history as JSON in the
schema metadata.

The table has one row per stored individual: ``island``, ``role`` (``population`` or
``hall_of_fame``), ``genome`` (a fixed-size list in the space's storage layout), ``fitness``,
``viable``, ``violation``, ``hash``, ``front``, ``crowding``. It is readable with plain
``pyarrow.ipc.open_file(path).read_all()``. Writes are atomic (temporary file + rename).
What is not stored: the dedup cache (a resumed run re-evaluates genomes it had cached, so only
its evaluation count can differ).
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import numpy as np
import pyarrow as pa
from pyarrow import ipc

from .errors import CheckpointError
from .population import Population

__all__ = ["FORMAT", "read_checkpoint", "write_checkpoint"]

FORMAT = "offerpool.genetic.checkpoint/1"


def _genome_type(dtype: np.dtype, width: int) -> pa.DataType:
    return pa.list_(pa.from_numpy_dtype(dtype), width)


def _rows(state: dict[str, Any], role: str, pop: Population, objectives: int) -> dict[str, Any]:
    n = pop.n
    front = state.get("front") if role == "population" else None
    crowd = state.get("crowd") if role == "population" else None
    width = pop.genomes.shape[1]
    return {
        "island": pa.array(np.full(n, state["meta"]["island"], np.int32)),
        "role": pa.array([role] * n, pa.string()),
        "genome": pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(pop.genomes).reshape(-1)), width),
        "fitness": pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(pop.fitness).reshape(-1)), objectives),
        "viable": pa.array(pop.viable),
        "violation": pa.array(pop.violation),
        "hash": pa.array(pop.hashes, pa.uint64()),
        "front": pa.array(front if front is not None else np.full(n, -1, np.int64), pa.int64()),
        "crowding": pa.array(crowd if crowd is not None else np.zeros(n), pa.float64()),
    }


def write_checkpoint(path: str | os.PathLike[str], states: list[dict[str, Any]],
                     meta: dict[str, Any], dtype: np.dtype, width: int, objectives: int) -> None:
    """Write island states (from :meth:`Island.state`) and run metadata to ``path``."""
    parts: list[dict[str, Any]] = []
    for st in states:
        parts.append(_rows(st, "population", st["population"], objectives))
        if st.get("hall_of_fame") is not None:
            parts.append(_rows(st, "hall_of_fame", st["hall_of_fame"], objectives))
    names = ["island", "role", "genome", "fitness", "viable", "violation", "hash", "front",
             "crowding"]
    columns = [pa.concat_arrays([p[c] for p in parts]) for c in names]
    full_meta = dict(meta, format=FORMAT, islands=[st["meta"] for st in states])
    schema = pa.schema([(c, a.type) for c, a in zip(names, columns)],
                       metadata={b"offerpool": json.dumps(full_meta).encode()})
    table = pa.Table.from_arrays(columns, schema=schema)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            opts = ipc.IpcWriteOptions(compression="lz4")
            with ipc.new_file(fh, schema, options=opts) as writer:
                writer.write_table(table)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_checkpoint(path: str | os.PathLike[str], dtype: np.dtype, width: int,
                    objectives: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read ``path``; returns ``(run metadata, island states)``."""
    try:
        with pa.memory_map(os.fspath(path), "r") as source:
            table = ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid) as exc:
        raise CheckpointError(f"cannot read checkpoint {os.fspath(path)!r}: {exc}") from exc
    raw = (table.schema.metadata or {}).get(b"offerpool")
    if raw is None:
        raise CheckpointError(f"{os.fspath(path)!r} is not a genetic checkpoint")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"unsupported checkpoint format {meta.get('format')!r}")
    island = table.column("island").to_numpy()
    role = np.asarray(table.column("role").to_pylist())
    genomes = table.column("genome").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    if genomes.dtype != dtype or genomes.size != table.num_rows * width:
        raise CheckpointError("checkpoint genomes do not match the problem's genome space")
    genomes = genomes.reshape(table.num_rows, width)
    fitness = table.column("fitness").combine_chunks().flatten().to_numpy(
        zero_copy_only=False).reshape(table.num_rows, objectives)
    viable = table.column("viable").to_numpy(zero_copy_only=False)
    violation = table.column("violation").to_numpy()
    hashes = table.column("hash").to_numpy()
    front = table.column("front").to_numpy()
    crowd = table.column("crowding").to_numpy()
    def pop_at(ix: np.ndarray) -> Population:
        return Population(genomes[ix].copy(), fitness[ix].copy(), viable[ix].copy(),
                          violation[ix].copy(), hashes[ix].copy())

    states = []
    for imeta in meta["islands"]:
        mine = island == imeta["island"]
        p = np.flatnonzero(mine & (role == "population"))
        h = np.flatnonzero(mine & (role == "hall_of_fame"))
        has_front = p.size and (front[p] >= 0).all()
        states.append({"meta": imeta, "population": pop_at(p),
                       "hall_of_fame": pop_at(h) if h.size else None,
                       "front": front[p].copy() if has_front else None,
                       "crowd": crowd[p].copy() if has_front else None})
    return meta, states
