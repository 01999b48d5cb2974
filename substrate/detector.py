"""Finding the leading master: plain ``host:port`` addresses and ``zk://`` URLs.

Every place that takes a master address (the scheduler driver, agents, the CLI, frameworks)
goes through :class:`MasterLocator`. A plain ``"host:port"`` resolves to itself. A
``"zk://host:port[,host:port]/path"`` URL names a ZooKeeper ensemble and the path under which
masters run their election (see :mod:`substrate.master.zk`): each contending master holds an
ephemeral sequential znode ``<path>/members/member_NNNNNNNNNN`` whose data is a small JSON
record with its address; the lowest sequence number leads. The locator watches those children
and tells its clients when the leader changes, so they drop their stream to a deposed leader
and re-register with the new one.

This module owns ZooKeeper I/O on the client side only; kazoo is imported lazily so that
plain addresses never need it.

Examples
--------
>>> parse_zk_url("zk://10.0.0.1:2181,10.0.0.2:2181/offerpool")
('10.0.0.1:2181,10.0.0.2:2181', '/offerpool')
>>> is_zk_url("zk://zk1:2181/offerpool"), is_zk_url("127.0.0.1:5050")
(True, False)
>>> parse_zk_url("zk://zk1:2181")
Traceback (most recent call last):
...
substrate.errors.InvalidRequest: a ZooKeeper master URL needs a path: 'zk://zk1:2181'
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Optional

from substrate.errors import ConnectionLost, InvalidRequest

log = logging.getLogger("substrate.detector")

#: Children of ``<path>/members`` that contend for leadership.
MEMBER_PREFIX = "member_"
_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[\w.\-]+):\d{1,5}$")
_PATH = re.compile(r"^(/[\w.\-]+)+$")


def is_zk_url(address: str) -> bool:
    """True for ``zk://`` master URLs."""
    return isinstance(address, str) and address.startswith("zk://")


def parse_zk_url(url: str) -> tuple[str, str]:
    """Split ``zk://hosts/path`` into kazoo's host string and the znode path."""
    if not is_zk_url(url):
        raise InvalidRequest(f"not a ZooKeeper URL: {url!r}")
    rest = url[len("zk://"):]
    hosts, slash, path = rest.partition("/")
    if not slash or not path:
        raise InvalidRequest(f"a ZooKeeper master URL needs a path: {url!r}")
    path = "/" + path.rstrip("/")
    if not hosts or not all(_HOSTPORT.match(h) for h in hosts.split(",")):
        raise InvalidRequest(f"ZooKeeper hosts must be 'host:port[,host:port...]': {url!r}")
    if not _PATH.match(path):
        raise InvalidRequest(f"bad ZooKeeper path in {url!r}")
    return hosts, path


def check_master_address(address: str) -> str:
    """Validate a master address (``host:port`` or ``zk://``); return it unchanged."""
    if is_zk_url(address):
        parse_zk_url(address)
        return address
    if not isinstance(address, str) or not _HOSTPORT.match(address):
        raise InvalidRequest(f"master must be 'host:port' or 'zk://host:port/path', "
                             f"got {address!r}")
    return address


def member_sequence(name: str) -> int:
    """The sequence number ZooKeeper appended to a member znode's name."""
    return int(name[len(MEMBER_PREFIX):])


@dataclass(frozen=True)
class LeaderInfo:
    """What a leading master publishes in its member znode."""

    address: str
    master_id: str
    http: str = ""


def new_kazoo_client(hosts: str, timeout: float = 10.0):
    """A kazoo client with our defaults (imported here so plain addresses never need kazoo)."""
    from kazoo.client import KazooClient
    from kazoo.retry import KazooRetry

    return KazooClient(hosts=hosts, timeout=timeout,
                       connection_retry=KazooRetry(max_tries=-1, max_delay=1.0),
                       logger=logging.getLogger("substrate.kazoo"))


