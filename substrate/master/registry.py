"""The master's small durable registry, behind one interface.

What must survive a master failover is little: the leader epoch, the agents that were
admitted, and the frameworks with their failover deadlines (wall-clock, since monotonic time
does not cross processes). Tasks are not stored: a new leader rebuilds them from the agents
that re-register. :class:`InMemoryRegistry` serves a single master and the tests; SQLite and
ZooKeeper implementations of :class:`Registry` plug in for real deployments.

Examples
--------
>>> reg = InMemoryRegistry()
>>> reg.next_epoch(), reg.next_epoch()
(1, 2)
>>> reg.admit_agent("a1", "host-1")
>>> reg.agents()
{'a1': 'host-1'}
"""
from __future__ import annotations

from typing import Optional, Protocol


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

    def add_framework(self, framework_id: str, name: str, role: str, weight: float,
                      failover_timeout: float) -> None:
        """Record a subscribed framework."""

    def set_failover_deadline(self, framework_id: str, deadline: Optional[float]) -> None:
        """Wall-clock time after which the framework is removed; None while connected."""

    def remove_framework(self, framework_id: str) -> None:
        """Forget a framework (teardown or failover timeout)."""

    def frameworks(self) -> dict[str, dict]:
        """Known frameworks: id -> their recorded fields and deadline."""


class InMemoryRegistry:
    """A :class:`Registry` that lives as long as its process."""

    def __init__(self) -> None:
        self._epoch = 0
        self._agents: dict[str, str] = {}
        self._frameworks: dict[str, dict] = {}

    def next_epoch(self) -> int:
        self._epoch += 1
        return self._epoch

    def admit_agent(self, agent_id: str, hostname: str) -> None:
        self._agents[agent_id] = hostname

    def remove_agent(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)

    def agents(self) -> dict[str, str]:
        return dict(self._agents)

    def add_framework(self, framework_id: str, name: str, role: str, weight: float,
                      failover_timeout: float) -> None:
        self._frameworks[framework_id] = {"name": name, "role": role, "weight": weight,
                                          "failover_timeout": failover_timeout, "deadline": None}

    def set_failover_deadline(self, framework_id: str, deadline: Optional[float]) -> None:
        if framework_id in self._frameworks:
            self._frameworks[framework_id]["deadline"] = deadline

    def remove_framework(self, framework_id: str) -> None:
        self._frameworks.pop(framework_id, None)

    def frameworks(self) -> dict[str, dict]:
        return {k: dict(v) for k, v in self._frameworks.items()}
