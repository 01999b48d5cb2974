"""The server side of security: what a master or agent checks before serving a call.

:class:`ServerSecurity` holds a server's credential store, ACL policy and TLS files. It

* refuses to start a server bound beyond loopback without credentials *and* certificates,
  unless ``insecure`` (the ``--insecure-allow-unauthenticated`` flag) is set;
* opens the listening port with TLS (mutual TLS when a CA is given) or in plaintext;
* authenticates every RPC in a gRPC interceptor (UNAUTHENTICATED on a wrong, missing or
  expired token; PERMISSION_DENIED when the principal's kind may not call that method), so a
  service added later is covered too;
* answers the per-object ACL questions the services ask (:meth:`authorize`);
* checks HTTP requests the same way (:meth:`check_http`), for ``/state``, ``/metrics`` and
  the dashboard.

Examples
--------
>>> ServerSecurity().enabled
False
>>> ServerSecurity().check_bind("0.0.0.0", "master")
Traceback (most recent call last):
...
substrate.errors.ClusterError: refusing to serve the master on 0.0.0.0 without credentials and TLS certificates; give --credentials and --tls-cert/--tls-key (see `offerpool certs init`), or --insecure-allow-unauthenticated
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import grpc

from substrate.errors import AccessDenied, AuthenticationError, ClusterError, InvalidRequest
from substrate.security.acl import Policy
from substrate.security.client import Credentials, is_loopback
from substrate.security.tokens import CredentialStore, Principal

ALL_KINDS = frozenset({"agent", "framework", "operator"})
#: Which kinds of principal may call which method; None: not token-authenticated (executors
#: prove themselves with the secret their agent gave them at launch). Methods missing here
#: need any authenticated principal.
METHOD_KINDS: dict[str, Optional[frozenset]] = {
    "/substrate.v1.Master/Scheduler": frozenset({"framework", "operator"}),
    "/substrate.v1.Master/Agent": frozenset({"agent"}),
    "/substrate.v1.Master/GetState": ALL_KINDS,
    "/substrate.v1.Master/DrainAgent": frozenset({"operator"}),
    "/substrate.v1.Agent/Executor": None,
    "/substrate.v1.Agent/ReadFile": ALL_KINDS,
}


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ClusterError(f"cannot read {path}: {exc}") from None


def _metadata_value(metadata: Any, key: str) -> Optional[str]:
    for item in metadata or ():
        k, v = item[0], item[1]
        if k == key:
            return v.decode() if isinstance(v, bytes) else v
    return None


@dataclass
class ServerSecurity:
    """A master's or agent's security settings.

    Parameters
    ----------
    credentials : CredentialStore, optional
        Set: every call needs a valid token (authentication on).
    policy : Policy, optional
        Set: ACLs, deny by default (needs ``credentials``).
    cert, key : str
        Server certificate and key (PEM paths): serve with TLS.
    ca : str
        CA certificate: also require and check client certificates (mutual TLS).
    insecure : bool
        Allow serving beyond loopback without authentication or TLS.
    client : Credentials, optional
        Outgoing credentials of this daemon (an agent's link to its master).
    """

    credentials: Optional[CredentialStore] = None
    policy: Optional[Policy] = None
    cert: str = ""
    key: str = ""
    ca: str = ""
    insecure: bool = False
    client: Optional[Credentials] = None

    @classmethod
    def from_files(cls, credentials: str = "", acls: str = "", cert: str = "", key: str = "",
                   ca: str = "", insecure: bool = False,
                   client: Optional[Credentials] = None) -> "ServerSecurity":
        """Load the named files (empty names: that part is off)."""
        return cls(credentials=CredentialStore.load(credentials) if credentials else None,
                   policy=Policy.load(acls) if acls else None, cert=cert, key=key, ca=ca,
                   insecure=insecure, client=client)

    @property
    def enabled(self) -> bool:
        """True when calls are authenticated."""
        return self.credentials is not None

    @property
    def tls(self) -> bool:
        return bool(self.cert)

    def check_bind(self, host: str, what: str) -> None:
        """Raise :class:`ClusterError` unless serving ``what`` on ``host`` is allowed."""
        if self.policy is not None and self.credentials is None:
            raise ClusterError(f"the {what} has an ACL policy but no credentials file: "
                               "ACLs need authenticated principals")
        if bool(self.cert) != bool(self.key):
            raise ClusterError(f"the {what} needs both a TLS certificate and its key")
        if self.ca and not self.cert:
            raise ClusterError(f"the {what} has a client CA but no server certificate")
        if is_loopback(host) or self.insecure:
            return
        if self.credentials is None or not self.cert:
            raise ClusterError(
                f"refusing to serve the {what} on {host} without credentials and TLS "
                "certificates; give --credentials and --tls-cert/--tls-key (see `offerpool "
                "certs init`), or --insecure-allow-unauthenticated")

    def add_port(self, server: grpc.aio.Server, address: str) -> int:
        """Open ``address`` on ``server`` with TLS when configured; return the port."""
        if not self.cert:
            return server.add_insecure_port(address)
        creds = grpc.ssl_server_credentials(
            [(_read(self.key), _read(self.cert))],
            root_certificates=_read(self.ca) if self.ca else None,
            require_client_auth=bool(self.ca))
        return server.add_secure_port(address, creds)

    def http_ssl_context(self) -> "Optional[ssl.SSLContext]":
        """An SSL context for HTTP front ends when TLS is configured (else None)."""
        if not self.cert:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def interceptors(self) -> list:
        """The server interceptors to install (none when authentication is off)."""
        return [_AuthInterceptor(self.credentials)] if self.credentials is not None else []

    # ------------------------------------------------------------------ per-call questions
    def authenticate(self, authorization: Optional[str]) -> Optional[Principal]:
        """The caller's principal; None when authentication is off."""
        if self.credentials is None:
            return None
        return self.credentials.verify(authorization)

    def principal(self, context: Any) -> Optional[Principal]:
        """The principal of a gRPC call (already authenticated by the interceptor)."""
        if self.credentials is None:
            return None
        return self.credentials.verify(
            _metadata_value(context.invocation_metadata(), "authorization"))

    def authorize(self, principal: Optional[Principal], action: str,
                  obj: Optional[str] = None) -> None:
        """Raise :class:`AccessDenied` unless the policy (if any) allows it."""
        if self.policy is None or principal is None:
            return
        self.policy.check(action, principal.name, obj)

    def check_http(self, headers: Mapping[str, str], action: str = "view_state",
                   obj: Optional[str] = None) -> tuple:
        """Check an HTTP request's ``Authorization: Bearer PRINCIPAL:TOKEN`` header.

        Returns ``(status, message)``: ``(200, "")`` when allowed, else 401 or 403 with a
        reason to send back. Reusable by any HTTP front end of the master.
        """
        try:
            principal = self.authenticate(headers.get("Authorization"))
            self.authorize(principal, action, obj)
        except AuthenticationError as exc:
            return 401, str(exc)
        except AccessDenied as exc:
            return 403, str(exc)
        return 200, ""


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode,
             message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that ends the call with ``code``."""

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    kwargs = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **kwargs)
    return grpc.unary_unary_rpc_method_handler(abort, **kwargs)


class _AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call before its handler runs."""

    def __init__(self, store: CredentialStore) -> None:
        self.store = store

    async def intercept_service(self, continuation: Callable, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        kinds = METHOD_KINDS.get(method, ALL_KINDS)
        if kinds is None:
            return handler
        try:
            principal = self.store.verify(
                _metadata_value(details.invocation_metadata, "authorization"))
        except (AuthenticationError, InvalidRequest) as exc:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if principal.kind not in kinds:
            return _refusal(handler, grpc.StatusCode.PERMISSION_DENIED,
                            f"principal {principal.name!r} is a {principal.kind} and may not "
                            f"call {method.rsplit('/', 1)[-1]}")
        return handler
