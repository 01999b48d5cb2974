"""Live progress of a run: a status line on a terminal, a widget with a small chart in Jupyter.

A progress object is fed one call per generation (or per batch of statistics) with the run's
aggregate numbers — generation, best and mean fitness, evaluations, islands running — and is
closed exactly once when the run ends, however it ends. :func:`resolve` picks the kind:
an ipywidgets box in a Jupyter kernel, the text line on a TTY, nothing otherwise (or as
``evolve(progress=...)`` / ``OFFERPOOL_PROGRESS`` say). Who calls it is the engine's business
(:mod:`genetic.engine` inline, :mod:`genetic.framework` on the substrate); this module only
shows. :func:`chart_svg` draws the best/mean curves as inline SVG, for the widget and for
:meth:`genetic.Result._repr_html_`.

Examples
--------
>>> import io
>>> out = io.StringIO()
>>> p = TextProgress(10, stream=out, interval=0.0, enabled=True)
>>> p.update(generation=5, best=3.5, mean=7.25, evaluations=1500, running=2, islands=2)
>>> p.close("generations")
>>> print(out.getvalue().split(chr(13))[-1].strip())   # the line as last drawn
[genetic] generation 5/10  best 3.5  mean 7.25  islands 2/2 running  evaluations 1,500  0.0 s
"""
from __future__ import annotations

import html
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ENV_PROGRESS", "GenerationProgress", "TextProgress", "WidgetProgress",
           "chart_svg", "in_jupyter", "resolve"]

#: ``1``/``0`` force progress on or off when ``evolve(progress=None)``.
ENV_PROGRESS = "OFFERPOOL_PROGRESS"
#: Points kept for the chart: long runs are thinned, so redrawing stays cheap.
MAX_POINTS = 400
BEST_STYLE = 'stroke="#1f77b4" stroke-width="1.5"'
MEAN_STYLE = 'stroke="#999" stroke-dasharray="3,2"'


def _num(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.6g}"


class GenerationProgress:
    """Base: keeps the series, throttles redraws; subclasses draw and finish."""

    def __init__(self, generations: int, *, interval: float = 0.2) -> None:
        self.generations = int(generations)
        self.interval = interval
        self.t0 = time.perf_counter()
        self.last_draw = float("-inf")
        self.closed = False
        self.gens: list[int] = []
        self.best: list[float] = []
        self.mean: list[float] = []
        self.latest: dict[str, Any] = {}

    def update(self, *, generation: int, best: float | None, mean: float | None,
               evaluations: int, running: int = 1, islands: int = 1,
               force: bool = False) -> None:
        """Record the aggregate of ``generation`` and redraw at most every ``interval`` s."""
        if self.closed:
            return
        if not self.gens or generation > self.gens[-1]:
            self.gens.append(int(generation))
            self.best.append(float("nan") if best is None else float(best))
            self.mean.append(float("nan") if mean is None else float(mean))
            if len(self.gens) > 2 * MAX_POINTS:       # thin: every other point, newest kept
                for s in (self.gens, self.best, self.mean):
                    s[:] = s[-1::-2][::-1]
        self.latest = {"generation": int(generation), "best": best, "mean": mean,
                       "evaluations": int(evaluations), "running": running,
                       "islands": islands, "seconds": time.perf_counter() - self.t0}
        now = time.monotonic()
        if force or now - self.last_draw >= self.interval:
            self.last_draw = now
            self.draw()

    def status(self) -> str:
        d = self.latest
        if not d:
            return f"generation 0/{self.generations}"
        return (f"generation {d['generation']}/{self.generations}  best {_num(d['best'])}  "
                f"mean {_num(d['mean'])}  islands {d['running']}/{d['islands']} running  "
                f"evaluations {d['evaluations']:,}  {d['seconds']:.1f} s")

    def draw(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self, outcome: str) -> None:
        """Finish the display once: ``outcome`` is the stopping rule, or ``"failed"``."""
        if self.closed:
            return
        self.closed = True
        self.finish(outcome)

    def finish(self, outcome: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class TextProgress(GenerationProgress):
    """One status line, rewritten in place (``\\r``); a newline when the run ends."""

    def __init__(self, generations: int, *, stream: Any = None, interval: float = 0.2,
                 enabled: bool | None = None) -> None:
        super().__init__(generations, interval=interval)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream) if enabled is None else bool(enabled)
        self.shown = False

    def draw(self) -> None:
        if not self.enabled:
            return
        self.stream.write(f"\r[genetic] {self.status()} ")
        self.stream.flush()
        self.shown = True

    def finish(self, outcome: str) -> None:
        if not self.enabled:
            return
        if self.latest:
            self.draw()
        if self.shown:
            if outcome not in ("generations", ""):
                self.stream.write(f"({outcome})")
            self.stream.write("\n")
            self.stream.flush()


