"""Evaluate an analysed expression (:mod:`dataflow.vectorize`) on NumPy columns, exactly.

The result must be what calling the Python function on every element would give, or nothing:
:func:`evaluate` raises :class:`Fallback` whenever NumPy could differ from Python, and the
caller then runs the Python function on those elements instead. That covers:

* int overflow: every int column carries bounds ``lo <= x <= hi`` (exact for a range, the
  min/max of an array otherwise) and each operation computes the bounds of its result with
  Python ints; an operation whose result could leave int64 falls back;
* division and modulo by zero (Python raises ``ZeroDivisionError``, NumPy does not): a zero
  divisor anywhere falls back, so the Python path raises it where and when Python would;
* ``//`` and ``%`` follow Python's floor semantics (NumPy's ``floor_divide`` and ``remainder``
  do, for ints and floats alike); ``INT64_MIN // -1`` is excluded by the bounds;
* ``/`` of ints is correctly rounded in Python: vectorised only when both sides are exactly
  representable as floats (``|x| <= 2**53``); likewise int-to-float comparisons;
* ``**`` only with an int base and a constant exponent ``0 <= e <= 64``;
* bools take part in arithmetic as ints (``True + True == 2``), as in Python;
* ``and`` / ``or`` / ``if`` evaluate both sides on every element (so an error or overflow on a
  side Python would not evaluate also falls back) and must give one type.

Examples
--------
>>> import numpy as np
>>> from dataflow.vectorize import analyse
>>> x = Col(np.arange(-3, 4), -3, 3)
>>> evaluate(analyse(lambda v: (v * 7) // 2), [x]).arr.tolist()
[-11, -7, -4, 0, 3, 7, 10]
>>> try:
...     evaluate(analyse(lambda v: 10 // v), [x])
... except Fallback as exc:
...     print("fall back:", exc)
fall back: division by zero
"""
from __future__ import annotations

import operator
from typing import Any

import numpy as np

INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1
EXACT_FLOAT_INT = 2 ** 53
MAX_EXPONENT = 64


class Fallback(Exception):
    """NumPy cannot give Python's result here; use the Python function."""


class Col:
    """A column: a 1-d bool, int64 or float64 array; ints carry bounds (Python ints)."""

    __slots__ = ("arr", "hi", "lo")

    def __init__(self, arr: np.ndarray, lo: int | None = None, hi: int | None = None) -> None:
        self.arr = arr
        if arr.dtype.kind == "i" and lo is None:
            lo, hi = (int(arr.min()), int(arr.max())) if len(arr) else (0, 0)
        self.lo, self.hi = lo, hi

    @property
    def kind(self) -> str:
        return self.arr.dtype.kind

    def __len__(self) -> int:
        return len(self.arr)


def column(arr: np.ndarray) -> Col:
    """A column over an array of a supported dtype (anything else falls back)."""
    if arr.dtype == np.int64 or arr.dtype == np.float64 or arr.dtype == np.bool_:
        return Col(arr)
    raise Fallback(f"dtype {arr.dtype}")


def _kind(v: Any) -> str:
    if isinstance(v, Col):
        return v.kind
    t = type(v)
    if t is bool:
        return "b"
    if t is int:
        return "i"
    if t is float:
        return "f"
    raise Fallback(f"not a number: {t.__name__}")


def _as_int(v: Any) -> Any:
    """Bools as ints (Python arithmetic on bools is int arithmetic)."""
    if isinstance(v, Col):
        if v.kind == "b":
            return Col(v.arr.astype(np.int64), 0, 1)
        return v
    return int(v)


def _bounds(v: Any) -> tuple[int, int]:
    return (v.lo, v.hi) if isinstance(v, Col) else (v, v)


def _check_int(v: Any) -> None:
    lo, hi = _bounds(v)
    if lo < INT_MIN or hi > INT_MAX:
        raise Fallback("int64 overflow")


def _arr(v: Any) -> Any:
    return v.arr if isinstance(v, Col) else v


def _float(v: Any) -> Any:
    if isinstance(v, Col):
        return v.arr.astype(np.float64) if v.kind != "f" else v.arr
    try:
        return float(v)
    except OverflowError:
        raise Fallback("int too large for a float") from None


def _has_zero(v: Any) -> bool:
    if isinstance(v, Col):
        if v.kind == "i" and not (v.lo <= 0 <= v.hi):
            return False
        return bool((v.arr == 0).any())
    return v == 0


_PY_BIN = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
           "//": operator.floordiv, "%": operator.mod, "**": operator.pow}
