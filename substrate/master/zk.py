"""The master's ZooKeeper edge: leader election and the registry stored in ZooKeeper.

Layout under the path of ``zk://hosts/path``::

    <path>/members/member_NNNNNNNNNN   ephemeral sequential, one per contending master
                                       (JSON: address, master_id, http); the lowest leads
    <path>/epoch                       the last leader epoch (decimal); every leader bumps it
    <path>/registry/agents/<id>        admitted agents (data: hostname)
    <path>/registry/frameworks/<id>    frameworks (JSON: name, role, weight, failover
                                       timeout, wall-clock failover deadline or null)
    <path>/registry/weights/<role>     role weights (decimal)
    <path>/registry/quota/<role>       role quota (JSON resources)

Writes are fenced: each one is a transaction that also checks the version of ``<path>/epoch``
that this leader wrote when it took office, so a deposed leader (whose successor bumped the
epoch) cannot change the registry even if its process runs on. The registry answers reads
from a cache loaded when the leader takes office (the agents' hostnames just after), and
writes asynchronously (ZooKeeper keeps one client's operations in order), so the master's
loop never waits on ZooKeeper.

Everything here runs kazoo I/O; the pure core (:mod:`substrate.master.core`) only sees the
:class:`~substrate.master.registry.Registry` interface.
"""
from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from typing import Callable, Optional

from substrate.detector import MEMBER_PREFIX, member_sequence, new_kazoo_client, parse_zk_url
from substrate.master.registry import CachedRegistry

log = logging.getLogger("substrate.master.zk")

#: Agents' hostnames read at the same time after taking office, and tries per hostname.
READS_IN_FLIGHT, READ_ATTEMPTS = 128, 20