class WidgetProgress(GenerationProgress):
    """An ipywidgets box: the status line and a small best/mean chart, updated in place.

    Closing leaves the final chart and a summary in the box (nothing keeps refreshing).
    ``display=False`` builds the widget without showing it (tests, or to place it yourself:
    the box is :attr:`widget`).
    """

    def __init__(self, generations: int, *, interval: float = 0.5, maximize: bool = False,
                 display: bool = True) -> None:
        super().__init__(generations, interval=interval)
        import ipywidgets as widgets

        self.maximize = maximize
        self.label = widgets.HTML(value=f"<code>[genetic] {html.escape(self.status())}</code>")
        self.chart = widgets.HTML(value="")
        self.bar = widgets.IntProgress(value=0, min=0, max=max(1, self.generations),
                                       description="genetic", bar_style="info")
        self.widget = widgets.VBox([widgets.HBox([self.bar, self.label]), self.chart])
        if display:
            from IPython.display import display as show
            show(self.widget)

    def draw(self) -> None:
        self.bar.value = min(self.latest.get("generation", 0), self.bar.max)
        self.label.value = f"<code>[genetic] {html.escape(self.status())}</code>"
        self.chart.value = chart_svg(self.gens, self.best, self.mean, maximize=self.maximize)

    def finish(self, outcome: str) -> None:
        if self.latest:
            self.draw()
        self.bar.bar_style = "danger" if outcome == "failed" else "success"
        self.label.value = (f"<code>[genetic] {html.escape(self.status())}  "
                            f"({html.escape(outcome)})</code>")


def chart_svg(gens: Sequence[int], best: Sequence[float], mean: Sequence[float], *,
              width: int = 360, height: int = 120, maximize: bool = False) -> str:
    """Best (solid) and mean (dotted) fitness per generation as a small inline SVG.

    Examples
    --------
    >>> svg = chart_svg([0, 1, 2], [5.0, 3.0, 1.0], [9.0, 6.0, 4.0])
    >>> svg.startswith("<svg") and svg.count("<polyline") == 2
    True
    """
    pts = [(g, b, m) for g, b, m in zip(gens, best, mean)]
    vals = [v for _, b, m in pts for v in (b, m) if math.isfinite(v)]
    if len(pts) < 1 or not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if hi == lo:
        hi, lo = hi + 1.0, lo - 1.0
    g0, g1 = pts[0][0], max(pts[-1][0], pts[0][0] + 1)
    pad = 4

    def xy(g: float, v: float) -> str:
        x = pad + (g - g0) / (g1 - g0) * (width - 2 * pad)
        y = pad + (hi - v) / (hi - lo) * (height - 2 * pad - 12)
        return f"{x:.1f},{y:.1f}"

    def line(i: int, style: str) -> str:
        p = " ".join(xy(t[0], t[i]) for t in pts if math.isfinite(t[i]))
        return f'<polyline fill="none" {style} points="{p}"/>'

    what = "max" if maximize else "min"
    caption = html.escape(f"best {_num(pts[-1][1])} ({what}imised), mean {_num(pts[-1][2])}, "
                          f"generation {pts[-1][0]}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'role="img"><title>{caption}</title>'
            f'<rect width="{width}" height="{height}" fill="white" stroke="#ccc"/>'
            f'{line(2, MEAN_STYLE)}{line(1, BEST_STYLE)}'
            f'<text x="{pad}" y="{height - 3}" font-size="10" fill="#555">{caption}</text>'
            f'</svg>')


def in_jupyter() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - a half-initialised IPython is not a notebook
        return False
    return shell is not None and hasattr(shell, "kernel")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):   # replaced or closed stream
        return False


def resolve(progress: bool | GenerationProgress | None, generations: int, *,
            maximize: bool = False, env: Mapping[str, str] | None = None
            ) -> GenerationProgress | None:
    """The progress display for a run, or ``None``.

    ``progress`` is ``evolve(progress=...)``: a :class:`GenerationProgress` is used as given,
    ``False`` shows nothing, ``True`` shows the widget in Jupyter and the text line elsewhere
    (even when stderr is not a TTY), ``None`` defers to ``OFFERPOOL_PROGRESS`` and then to
    whether the session is a notebook or a terminal.
    """
    if isinstance(progress, GenerationProgress):
        return progress
    if progress is None:
        raw = (os.environ if env is None else env).get(ENV_PROGRESS, "").strip().lower()
        if raw in ("1", "true", "yes", "on"):
            progress = True
        elif raw in ("0", "false", "no", "off"):
            progress = False
    if progress is False:
        return None
    if in_jupyter():
        try:
            return WidgetProgress(generations, maximize=maximize)
        except ImportError:        # no ipywidgets: the text line still works in a notebook
            return TextProgress(generations, stream=sys.stdout, enabled=True)
    text = TextProgress(generations, enabled=True if progress else None)
    return text if text.enabled else None
