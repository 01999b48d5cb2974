"""The master's small durable registry, behind one interface.

What must survive a master failover is little: the leader epoch, the agents that were
admitted, the frameworks with their failover deadlines (wall-clock, since monotonic time
does not cross processes), role weights and quota. Tasks are not stored: a new leader
rebuilds them from the agents that re-register.

Three implementations share :class:`CachedRegistry` (reads from memory, writes through):
:class:`InMemoryRegistry` (tests, a throw-away master), :class:`SqliteRegistry` (one master
that survives its own restart, ``--registry sqlite:PATH``) and
:class:`substrate.master.zk.ZkRegistry` (several masters elected through ZooKeeper).

Examples
--------
>>> reg = InMemoryRegistry()
>>> reg.next_epoch(), reg.next_epoch()
(1, 2)
>>> reg.admit_agent("a1", "host-1")
>>> reg.agents()
{'a1': 'host-1'}
>>> reg.set_weight("analytics", 2.0); reg.weights()
{'analytics': 2.0}
"""
from __future__ import annotations

import json
import os
import sqlite3
from typing import Optional, Protocol

from substrate.errors import InvalidRequest


class Registry(Protocol):
    """Durable facts of a master; every method is cheap and called on the master's loop."""

    def next_epoch(self) -> int:
        """Claim and return a new leader epoch, greater than any claimed before."""

    def admit_agent(self, agent_id: str, hostname: str) -> None:
        """Record an agent as admitted (registration or re-registration)."""

    def remove_agent(self, agent_id: str) -> None:
        """Forget an agent (unreachable past the timeout, or removed by an operator)."""

    def agents(self) -> dict[str, str]:
        """Admitted agents: id -> hostname."""

    def agent_ids(self) -> list[str]:
        """Ids of the admitted agents (cheaper than :meth:`agents`: no hostnames)."""

    def add_framework(self, framework_id: str, name: str, role: str, weight: float,
                      failover_timeout: float) -> None:
        """Record a subscribed framework."""

    def set_failover_deadline(self, framework_id: str, deadline: Optional[float]) -> None:
        """Wall-clock time after which the framework is removed; None while connected."""

    def remove_framework(self, framework_id: str) -> None:
        """Forget a framework (teardown or failover timeout)."""

    def frameworks(self) -> dict[str, dict]:
        """Known frameworks: id -> their recorded fields and deadline."""

    def settled(self, timeout: float = 10.0) -> bool:
        """Block until the writes made so far are durable; False if they were not in time.
        Called off the master's loop, before a subscription is confirmed."""

    def set_weight(self, role: str, weight: Optional[float]) -> None:
        """Record a role's weight (None: back to the default)."""

    def weights(self) -> dict[str, float]:
        """Role weights set by an operator."""

    def set_quota(self, role: str, quota: Optional[dict]) -> None:
        """Record a role's quota as resource fields (None: no quota)."""

    def quotas(self) -> dict[str, dict]:
        """Role quotas set by an operator."""