class ZkRegistry(CachedRegistry):
    """A :class:`~substrate.master.registry.Registry` in ZooKeeper, fenced by the epoch."""

    def __init__(self, client, path: str) -> None:
        super().__init__()
        self.client = client
        self.path = path
        self.root = f"{path}/registry"
        self._epoch_version: Optional[int] = None
        self._pending: list = []
        self._pending_lock = threading.Lock()
        self.failed_writes = 0
        # Agents' hostnames are read after the leader takes office (see load): ids whose
        # stored hostname is not read yet, and what they re-registered with meanwhile.
        self._lock = threading.RLock()
        self._unread: set[str] = set()
        self._reported: dict[str, str] = {}
        self._read_all = threading.Event()
        self._read_all.set()

    # -- loading and the epoch (blocking: called once, when a leader takes office)
    def load(self) -> "ZkRegistry":
        """Read the registry. Only the agents' ids are read here; their hostnames (one read
        per agent: seconds for 10,000 agents) follow in the background, so that a new leader
        takes office, and agents re-register, without waiting for them. A re-registration
        whose stored hostname is not read yet is written once it is, if it differs."""
        from kazoo.exceptions import NoNodeError

        c = self.client
        for sub in ("agents", "frameworks", "weights", "quota"):
            c.ensure_path(f"{self.root}/{sub}")

        def read_all(sub: str) -> dict[str, str]:
            names = c.get_children(f"{self.root}/{sub}")
            pending = [(n, c.get_async(f"{self.root}/{sub}/{n}")) for n in names]
            out = {}
            for name, result in pending:
                try:
                    out[name] = result.get(timeout=30)[0].decode()
                except NoNodeError:
                    pass
            return out

        names = c.get_children(f"{self.root}/agents")
        with self._lock:
            self._agents = dict.fromkeys(names, "")
            self._unread = set(names)
            self._reported = {}
            if names:
                self._read_all.clear()
        self._frameworks = {k: json.loads(v) for k, v in read_all("frameworks").items()}
        self._weights = {k: float(v) for k, v in read_all("weights").items()}
        self._quota = {k: json.loads(v) for k, v in read_all("quota").items()}
        if names:
            self._read_hostnames(names)
        return self

    def _read_hostnames(self, names: list) -> None:
        """Read the agents' hostnames on a thread of their own, a bounded number at a time:
        ZooKeeper answers one session's requests in order, and a ping queued behind 10,000
        reads comes back too late (kazoo then drops the connection)."""
        todo: queue.SimpleQueue = queue.SimpleQueue()
        for name in names:
            todo.put((name, 0))
        slots = threading.BoundedSemaphore(READS_IN_FLIGHT)

        def issue() -> None:
            while not self._read_all.is_set():
                try:
                    name, failures = todo.get(timeout=1.0)
                except queue.Empty:
                    continue
                with self._lock:
                    if name not in self._unread:
                        continue
                if failures:
                    time.sleep(min(1.0, 0.05 * failures))  # ZooKeeper unreachable: pace
                slots.acquire()
                try:
                    result = self.client.get_async(f"{self.root}/agents/{name}")
                except Exception as exc:
                    slots.release()
                    self._hostname_read(name, None, failures, todo, exc)
                    continue
                result.rawlink(lambda r, name=name, failures=failures: (
                    slots.release(), self._hostname_read(name, r, failures, todo)))

        threading.Thread(target=issue, name="registry-hostnames", daemon=True).start()

    def _hostname_read(self, name: str, result, failures: int, todo,
                       error: Optional[Exception] = None) -> None:
        from kazoo.exceptions import NoNodeError

        stored: Optional[str] = None
        exists = True
        try:
            if error is not None:
                raise error
            stored = result.get_nowait()[0].decode()
        except NoNodeError:
            exists = False
        except Exception as exc:
            if failures + 1 < READ_ATTEMPTS:
                todo.put((name, failures + 1))   # read it again
                return
            log.warning("could not read the registry's agent %s: %s", name, exc)
        with self._lock:
            if name in self._unread:
                self._unread.discard(name)
                reported = self._reported.pop(name, None)
                if name in self._agents:   # (else removed meanwhile; its delete is queued)
                    if reported is not None and reported != stored:
                        self._agents[name] = reported
                        self._store("agents", name, reported.encode(), exists)
                    else:
                        self._agents[name] = stored if stored is not None else (reported or "")
            if not self._unread:
                self._read_all.set()

    def wait_loaded(self, timeout: float = 60.0) -> bool:
        """Wait until the agents' hostnames are read; False on timeout."""
        return self._read_all.wait(timeout)

    def admit_agent(self, agent_id: str, hostname: str) -> None:
        with self._lock:
            if agent_id in self._unread:
                self._reported[agent_id] = hostname   # written, if new, once the stored is read
                return
            super().admit_agent(agent_id, hostname)

    def remove_agent(self, agent_id: str) -> None:
        with self._lock:
            self._unread.discard(agent_id)
            self._reported.pop(agent_id, None)
            if self._agents.pop(agent_id, None) is not None:
                self._erase("agents", agent_id)
            if not self._unread:
                self._read_all.set()

    def agents(self) -> dict[str, str]:
        self.wait_loaded()
        with self._lock:
            return super().agents()

    def agent_ids(self) -> list[str]:
        with self._lock:
            return super().agent_ids()

    def next_epoch(self) -> int:
        from kazoo.exceptions import BadVersionError, NodeExistsError

        node = f"{self.path}/epoch"
        while True:
            try:
                self.client.create(node, b"0", makepath=True)
            except NodeExistsError:
                pass
            data, stat = self.client.get(node)
            epoch = int(data.decode() or 0) + 1
            try:
                stat = self.client.set(node, str(epoch).encode(), version=stat.version)
            except BadVersionError:
                continue  # another master took an epoch at the same moment; take the next
            self._epoch_version = stat.version
            self._epoch = epoch
            return epoch

    # -- fenced asynchronous writes
    def _write(self, op: str, sub: str, name: str, data: bytes = b"") -> None:
        if self._epoch_version is None:
            return
        node = f"{self.root}/{sub}/{name}"
        tx = self.client.transaction()
        tx.check(f"{self.path}/epoch", self._epoch_version)
        if op == "delete":
            tx.delete(node)
        elif op == "create":
            tx.create(node, data)
        else:
            tx.set_data(node, data)
        result = tx.commit_async()
        done = threading.Event()
        with self._pending_lock:
            self._pending.append(done)
            if len(self._pending) > 1000:
                self._pending = [d for d in self._pending if not d.is_set()]
        result.rawlink(lambda r, what=(op, node): self._done(r, what, done))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every write so far has been answered (tests, orderly shutdown)."""
        self.wait_loaded(timeout)  # (a hostname read may still lead to a write)
        with self._pending_lock:
            pending, self._pending = self._pending, []
        for done in pending:
            done.wait(timeout)

    def settled(self, timeout: float = 10.0) -> bool:
        """Wait until the writes issued so far are answered (not the hostname reads)."""
        with self._pending_lock:
            pending = list(self._pending)
        deadline = time.monotonic() + timeout
        return all(done.wait(max(0.0, deadline - time.monotonic())) for done in pending)

    def _done(self, result, what, done: threading.Event) -> None:
        try:
            outcome = result.get_nowait()
        except Exception as exc:
            outcome = [exc]
        bad = [r for r in outcome if isinstance(r, Exception)]
        if bad:
            self.failed_writes += 1
            log.warning("registry write %s %s refused: %s", what[0], what[1],
                        ", ".join(type(b).__name__ for b in bad))
        done.set()

    def _store(self, sub: str, name: str, data: bytes, existed: bool) -> None:
        self._write("set" if existed else "create", sub, name, data)

    def _erase(self, sub: str, name: str) -> None:
        self._write("delete", sub, name)


class ZkContender:
    """One master's candidacy: join the election, learn when it leads or is deposed.

    ``on_elected()`` and ``on_deposed()`` are called on ``loop``. A leader is deposed when its
    member znode goes away, when its session expires (LOST), or when it cannot reach
    ZooKeeper for a whole session timeout (SUSPENDED that long: by then ZooKeeper may have
    expired the session and elected another master). After being deposed it joins again.
    """

    def __init__(self, url: str, info: dict, loop: asyncio.AbstractEventLoop,
                 on_elected: Callable[[], None], on_deposed: Callable[[], None],
                 session_timeout: float = 10.0) -> None:
        self.hosts, self.path = parse_zk_url(url)
        self.info = info
        self.loop = loop
        self.on_elected, self.on_deposed = on_elected, on_deposed
        self.session_timeout = session_timeout
        self.client = None
        self.node: Optional[str] = None
        self.leading = False
        self._lock = threading.Lock()
        self._suspend_timer: Optional[threading.Timer] = None
        self._closed = False

    def start(self) -> None:
        """Connect and join (blocking; run it off the event loop)."""
        from kazoo.recipe.watchers import ChildrenWatch

        self.client = new_kazoo_client(self.hosts, self.session_timeout)
        self.client.start(timeout=max(self.session_timeout, 10.0))
        self.client.add_listener(self._on_state)
        self.client.ensure_path(f"{self.path}/members")
        self._join()
        ChildrenWatch(self.client, f"{self.path}/members", self._on_children)

    def _join(self) -> None:
        data = json.dumps(self.info).encode()
        created = self.client.create(f"{self.path}/members/{MEMBER_PREFIX}", data,
                                     ephemeral=True, sequence=True)
        with self._lock:
            self.node = created.rsplit("/", 1)[1]
        log.info("joined the election as %s", self.node)
        self._check(self.client.get_children(f"{self.path}/members"))

    def _on_children(self, children: list) -> Optional[bool]:
        if self._closed:
            return False
        self._check(children)
        return None

    def _check(self, children: list) -> None:
        members = sorted((c for c in children if c.startswith(MEMBER_PREFIX)),
                         key=member_sequence)
        with self._lock:
            if self.node is None:
                return
            if self.node not in members:
                if self.leading:
                    self._depose_locked("our member znode is gone")
                return
            lowest = members[0] == self.node
            if lowest and not self.leading:
                self.leading = True
                self.loop.call_soon_threadsafe(self.on_elected)

    def _depose_locked(self, why: str) -> None:
        log.warning("stepping down: %s", why)
        self.leading = False
        self.loop.call_soon_threadsafe(self.on_deposed)

    def _on_state(self, state) -> None:
        from kazoo.protocol.states import KazooState

        with self._lock:
            if self._suspend_timer is not None:
                self._suspend_timer.cancel()
                self._suspend_timer = None
            if state == KazooState.LOST:
                self.node = None
                if self.leading:
                    self._depose_locked("ZooKeeper session expired")
                if not self._closed:
                    self.client.handler.spawn(self._rejoin)
            elif state == KazooState.SUSPENDED and self.leading:
                timer = threading.Timer(self.session_timeout, self._suspended_too_long)
                timer.daemon = True
                self._suspend_timer = timer
                timer.start()

    def _suspended_too_long(self) -> None:
        with self._lock:
            if self.leading and self._suspend_timer is not None:
                self._suspend_timer = None
                self._depose_locked("cut off from ZooKeeper for a whole session timeout")

    def _rejoin(self) -> None:
        """After a session loss: wait for the new session, then contend again."""
        from kazoo.protocol.states import KazooState

        while not self._closed:
            if self.client.state == KazooState.CONNECTED:
                try:
                    self._join()
                    return
                except Exception as exc:
                    log.warning("could not rejoin the election yet: %s", exc)
            self.client.handler.sleep_func(0.2)  # waiting for kazoo to reconnect

    def resign(self) -> None:
        """Give up leadership and contend again from the back of the line."""
        def run() -> None:
            with self._lock:
                node, self.node = self.node, None
                self.leading = False
            if node is not None:
                try:
                    self.client.delete(f"{self.path}/members/{node}")
                except Exception:
                    pass  # gone already
            if not self._closed:
                self._rejoin()
        self.client.handler.spawn(run)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            if self._suspend_timer is not None:
                self._suspend_timer.cancel()
        if self.client is not None:
            try:
                self.client.stop()
                self.client.close()
            except Exception:
                pass

    def registry(self) -> ZkRegistry:
        """A registry on this contender's session (used once elected)."""
        return ZkRegistry(self.client, self.path)