_NP_BIN = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide,
           "//": np.floor_divide, "%": np.remainder}
_PY_CMP = {"<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
           ">": operator.gt, ">=": operator.ge}


def _scalar(v: Any) -> bool:
    return not isinstance(v, (Col, tuple))


def binary(op: str, a: Any, b: Any) -> Any:
    """``a op b`` for columns and Python numbers."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        raise Fallback("arithmetic on a tuple")
    ka, kb = _kind(a), _kind(b)
    if _scalar(a) and _scalar(b):
        try:
            return _PY_BIN[op](a, b)
        except Exception as exc:  # noqa: BLE001 - Python raises it on the record path
            raise Fallback(str(exc)) from None
    if "f" in (ka, kb):
        return _float_binary(op, a, b)
    a, b = _as_int(a), _as_int(b)
    _check_int(a)
    _check_int(b)
    return _int_binary(op, a, b)


def _float_binary(op: str, a: Any, b: Any) -> Col:
    if op == "**":
        raise Fallback("float power")  # libm pow and NumPy's power may round differently
    fa, fb = _float(a), _float(b)
    if op in ("/", "//", "%") and _has_zero(b):
        raise Fallback("division by zero")
    with np.errstate(all="ignore"):
        out = _NP_BIN[op](fa, fb)
    return Col(np.asarray(out, dtype=np.float64))


def _int_binary(op: str, a: Any, b: Any) -> Col:
    (alo, ahi), (blo, bhi) = _bounds(a), _bounds(b)
    if op == "/":
        if max(-alo, ahi, -blo, bhi) > EXACT_FLOAT_INT:
            raise Fallback("int true division beyond 2**53")
        if _has_zero(b):
            raise Fallback("division by zero")
        return Col(np.true_divide(_float(a), _float(b)))
    if op == "**":
        if not _scalar(b) or not 0 <= b <= MAX_EXPONENT:
            raise Fallback("power")
        m = max(-alo, ahi) ** b
        lo, hi = (-m if b % 2 else 0), m
        if b == 0:
            lo = hi = 1
    elif op == "+":
        lo, hi = alo + blo, ahi + bhi
    elif op == "-":
        lo, hi = alo - bhi, ahi - blo
    elif op == "*":
        corners = (alo * blo, alo * bhi, ahi * blo, ahi * bhi)
        lo, hi = min(corners), max(corners)
    elif op in ("//", "%"):
        if _has_zero(b):
            raise Fallback("division by zero")
        if alo == INT_MIN:  # INT64_MIN // -1 overflows; % stays clear of it too
            raise Fallback("int64 overflow")
        if op == "//":
            m = max(-alo, ahi)  # |a // b| <= |a| once |b| >= 1
            lo, hi = -m, m
        else:  # the sign of the divisor, smaller than it in size
            lo, hi = (blo + 1 if blo < 0 else 0), (bhi - 1 if bhi > 0 else 0)
    else:
        raise Fallback(f"operator {op}")
    if lo < INT_MIN or hi > INT_MAX:
        raise Fallback("int64 overflow")
    if op == "**":
        out = np.power(_arr(a), b, dtype=np.int64) if b else np.ones(len(_arr(a)), np.int64)
    else:
        out = _NP_BIN[op](_arr(a), _arr(b))
    return Col(np.asarray(out, dtype=np.int64), lo, hi)


def compare(op: str, a: Any, b: Any) -> Any:
    if isinstance(a, tuple) or isinstance(b, tuple):
        raise Fallback("comparison of tuples")
    ka, kb = _kind(a), _kind(b)
    if _scalar(a) and _scalar(b):
        return _PY_CMP[op](a, b)
    if "f" in (ka, kb):
        for v, k in ((a, ka), (b, kb)):
            if k == "i" and max(-_bounds(v)[0], _bounds(v)[1]) > EXACT_FLOAT_INT:
                raise Fallback("int/float comparison beyond 2**53")
        return Col(np.asarray(_PY_CMP[op](_float(a), _float(b))))
    a, b = _as_int(a), _as_int(b)
    _check_int(a)
    _check_int(b)
    return Col(np.asarray(_PY_CMP[op](_arr(a), _arr(b))))


def truth(v: Any) -> Any:
    """``bool(v)`` elementwise: a bool column, or a Python bool for a constant."""
    if isinstance(v, tuple):
        raise Fallback("truth of a tuple")
    if not isinstance(v, Col):
        return bool(v)
    if v.kind == "b":
        return v
    return Col(v.arr != 0)


def unary(name: str, v: Any) -> Any:
    if name == "truth":
        return truth(v)
    if name == "not":
        t = truth(v)
        return (not t) if isinstance(t, bool) else Col(~t.arr)
    if isinstance(v, tuple):
        raise Fallback("unary operator on a tuple")
    if _scalar(v):
        _kind(v)
        return {"neg": operator.neg, "pos": operator.pos, "inv": operator.invert}[name](v) \
            if not (name == "inv" and type(v) is float) else _raise("~ on a float")
    if v.kind == "f":
        if name == "inv":
            raise Fallback("~ on a float")
        return Col(-v.arr) if name == "neg" else v
    v = _as_int(v)
    _check_int(v)
    if name == "pos":
        return v
    lo, hi = (-v.hi, -v.lo) if name == "neg" else (-v.hi - 1, -v.lo - 1)
    if lo < INT_MIN or hi > INT_MAX:
        raise Fallback("int64 overflow")
    return Col(-v.arr if name == "neg" else ~v.arr, lo, hi)


def _raise(msg: str) -> Any:
    raise Fallback(msg)


def _full(v: Any, n: int) -> Col:
    k = _kind(v)
    if k == "i":
        if not INT_MIN <= v <= INT_MAX:
            raise Fallback("int64 overflow")
        return Col(np.full(n, v, dtype=np.int64), v, v)
    return Col(np.full(n, v, dtype=np.bool_ if k == "b" else np.float64))


def select(mask: np.ndarray, a: Any, b: Any, n: int) -> Any:
    """``a`` where ``mask`` else ``b``; both sides must have one element type."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        if not (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)):
            raise Fallback("branches of different shapes")
        return tuple(select(mask, x, y, n) for x, y in zip(a, b))
    if _kind(a) != _kind(b):
        raise Fallback("branches of different types")
    a = a if isinstance(a, Col) else _full(a, n)
    b = b if isinstance(b, Col) else _full(b, n)
    out = np.where(mask, a.arr, b.arr)
    if a.kind == "i":
        return Col(out, min(a.lo, b.lo), max(a.hi, b.hi))
    return Col(out)


