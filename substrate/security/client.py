"""The client side of security: who a client is (principal and token) and how it connects.

:class:`Credentials` is taken by every client of the substrate (the scheduler driver, an
agent's link to its master, :func:`substrate.read_agent_file`, the CLI). Without arguments it
reads the environment:

==========================  =====================================================
``OFFERPOOL_PRINCIPAL``     the principal's name
``OFFERPOOL_TOKEN``         its token (or ``OFFERPOOL_TOKEN_FILE``: a file holding it)
``OFFERPOOL_CA``            CA certificate (PEM): connect with TLS, checking the server
``OFFERPOOL_CERT``, ``_KEY``  client certificate and key, for mutual TLS
``OFFERPOOL_INSECURE=1``    allow sending a token in plaintext beyond loopback
==========================  =====================================================

Examples
--------
>>> creds = Credentials("alice", "s3cret")
>>> creds.metadata
(('authorization', 'Bearer alice:s3cret'),)
>>> Credentials.from_environment({}).metadata
()
>>> creds.check_target("10.0.0.5:5050")
Traceback (most recent call last):
...
substrate.errors.AuthenticationError: refusing to send the token of 'alice' in plaintext to 10.0.0.5:5050: configure a CA certificate (OFFERPOOL_CA) or set OFFERPOOL_INSECURE=1
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from typing import Mapping, Optional

import grpc

from substrate.errors import AccessDenied, AuthenticationError, SubstrateError
from substrate.security.tokens import bearer

ENV_PRINCIPAL, ENV_TOKEN, ENV_TOKEN_FILE = ("OFFERPOOL_PRINCIPAL", "OFFERPOOL_TOKEN",
                                            "OFFERPOOL_TOKEN_FILE")
ENV_CA, ENV_CERT, ENV_KEY, ENV_INSECURE = ("OFFERPOOL_CA", "OFFERPOOL_CERT", "OFFERPOOL_KEY",
                                           "OFFERPOOL_INSECURE")


def is_loopback(host_port: str) -> bool:
    """True when ``host:port`` (or a bare host) names this machine's loopback interface."""
    host = host_port
    if host.startswith("unix:"):
        return True
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise AuthenticationError(f"cannot read {path}: {exc}") from None


@dataclass
class Credentials:
    """A client's identity and transport settings.

    Parameters
    ----------
    principal, token : str
        Sent on every call as ``authorization: Bearer PRINCIPAL:TOKEN``; empty: anonymous
        (fine against a loopback server without credentials).
    ca : str
        Path of the CA certificate; set: connect with TLS and check the server against it.
    cert, key : str
        Client certificate and key (mutual TLS).
    server_name : str
        Name to check the server certificate against, when it differs from the address.
    insecure : bool
        Allow sending a token in plaintext to a non-loopback address.
    """

    principal: str = ""
    token: str = field(default="", repr=False)
    ca: str = ""
    cert: str = ""
    key: str = ""
    server_name: str = ""
    insecure: bool = False

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None) -> "Credentials":
        """Credentials from ``OFFERPOOL_*`` variables (see the module docs)."""
        env = os.environ if environ is None else environ
        token = env.get(ENV_TOKEN, "")
        if not token and env.get(ENV_TOKEN_FILE):
            token = _read(env[ENV_TOKEN_FILE]).decode().strip()
        return cls(principal=env.get(ENV_PRINCIPAL, ""), token=token, ca=env.get(ENV_CA, ""),
                   cert=env.get(ENV_CERT, ""), key=env.get(ENV_KEY, ""),
                   insecure=env.get(ENV_INSECURE, "") in ("1", "true", "yes"))

    @classmethod
    def resolve(cls, credentials: "Optional[Credentials]") -> "Credentials":
        """``credentials`` if given, else those of the environment."""
        return credentials if credentials is not None else cls.from_environment()

    def environment(self) -> dict[str, str]:
        """The ``OFFERPOOL_*`` variables that recreate these credentials in a child process."""
        env = {ENV_PRINCIPAL: self.principal, ENV_TOKEN: self.token, ENV_CA: self.ca,
               ENV_CERT: self.cert, ENV_KEY: self.key}
        if self.insecure:
            env[ENV_INSECURE] = "1"
        return {k: v for k, v in env.items() if v}

    @property
    def metadata(self) -> tuple:
        """gRPC metadata to pass on every call."""
        if not self.principal and not self.token:
            return ()
        return (("authorization", bearer(self.principal, self.token)),)

    def check_target(self, target: str) -> None:
        """Refuse to send a token in plaintext beyond loopback (unless ``insecure``)."""
        if self.token and not self.ca and not self.insecure and not is_loopback(target):
            raise AuthenticationError(
                f"refusing to send the token of {self.principal!r} in plaintext to {target}: "
                f"configure a CA certificate ({ENV_CA}) or set {ENV_INSECURE}=1")

    def _tls(self) -> Optional[grpc.ChannelCredentials]:
        if not self.ca:
            return None
        if bool(self.cert) != bool(self.key):
            raise AuthenticationError("a client certificate needs both cert and key")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca),
            private_key=_read(self.key) if self.key else None,
            certificate_chain=_read(self.cert) if self.cert else None)

    def _options(self, options: list) -> list:
        if self.server_name:
            return [*options, ("grpc.ssl_target_name_override", self.server_name)]
        return list(options)

    def channel(self, target: str, options: list = ()) -> grpc.Channel:
        """A blocking channel to ``target``: TLS when a CA is configured, else plaintext."""
        self.check_target(target)
        tls = self._tls()
        if tls is None:
            return grpc.insecure_channel(target, options=list(options))
        return grpc.secure_channel(target, tls, options=self._options(list(options)))

    def aio_channel(self, target: str, options: list = ()) -> grpc.aio.Channel:
        """An asyncio channel to ``target`` (same rules as :meth:`channel`)."""
        self.check_target(target)
        tls = self._tls()
        if tls is None:
            return grpc.aio.insecure_channel(target, options=list(options))
        return grpc.aio.secure_channel(target, tls, options=self._options(list(options)))


def security_error(exc: grpc.RpcError, where: str = "") -> Optional[SubstrateError]:
    """The substrate error for an authentication or authorization failure, else None."""
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else ""
    prefix = f"{where}: " if where else ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AuthenticationError(f"{prefix}{details or 'authentication failed'}")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return AccessDenied(f"{prefix}{details or 'permission denied'}")
    return None
