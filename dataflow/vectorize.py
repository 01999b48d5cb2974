"""Which user functions can run on whole NumPy columns: a bytecode analyser.

:func:`analyse` reads a function's bytecode (:mod:`dis`) and, when the function is a pure
expression of its arguments over numbers, returns that expression as a small tree of tuples
(picklable, evaluated on arrays by :mod:`dataflow.vecexec`). Supported: the arguments, number
constants, closure and global names bound to numbers (read now -- at job submission, when the
closure is serialised anyway, as PySpark does), ``+ - * / // % **``, unary ``- + ~``, the six
comparisons, ``not``, ``and`` / ``or`` / ``if``-``else`` expressions, chained comparisons, local
variables, tuples of such expressions and ``x[i]`` with a constant ``i``. Anything else -- a
call, an attribute, a string, a loop, an opcode or Python version this module does not know --
makes :func:`analyse` return ``None``, and the caller keeps its record-by-record path.

Expression nodes: ``("arg", i)``, ``("const", v)``, ``("bin", op, a, b)``, ``("cmp", op, a, b)``,
``("neg", a)``, ``("pos", a)``, ``("inv", a)``, ``("not", a)``, ``("truth", a)``,
``("tuple", (a, ...))``, ``("item", a, i)`` and ``("select", conds, a, b)`` (``a`` where every
``(expr, polarity)`` of ``conds`` has that truth value, else ``b``).

Examples
--------
>>> analyse(lambda x: x * x)
('bin', '*', ('arg', 0), ('arg', 0))
>>> k = 7
>>> analyse(lambda i: (i % k, i))
('tuple', (('bin', '%', ('arg', 0), ('const', 7)), ('arg', 0)))
>>> analyse(lambda x: str(x)) is None
True
"""
from __future__ import annotations

import dis
import sys
from collections.abc import Callable
from typing import Any

Expr = tuple

_BINARY_OPS = {"+", "-", "*", "/", "//", "%", "**"}
_COMPARE_OPS = {"<", "<=", "==", "!=", ">", ">="}
# Python 3.10 spells each binary operator as its own opcode
_OLD_BINARY = {"ADD": "+", "SUBTRACT": "-", "MULTIPLY": "*", "TRUE_DIVIDE": "/",
               "FLOOR_DIVIDE": "//", "MODULO": "%", "POWER": "**"}
_UNSUPPORTED_FLAGS = 0x04 | 0x08 | 0x20 | 0x80 | 0x100 | 0x200  # *args **kw generator async
_MAX_PATHS = 32
_MAX_STEPS = 2000


class NotVectorisable(Exception):
    """The function is outside the supported grammar."""


def _number(v: Any) -> bool:
    # exact types only: subclasses (numpy scalars, IntEnum) may define their own arithmetic
    if type(v) in (int, float, bool):
        return True
    return type(v) is tuple and len(v) > 0 and all(_number(x) for x in v)


def _const(v: Any) -> Expr:
    if not _number(v):
        raise NotVectorisable(f"constant {v!r:.40}")
    return ("const", v)


def analyse(f: Callable, nargs: int = 1) -> Expr | None:
    """The expression ``f`` computes from its ``nargs`` arguments, or None.

    >>> analyse(lambda a, b: a + b, 2)
    ('bin', '+', ('arg', 0), ('arg', 1))
    >>> analyse(lambda x: x > 0 and x < 5)[0]
    'select'
    """
    try:
        return _analyse(f, nargs)
    except NotVectorisable:
        return None
    except Exception:  # noqa: BLE001 - an unexpected bytecode shape: never vectorise it
        return None


