"""Serialisation of closures, tasks and results.

The C :mod:`pickle` pickler runs first because it is fast and its output is small. Functions it
could only refer to by a name that does not exist (lambdas, nested functions, functions of
``__main__``) are handed to :mod:`dill` one by one, and their bytes can be cached across the
tasks of a job, so a task costs one C-pickle pass. When anything else defeats pickle
(interactively defined classes, say) the whole object goes through dill. A one-byte tag says
which one wrote the bytes. RDDs and the
Context refuse to be pickled (see :func:`refuse_pickling`), so a closure that captured one
fails here with :class:`~dataflow.errors.ClosureCaptureError` instead of shipping the driver's
state to an executor. Authenticating the bytes (HMAC) is left to the transport.

Examples
--------
>>> f = lambda x: x + 1
>>> loads(dumps(f))(41)
42
>>> loads(dumps([1, "a", None]))
[1, 'a', None]
"""
from __future__ import annotations

import io
import pickle
from types import FunctionType
from typing import Any, NoReturn

import dill

from .errors import ClosureCaptureError, SerializationError

_PICKLE = b"P"
_DILL = b"D"
PROTOCOL = pickle.HIGHEST_PROTOCOL


class _Pickler(pickle.Pickler):
    """C pickler that sends functions without an importable name through dill."""

    def __init__(self, file: Any, cache: dict) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self.cache = cache

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is not FunctionType or not _needs_dill(obj):
            return NotImplemented
        hit = self.cache.get(id(obj))
        if hit is None:
            # keep ``obj`` alive beside its bytes so its id is not reused within the cache
            hit = self.cache[id(obj)] = (obj, dill.dumps(obj, protocol=PROTOCOL, recurse=True))
        return _load_function, (hit[1],)


def _needs_dill(fn: FunctionType) -> bool:
    qual = fn.__qualname__
    return "<lambda>" in qual or "<locals>" in qual or fn.__module__ in ("__main__", None)


def _load_function(blob: bytes) -> Any:
    return dill.loads(blob)


def dumps(obj: Any, what: str = "object", cache: dict | None = None) -> bytes:
    """Serialise ``obj`` with pickle, falling back to dill.

    Parameters
    ----------
    obj : object
        What to serialise.
    what : str
        Words naming ``obj`` in an error message (e.g. ``"the function given to map"``).
    cache : dict, optional
        Serialised functions by object id, shared by the calls that ship the same closures
        (the tasks of one job).

    Raises
    ------
    ClosureCaptureError
        ``obj`` refers to an RDD or a Context.
    SerializationError
        Neither pickle nor dill can serialise ``obj``.
    """
    try:
        buf = io.BytesIO()
        buf.write(_PICKLE)
        _Pickler(buf, {} if cache is None else cache).dump(obj)
        return buf.getvalue()
    except ClosureCaptureError:
        raise
    except RecursionError as exc:
        raise SerializationError(f"cannot serialise {what}: too deeply nested ({exc})") from None
    except Exception:  # noqa: BLE001, S110 - anything pickle rejects goes to dill
        pass
    try:
        return _DILL + dill.dumps(obj, protocol=PROTOCOL, recurse=True)
    except ClosureCaptureError:
        raise
    except Exception as exc:  # noqa: BLE001 - dill raises many types; all mean the same
        raise SerializationError(
            f"cannot serialise {what} ({_describe(obj)}): {type(exc).__name__}: {exc}"
        ) from None


def loads(data: bytes) -> Any:
    """Inverse of :func:`dumps`."""
    tag, body = data[:1], memoryview(data)[1:]
    if tag == _PICKLE:
        return pickle.loads(body)
    if tag == _DILL:
        return dill.loads(bytes(body))
    raise SerializationError(f"unknown serialisation tag {tag!r}")


def refuse_pickling(kind: str) -> NoReturn:
    """Raise the error for a closure that captured a driver-only object of type ``kind``."""
    raise ClosureCaptureError(
        f"a function or object sent to the executors refers to {kind}. {kind} objects exist "
        f"only on the driver: call actions and transformations from driver code, not inside "
        f"functions given to transformations (use a broadcast variable or collect() first)"
    )


def _describe(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    mod = getattr(obj, "__module__", None)
    if name:
        return f"{mod}.{name}" if mod else name
    return type(obj).__name__
