"""Security options and sub-commands of the ``offerpool`` command.

``offerpool certs init DIR`` (a small CA), ``offerpool credentials add FILE NAME KIND``
(a principal and its token), ``offerpool teardown FRAMEWORK_ID`` (an operator ends a
framework), and the ``--credentials/--acls/--tls-*`` options of ``master`` and ``agent``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from substrate.security.client import Credentials
from substrate.security.server import ServerSecurity


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """The options with which a master or agent is secured."""
    g = parser.add_argument_group("security")
    g.add_argument("--credentials", default="", metavar="FILE",
                   help="credentials file (principal -> salted token hash); turns authentication on")
    g.add_argument("--acls", default="", metavar="FILE",
                   help="ACL policy (TOML or JSON); deny by default once given")
    g.add_argument("--tls-cert", default="", metavar="PEM", help="server certificate")
    g.add_argument("--tls-key", default="", metavar="PEM", help="server private key")
    g.add_argument("--tls-ca", default="", metavar="PEM",
                   help="CA that client certificates must chain to (mutual TLS)")
    g.add_argument("--insecure-allow-unauthenticated", action="store_true",
                   help="serve beyond loopback without authentication or TLS (unsafe)")


def server_security_from_args(args: argparse.Namespace) -> ServerSecurity:
    """A :class:`ServerSecurity` from :func:`add_server_arguments`'s options; the daemon's
    own client credentials come from ``OFFERPOOL_*`` variables, which are then removed from
    the environment so the executors it starts do not inherit them."""
    client = Credentials.from_environment()
    for name in ("OFFERPOOL_TOKEN", "OFFERPOOL_TOKEN_FILE"):
        os.environ.pop(name, None)
    return ServerSecurity.from_files(args.credentials, args.acls, args.tls_cert, args.tls_key,
                                     args.tls_ca, args.insecure_allow_unauthenticated, client)


def register(sub: argparse._SubParsersAction) -> dict:
    """Add the security sub-commands; return ``{name: handler}``."""
    c = sub.add_parser("certs", help="certificates for TLS: `offerpool certs init DIR`")
    csub = c.add_subparsers(dest="certs_command", required=True)
    ci = csub.add_parser("init", help="create a CA, a server and a client certificate")
    ci.add_argument("dir")
    ci.add_argument("--host", action="append", default=[],
                    help="extra DNS name or IP the server certificate is valid for (repeatable)")
    ci.add_argument("--days", type=int, default=825)
    ci.add_argument("--force", action="store_true", help="replace existing files")

    k = sub.add_parser("credentials", help="manage a credentials file")
    ksub = k.add_subparsers(dest="credentials_command", required=True)
    ka = ksub.add_parser("add", help="add a principal; prints its token once")
    ka.add_argument("file")
    ka.add_argument("principal")
    ka.add_argument("kind", choices=["agent", "framework", "operator"])
    ka.add_argument("--expires-in", type=float, metavar="SECONDS")

    t = sub.add_parser("teardown", help="end a framework (its tasks are killed)")
    t.add_argument("framework_id")
    t.add_argument("--master", default="127.0.0.1:5050")
    return {"certs": _certs, "credentials": _credentials, "teardown": _teardown}


def _certs(args: argparse.Namespace) -> int:
    from substrate.security.certs import init_ca

    paths = init_ca(args.dir, args.host, days=args.days, force=args.force)
    for name, path in paths.items():
        print(f"{name:11} {path}")
    return 0


def _credentials(args: argparse.Namespace) -> int:
    from substrate.security.tokens import add_principal

    expires = time.time() + args.expires_in if args.expires_in else None
    print(add_principal(args.file, args.principal, args.kind, expires=expires))
    return 0


def _teardown(args: argparse.Namespace) -> int:
    import grpc

    from substrate.errors import ConnectionLost
    from substrate.security.client import security_error
    from substrate.v1 import pb, rpc

    creds = Credentials.from_environment()
    with creds.channel(args.master) as channel:
        try:
            rpc.MasterStub(channel).Teardown(pb.TeardownRequest(framework_id=args.framework_id),
                                             timeout=10, metadata=creds.metadata)
        except grpc.RpcError as exc:
            refused = security_error(exc, f"the master at {args.master}")
            if refused is not None:
                raise refused from None
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                print(f"offerpool: {exc.details()}", file=sys.stderr)
                return 1
            raise ConnectionLost(f"cannot reach the master at {args.master}: "
                                 f"{exc.code().name}") from None
    print(f"framework {args.framework_id} torn down")
    return 0
