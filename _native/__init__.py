"""Compiled kernels for the hot paths, each with a pure-Python/NumPy twin.

Every kernel family ``NAME`` has a Cython module ``_native/NAME.pyx`` (with ``NAME.pyi``) and a
reference twin ``_native/NAME_py.py`` exposing the same functions. :func:`load` returns the
compiled module, or the twin with a single warning when the compiled one is missing.
Setting ``OFFERPOOL_PURE_KERNELS=1`` forces the twins everywhere.

The master and agents never import this package; only the frameworks do.

Examples
--------
>>> from _native import load
>>> hashing = load("hashing")
>>> hashing.portable_hash("key") == load("hashing", pure=True).portable_hash("key")
True
"""
from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

#: Environment variable that forces the pure twins.
PURE_ENV = "OFFERPOOL_PURE_KERNELS"

_warned: set[str] = set()


def pure_forced() -> bool:
    """True when the environment asks for the pure twins."""
    return os.environ.get(PURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def load(name: str, *, pure: bool | None = None) -> ModuleType:
    """Return kernel family ``name``: compiled if available (and not forced pure), else its twin.

    Parameters
    ----------
    name : str
        The family, e.g. ``"hashing"``.
    pure : bool, optional
        ``True`` for the twin, ``False`` for the compiled module (raising ``ImportError`` if it
        is missing), ``None`` (default) to follow the environment and fall back with a warning.
    """
    if pure is None:
        pure = pure_forced()
        if not pure:
            try:
                return importlib.import_module(f"_native.{name}")
            except ImportError:
                if name not in _warned:
                    _warned.add(name)
                    warnings.warn(
                        f"compiled kernel _native.{name} is not built; using the pure twin",
                        RuntimeWarning, stacklevel=2,
                    )
                pure = True
    if pure:
        return importlib.import_module(f"_native.{name}_py")
    return importlib.import_module(f"_native.{name}")


def compiled_available(name: str) -> bool:
    """True when the compiled module of family ``name`` imports."""
    try:
        importlib.import_module(f"_native.{name}")
    except ImportError:
        return False
    return True
