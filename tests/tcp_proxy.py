"""A loopback TCP proxy whose connections a test can cut, to break gRPC streams for real."""
from __future__ import annotations

import socket
import threading


class CuttableProxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` ("host:port"); :meth:`cut` closes every
    connection it carries (new ones are accepted again afterwards).

    Examples
    --------
    >>> with CuttableProxy("127.0.0.1:9") as proxy:
    ...     proxy.address.startswith("127.0.0.1:")
    True
    """

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.accepted = 0
        self.connected = threading.Condition(self._lock)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> "CuttableProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
                self.accepted += 1
                self.connected.notify_all()
            pair = [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, pair), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, pair: list) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        # Only the second of the pair's two threads closes the sockets: closing one while the
        # other thread still blocks in recv() on it would let that recv() read from whatever
        # new connection reuses the descriptor.
        with self._lock:
            pair.append(None)
            last = len(pair) == 4
        if last:
            for s in (src, dst):
                s.close()

    def wait_accepted(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` connections have been accepted in all."""
        with self._lock:
            return self.connected.wait_for(lambda: self.accepted >= count, timeout)

    def cut(self) -> None:
        """Reset every carried connection, as a network fault would."""
        with self._lock:
            conns, self._open = self._open, []
        for s in conns:   # wakes both pipe threads, which then close the pair
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._listener.close()
        self.cut()
