"""Weighted dominant-resource-fairness bookkeeping for the allocator.

This module owns the allocator's private, fast representation of resource amounts (a vector
of five floats: cpus, mem, disk, gpus and the number of ports), the dominant-share arithmetic
against a cluster total, and :class:`Sorter`, a list of clients (roles or frameworks) kept
sorted by ``(share / weight, id)``.

The sorter is incremental: when one client's allocation changes, only that client moves
(a binary search, a delete and an insert into a Python list; the list moves are C memmoves),
so an allocation cycle never re-sorts all clients per agent. A full re-key happens only when
the cluster total changes (agents added, removed, activated or deactivated), once, at the next
allocation cycle.

It also defines the plain slotted records the allocator keeps per role, framework and agent
(data only; internal to the allocator, which mutates them).

It leaves to :mod:`substrate.allocator` every rule: which clients exist, eligibility
(activity, suppression, filters, quota), minimum allocatable resources, and time; to :mod:`substrate.resources` the public
:class:`~substrate.resources.Resources` type and its validation.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator, Sequence
from typing import Protocol

from substrate.resources import EPSILON, Resources

#: Number of dimensions of a share vector: cpus, mem, disk, gpus, ports (count).
DIMS = 5

Vec = tuple[float, float, float, float, float]

ZERO: Vec = (0.0, 0.0, 0.0, 0.0, 0.0)


def vec_of(resources: Resources) -> Vec:
    """The share vector of ``resources``.

    Examples
    --------
    >>> vec_of(Resources(cpus=2, mem=512, ports=((31000, 31009),)))
    (2.0, 512.0, 0.0, 0.0, 10.0)
    """
    r = resources
    return (r.cpus, r.mem, r.disk, r.gpus, float(r.port_count) if r.ports else 0.0)


def inverse(total: Sequence[float]) -> Vec:
    """Reciprocals of a total, with 0 where the total has (nearly) nothing.

    Multiplying by the reciprocal is cheaper than dividing in the hot path, and a dimension
    that no active agent has cannot dominate anyone's share.

    Examples
    --------
    >>> inverse((4.0, 0.0, 2.0, 0.0, 0.0))
    (0.25, 0.0, 0.5, 0.0, 0.0)
    """
    return tuple(1.0 / t if t > EPSILON else 0.0 for t in total)  # type: ignore[return-value]


def dominant_share(vec: Sequence[float], inv: Sequence[float]) -> float:
    """The largest fraction of the total that ``vec`` holds over all dimensions.

    Examples
    --------
    >>> dominant_share((1.0, 256.0, 0.0, 0.0, 0.0), inverse((4.0, 512.0, 0.0, 0.0, 0.0)))
    0.5
    """
    return max(vec[0] * inv[0], vec[1] * inv[1], vec[2] * inv[2], vec[3] * inv[3],
               vec[4] * inv[4], 0.0)


def add_into(vec: list[float], delta: Sequence[float]) -> None:
    """``vec += delta`` in place."""
    vec[0] += delta[0]
    vec[1] += delta[1]
    vec[2] += delta[2]
    vec[3] += delta[3]
    vec[4] += delta[4]


def sub_into(vec: list[float], delta: Sequence[float]) -> None:
    """``vec -= delta`` in place, clamping float dust below zero."""
    for i in range(DIMS):
        value = vec[i] - delta[i]
        vec[i] = value if value > EPSILON else 0.0


class Client(Protocol):
    """What a :class:`Sorter` needs from a role or a framework."""

    id: str
    weight: float
    vec: list[float]
    key: tuple[float, str, object] | None


class Sorter:
    """Clients kept sorted by ``(dominant share / weight, id)``.

    Each entry of :attr:`keys` is ``(share / weight, id, client)``; the client object rides
    along so the hot loop needs no dictionary look-up, and since ids are unique, comparisons
    never reach it. A client's current key is stored on the client (``client.key``; ``None``
    when it is not in this sorter), which is what lets :meth:`remove` find it by bisection.

    Examples
    --------
    >>> class C:
    ...     def __init__(self, id, weight, vec):
    ...         self.id, self.weight, self.vec, self.key = id, weight, list(vec), None
    >>> inv = inverse((10.0, 100.0, 0.0, 0.0, 0.0))
    >>> a, b = C("a", 1.0, (5, 0, 0, 0, 0)), C("b", 2.0, (6, 0, 0, 0, 0))
    >>> s = Sorter()
    >>> s.insert(a, inv); s.insert(b, inv)
    >>> [c.id for c in s]          # b: 0.6 / 2 = 0.3 < a: 0.5
    ['b', 'a']
    >>> b.vec[0] = 12; s.update(b, inv)
    >>> [c.id for c in s]
    ['a', 'b']
    """

    __slots__ = ("keys",)

    def __init__(self) -> None:
        self.keys: list[tuple[float, str, Client]] = []

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[Client]:
        return (entry[2] for entry in self.keys)

    def __contains__(self, client: Client) -> bool:
        return client.key is not None

    def insert(self, client: Client, inv: Sequence[float]) -> None:
        """Add ``client`` at the place its current share gives it."""
        key = (dominant_share(client.vec, inv) / client.weight, client.id, client)
        client.key = key
        insort(self.keys, key)

    def remove(self, client: Client) -> None:
        """Take ``client`` out (it must be in)."""
        keys = self.keys
        del keys[bisect_left(keys, client.key)]  # type: ignore[arg-type]
        client.key = None

    def update(self, client: Client, inv: Sequence[float]) -> None:
        """Move ``client`` after its vector or weight changed; no-op when it is not in."""
        if client.key is not None:
            self.remove(client)
            self.insert(client, inv)

    def rekey(self, inv: Sequence[float]) -> None:
        """Recompute every key against a new total and sort once."""
        keys = self.keys
        for i, (_, _, client) in enumerate(keys):
            key = (dominant_share(client.vec, inv) / client.weight, client.id, client)
            client.key = key
            keys[i] = key
        keys.sort()  # in place: the allocator holds on to this list


# ------------------------------------------------------ the allocator's records

class RoleRecord:
    """A role: weight, quota, what its frameworks hold, and the sorter of its offerable ones."""

    __slots__ = (
        "frameworks",
        "id",
        "key",
        "keys",
        "limit",
        "pairs",
        "quota",
        "quota_blocked",
        "sorter",
        "vec",
        "weight",
    )

    def __init__(self, role: str) -> None:
        self.id = role
        self.weight = 1.0
        self.vec = [0.0] * DIMS            # everything allocated to its frameworks
        self.key: tuple | None = None      # set while in the role sorter
        self.sorter = Sorter()             # its active, unsuppressed frameworks
        self.keys = self.sorter.keys       # the sorter's list, for the hot loop
        self.quota: Resources | None = None
        self.limit: tuple[float, ...] | None = None  # per scalar, inf where unlimited
        self.quota_blocked = False         # an agent was skipped for lack of headroom
        self.frameworks = self.pairs = 0   # pairs: (framework, agent) allocations held


class FrameworkRecord:
    """A framework: its role, weight, state flags, refuse filters and allocations per agent."""

    __slots__ = ("active", "filters", "id", "key", "on", "refused", "role", "suppressed", "vec",
                 "weight")

    def __init__(self, framework_id: str, role: RoleRecord, weight: float) -> None:
        self.id = framework_id
        self.role = role
        self.weight = weight
        self.vec = [0.0] * DIMS
        self.key: tuple | None = None      # set while in its role's sorter
        self.active = True
        self.suppressed = False
        self.filters: dict[str, float] = {}   # agent id -> expiry
        self.refused: dict[str, Vec] = {}     # agent id -> the resources the filter covers
        self.on: dict[str, Resources] = {}    # agent id -> allocated there


class AgentRecord:
    """An agent: total and free pools (as Resources and as vectors) and who holds what."""

    __slots__ = (
        "active",
        "alloc",
        "filtered_by",
        "free",
        "free_vec",
        "id",
        "need",
        "total",
        "total_vec",
    )

    def __init__(self, agent_id: str, total: Resources, need: tuple) -> None:
        self.id = agent_id
        self.total = total
        self.total_vec = vec_of(total)
        self.free = total
        self.free_vec = self.total_vec
        self.active = True
        self.need = need                      # ((dimension, minimum), ...) to be offered
        self.alloc: dict[str, Resources] = {}  # framework id -> allocated here
        self.filtered_by: set[str] = set()
