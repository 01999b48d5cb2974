"""NSGA-II: non-dominated sorting, crowding distance, and the environmental selection built on
them (Deb et al. 2002, as in DEAP's ``sortNondominated``/``assignCrowdingDist``/``selNSGA2``).

Fitness arrives already weighted (``weights * fitness``: larger is better on every objective).
Constraints follow Deb's constrained domination: every feasible individual comes before every
infeasible one, infeasible ones by increasing violation, non-viable ones last.
"""
from __future__ import annotations

import numpy as np

__all__ = ["crowding_distance", "mo_key", "nondominated_fronts", "select_nsga2"]


def _fronts_of(w: np.ndarray) -> np.ndarray:
    n = w.shape[0]
    front = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return front
    ge = (w[:, None, :] >= w[None, :, :]).all(axis=2)
    gt = (w[:, None, :] > w[None, :, :]).any(axis=2)
    dom = ge & gt                       # dom[i, j]: i dominates j
    count = dom.sum(axis=0)             # how many dominate j
    level = 0
    current = np.flatnonzero(count == 0)
    while current.size:
        front[current] = level
        count = count - dom[current].sum(axis=0)
        count[front >= 0] = -1
        current = np.flatnonzero(count == 0)
        level += 1
    return front


def nondominated_fronts(wfit: np.ndarray, viable: np.ndarray | None = None,
                        violation: np.ndarray | None = None) -> np.ndarray:
    """Front number of each individual (0 = non-dominated).

    Examples
    --------
    >>> import numpy as np
    >>> w = -np.array([[1, 4], [2, 2], [3, 1], [2, 3], [4, 4]])   # two minimised objectives
    >>> nondominated_fronts(w).tolist()
    [0, 0, 0, 1, 2]
    """
    n = wfit.shape[0]
    viable = np.ones(n, bool) if viable is None else viable
    violation = np.zeros(n) if violation is None else violation
    ok = viable & (violation <= 0.0)
    front = np.empty(n, dtype=np.int64)
    idx = np.flatnonzero(ok)
    front[idx] = _fronts_of(wfit[idx])
    base = int(front[idx].max()) + 1 if idx.size else 0
    bad = np.flatnonzero(viable & ~ok)
    if bad.size:
        levels = np.unique(violation[bad], return_inverse=True)[1].reshape(-1)
        front[bad] = base + levels
        base += int(levels.max()) + 1
    front[~viable] = base
    return front


def crowding_distance(wfit: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Crowding distance within each front, DEAP's normalisation: per objective, boundary
    points get infinity and interior ones add ``(next - prev) / (n_obj * (max - min))``.

    Examples
    --------
    >>> import numpy as np
    >>> w = -np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]])
    >>> crowding_distance(w, np.zeros(4, dtype=int)).tolist()
    [inf, 0.625, 0.625, inf]
    """
    n, m = wfit.shape
    dist = np.zeros(n)
    for f in np.unique(front):
        members = np.flatnonzero(front == f)
        if members.size == 0:
            continue
        vals = wfit[members]
        for k in range(m):
            order = np.argsort(vals[:, k], kind="stable")
            col = vals[order, k]
            d = np.zeros(members.size)
            d[order[0]] = np.inf
            d[order[-1]] = np.inf
            span = col[-1] - col[0]
            if members.size > 2 and span != 0:
                d[order[1:-1]] = (col[2:] - col[:-2]) / (m * span)
            dist[members] += d
    return dist


def mo_key(front: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """A scalar "larger is better" key: lower front first, then larger crowding distance."""
    finite = np.isfinite(crowd)
    c = np.ones_like(crowd, dtype=np.float64)
    c[finite] = crowd[finite] / (1.0 + crowd[finite])
    return -front.astype(np.float64) + 0.5 * c


def select_nsga2(wfit: np.ndarray, k: int, viable: np.ndarray | None = None,
                 violation: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the ``k`` survivors: whole fronts in order, the last one cut by decreasing
    crowding distance. Returns ``(indices, front, crowding)`` of the survivors."""
    front = nondominated_fronts(wfit, viable, violation)
    crowd = crowding_distance(wfit, front)
    order = np.lexsort((-crowd, front))[:k]
    return order, front[order], crowd[order]