def _analyse(f: Callable, nargs: int) -> Expr:
    code = getattr(f, "__code__", None)
    if code is None or getattr(f, "__self__", None) is not None:
        raise NotVectorisable("not a plain Python function")
    if code.co_argcount != nargs or code.co_kwonlyargcount or code.co_flags & _UNSUPPORTED_FLAGS \
            or code.co_cellvars:
        raise NotVectorisable("signature")
    instrs = list(dis.get_instructions(code))
    at = {ins.offset: i for i, ins in enumerate(instrs)}
    args = {code.co_varnames[i]: ("arg", i) for i in range(nargs)}
    results: list[tuple[tuple, Expr]] = []
    # depth-first over the paths through forward jumps: (index, stack, locals, conditions)
    pending: list[tuple[int, list, dict, tuple]] = [(0, [], dict(args), ())]
    steps = 0
    while pending:
        i, stack, local, conds = pending.pop()
        while True:
            steps += 1
            if steps > _MAX_STEPS or len(results) + len(pending) > _MAX_PATHS:
                raise NotVectorisable("too many paths")
            ins = instrs[i]
            out = _step(f, code, ins, stack, local)
            if out is None:
                i += 1
                continue
            kind, value = out
            if kind == "return":
                results.append((conds, value))
                break
            if kind == "goto":
                i = _target(at, ins, value)
                continue
            # a conditional jump: ("branch", (cond, jump_if, keep_on_jump))
            cond, jump_if, keep = value
            truth = _static_truth(cond)
            if truth is not None:
                if truth == jump_if:
                    if keep:
                        stack.append(cond)
                    i = _target(at, ins, ins.argval)
                else:
                    i += 1
                continue
            taken = list(stack) + ([cond] if keep else [])
            pending.append((_target(at, ins, ins.argval), taken, dict(local),
                            conds + ((cond, jump_if),)))
            conds = conds + ((cond, not jump_if),)
            i += 1
    return _merge(results)


def _target(at: dict, ins: Any, offset: Any) -> int:
    if not isinstance(offset, int) or offset <= ins.offset:
        raise NotVectorisable("backward jump")
    return at[offset]


def _static_truth(e: Expr) -> bool | None:
    if e[0] == "const":
        return bool(e[1])
    return None


def _merge(results: list) -> Expr:
    if not results:
        raise NotVectorisable("no return")
    expr = results[-1][1]
    for conds, e in reversed(results[:-1]):
        expr = ("select", conds, e, expr)
    return expr


def _pop(stack: list) -> Expr:
    if not stack:
        raise NotVectorisable("stack underflow")
    return stack.pop()


def _binary(op: str, a: Expr, b: Expr) -> Expr:
    if op not in _BINARY_OPS:
        raise NotVectorisable(f"operator {op}")
    return ("bin", op, a, b)


