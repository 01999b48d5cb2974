"""What :func:`genetic.evolve` returns: the best individual, the hall of fame or Pareto front,
per-generation statistics as an Arrow table, errors recorded along the way, a plot and an HTML
summary for notebooks. Pure data: nothing here runs evolution.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["HISTORY_SCHEMA", "Individual", "ParetoFront", "Result"]

#: Columns of :attr:`Result.history`.
HISTORY_SCHEMA = pa.schema([
    ("generation", pa.int64()), ("island", pa.int32()), ("best", pa.float64()),
    ("mean", pa.float64()), ("std", pa.float64()), ("diversity", pa.float64()),
    ("evaluations", pa.int64()), ("seconds", pa.float64()),
])


def history_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Build the history table from statistics rows (see :meth:`genetic.island.Island.stats`)."""
    cols = {name: [r[name] for r in rows] for name in HISTORY_SCHEMA.names}
    return pa.table(cols, schema=HISTORY_SCHEMA)


@dataclass(frozen=True)
class Individual:
    """A genome (as users see it: bits as 0/1) and its fitness (a float, or a tuple for
    several objectives)."""

    genome: np.ndarray
    fitness: Any

    def __repr__(self) -> str:
        g = np.array2string(np.asarray(self.genome), threshold=12, edgeitems=4)
        return f"Individual(fitness={self.fitness!r}, genome={g})"


@dataclass(frozen=True)
class ParetoFront:
    """Non-dominated individuals of a multi-objective run: genomes (rows) and fitness matrix."""

    genomes: np.ndarray
    fitness: np.ndarray

    def __len__(self) -> int:
        return int(self.fitness.shape[0])

    def to_arrow(self) -> pa.Table:
        """One row per individual: ``genome`` (list) and ``f0, f1, ...``."""
        cols: dict[str, Any] = {"genome": [list(g) for g in self.genomes.tolist()]}
        for j in range(self.fitness.shape[1]):
            cols[f"f{j}"] = self.fitness[:, j]
        return pa.table(cols)


@dataclass
class Result:
    """The outcome of :func:`genetic.evolve`.

    Attributes
    ----------
    best : Individual
        The best individual seen (objective 0 for multi-objective runs).
    hall_of_fame : list of Individual
        The best distinct individuals seen, best first (single objective).
    pareto_front : ParetoFront or None
        The non-dominated set found (several objectives), else ``None``.
    history : pyarrow.Table
        One row per island and generation: ``generation, island, best, mean, std, diversity,
        evaluations, seconds`` (objective 0; ``evaluations`` and ``seconds`` cumulative per
        island; ``diversity`` is the fraction of distinct genomes).
    generations, evaluations : int
        Generations run (per island) and fitness evaluations made (all islands).
    stopped : str
        Which rule ended the run: ``"generations"``, ``"evaluations"``, ``"seconds"``,
        ``"target"`` or ``"stagnation"``.
    errors : list of dict
        Fitness errors recorded with ``on_error="nonviable"`` (first 100 per island).
    seconds : float
        Wall time of the run (including the time before a resume).
    events : list of dict
        What happened to the islands of a run on the substrate (launched, running with its
        pid, first_generation, checkpoint, lost, relaunch from a generation, stop), each with
        ``seconds`` since :func:`genetic.evolve` was called; empty for ``master="inline"``.
    dashboard_url : str or None
        The master's dashboard when the run had one (shown by ``_repr_html_``).
    maximize : bool
        Whether objective 0 was maximised (how the chart reads "best").

    Examples
    --------
    >>> import genetic
    >>> p = genetic.Problem(genome=genetic.bits(20), fitness="onemax")
    >>> r = genetic.evolve(p, population=40, generations=30, seed=1)
    >>> r.best.fitness
    20.0
    >>> r.history.column_names[:4]
    ['generation', 'island', 'best', 'mean']
    """

    best: Individual
    history: pa.Table
    hall_of_fame: list[Individual] = field(default_factory=list)
    pareto_front: ParetoFront | None = None
    generations: int = 0
    evaluations: int = 0
    stopped: str = "generations"
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0
    seconds: float = 0.0
    islands: int = 1
    seed: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    dashboard_url: str | None = None
    maximize: bool = False

    def __repr__(self) -> str:
        return (f"Result(best={self.best.fitness!r}, generations={self.generations}, "
                f"evaluations={self.evaluations}, islands={self.islands}, "
                f"stopped={self.stopped!r})")

    def _repr_html_(self) -> str:
        rows = [("best fitness", self.best.fitness), ("generations", self.generations),
                ("evaluations", self.evaluations), ("islands", self.islands),
                ("stopped by", self.stopped), ("seconds", f"{self.seconds:.3f}"),
                ("errors", self.error_count)]
        if self.pareto_front is not None:
            rows.append(("Pareto front", f"{len(self.pareto_front)} individuals"))
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        if self.dashboard_url:
            url = html.escape(self.dashboard_url.rstrip("/"), quote=True)
            state = url if url.endswith("/state") else url + "/state"
            body += (f"<tr><th style='text-align:left'>dashboard</th><td><a href=\"{state}\" "
                     f"target=\"_blank\">{state}</a></td></tr>")
        genome = html.escape(np.array2string(np.asarray(self.best.genome), threshold=40))
        return (f"<div><b>genetic.Result</b><table>{body}</table>{self._chart()}"
                f"<details><summary>best genome</summary><pre>{genome}</pre></details></div>")

    def _chart(self) -> str:
        """Best and mean fitness per generation over all islands, as inline SVG."""
        from .progress import chart_svg

        h = self.history.to_pydict()
        if not h.get("generation"):
            return ""
        maximize = self.maximize
        agg: dict[int, list[float]] = {}
        for g, b, m in zip(h["generation"], h["best"], h["mean"]):
            a = agg.setdefault(int(g), [b, 0.0, 0])
            a[0] = max(a[0], b) if maximize else min(a[0], b)
            a[1] += m
            a[2] += 1
        gens = sorted(agg)
        return chart_svg(gens, [agg[g][0] for g in gens], [agg[g][1] / agg[g][2] for g in gens],
                         maximize=maximize)

    def plot(self, ax: Any = None) -> Any:
        """Plot best and mean fitness per generation and island (needs matplotlib).

        Returns the matplotlib ``Axes``.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("Result.plot() needs matplotlib: pip install matplotlib") from exc
        if ax is None:
            _, ax = plt.subplots()
        h = self.history.to_pydict()
        islands = sorted(set(h["island"]))
        for i in islands:
            sel = [j for j, isl in enumerate(h["island"]) if isl == i]
            gens = [h["generation"][j] for j in sel]
            ax.plot(gens, [h["best"][j] for j in sel], label=f"island {i} best")
            ax.plot(gens, [h["mean"][j] for j in sel], linestyle=":", label=f"island {i} mean")
        ax.set_xlabel("generation")
        ax.set_ylabel("fitness")
        ax.legend()
        return ax
