"""Principals and their tokens: generation, the hashed credentials file, verification.

A *principal* is a name (an agent, a framework, an operator) with a *kind* that says which
services it may call. Its token is a random secret; the credentials file stores only a salted
SHA-256 of it (tokens are 256-bit random strings, so a slow password hash buys nothing and
would cost every RPC). On the wire a client sends ``authorization: Bearer <principal>:<token>``;
the server compares digests with :func:`hmac.compare_digest` (constant time).

The file is JSON::

    {"principals": {"alice": {"kind": "framework", "salt": "…", "sha256": "…",
                              "expires": 1767225600}}}

``expires`` (seconds since the epoch) is optional.

Examples
--------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "credentials.json")
>>> token = add_principal(path, "alice", "framework")
>>> store = CredentialStore.load(path)
>>> store.verify(f"Bearer alice:{token}").name
'alice'
>>> store.verify("Bearer alice:wrong")
Traceback (most recent call last):
...
substrate.errors.AuthenticationError: wrong token for principal 'alice'
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Optional

from substrate.errors import AuthenticationError, InvalidRequest

#: Kinds of principal: who may call which service (see :mod:`substrate.security.server`).
KINDS = ("agent", "framework", "operator")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its name and kind (``agent``, ``framework``, ``operator``)."""

    name: str
    kind: str


def check_name(name: str) -> str:
    """A principal name: 1-128 characters of letters, digits and ``-_.@``."""
    if not name or len(name) > 128 or not set(name) <= _NAME_CHARS:
        raise InvalidRequest(f"invalid principal name {name!r}: use 1-128 of [A-Za-z0-9-_.@]")
    return name


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def _digest(salt: bytes, token: str) -> bytes:
    return hashlib.sha256(salt + token.encode()).digest()


def bearer(principal: str, token: str) -> str:
    """The ``authorization`` value a client sends."""
    return f"Bearer {principal}:{token}"


@dataclass(frozen=True)
class _Entry:
    kind: str
    salt: bytes
    digest: bytes
    expires: Optional[float]


class CredentialStore:
    """Verifies bearer values against salted hashes; never holds a token in clear.

    Parameters
    ----------
    entries : dict
        ``name -> {"kind", "salt", "sha256", "expires"?}`` as in the credentials file.
    clock : callable
        Wall clock for expiry (seconds since the epoch); injected by tests.
    """

    def __init__(self, entries: dict, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        for name, e in entries.items():
            check_name(name)
            if e.get("kind") not in KINDS:
                raise InvalidRequest(f"principal {name!r}: kind must be one of {KINDS}")
            try:
                salt, digest = bytes.fromhex(e["salt"]), bytes.fromhex(e["sha256"])
            except (KeyError, ValueError, TypeError):
                raise InvalidRequest(f"principal {name!r}: salt and sha256 must be hex") from None
            expires = e.get("expires")
            self._entries[name] = _Entry(e["kind"], salt, digest,
                                         None if expires is None else float(expires))
        # Unknown names are checked against a dummy entry so a miss costs what a hit costs.
        self._dummy = _Entry("operator", secrets.token_bytes(16), secrets.token_bytes(32), None)

    @classmethod
    def load(cls, path: str, clock: Callable[[], float] = time.time) -> "CredentialStore":
        """Read a credentials file; raises :class:`InvalidRequest` when it is malformed."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise InvalidRequest(f"cannot read the credentials file {path}: {exc}") from None
        except ValueError as exc:
            raise InvalidRequest(f"credentials file {path} is not JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("principals"), dict):
            raise InvalidRequest(f"credentials file {path} needs a 'principals' object")
        return cls(data["principals"], clock)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def verify(self, authorization: Optional[str]) -> Principal:
        """The principal of an ``authorization`` value, or :class:`AuthenticationError`."""
        if not authorization:
            raise AuthenticationError("no credentials: this server requires a principal and token")
        scheme, _, rest = authorization.partition(" ")
        name, sep, token = rest.partition(":")
        if scheme.lower() != "bearer" or not sep or not name:
            raise AuthenticationError("malformed credentials: expected 'Bearer PRINCIPAL:TOKEN'")
        entry = self._entries.get(name)
        ok = hmac.compare_digest(_digest((entry or self._dummy).salt, token),
                                 (entry or self._dummy).digest)
        if entry is None or not ok:
            if entry is None:
                raise AuthenticationError(f"unknown principal {name[:128]!r}")
            raise AuthenticationError(f"wrong token for principal {name!r}")
        if entry.expires is not None and self.clock() >= entry.expires:
            raise AuthenticationError(f"the token of principal {name!r} has expired")
        return Principal(name, entry.kind)


def add_principal(path: str, name: str, kind: str, *, token: Optional[str] = None,
                  expires: Optional[float] = None) -> str:
    """Add (or replace) ``name`` in the credentials file at ``path``; return its token.

    The file is created with mode 0600 if missing and replaced atomically.
    """
    check_name(name)
    if kind not in KINDS:
        raise InvalidRequest(f"kind must be one of {KINDS}, got {kind!r}")
    data: dict = {"principals": {}}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    token = token or new_token()
    salt = secrets.token_bytes(16)
    entry: dict = {"kind": kind, "salt": salt.hex(), "sha256": _digest(salt, token).hex()}
    if expires is not None:
        entry["expires"] = float(expires)
    data.setdefault("principals", {})[name] = entry
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".credentials-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return token
