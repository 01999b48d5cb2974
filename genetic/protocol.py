"""The small messages between the genetic framework's scheduler and its island executors.

Everything an island sends back (statistics, emigrants, checkpoint states, its final state)
and everything the scheduler relays (immigrants, stop) is one *frame*: a 4-byte big-endian
header length, a JSON header, then raw array bytes whose dtype and shape the header lists.
Dtypes come from a short whitelist and arrays are rebuilt with ``numpy.frombuffer``, so
decoding a frame never runs code: nothing travelling from an executor is ever unpickled.

The one pickled payload is the task's ``data`` (the :class:`~genetic.problem.Problem`, which
may hold user functions, plus the island's settings): it goes from the framework to its own
executor program only. :func:`pack_spec` / :func:`unpack_spec` are the seam where a payload
HMAC (a later issue) will be added and checked.

Frames larger than the substrate's payload cap are not sent inline: the executor writes them
under its ``framework_dir`` and sends a small ``file`` frame naming the agent and the path,
which the scheduler reads with :func:`substrate.read_agent_file`.

Examples
--------
>>> import numpy as np
>>> frame = encode("stats", {"island": 1}, {"x": np.arange(3.0)})
>>> kind, header, arrays = decode(frame)
>>> kind, header["island"], arrays["x"].tolist()
('stats', 1, [0.0, 1.0, 2.0])
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from typing import Any

import numpy as np

from .errors import GeneticError
from .population import Population

__all__ = [
    "PAYLOAD_LIMIT",
    "ProtocolError",
    "decode",
    "encode",
    "pack_migrants",
    "pack_population",
    "pack_spec",
    "pack_state",
    "migrants_epoch",
    "migrants_layout",
    "migrants_size",
    "unpack_migrants",
    "unpack_population",
    "unpack_spec",
    "unpack_state",
]

#: Frames above this size travel as files (the substrate's cap is 4 MiB per message).
PAYLOAD_LIMIT = 3 * 1024 * 1024
_MAGIC = b"OPGA"
_DTYPES = frozenset({"<u8", "<i8", "<i4", "<f8", "|b1", "<u4", "|u1"})
_POP_FIELDS = ("genomes", "fitness", "viable", "violation", "hashes")


class ProtocolError(GeneticError):
    """A frame is malformed (truncated, unknown dtype, inconsistent sizes)."""


def encode(kind: str, header: dict[str, Any] | None = None,
           arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """One frame: ``kind`` and a JSON-able ``header``, plus named arrays."""
    specs, blobs = [], []
    for name, arr in (arrays or {}).items():
        arr = np.ascontiguousarray(arr)
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        arr = arr.astype(dt, copy=False)
        if dt.str not in _DTYPES:
            raise ProtocolError(f"array {name!r} has unsupported dtype {dt.str}")
        specs.append([name, dt.str, list(arr.shape)])
        blobs.append(arr.tobytes())
    head = json.dumps({"kind": kind, "header": header or {}, "arrays": specs},
                      separators=(",", ":")).encode()
    return b"".join([_MAGIC, struct.pack(">I", len(head)), head, *blobs])


def decode(frame: bytes) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """Inverse of :func:`encode`; raises :class:`ProtocolError` on anything malformed."""
    view = memoryview(frame)
    if len(view) < 8 or bytes(view[:4]) != _MAGIC:
        raise ProtocolError("not a genetic frame")
    (n,) = struct.unpack(">I", view[4:8])
    try:
        head = json.loads(bytes(view[8:8 + n]))
        kind, header, specs = head["kind"], head["header"], head["arrays"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"bad frame header: {exc}") from None
    pos = 8 + n
    arrays: dict[str, np.ndarray] = {}
    for name, dt, shape in specs:
        if dt not in _DTYPES or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise ProtocolError(f"bad array spec {name!r}: {dt} {shape}")
        dtype = np.dtype(dt)
        size = math.prod(shape) * dtype.itemsize   # (not np.prod: a frame per epoch)
        if pos + size > len(view):
            raise ProtocolError("truncated frame")
        arrays[name] = np.frombuffer(view[pos:pos + size], dtype=dtype).reshape(shape).copy()
        pos += size
    if pos != len(view):
        raise ProtocolError("trailing bytes after the frame's arrays")
    return str(kind), header, arrays


def pack_population(pop: Population, prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + f: getattr(pop, f) for f in _POP_FIELDS}


def unpack_population(arrays: dict[str, np.ndarray], prefix: str = "") -> Population | None:
    if prefix + "genomes" not in arrays:
        return None
    return Population(*(arrays[prefix + f] for f in _POP_FIELDS))


# Asynchronous migrants are written to a file every epoch and read by other islands, so their
# layout is fixed binary instead of a frame: the readers know the dtypes and widths (the same
# problem), a reader that already took an epoch looks at 24 bytes and stops, and neither side
# builds or parses JSON on the islands' hot path.
_MIGRANTS = struct.Struct("<4sIqQ")     # magic, CRC32 of what follows it, epoch, count
_MIG_MAGIC = b"OPGM"


def pack_migrants(epoch: int, pop: Population) -> bytes:
    """``pop`` (the emigrants of ``epoch``) as the bytes of an island's migrants file.

    Examples
    --------
    >>> import numpy as np
    >>> pop = Population(np.arange(6.0).reshape(2, 3), np.ones((2, 1)), np.ones(2, bool),
    ...                  np.zeros(2), np.arange(2, dtype=np.uint64))
    >>> data = pack_migrants(7, pop)
    >>> migrants_epoch(data), unpack_migrants(data, pop).genomes.tolist()
    (7, [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    """
    body = b"".join([struct.pack("<qQ", epoch, pop.n)] +
                    [np.ascontiguousarray(getattr(pop, f)).tobytes() for f in _POP_FIELDS])
    return _MIG_MAGIC + struct.pack("<I", zlib.crc32(body)) + body


def migrants_epoch(data: bytes) -> int | None:
    """The epoch a migrants file holds, or ``None`` when it is not one (empty, foreign)."""
    if len(data) < _MIGRANTS.size or data[:4] != _MIG_MAGIC:
        return None
    return int(_MIGRANTS.unpack_from(data)[2])


def migrants_layout(like: Population) -> list[tuple[np.dtype, tuple[int, ...], int]]:
    """(dtype, row shape, row bytes) of each population array: what a reader needs to know
    of the migrants it takes (compute it once, pass it to :func:`unpack_migrants`)."""
    fields = [getattr(like, f) for f in _POP_FIELDS]
    return [(a.dtype, a.shape[1:], a.dtype.itemsize * math.prod(a.shape[1:])) for a in fields]


def _layout(like: Any) -> list[tuple[np.dtype, tuple[int, ...], int]]:
    return migrants_layout(like) if isinstance(like, Population) else like


def migrants_size(data: bytes, like: Any) -> int:
    """How many bytes the migrants file whose first bytes are ``data`` needs."""
    if len(data) < _MIGRANTS.size or data[:4] != _MIG_MAGIC:
        return 0
    n = _MIGRANTS.unpack_from(data)[3]
    return _MIGRANTS.size + n * sum(r[2] for r in _layout(like))


def unpack_migrants(data: bytes, like: Any) -> Population | None:
    """Inverse of :func:`pack_migrants` for a population shaped like ``like`` (a
    :class:`Population`, or its :func:`migrants_layout`); ``None`` when the bytes are
    incomplete or do not check (caught mid-write)."""
    if len(data) < _MIGRANTS.size or data[:4] != _MIG_MAGIC:
        return None
    _, crc, _, n = _MIGRANTS.unpack_from(data)
    rows = _layout(like)
    end = _MIGRANTS.size + n * sum(r[2] for r in rows)
    # (the file is overwritten in place, so it may be longer than what was last written)
    if len(data) < end or zlib.crc32(memoryview(data)[8:end]) != crc:
        return None
    pos, out = _MIGRANTS.size, []
    for dtype, shape, size in rows:
        out.append(np.frombuffer(data, dtype, n * size // dtype.itemsize, pos)
                   .reshape((n,) + shape))
        pos += n * size
    return Population(*out)


def pack_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """An :meth:`Island.state` as (JSON header, arrays)."""
    arrays = pack_population(state["population"], "pop.")
    if state.get("hall_of_fame") is not None:
        arrays.update(pack_population(state["hall_of_fame"], "hof."))
    for key in ("front", "crowd"):
        if state.get(key) is not None:
            arrays[key] = state[key]
    return {"meta": state["meta"]}, arrays


def unpack_state(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    pop = unpack_population(arrays, "pop.")
    if pop is None:
        raise ProtocolError("a state frame without a population")
    return {"meta": header["meta"], "population": pop,
            "hall_of_fame": unpack_population(arrays, "hof."),
            "front": arrays.get("front"), "crowd": arrays.get("crowd")}


def pack_spec(spec: dict[str, Any]) -> bytes:
    """The island task's payload (framework -> its own executor only).

    Seam for payload integrity: sign here, verify in :func:`unpack_spec`.
    """
    import dill
    return dill.dumps(spec, recurse=True)


def unpack_spec(data: bytes) -> dict[str, Any]:
    import dill
    return dill.loads(data)
