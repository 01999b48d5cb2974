"""The Unix sockets where executors reach their agent, one per OS user they run as.

Executors never talk to their agent over TCP: a socket file is reachable only by whom the file
system lets through, and the secret token each executor gets at launch says which executor it
is. Which processes the file system lets through is the choice made here:

* ``work_dir/run/executors.sock`` -- the agent's own user's executors (every executor when
  tasks do not switch users). The socket is ``0600``, so only the agent's user can connect.
  ``run/`` is ``0700`` -- ``0711`` once the agent serves another user, so that user can pass
  through it to its own directory below (never list it).
* ``work_dir/run/users/<uid>/executors.sock`` -- the executors of one other user. Opened the
  first time an executor of that user is launched (and again after an agent restart, for the
  executors it recovers), by a server of its own bound to the same service. The directory
  is that user's and ``0700``, the socket is that user's: that user and root can connect,
  no one else. The server knows its uid, and the agent accepts an executor's SUBSCRIBE only
  through the socket of the user the executor runs as, so even a leaked token cannot be used
  by another user.

A per-user socket was chosen over one shared socket opened to a group (which would need a
system group managed by the agent, and lets every task user of the agent reach every other's
executor endpoint) and over a per-executor socket (a server per executor). The agent never
changes the mode of, or follows, anything inside a user's directory: after the bind the socket
is re-owned with ``lchown``, which does not follow a link the user may have put there.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Callable, Optional

import grpc

from substrate.agent.users import TaskUser
from substrate.errors import ClusterError
from substrate.v1 import rpc

#: AF_UNIX paths are limited to 108 bytes with the terminating NUL.
MAX_SOCKET_PATH = 107


def user_socket_path(run_dir: Path, uid: int) -> Path:
    """``run_dir/users/<uid>/executors.sock``.

    Examples
    --------
    >>> str(user_socket_path(Path("/w/run"), 65534))
    '/w/run/users/65534/executors.sock'
    """
    return run_dir / "users" / str(int(uid)) / "executors.sock"


def check_length(path: Path) -> None:
    """Raise :class:`ClusterError` for a socket path the kernel cannot bind."""
    if len(str(path).encode()) > MAX_SOCKET_PATH:
        raise ClusterError(f"the agent's socket path {path} is longer than {MAX_SOCKET_PATH} "
                           f"bytes; use a shorter --work-dir")


class ExecutorSockets:
    """The agent's executor servers: the main socket and one per other user.

    Parameters
    ----------
    socket : Path
        The main socket, ``work_dir/run/executors.sock``.
    options : list
        gRPC server options (message size limits).
    servicer : callable
        ``servicer(uid)`` makes the ``Agent`` service for a socket; ``uid`` is None for the
        main socket, else the user whose socket it serves.
    """

    def __init__(self, socket: Path, options: list,
                 servicer: Callable[[Optional[int]], rpc.AgentServicer]) -> None:
        self.socket = socket
        self.run_dir = socket.parent
        self.options = options
        self.servicer = servicer
        self.servers: dict[Optional[int], grpc.aio.Server] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def start(self) -> str:
        """Serve the main socket; returns its ``unix:<path>``."""
        check_length(self.socket)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        await self._serve(None, self.socket)
        os.chmod(self.socket, 0o600)
        return f"unix:{self.socket}"

    async def for_user(self, user: TaskUser) -> str:
        """The ``unix:<path>`` of ``user``'s socket, opened on first use.

        Raises
        ------
        ClusterError
            When the socket cannot be made or served.
        """
        lock = self._locks.setdefault(user.uid, asyncio.Lock())
        sock = user_socket_path(self.run_dir, user.uid)
        async with lock:
            if user.uid in self.servers:
                return f"unix:{sock}"
            check_length(sock)
            os.chmod(self.run_dir, 0o711)   # let the user pass, not list
            users_dir = sock.parent.parent
            users_dir.mkdir(exist_ok=True)
            os.chmod(users_dir, 0o711)
            home = sock.parent
            home.mkdir(exist_ok=True)
            # users_dir is the agent's: nobody else can have put a link in place of home.
            if home.is_symlink() or not home.is_dir():
                raise ClusterError(f"{home} is not a directory")
            os.lchown(home, user.uid, user.gid)
            os.chmod(home, 0o700)
            await self._serve(user.uid, sock)
            try:
                os.lchown(sock, user.uid, user.gid)   # connecting needs write permission
            except OSError as exc:
                await self.servers.pop(user.uid).stop(0)
                raise ClusterError(f"cannot hand {sock} to user {user.name!r}: {exc}") from None
        return f"unix:{sock}"

    async def _serve(self, uid: Optional[int], sock: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()   # left by a previous run that was killed (unlink never follows)
        server = grpc.aio.server(options=self.options)
        rpc.add_AgentServicer_to_server(self.servicer(uid), server)
        try:
            if not server.add_insecure_port(f"unix:{sock}"):
                raise RuntimeError("the port could not be bound")
        except RuntimeError as exc:
            raise ClusterError(f"agent cannot listen on {sock}: {exc}") from None
        await server.start()
        self.servers[uid] = server

    async def stop(self, grace: float) -> None:
        """Stop every server."""
        servers, self.servers = list(self.servers.values()), {}
        await asyncio.gather(*(s.stop(grace) for s in servers), return_exceptions=True)
