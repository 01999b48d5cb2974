"""Serialisation of closures, tasks and results.

Plain :mod:`pickle` is tried first because it is fast and its output is small; when it
cannot handle an object (lambdas, nested functions, interactively defined classes) the object
is serialised with :mod:`dill`. A one-byte tag says which one wrote the bytes. RDDs and the
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

import pickle
from typing import Any, NoReturn

import dill

from .errors import ClosureCaptureError, SerializationError

_PICKLE = b"P"
_DILL = b"D"
PROTOCOL = pickle.HIGHEST_PROTOCOL


def dumps(obj: Any, what: str = "object") -> bytes:
    """Serialise ``obj`` with pickle, falling back to dill.

    Parameters
    ----------
    obj : object
        What to serialise.
    what : str
        Words naming ``obj`` in an error message (e.g. ``"the function given to map"``).

    Raises
    ------
    ClosureCaptureError
        ``obj`` refers to an RDD or a Context.
    SerializationError
        Neither pickle nor dill can serialise ``obj``.
    """
    try:
        return _PICKLE + pickle.dumps(obj, protocol=PROTOCOL)
    except ClosureCaptureError:
        raise
    except RecursionError as exc:
        raise SerializationError(f"cannot serialise {what}: too deeply nested ({exc})") from None
    except Exception:
        pass
    try:
        return _DILL + dill.dumps(obj, protocol=PROTOCOL, recurse=True)
    except ClosureCaptureError:
        raise
    except Exception as exc:
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