class LeaderDetector:
    """Watches a ZooKeeper election path and knows the current leader.

    Thread-safe; callbacks from kazoo's threads are turned into wake-ups of asyncio waiters
    (on whichever loops they run) and of threads blocked in :meth:`wait_leader`.

    Parameters
    ----------
    url : str
        ``zk://hosts/path``.
    timeout : float
        ZooKeeper session timeout and connection timeout, seconds.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.hosts, self.path = parse_zk_url(url)
        self.timeout = timeout
        self.leader: Optional[LeaderInfo] = None
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._client = None
        self._closed = False
        self._generation = 0

    def start(self) -> "LeaderDetector":
        """Connect (blocking, at most ``timeout`` seconds) and start watching."""
        from kazoo.recipe.watchers import ChildrenWatch

        client = new_kazoo_client(self.hosts, self.timeout)
        try:
            client.start(timeout=self.timeout)
        except Exception as exc:
            client.close()
            raise ConnectionLost(f"cannot reach ZooKeeper at {self.hosts}: {exc}") from None
        self._client = client
        members = f"{self.path}/members"
        client.ensure_path(members)
        ChildrenWatch(client, members, self._on_children)
        return self

    def _on_children(self, children: list) -> Optional[bool]:
        if self._closed:
            return False  # stop watching
        names = sorted((c for c in children if c.startswith(MEMBER_PREFIX)), key=member_sequence)
        self._client.handler.spawn(self._fetch, names)
        return None

    def _fetch(self, names: list) -> None:
        from kazoo.exceptions import NoNodeError

        leader = None
        for name in names:  # the lowest that still exists leads
            try:
                data, _ = self._client.get(f"{self.path}/members/{name}")
                doc = json.loads(data.decode())
                leader = LeaderInfo(doc["address"], doc.get("master_id", ""), doc.get("http", ""))
                break
            except NoNodeError:
                continue
            except Exception as exc:  # a malformed member must not blind every client
                log.warning("ignoring malformed master record %s: %s", name, exc)
                continue
        self._set_leader(leader)

    def _set_leader(self, leader: Optional[LeaderInfo]) -> None:
        with self._cond:
            if leader == self.leader:
                return
            log.info("leading master: %s", leader.address if leader else "none")
            self.leader = leader
            self._generation += 1
            self._cond.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:
                pass  # that loop is gone

    def wait_leader(self, timeout: Optional[float] = None) -> LeaderInfo:
        """Block until a leader is known; raise :class:`ConnectionLost` after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.leader is not None or self._closed, timeout):
                raise ConnectionLost(f"no leading master under {self.url} within {timeout} s")
            if self.leader is None:
                raise ConnectionLost("the leader detector was closed")
            return self.leader

    def changed_event(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """An asyncio event (of ``loop``) set at the next change of leader."""
        event = asyncio.Event()
        with self._cond:
            self._waiters.append((loop, event))
        return event

    def close(self) -> None:
        self._closed = True
        with self._cond:
            self._cond.notify_all()
        client, self._client = self._client, None
        if client is not None:
            try:
                client.stop()
                client.close()
            except Exception:
                pass


class MasterLocator:
    """Resolves a master address for a client, following the leader for ``zk://`` URLs.

    Parameters
    ----------
    address : str
        ``"host:port"`` or ``"zk://hosts/path"``.
    detector : LeaderDetector, optional
        Share one detector between many clients (the failover benchmark does).

    Examples
    --------
    >>> import asyncio
    >>> asyncio.run(MasterLocator("127.0.0.1:5050").resolve(1.0))
    '127.0.0.1:5050'
    """

    def __init__(self, address: str, detector: Optional[LeaderDetector] = None) -> None:
        self.is_zk = is_zk_url(address)
        if self.is_zk:
            parse_zk_url(address)  # a bad URL fails here, before any connection attempt
        self.address = address
        self._detector = detector
        self._own_detector = detector is None

    async def _ensure_detector(self) -> LeaderDetector:
        if self._detector is None:
            detector = LeaderDetector(self.address)
            await asyncio.get_running_loop().run_in_executor(None, detector.start)
            self._detector = detector
        return self._detector

    async def resolve(self, timeout: float) -> str:
        """The current leader's ``host:port`` (waiting up to ``timeout`` for one)."""
        if not self.is_zk:
            return self.address
        detector = await self._ensure_detector()
        loop = asyncio.get_running_loop()
        leader = await loop.run_in_executor(None, detector.wait_leader, timeout)
        return leader.address

    async def wait_changed(self, current: str) -> None:
        """Return once the leader is no longer ``current`` (never, for a plain address)."""
        if not self.is_zk:
            await asyncio.Event().wait()
        detector = await self._ensure_detector()
        loop = asyncio.get_running_loop()
        while True:
            event = detector.changed_event(loop)
            leader = detector.leader
            if leader is None or leader.address != current:
                return
            await event.wait()

    def resolve_blocking(self, timeout: float) -> str:
        """:meth:`resolve` for code without an event loop (the CLI)."""
        if not self.is_zk:
            return self.address
        if self._detector is None:
            self._detector = LeaderDetector(self.address).start()
        return self._detector.wait_leader(timeout).address

    def close(self) -> None:
        if self._own_detector and self._detector is not None:
            self._detector.close()
            self._detector = None
