"""The allocator: a pure state machine that decides which framework is offered which agent.

It owns the allocation state of the cluster: which resources of every agent are free or
allocated to which framework, role weights and quota limits, refuse filters, suppression, and
the weighted DRF order in which free resources are handed out. Events come in as method calls
(frameworks and agents coming and going, resources recovered); :meth:`Allocator.allocate`
returns the new allocations, which the master turns into offers. Time comes only from the
injected clock, so tests drive it with a fake one.

It leaves to the master: offers and their ids, rescinding and offer timeouts, tasks and their
states, deciding *when* to allocate (after events, and at :meth:`Allocator.next_wakeup`),
persisting weights and quota, and the wire. It leaves DRF arithmetic, the incremental
sorters and the plain records it keeps per role, framework and agent to :mod:`substrate.drf`.

Semantics (Mesos's hierarchical allocator, simplified where documented):

- **Whole pools.** Each eligible agent's whole free pool goes to one framework at a time
  (a quota cap is the only thing that splits it; see below).
- **Order.** For each agent, the role with the lowest ``dominant share / role weight`` among
  roles with an eligible framework, then within it the framework with the lowest
  ``dominant share / framework weight``; ties broken by id (string order). Shares are against
  the total of all *active* agents and include everything allocated (offered or in use).
  Allocations count immediately, so the next agent of the same cycle may go to someone else.
- **Eligible framework.** Active, not suppressed, not filtered for this agent, and its role
  under its quota.
- **Minimum allocatable.** A free pool is offered only if, on every scalar that both
  ``min_allocatable`` and the agent's total have, the free amount reaches the minimum (so
  with the default ``cpus=0.01, mem=32``, cpu-only or memory-only scraps are not offered;
  a GPU alone is not offered either, since nothing can run on it). Ports never count.
- **Filters** (Mesos's semantics). ``recover(..., refuse_seconds=s)`` stops that framework
  being offered that agent's free pool until ``clock() >= now + s`` *while the pool fits inside
  the refused resources*: when a task ends and the pool grows beyond what was refused, the
  framework is offered it again at once. A second filter on the same pair keeps the later
  expiry and covers both refusals (the larger of each resource). ``s = 0`` sets none,
  ``s = inf`` lasts until :meth:`Allocator.revive`. Filters survive deactivation and
  suppression; revive clears them.
- **Quota** is an upper limit per role on its allocation, per scalar; a zero (unset) scalar in
  the limit means *no limit* on that scalar, and ports are never limited. When a role's
  headroom is smaller than the free pool, the offer is cut down to the headroom (taking all
  the free ports with it) and the rest stays free for other frameworks in the same cycle.
  Allocations that already exceed a lowered limit are not revoked.
- **Incremental.** Only agents whose free pool changed, or that may have become eligible
  (framework added, activated, unsuppressed or revived, a filter expired, quota raised or
  freed), are looked at by the next cycle; the sorters move one client per allocation.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Mapping, Sequence

from substrate.drf import (
    DIMS,
    ZERO,
    AgentRecord,
    FrameworkRecord,
    RoleRecord,
    Sorter,
    Vec,
    add_into,
    dominant_share,
    inverse,
    sub_into,
    vec_of,
)
from substrate.errors import InvalidRequest
from substrate.resources import EMPTY, EPSILON, Resources

__all__ = ["DEFAULT_ROLE", "Allocator"]

#: The role of a framework that names none.
DEFAULT_ROLE = "*"

#: Mesos's default minimum: free pools smaller than this are not offered.
DEFAULT_MIN_ALLOCATABLE = Resources(cpus=0.01, mem=32)


def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{what} must be a non-empty string, got {value!r}")
    return value


def _check_weight(weight: object) -> float:
    try:
        value = float(weight)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidRequest(f"weight must be a number, got {weight!r}") from None
    if isinstance(weight, bool) or not math.isfinite(value) or value <= 0:
        raise InvalidRequest(f"weight must be finite and positive, got {weight!r}")
    return value


def _check_seconds(value: object, what: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidRequest(f"{what} must be a number, got {value!r}") from None
    if math.isnan(seconds) or seconds < 0:
        raise InvalidRequest(f"{what} must be >= 0, got {value!r}")
    return seconds


def _check_resources(value: object, what: str) -> Resources:
    if not isinstance(value, Resources):
        raise InvalidRequest(f"{what} must be Resources, got {type(value).__name__}")
    return value


class Allocator:
    """Weighted DRF allocation of agents' free resources to frameworks.

    Parameters
    ----------
    clock : callable
        Returns the current time in seconds (monotonic); the only source of time.
    min_allocatable : Resources
        The smallest free pool worth offering (see the module docstring); ports are ignored.
    default_refuse_seconds : float
        Kept for the master, which passes it to :meth:`recover` for plain declines.

    Examples
    --------
    >>> now = [0.0]
    >>> a = Allocator(clock=lambda: now[0])
    >>> a.add_framework("f1", "*")
    >>> a.add_agent("a1", Resources(cpus=4, mem=4096))
    >>> [(f, ag, str(r)) for f, ag, r in a.allocate()]
    [('f1', 'a1', 'Resources(cpus=4, mem=4096)')]
    >>> a.recover("f1", "a1", Resources(cpus=4, mem=4096), refuse_seconds=5)
    >>> a.allocate(), a.next_wakeup()
    ([], 5.0)
    >>> now[0] = 5.0
    >>> [(f, ag, str(r)) for f, ag, r in a.allocate()]
    [('f1', 'a1', 'Resources(cpus=4, mem=4096)')]
    """

    def __init__(self, clock: Callable[[], float], *,
                 min_allocatable: Resources = DEFAULT_MIN_ALLOCATABLE,
                 default_refuse_seconds: float = 5.0) -> None:
        if not callable(clock):
            raise InvalidRequest("clock must be callable")
        _check_resources(min_allocatable, "min_allocatable")
        refuse = _check_seconds(default_refuse_seconds, "default_refuse_seconds")
        if math.isinf(refuse):
            raise InvalidRequest("default_refuse_seconds must be finite")
        self.min_allocatable = min_allocatable
        self.default_refuse_seconds = refuse
        self._clock = clock
        self._min = vec_of(min_allocatable)[:4]
        self._roles: dict[str, RoleRecord] = {}
        self._frameworks: dict[str, FrameworkRecord] = {}
        self._agents: dict[str, AgentRecord] = {}
        self._role_sorter = Sorter()          # roles with at least one offerable framework
        self._total = [0.0] * DIMS            # of active agents
        self._active_agents = 0
        self._inv: Vec = ZERO
        self._stale = False                   # total changed since keys were computed
        self._free: dict[str, None] = {}      # active agents with an allocatable free pool
        self._dirty: dict[str, None] = {}     # of those, the ones the next cycle must look at
        self._all_dirty = False               # ... or all of them
        self._filter_heap: list[tuple[float, str, str]] = []

    # ----------------------------------------------------------------- frameworks

    def add_framework(self, framework_id: str, role: str = DEFAULT_ROLE, weight: float = 1.0,
                      suppressed: bool = False) -> None:
        """Register an active framework in ``role``.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1", "batch", weight=2.0)
        >>> a.add_framework("f1", "batch")
        Traceback (most recent call last):
        ...
        substrate.errors.InvalidRequest: framework 'f1' already exists
        """
        _check_id(framework_id, "framework id")
        _check_id(role, "role")
        weight = _check_weight(weight)
        if framework_id in self._frameworks:
            raise InvalidRequest(f"framework {framework_id!r} already exists")
        r = self._role(role)
        fw = FrameworkRecord(framework_id, r, weight)
        fw.suppressed = bool(suppressed)
        self._frameworks[framework_id] = fw
        r.frameworks += 1
        self._sync(fw)

    def remove_framework(self, framework_id: str) -> None:
        """Forget a framework; everything allocated to it becomes free.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> _ = a.allocate(); a.remove_framework("f1")
        >>> print(a.available("a1"))
        Resources(cpus=1, mem=64)
        """
        fw = self._framework(framework_id)
        role = fw.role
        if fw.key is not None:
            fw.suppressed = True
            self._sync(fw)
        for aid in fw.filters:
            self._agents[aid].filtered_by.discard(framework_id)
        for aid, res in list(fw.on.items()):
            self._release(fw, self._agents[aid], res)
        role.frameworks -= 1
        del self._frameworks[framework_id]

    def deactivate_framework(self, framework_id: str) -> None:
        """Stop offering to a (disconnected) framework; it keeps its allocation.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> a.deactivate_framework("f1"); a.allocate()
        []
        """
        self._set_flag(framework_id, "active", False)

    def activate_framework(self, framework_id: str) -> None:
        """Offer to a framework again after :meth:`deactivate_framework`.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> a.deactivate_framework("f1"); a.activate_framework("f1")
        >>> [(f, ag, str(r)) for f, ag, r in a.allocate()]
        [('f1', 'a1', 'Resources(cpus=1, mem=64)')]
        """
        self._set_flag(framework_id, "active", True)

    def suppress(self, framework_id: str) -> None:
        """No offers to the framework until :meth:`revive`; it keeps its allocation and filters.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> a.suppress("f1"); a.allocate()
        []
        """
        self._set_flag(framework_id, "suppressed", True)

    def revive(self, framework_id: str) -> None:
        """Clear the framework's filters and un-suppress it.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> _ = a.allocate(); a.recover("f1", "a1", Resources(cpus=1, mem=64), 3600)
        >>> a.allocate()
        []
        >>> a.revive("f1")
        >>> [(f, ag, str(r)) for f, ag, r in a.allocate()]
        [('f1', 'a1', 'Resources(cpus=1, mem=64)')]
        """
        fw = self._framework(framework_id)
        for aid in fw.filters:
            self._agents[aid].filtered_by.discard(framework_id)
            if aid in self._free:
                self._dirty[aid] = None
        fw.filters.clear()
        fw.refused.clear()
        fw.suppressed = False
        self._sync(fw)

    def set_weight(self, role: str, weight: float) -> None:
        """Set a role's weight (default 1.0): its share counts as ``share / weight``.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.set_weight("prod", 3.0); a.add_framework("p", "prod"); a.add_framework("d", "dev")
        >>> for i in range(4): a.add_agent(f"a{i}", Resources(cpus=1, mem=64))
        >>> sorted(f for f, _, _ in a.allocate())
        ['d', 'p', 'p', 'p']
        """
        _check_id(role, "role")
        weight = _check_weight(weight)
        r = self._role(role)
        r.weight = weight
        self._role_sorter.update(r, self._inv)

    def set_quota(self, role: str, limit: Resources | None) -> None:
        """Limit a role's allocation per scalar (zero = unlimited); ``None`` removes the limit.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1", "dev"); a.set_quota("dev", Resources(cpus=2))
        >>> a.add_agent("a1", Resources(cpus=8, mem=1024))
        >>> [(f, ag, str(r)) for f, ag, r in a.allocate()]
        [('f1', 'a1', 'Resources(cpus=2, mem=1024)')]
        """
        _check_id(role, "role")
        if limit is not None:
            _check_resources(limit, "quota limit")
        r = self._role(role)
        r.quota = limit
        r.limit = None if limit is None else tuple(
            v if v > 0 else math.inf for v in limit.scalars())
        self._all_dirty = True

    # --------------------------------------------------------------------- agents

    def add_agent(self, agent_id: str, total: Resources,
                  used: Mapping[str, Resources] = {}) -> None:
        """Add an active agent; ``used`` maps framework ids to what they already hold there.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1")
        >>> a.add_agent("a1", Resources(cpus=4, mem=1024), used={"f1": Resources(cpus=1, mem=256)})
        >>> print(a.available("a1"), a.allocated("f1"))
        Resources(cpus=3, mem=768) Resources(cpus=1, mem=256)
        """
        _check_id(agent_id, "agent id")
        _check_resources(total, "total")
        if agent_id in self._agents:
            raise InvalidRequest(f"agent {agent_id!r} already exists")
        if not isinstance(used, Mapping):
            raise InvalidRequest(f"used must map framework ids to Resources, got {used!r}")
        in_use = EMPTY
        for fid, res in used.items():
            self._framework(fid)
            in_use = in_use + _check_resources(res, f"resources used by {fid!r}")
        if not total.contains(in_use):
            raise InvalidRequest(f"agent {agent_id!r}: used {in_use} exceeds total {total}")
        need = tuple((i, m) for i, m in enumerate(self._min)
                     if m > 0 and total.scalars()[i] > EPSILON)
        ag = AgentRecord(agent_id, total, need)
        self._agents[agent_id] = ag
        self._add_total(ag.total_vec)
        if used:
            ag.free = total - in_use
            ag.free_vec = vec_of(ag.free)
            for fid, res in used.items():
                if not res.is_empty():
                    self._grant(self._frameworks[fid], ag, res, vec_of(res))
        self._refresh(ag)

    def remove_agent(self, agent_id: str) -> None:
        """Forget an agent and every allocation on it.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> _ = a.allocate(); a.remove_agent("a1"); a.allocated("f1").is_empty()
        True
        """
        ag = self._agent(agent_id)
        for fid in ag.filtered_by:
            del self._frameworks[fid].filters[agent_id]
            del self._frameworks[fid].refused[agent_id]
        for fid, res in list(ag.alloc.items()):
            self._release(self._frameworks[fid], ag, res, free=False)
        if ag.active:
            self._sub_total(ag.total_vec)
        self._free.pop(agent_id, None)
        self._dirty.pop(agent_id, None)
        del self._agents[agent_id]

    def deactivate_agent(self, agent_id: str) -> None:
        """Never offer this agent (unreachable, draining); allocations on it stay.

        Its total leaves the DRF total while it is inactive.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> a.deactivate_agent("a1"); a.allocate()
        []
        """
        ag = self._agent(agent_id)
        if ag.active:
            ag.active = False
            self._sub_total(ag.total_vec)
            self._refresh(ag)

    def activate_agent(self, agent_id: str) -> None:
        """Offer an agent again after :meth:`deactivate_agent`.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> a.deactivate_agent("a1"); a.activate_agent("a1")
        >>> [(f, ag, str(r)) for f, ag, r in a.allocate()]
        [('f1', 'a1', 'Resources(cpus=1, mem=64)')]
        """
        ag = self._agent(agent_id)
        if not ag.active:
            ag.active = True
            self._add_total(ag.total_vec)
            self._refresh(ag)

    # ------------------------------------------------------- the flow of resources

    def allocate(self) -> list[tuple[str, str, Resources]]:
        """Run one allocation cycle; return the new ``(framework_id, agent_id, resources)``.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_framework("f2")
        >>> a.add_agent("a1", Resources(cpus=2, mem=64)); a.add_agent("a2", Resources(cpus=2, mem=64))
        >>> [(f, ag) for f, ag, r in a.allocate()]   # a1 makes f1's share 1/2: a2 goes to f2
        [('f1', 'a1'), ('f2', 'a2')]
        >>> a.allocate()   # nothing changed
        []
        """
        self._expire_filters(self._clock())
        if self._stale:
            self._stale = False
            for role in self._role_sorter:
                role.sorter.rekey(self._inv)
            self._role_sorter.rekey(self._inv)
        free = self._free
        todo = list(free) if self._all_dirty else list(self._dirty)
        self._dirty = {}
        self._all_dirty = False
        out: list[tuple[str, str, Resources]] = []
        role_keys = self._role_sorter.keys
        if not role_keys:
            return out
        agents = self._agents
        grant = self._grant
        for aid in todo:
            ag = agents[aid]
            taken: set[FrameworkRecord] | None = None
            while True:
                pick = None
                for rk in role_keys:
                    role = rk[2]
                    if role.limit is None:
                        whole = True
                    else:
                        capped = self._cap(role, ag)
                        if capped is None:
                            role.quota_blocked = True
                            continue
                        whole = capped is ag.free_vec
                    for fk in role.keys:
                        fw = fk[2]
                        if fw.filters and aid in fw.filters and _within(ag.free_vec,
                                                                        fw.refused[aid]):
                            continue
                        if taken is not None and fw in taken:
                            continue
                        pick = fw
                        break
                    if pick is not None:
                        break
                if pick is None:
                    break
                if whole:
                    res, dvec = ag.free, ag.free_vec
                    ag.free, ag.free_vec = EMPTY, ZERO
                    grant(pick, ag, res, dvec)
                    out.append((pick.id, aid, res))
                    del free[aid]
                    break
                res = self._split(ag, capped)
                grant(pick, ag, res, capped)
                out.append((pick.id, aid, res))
                if not self._allocatable(ag.free_vec, ag.need):
                    del free[aid]
                    break
                if taken is None:
                    taken = set()
                taken.add(pick)
        return out

    def recover(self, framework_id: str, agent_id: str, resources: Resources,
                refuse_seconds: float | None = None) -> None:
        """Give back resources a framework held on an agent, optionally filtering the agent.

        Parameters
        ----------
        framework_id, agent_id : str
            Who held them, where.
        resources : Resources
            Must be part of what the framework holds on the agent.
        refuse_seconds : float, optional
            Do not offer this agent to this framework for that long (``None`` or 0: no filter;
            ``math.inf``: until revive).

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=2, mem=64))
        >>> _ = a.allocate(); a.recover("f1", "a1", Resources(cpus=1))
        >>> print(a.available("a1"), a.allocated("f1"))
        Resources(cpus=1) Resources(cpus=1, mem=64)
        >>> a.recover("f1", "a1", Resources(cpus=5))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        substrate.errors.InvalidRequest: framework 'f1' holds ... cannot recover Resources(cpus=5)
        """
        fw = self._framework(framework_id)
        ag = self._agent(agent_id)
        _check_resources(resources, "resources")
        refuse = 0.0 if refuse_seconds is None else _check_seconds(refuse_seconds, "refuse_seconds")
        held = fw.on.get(agent_id, EMPTY)
        if not held.contains(resources):
            raise InvalidRequest(
                f"framework {framework_id!r} holds {held} on agent {agent_id!r}, "
                f"cannot recover {resources}")
        if resources.is_empty():
            pass
        elif resources is held or resources == held:
            self._release(fw, ag, held)
        else:
            self._release(fw, ag, resources, rest=held - resources)
        if refuse > 0:
            self._add_filter(fw, ag, refuse, vec_of(resources))

    def next_wakeup(self) -> float | None:
        """The earliest clock time a filter expires, or ``None`` when no filter will.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 10.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> a.next_wakeup() is None
        True
        >>> _ = a.allocate(); a.recover("f1", "a1", Resources(cpus=1, mem=64), 5)
        >>> a.next_wakeup()
        15.0
        """
        heap = self._filter_heap
        while heap:
            expiry, fid, aid = heap[0]
            fw = self._frameworks.get(fid)
            if fw is not None and fw.filters.get(aid) == expiry:
                return expiry
            heapq.heappop(heap)
        return None

    # -------------------------------------------------------------- introspection

    def allocated(self, framework_id: str) -> Resources:
        """Everything allocated to the framework (offered or in use), over all agents.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); print(a.allocated("f1"))
        Resources()
        """
        total = EMPTY
        for res in self._framework(framework_id).on.values():
            total = total + res
        return total

    def allocations(self, agent_id: str) -> dict[str, Resources]:
        """What each framework holds on the agent (a copy).

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> _ = a.allocate(); {f: str(r) for f, r in a.allocations("a1").items()}
        {'f1': 'Resources(cpus=1, mem=64)'}
        """
        return dict(self._agent(agent_id).alloc)

    def available(self, agent_id: str) -> Resources:
        """The agent's free resources (offered to nobody, used by nobody).

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_agent("a1", Resources(cpus=1, mem=64)); print(a.available("a1"))
        Resources(cpus=1, mem=64)
        """
        return self._agent(agent_id).free

    def shares(self) -> dict:
        """Dominant shares (not divided by weights) against the total of active agents.

        Returns ``{"roles": {role: share}, "frameworks": {framework_id: share}}``; roles are
        listed while they have frameworks or allocations.

        Examples
        --------
        >>> a = Allocator(clock=lambda: 0.0)
        >>> a.add_framework("f1", "r"); a.add_agent("a1", Resources(cpus=1, mem=64))
        >>> a.add_agent("a2", Resources(cpus=3, mem=64)); _ = a.allocate()
        >>> a.shares()
        {'roles': {'r': 1.0}, 'frameworks': {'f1': 1.0}}
        """
        inv = self._inv
        return {
            "roles": {r.id: dominant_share(r.vec, inv) for r in self._roles.values()
                      if r.frameworks or r.pairs},
            "frameworks": {f.id: dominant_share(f.vec, inv)
                           for f in self._frameworks.values()},
        }

    # ---------------------------------------------------------------- internals

    def _framework(self, framework_id: str) -> FrameworkRecord:
        fw = self._frameworks.get(framework_id) if isinstance(framework_id, str) else None
        if fw is None:
            raise InvalidRequest(f"unknown framework {framework_id!r}")
        return fw

    def _agent(self, agent_id: str) -> AgentRecord:
        ag = self._agents.get(agent_id) if isinstance(agent_id, str) else None
        if ag is None:
            raise InvalidRequest(f"unknown agent {agent_id!r}")
        return ag

    def _set_flag(self, framework_id: str, flag: str, value: bool) -> None:
        fw = self._framework(framework_id)
        setattr(fw, flag, value)
        self._sync(fw)

    def _role(self, role: str) -> RoleRecord:
        r = self._roles.get(role)
        if r is None:
            r = self._roles[role] = RoleRecord(role)
        return r

    def _sync(self, fw: FrameworkRecord) -> None:
        """Put the framework in its role's sorter exactly when it may be offered."""
        role = fw.role
        offerable = fw.active and not fw.suppressed
        if offerable and fw.key is None:
            role.sorter.insert(fw, self._inv)
            if role.key is None:
                self._role_sorter.insert(role, self._inv)
            self._all_dirty = True
        elif not offerable and fw.key is not None:
            role.sorter.remove(fw)
            if not role.keys:
                self._role_sorter.remove(role)

    def _add_total(self, vec: Vec) -> None:
        self._active_agents += 1
        add_into(self._total, vec)
        self._inv = inverse(self._total)
        self._stale = True

    def _sub_total(self, vec: Vec) -> None:
        self._active_agents -= 1
        if self._active_agents:
            sub_into(self._total, vec)
        else:
            self._total = [0.0] * DIMS
        self._inv = inverse(self._total)
        self._stale = True

    @staticmethod
    def _allocatable(vec: Vec, need: tuple) -> bool:
        if need:
            for i, minimum in need:
                if vec[i] < minimum - EPSILON:
                    return False
            return True
        return vec[0] > EPSILON or vec[1] > EPSILON or vec[2] > EPSILON or vec[3] > EPSILON

    def _refresh(self, ag: AgentRecord) -> None:
        """Keep ``_free`` and ``_dirty`` in step after the agent's free pool or state changed."""
        if ag.active and self._allocatable(ag.free_vec, ag.need):
            self._free[ag.id] = None
            self._dirty[ag.id] = None
        else:
            self._free.pop(ag.id, None)
            self._dirty.pop(ag.id, None)

    def _cap(self, role: RoleRecord, ag: AgentRecord) -> Vec | None:
        """The agent's free vector cut to the role's quota headroom: the free vector itself
        when it fits, ``None`` when what fits is not worth offering."""
        free = ag.free_vec
        limit = role.limit
        held = role.vec
        out = None
        for i in range(4):
            room = limit[i] - held[i]  # type: ignore[index]
            if free[i] > room + EPSILON:
                if out is None:
                    out = list(free)
                out[i] = room if room > EPSILON else 0.0
        if out is None:
            return free
        capped: Vec = tuple(out)  # type: ignore[assignment]
        return capped if self._allocatable(capped, ag.need) else None

    def _split(self, ag: AgentRecord, part: Vec) -> Resources:
        """Take ``part`` (scalars, plus all the ports) out of the agent's free pool."""
        free = ag.free
        offer = Resources(part[0], part[1], part[2], part[3], ports=free.ports)
        rest = [max(0.0, a - b) for a, b in zip(free.scalars(), part)]
        ag.free = Resources(*[v if v > EPSILON else 0.0 for v in rest])
        ag.free_vec = vec_of(ag.free)
        return offer

    def _grant(self, fw: FrameworkRecord, ag: AgentRecord, res: Resources, dvec: Vec) -> None:
        """Record ``res`` (already taken out of the free pool) as allocated to ``fw``."""
        aid = ag.id
        role = fw.role
        held = fw.on.get(aid)
        if held is None:
            fw.on[aid] = ag.alloc[fw.id] = res
            role.pairs += 1
        else:
            fw.on[aid] = ag.alloc[fw.id] = held + res
        v = fw.vec
        v[0] += dvec[0]; v[1] += dvec[1]; v[2] += dvec[2]; v[3] += dvec[3]; v[4] += dvec[4]
        v = role.vec
        v[0] += dvec[0]; v[1] += dvec[1]; v[2] += dvec[2]; v[3] += dvec[3]; v[4] += dvec[4]
        inv = self._inv
        if fw.key is not None:
            role.sorter.update(fw, inv)
        if role.key is not None:
            self._role_sorter.update(role, inv)

    def _release(self, fw: FrameworkRecord, ag: AgentRecord, res: Resources,
                 rest: Resources | None = None, free: bool = True) -> None:
        """Take ``res`` back from ``fw`` on ``ag`` (``rest`` is what it keeps there);
        with ``free``, return it to the agent's free pool."""
        aid = ag.id
        role = fw.role
        if rest is None or rest.is_empty():
            del fw.on[aid]
            del ag.alloc[fw.id]
            role.pairs -= 1
        else:
            fw.on[aid] = ag.alloc[fw.id] = rest
        dvec = vec_of(res)
        sub_into(fw.vec, dvec)
        sub_into(role.vec, dvec)
        if not fw.on:
            fw.vec = [0.0] * DIMS   # no float dust on an empty allocation
        if not role.pairs:
            role.vec = [0.0] * DIMS
        inv = self._inv
        role.sorter.update(fw, inv)
        self._role_sorter.update(role, inv)
        if role.quota_blocked:
            role.quota_blocked = False
            self._all_dirty = True
        if free:
            if not ag.alloc:
                ag.free = ag.total   # exact, without the dust of partial recovers
            else:
                ag.free = res if ag.free.is_empty() else ag.free + res
            ag.free_vec = vec_of(ag.free)
            self._refresh(ag)

    def _add_filter(self, fw: FrameworkRecord, ag: AgentRecord, seconds: float,
                    refused: Sequence[float]) -> None:
        expiry = self._clock() + seconds
        old = fw.refused.get(ag.id)
        fw.refused[ag.id] = list(refused) if old is None else [max(a, b) for a, b in zip(old, refused)]
        current = fw.filters.get(ag.id)
        if current is not None and current >= expiry:
            return
        fw.filters[ag.id] = expiry
        ag.filtered_by.add(fw.id)
        if math.isfinite(expiry):
            heapq.heappush(self._filter_heap, (expiry, fw.id, ag.id))

    def _expire_filters(self, now: float) -> None:
        heap = self._filter_heap
        while heap and heap[0][0] <= now:
            expiry, fid, aid = heapq.heappop(heap)
            fw = self._frameworks.get(fid)
            if fw is None or fw.filters.get(aid) != expiry:
                continue  # revived, replaced by a later filter, or its framework is gone
            del fw.filters[aid]
            del fw.refused[aid]
            self._agents[aid].filtered_by.discard(fid)
            if aid in self._free:
                self._dirty[aid] = None


def _within(free: Sequence[float], refused: Sequence[float]) -> bool:
    """True when every resource of the free pool fits inside what a filter refused."""
    for have, limit in zip(free, refused):
        if have > limit + 1e-9:
            return False
    return True