class CachedRegistry:
    """A registry held in memory; subclasses persist each change in :meth:`_store`/:meth:`_erase`.

    Unchanged facts are not written again, so the many re-registrations that follow a master
    failover cost the durable store nothing.
    """

    def __init__(self) -> None:
        self._epoch = 0
        self._agents: dict[str, str] = {}
        self._frameworks: dict[str, dict] = {}
        self._weights: dict[str, float] = {}
        self._quota: dict[str, dict] = {}

    def settled(self, timeout: float = 10.0) -> bool:
        return True   # writes are done when made (memory, SQLite)

    # persistence hooks (no-ops in memory)
    def _store(self, table: str, key: str, data: bytes, existed: bool) -> None:
        pass

    def _erase(self, table: str, key: str) -> None:
        pass

    def next_epoch(self) -> int:
        self._epoch += 1
        return self._epoch

    def admit_agent(self, agent_id: str, hostname: str) -> None:
        old = self._agents.get(agent_id)
        if old == hostname:
            return
        self._agents[agent_id] = hostname
        self._store("agents", agent_id, hostname.encode(), old is not None)

    def remove_agent(self, agent_id: str) -> None:
        if self._agents.pop(agent_id, None) is not None:
            self._erase("agents", agent_id)

    def agents(self) -> dict[str, str]:
        return dict(self._agents)

    def agent_ids(self) -> list[str]:
        return list(self._agents)

    def add_framework(self, framework_id: str, name: str, role: str, weight: float,
                      failover_timeout: float) -> None:
        existed = framework_id in self._frameworks
        self._frameworks[framework_id] = {"name": name, "role": role, "weight": weight,
                                          "failover_timeout": failover_timeout, "deadline": None}
        self._store_framework(framework_id, existed)

    def _store_framework(self, framework_id: str, existed: bool) -> None:
        self._store("frameworks", framework_id,
                    json.dumps(self._frameworks[framework_id]).encode(), existed)

    def set_failover_deadline(self, framework_id: str, deadline: Optional[float]) -> None:
        fw = self._frameworks.get(framework_id)
        if fw is not None and fw["deadline"] != deadline:
            fw["deadline"] = deadline
            self._store_framework(framework_id, True)

    def remove_framework(self, framework_id: str) -> None:
        if self._frameworks.pop(framework_id, None) is not None:
            self._erase("frameworks", framework_id)

    def frameworks(self) -> dict[str, dict]:
        return {k: dict(v) for k, v in self._frameworks.items()}

    def set_weight(self, role: str, weight: Optional[float]) -> None:
        existed = role in self._weights
        if weight is None:
            if existed:
                del self._weights[role]
                self._erase("weights", role)
            return
        self._weights[role] = float(weight)
        self._store("weights", role, repr(float(weight)).encode(), existed)

    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def set_quota(self, role: str, quota: Optional[dict]) -> None:
        existed = role in self._quota
        if quota is None:
            if existed:
                del self._quota[role]
                self._erase("quota", role)
            return
        self._quota[role] = dict(quota)
        self._store("quota", role, json.dumps(quota).encode(), existed)

    def quotas(self) -> dict[str, dict]:
        return {k: dict(v) for k, v in self._quota.items()}


class InMemoryRegistry(CachedRegistry):
    """A :class:`Registry` that lives as long as its process."""


_TABLES = ("agents", "frameworks", "weights", "quota")


class SqliteRegistry(CachedRegistry):
    """A :class:`Registry` in one SQLite file, for a single master that may restart.

    Parameters
    ----------
    path : str
        The database file (created with its directory if missing).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "registry.db")
    >>> reg = SqliteRegistry(path); reg.admit_agent("a1", "h1"); epoch = reg.next_epoch()
    >>> reg.close()
    >>> again = SqliteRegistry(path)
    >>> again.agents(), again.next_epoch() == epoch + 1
    ({'a1': 'h1'}, True)
    >>> again.close()
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for table in _TABLES:
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                                 "(key TEXT PRIMARY KEY, data BLOB NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")
            row = self._db.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        except sqlite3.Error as exc:
            raise InvalidRequest(f"cannot open the registry {path}: {exc}") from None
        self._epoch = int(row[0]) if row else 0
        loaded = {t: {k: bytes(v).decode() for k, v in
                      self._db.execute(f"SELECT key, data FROM {t}")} for t in _TABLES}
        self._agents = loaded["agents"]
        self._frameworks = {k: json.loads(v) for k, v in loaded["frameworks"].items()}
        self._weights = {k: float(v) for k, v in loaded["weights"].items()}
        self._quota = {k: json.loads(v) for k, v in loaded["quota"].items()}

    def next_epoch(self) -> int:
        epoch = super().next_epoch()
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (epoch,))
        return epoch

    def _store(self, table: str, key: str, data: bytes, existed: bool) -> None:
        self._db.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", (key, data))

    def _erase(self, table: str, key: str) -> None:
        self._db.execute(f"DELETE FROM {table} WHERE key = ?", (key,))

    def close(self) -> None:
        self._db.close()


def open_registry(spec: str) -> Registry:
    """A registry from a command-line spec: ``memory`` or ``sqlite:PATH``.

    (``zk`` registries come with an election; see :mod:`substrate.master.ha`.)

    >>> type(open_registry("memory")).__name__
    'InMemoryRegistry'
    >>> open_registry("etcd:x")
    Traceback (most recent call last):
    ...
    substrate.errors.InvalidRequest: unknown registry 'etcd:x': expected 'memory', 'sqlite:PATH' or 'zk'
    """
    if spec in ("", "memory"):
        return InMemoryRegistry()
    if spec.startswith("sqlite:") and len(spec) > len("sqlite:"):
        return SqliteRegistry(spec[len("sqlite:"):])
    raise InvalidRequest(f"unknown registry {spec!r}: expected 'memory', 'sqlite:PATH' or 'zk'")
