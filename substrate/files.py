"""Reading files that a framework's executors left on an agent, from anywhere.

Executors write files they want to outlive them into ``ExecutorDriver.framework_dir`` (on
the agent's disk); any process that knows the agent's address (from an offer or a status) can
then read them through the agent, which confines every read to that framework's directory or
one of its sandboxes. Dataflow's shuffle fetches map outputs this way.

Examples
--------
>>> import substrate
>>> try:
...     substrate.read_agent_file("127.0.0.1:1", "fw-1", "x", timeout=0.5)
... except substrate.ConnectionLost:
...     print("agent unreachable")
agent unreachable
"""
from __future__ import annotations

import threading
from typing import Iterator, Optional

import grpc

from substrate.errors import ConnectionLost, InvalidRequest, SubstrateError
from substrate.security.client import Credentials, security_error
from substrate.v1 import pb, rpc


class RemoteFileNotFound(SubstrateError, FileNotFoundError):
    """The agent has no such file in that area."""


_channels: dict[tuple, grpc.Channel] = {}
_lock = threading.Lock()
_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def _stub(address: str, creds: Credentials) -> "rpc.AgentStub":
    key = (address, creds.ca, creds.cert, creds.key, creds.server_name)
    with _lock:
        channel = _channels.get(key)
        if channel is None:
            channel = _channels[key] = creds.channel(address, _OPTIONS)
    return rpc.AgentStub(channel)


def iter_agent_file(address: str, framework_id: str, path: str, *,
                    sandbox: Optional[str] = None, offset: int = 0, length: int = -1,
                    timeout: float = 60.0,
                    credentials: Optional[Credentials] = None) -> Iterator[bytes]:
    """Stream a file in chunks of up to 1 MiB.

    Parameters
    ----------
    address : str
        The agent's ``host:port`` (``Offer.agent_address``, ``ExecutorDriver.agent_address``).
    framework_id : str
    path : str
        Relative to the framework's directory, or to the sandbox named by ``sandbox``
        (an executor or command-task id).
    offset, length : int
        Byte range; ``length=-1`` reads to the end.
    credentials : Credentials, optional
        Principal, token and TLS files (default: the ``OFFERPOOL_*`` environment variables).
    """
    creds = Credentials.resolve(credentials)
    request = pb.ReadFileRequest(
        framework_id=framework_id, path=path, offset=offset, length=length,
        area=pb.ReadFileRequest.SANDBOX if sandbox else pb.ReadFileRequest.FRAMEWORK,
        name=sandbox or "")
    try:
        for chunk in _stub(address, creds).ReadFile(request, timeout=timeout,
                                                    metadata=creds.metadata):
            if chunk.data:
                yield chunk.data
    except grpc.RpcError as exc:
        refused = security_error(exc, f"reading {path} from agent {address}")
        if refused is not None:
            raise refused from None
        code = exc.code()
        if code == grpc.StatusCode.NOT_FOUND:
            raise RemoteFileNotFound(f"{path} on {address}: {exc.details()}") from None
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            raise InvalidRequest(exc.details()) from None
        raise ConnectionLost(f"reading {path} from agent {address}: {code.name}") from None


def read_agent_file(address: str, framework_id: str, path: str, *,
                    sandbox: Optional[str] = None, offset: int = 0, length: int = -1,
                    timeout: float = 60.0, credentials: Optional[Credentials] = None) -> bytes:
    """Read a whole file (or a byte range) kept on an agent; see :func:`iter_agent_file`."""
    return b"".join(iter_agent_file(address, framework_id, path, sandbox=sandbox,
                                    offset=offset, length=length, timeout=timeout,
                                    credentials=credentials))
