"""Read-only views of the master's state: the ``/state`` JSON and the Prometheus metrics.

Both are computed from :class:`~substrate.master.core.MasterCore` on the master's event loop;
the HTTP edge (:mod:`substrate.master.http`) only serves what these functions return.
"""
from __future__ import annotations

import time
from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from substrate.framework_status import framework_metrics
from substrate.master.core import MasterCore
from substrate.resources import SCALARS, Resources
from substrate.v1 import pb


def _task_view(task) -> dict:
    return {
        "id": task.task_id, "name": task.info.name, "framework_id": task.framework_id,
        "agent_id": task.agent_id, "executor_id": task.executor_id,
        "state": pb.TaskStatus.State.Name(task.state),
        "reason": pb.TaskStatus.Reason.Name(task.reason), "message": task.message,
        "resources": task.resources.to_dict(),
        "history": [{"state": s, "reason": r, "time": t, "message": m}
                    for s, r, t, m in task.history],
    }


def _framework_view(core: MasterCore, fw, now: float, shares: dict) -> dict:
    active = fw.framework_id in core.frameworks
    return {
        "id": fw.framework_id, "name": fw.info.name, "role": fw.info.role or "*",
        "weight": fw.info.weight or 1.0, "principal": fw.info.principal,
        "connected": fw.connected, "suppressed": fw.suppressed, "active": active,
        "removed_at": fw.removed_at,
        "failover_timeout": fw.info.failover_timeout,
        "failover_deadline_in": (None if fw.failover_deadline is None
                                 else round(fw.failover_deadline - now, 3)),
        "share": shares.get("frameworks", {}).get(fw.framework_id, 0.0) if active else 0.0,
        "allocated": (core.allocator.allocated(fw.framework_id).to_dict() if active
                      else Resources().to_dict()),
        "offers": len(fw.offers),
        "tasks": [_task_view(t) for t in fw.tasks.values()],
        "completed_tasks": [_task_view(t) for t in fw.completed[-100:]],
        "status": fw.status, "status_time": fw.status_time or None,
    }


def state_snapshot(core: MasterCore) -> dict:
    """Everything an operator may want to see, as JSON-friendly data."""
    now = core.clock()
    agents = []
    for agent in core.agents.values():
        used = Resources()
        for task in agent.tasks.values():
            used = used + task.resources
        for ex in agent.executors.values():
            used = used + ex.resources
        agents.append({
            "id": agent.agent_id, "hostname": agent.info.hostname, "address": agent.info.address,
            "connected": agent.connected, "reachable": agent.reachable,
            "draining": agent.draining,
            "seconds_since_heartbeat": round(now - agent.last_heartbeat, 3),
            "resources": agent.total.to_dict(), "used": used.to_dict(),
            "offered": sum(1 for _ in agent.offers),
            "attributes": dict(agent.info.attributes),
            "isolation": agent.info.isolation or "none",
            "tasks": len(agent.tasks), "executors": [eid for (_, eid) in agent.executors],
        })
    shares = core.allocator.shares()
    frameworks = [_framework_view(core, fw, now, shares) for fw in core.frameworks.values()]
    completed = [_framework_view(core, fw, now, shares)
                 for fw in reversed(core.completed_frameworks)]
    return {
        "master_id": core.master_id, "epoch": core.epoch, "time": time.time(),
        "agents": agents, "frameworks": frameworks, "completed_frameworks": completed,
        "roles": shares.get("roles", {}),
        "quota": {role: limit.to_dict() for role, limit in core.config.quota.items()},
        "offers": len(core.offers),
        "counters": dict(core.counters),
        "isolation": sorted({a["isolation"] for a in agents}),   # per agent under "agents"
    }


class MasterCollector:
    """A prometheus_client collector reading the core at scrape time."""

    def __init__(self, core: MasterCore) -> None:
        self.core = core

    def collect(self) -> Iterator[Metric]:
        core = self.core
        agents = GaugeMetricFamily("offerpool_master_agents", "Registered agents by state",
                                   labels=["state"])
        connected = sum(1 for a in core.agents.values() if a.connected)
        agents.add_metric(["connected"], connected)
        agents.add_metric(["disconnected"], len(core.agents) - connected)
        yield agents
        fws = GaugeMetricFamily("offerpool_master_frameworks", "Frameworks by state",
                                labels=["state"])
        active = sum(1 for f in core.frameworks.values() if f.connected)
        fws.add_metric(["connected"], active)
        fws.add_metric(["disconnected"], len(core.frameworks) - active)
        yield fws
        tasks = GaugeMetricFamily("offerpool_master_tasks", "Active tasks by state",
                                  labels=["state"])
        counts: dict[str, int] = {}
        for fw in core.frameworks.values():
            for task in fw.tasks.values():
                name = pb.TaskStatus.State.Name(task.state)
                counts[name] = counts.get(name, 0) + 1
        for name, count in sorted(counts.items()):
            tasks.add_metric([name], count)
        yield tasks
        yield GaugeMetricFamily("offerpool_master_outstanding_offers", "Offers not yet answered",
                                value=len(core.offers))
        total = Resources()
        for agent in core.agents.values():
            total = total + agent.total
        res = GaugeMetricFamily("offerpool_master_resources_total",
                                "Resources of registered agents", labels=["resource"])
        for name in SCALARS:
            res.add_metric([name], getattr(total, name))
        yield res
        share = GaugeMetricFamily("offerpool_allocator_role_share", "Dominant share per role",
                                  labels=["role"])
        for role, value in core.allocator.shares().get("roles", {}).items():
            share.add_metric([role], value)
        yield share
        fshare = GaugeMetricFamily("offerpool_allocator_framework_share",
                                   "Dominant share per framework", labels=["framework_id"])
        for fid, value in core.allocator.shares().get("frameworks", {}).items():
            fshare.add_metric([fid], value)
        yield fshare
        allocated = GaugeMetricFamily("offerpool_allocator_allocated",
                                      "Resources offered or in use, per role",
                                      labels=["role", "resource"])
        per_role: dict[str, Resources] = {}
        for fw in core.frameworks.values():
            role = fw.info.role or "*"
            per_role[role] = per_role.get(role, Resources()) + core.allocator.allocated(
                fw.framework_id)
        for role, res in sorted(per_role.items()):
            for name in SCALARS:
                allocated.add_metric([role, name], getattr(res, name))
        yield allocated
        yield from _framework_families(core)
        for name, value in core.counters.items():
            yield CounterMetricFamily(f"offerpool_master_{name}", f"Count of {name.replace('_', ' ')}",
                                      value=value)


def _framework_families(core: MasterCore) -> Iterator[Metric]:
    """The numbers frameworks published in their status (``metrics``), one family per name."""
    families: dict[str, Metric] = {}
    labels = ["framework_id", "framework", "kind"]
    for name, kind, fid, fname, value in framework_metrics(core.frameworks.values()):
        counter = name.endswith("_total")
        base = name[:-6] if counter else name
        family = families.get(base)
        if family is not None and (family.type == "counter") != counter:
            continue  # a gauge and a counter may not share a name; the first one wins
        if family is None:
            if counter:
                family = CounterMetricFamily(f"offerpool_framework_{name[:-6]}",
                                             f"Published by frameworks: {name}", labels=labels)
            else:
                family = GaugeMetricFamily(f"offerpool_framework_{name}",
                                           f"Published by frameworks: {name}", labels=labels)
            families[base] = family
        family.add_metric([fid, fname, kind], value)
    yield from families.values()