def evaluate(expr: tuple, args: list, n: int | None = None) -> Any:
    """Value of ``expr`` for the argument values ``args`` (columns, tuples of columns)."""
    if n is None:
        n = _length(args)
    return _eval(expr, args, n)


def _length(args: Any) -> int:
    for a in args:
        if isinstance(a, Col):
            return len(a)
        if isinstance(a, tuple):
            m = _length(a)
            if m >= 0:
                return m
    return -1


def _eval(e: tuple, args: list, n: int) -> Any:
    tag = e[0]
    if tag == "arg":
        return args[e[1]]
    if tag == "const":
        return e[1]
    if tag == "bin":
        return binary(e[1], _eval(e[2], args, n), _eval(e[3], args, n))
    if tag == "cmp":
        return compare(e[1], _eval(e[2], args, n), _eval(e[3], args, n))
    if tag == "tuple":
        return tuple(_eval(x, args, n) for x in e[1])
    if tag == "item":
        v = _eval(e[1], args, n)
        if not isinstance(v, tuple):
            raise Fallback("subscript of a number")
        try:
            return v[e[2]]
        except IndexError:
            raise Fallback("index out of range") from None
    if tag == "select":
        mask: Any = True
        for cond, polarity in e[1]:
            t = truth(_eval(cond, args, n))
            if not polarity:
                t = (not t) if isinstance(t, bool) else Col(~t.arr)
            mask = _and(mask, t)
        a, b = _eval(e[2], args, n), _eval(e[3], args, n)
        if isinstance(mask, bool):
            return a if mask else b
        return select(mask.arr, a, b, n)
    return unary(tag, _eval(e[1], args, n))


def _and(m: Any, t: Any) -> Any:
    if isinstance(m, bool):
        return t if m else False
    if isinstance(t, bool):
        return m if t else False
    return Col(m.arr & t.arr)


def as_columns(value: Any, n: int) -> Col | tuple:
    """The result of a map as a column (or a flat tuple of columns) of length ``n``."""
    if isinstance(value, tuple):
        if not value or any(isinstance(v, tuple) for v in value):
            raise Fallback("nested or empty tuple")
        return tuple(v if isinstance(v, Col) else _full(v, n) for v in value)
    return value if isinstance(value, Col) else _full(value, n)


def mask_of(value: Any, n: int) -> np.ndarray | bool:
    """The filter mask of a predicate's value."""
    t = truth(value)
    return t if isinstance(t, bool) else t.arr
