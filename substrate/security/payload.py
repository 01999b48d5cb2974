"""Sealed payloads: an HMAC keyed per framework around opaque bytes.

The master and agents pass task data, messages and status data along as opaque bytes and never
look inside. A framework that pickles its payloads must not unpickle anything it cannot prove
came from itself: its scheduler makes a :class:`PayloadKey`, hands it to its executors (through
their environment, :meth:`PayloadKey.environment`), and both sides :meth:`~PayloadKey.seal`
what they send and :meth:`~PayloadKey.open` what they receive *before* unpickling it. The
``purpose`` tag keeps a payload sealed for one use (say, a task result) from being replayed
as another (a task).

Examples
--------
>>> key = PayloadKey.generate()
>>> blob = key.seal(b"pickled task", purpose=b"task")
>>> key.open(blob, purpose=b"task")
b'pickled task'
>>> key.open(blob[:-1] + b"X", purpose=b"task")
Traceback (most recent call last):
...
substrate.errors.PayloadRejected: payload integrity check failed: refusing it
>>> PayloadKey.from_environment(key.environment()).open(blob, purpose=b"task")
b'pickled task'
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Mapping, Optional

from substrate.errors import InvalidRequest, PayloadRejected

#: Environment variable through which a scheduler hands the key to its executors.
ENV_PAYLOAD_KEY = "OFFERPOOL_PAYLOAD_KEY"
_MAGIC = b"OPS1"
TAG_BYTES = 32


class PayloadKey:
    """An HMAC-SHA256 key shared by one framework's scheduler and executors."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise InvalidRequest("a payload key needs at least 16 bytes")
        self._key = bytes(key)

    def __repr__(self) -> str:
        return "PayloadKey(<secret>)"

    @classmethod
    def generate(cls) -> "PayloadKey":
        """A fresh random 256-bit key."""
        return cls(secrets.token_bytes(32))

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None,
                         name: str = ENV_PAYLOAD_KEY) -> "PayloadKey":
        """The key a scheduler put in this executor's environment."""
        value = (os.environ if environ is None else environ).get(name, "")
        try:
            return cls(bytes.fromhex(value))
        except ValueError:
            raise InvalidRequest(f"{name} is not a hex key") from None

    def environment(self, name: str = ENV_PAYLOAD_KEY) -> dict[str, str]:
        """``{name: hex key}``, to merge into an executor's command environment."""
        return {name: self._key.hex()}

    def _tag(self, purpose: bytes, data: bytes) -> bytes:
        mac = hmac.new(self._key, purpose, hashlib.sha256)
        mac.update(b"\0")
        mac.update(data)
        return mac.digest()

    def seal(self, data: bytes, purpose: bytes = b"") -> bytes:
        """``magic + tag + data``: 36 bytes longer than ``data``."""
        return _MAGIC + self._tag(purpose, data) + bytes(data)

    def open(self, blob: bytes, purpose: bytes = b"") -> bytes:
        """The data inside ``blob``; :class:`PayloadRejected` unless sealed with this key
        and ``purpose`` (compared in constant time)."""
        head = len(_MAGIC) + TAG_BYTES
        blob = bytes(blob)
        if len(blob) < head or blob[:len(_MAGIC)] != _MAGIC or not hmac.compare_digest(
                blob[len(_MAGIC):head], self._tag(purpose, blob[head:])):
            raise PayloadRejected("payload integrity check failed: refusing it")
        return blob[head:]