def _step(f: Callable, code: Any, ins: Any, stack: list, local: dict) -> tuple | None:
    """Apply one instruction to the symbolic stack; None means fall through to the next one."""
    name = ins.opname
    if name in ("RESUME", "NOP", "CACHE", "COPY_FREE_VARS", "NOT_TAKEN", "EXTENDED_ARG"):
        return None
    if name in ("LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW"):
        if ins.argval not in local:
            raise NotVectorisable("unbound local")
        stack.append(local[ins.argval])
        return None
    if name in ("LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"):
        for n in ins.argval:
            if n not in local:
                raise NotVectorisable("unbound local")
            stack.append(local[n])
        return None
    if name == "STORE_FAST":
        local[ins.argval] = _pop(stack)
        return None
    if name in ("LOAD_CONST", "LOAD_SMALL_INT"):
        stack.append(_const(ins.argval))
        return None
    if name == "RETURN_CONST":
        return "return", _const(ins.argval)
    if name == "RETURN_VALUE":
        return "return", _pop(stack)
    if name == "LOAD_DEREF":
        if ins.argval not in code.co_freevars or f.__closure__ is None:
            raise NotVectorisable("cell variable")
        cell = f.__closure__[code.co_freevars.index(ins.argval)]
        try:
            value = cell.cell_contents
        except ValueError:
            raise NotVectorisable("empty cell") from None
        stack.append(_const(value))
        return None
    if name == "LOAD_GLOBAL":
        if sys.version_info >= (3, 11) and ins.arg & 1:
            raise NotVectorisable("call of a global")
        g = getattr(f, "__globals__", {})
        if ins.argval not in g:
            raise NotVectorisable(f"global {ins.argval}")
        stack.append(_const(g[ins.argval]))
        return None
    if name == "BINARY_OP":
        op = ins.argrepr.rstrip("=") if ins.argrepr not in _COMPARE_OPS else ins.argrepr
        b, a = _pop(stack), _pop(stack)
        if op == "[]":  # 3.14 spells subscripting as a binary operator
            stack.append(_item(a, b))
        else:
            stack.append(_binary(op, a, b))
        return None
    if name.startswith(("BINARY_", "INPLACE_")) and name.split("_", 1)[1] in _OLD_BINARY:
        b, a = _pop(stack), _pop(stack)
        stack.append(_binary(_OLD_BINARY[name.split("_", 1)[1]], a, b))
        return None
    if name == "BINARY_SUBSCR":
        b, a = _pop(stack), _pop(stack)
        stack.append(_item(a, b))
        return None
    if name == "COMPARE_OP":
        op = str(ins.argval)
        if op.startswith("bool("):
            op = op[5:-1]
        if op not in _COMPARE_OPS:
            raise NotVectorisable(f"comparison {op}")
        b, a = _pop(stack), _pop(stack)
        stack.append(("cmp", op, a, b))
        return None
    unary = {"UNARY_NEGATIVE": "neg", "UNARY_POSITIVE": "pos", "UNARY_INVERT": "inv",
             "UNARY_NOT": "not", "TO_BOOL": "truth"}
    if name in unary:
        stack.append((unary[name], _pop(stack)))
        return None
    if name == "BUILD_TUPLE":
        if ins.arg == 0:
            raise NotVectorisable("empty tuple")
        items = tuple(_pop(stack) for _ in range(ins.arg))[::-1]
        stack.append(("tuple", items))
        return None
    if name == "POP_TOP":
        _pop(stack)
        return None
    if name in ("COPY", "DUP_TOP"):
        n = ins.arg if name == "COPY" else 1
        if len(stack) < n:
            raise NotVectorisable("stack underflow")
        stack.append(stack[-n])
        return None
    if name in ("SWAP", "ROT_TWO", "ROT_THREE"):
        if name == "ROT_THREE":
            if len(stack) < 3:
                raise NotVectorisable("stack underflow")
            stack.insert(-2, stack.pop())
            return None
        n = ins.arg if name == "SWAP" else 2
        if len(stack) < n:
            raise NotVectorisable("stack underflow")
        stack[-1], stack[-n] = stack[-n], stack[-1]
        return None
    if name == "JUMP_FORWARD":
        return "goto", ins.argval
    if name in ("POP_JUMP_IF_FALSE", "POP_JUMP_FORWARD_IF_FALSE"):
        return "branch", (_pop(stack), False, False)
    if name in ("POP_JUMP_IF_TRUE", "POP_JUMP_FORWARD_IF_TRUE"):
        return "branch", (_pop(stack), True, False)
    if name in ("JUMP_IF_FALSE_OR_POP", "JUMP_IF_TRUE_OR_POP"):
        return "branch", (_pop(stack), name == "JUMP_IF_TRUE_OR_POP", True)
    raise NotVectorisable(f"opcode {name}")


def _item(a: Expr, b: Expr) -> Expr:
    if b[0] != "const" or type(b[1]) is not int:
        raise NotVectorisable("subscript")
    if a[0] == "tuple":
        try:
            return a[1][b[1]]
        except IndexError:
            raise NotVectorisable("index out of range") from None
    if a[0] == "const":
        raise NotVectorisable("subscript of a constant")
    return ("item", a, b[1])


def const_pair(expr: Expr | None) -> int | None:
    """``c`` when ``expr`` is ``(x, c)`` for the argument ``x`` and an int constant ``c``.

    >>> const_pair(analyse(lambda w: (w, 1)))
    1
    >>> const_pair(analyse(lambda w: (w, 1.5))) is None
    True
    """
    if expr is None or expr[0] != "tuple" or len(expr[1]) != 2:
        return None
    a, b = expr[1]
    if a == ("arg", 0) and b[0] == "const" and type(b[1]) is int:
        return b[1]
    return None


def is_add(f: Callable) -> bool:
    """True for ``operator.add`` and functions that return the sum of their two arguments.

    >>> import operator
    >>> is_add(operator.add), is_add(lambda a, b: a + b), is_add(lambda a, b: b + a * 1)
    (True, True, False)
    """
    import operator
    if f is operator.add:
        return True
    return analyse(f, 2) == ("bin", "+", ("arg", 0), ("arg", 1))
