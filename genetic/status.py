"""A distributed run's progress as the framework's status document on the substrate master.

:func:`publish` turns the scheduler's view (islands, per-generation statistics, evaluations,
best) into the small JSON document the master keeps and its dashboard charts (fitness per
generation); its ``metrics`` are exported on the master's ``/metrics``. Called from the
scheduler each time an island reports; throttled so a fast run does not flood the master.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

log = logging.getLogger("genetic.status")

#: Seconds between two documents (the last generation is always published).
PUBLISH_EVERY = 0.5
#: Most points the chart gets; longer runs are thinned evenly (first and last kept).
MAX_POINTS = 300


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def series(history: Any, weight: float) -> list[dict]:
    """Best (over islands, in the objective's direction) and mean fitness per generation of a
    :class:`genetic.history.History`; only the generations charted are aggregated."""
    gens = history.generations()
    if gens.size > MAX_POINTS:
        step = (gens.size - 1) / (MAX_POINTS - 1)
        gens = gens[[round(i * step) for i in range(MAX_POINTS)]]
    gens, best, mean, _ = history.per_generation(weight > 0, gens)
    return [{"generation": g, "best": _finite(b), "mean": _finite(m)}
            for g, b, m in zip(gens.tolist(), best.tolist(), mean.tolist())]


def document(sched: Any) -> dict:
    """The status document of a :class:`genetic.framework.GeneticScheduler`."""
    w = float(sched.run.problem.weights[0])
    slots = sched.slots
    generation = max((s.generation for s in slots), default=0)
    evaluations = sum(s.evaluations for s in slots)
    best = _finite(sched.best * w) if sched.best is not None else None
    done = sched.stopped_by is not None or generation >= sched.plan.generations
    islands = [{"index": s.index, "phase": s.phase, "generation": s.generation,
                "evaluations": s.evaluations,
                "best": _finite(s.best_w * w) if math.isfinite(s.best_w) else None}
               for s in slots]
    return {"kind": "genetic", "problem": repr(sched.run.problem)[:200],
            "state": "done" if done else "running", "generation": generation,
            "generations": sched.plan.generations, "evaluations": evaluations, "best": best,
            "minimize": w < 0, "islands": islands[:64],
            "series": series(sched.history, w),
            "metrics": {"genetic_generation": generation,
                        "genetic_generations_planned": sched.plan.generations,
                        "genetic_evaluations_total": evaluations,
                        "genetic_islands_running": sum(s.phase == "running" for s in slots),
                        **({"genetic_best_fitness": best} if best is not None else {})}}


def publish(sched: Any, driver: Any) -> None:
    """Publish the run's progress through ``driver`` (throttled; never raises)."""
    now = time.monotonic()
    last = getattr(sched, "_status_published", 0.0)
    generation = max((s.generation for s in sched.slots), default=0)
    final = generation >= sched.plan.generations or sched.stopped_by is not None
    if not final and now - last < PUBLISH_EVERY:
        return
    sched._status_published = now
    try:
        driver.publish_status(document(sched))
    except Exception as exc:  # noqa: BLE001 - the dashboard never fails a run
        log.debug("could not publish the run's status: %s", exc)
