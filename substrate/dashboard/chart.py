"""Inline SVG line charts (no JavaScript library, no CDN): the GA fitness-per-generation chart.

Every point is an SVG ``<circle>`` carrying its values in ``data-`` attributes and a
``<title>`` tooltip, so people can hover and tests can read the plotted numbers.

Examples
--------
>>> svg = line_chart([{"generation": 0, "best": 5.0, "mean": 9.0},
...                   {"generation": 1, "best": 3.0, "mean": 6.0}],
...                  x="generation", series=("best", "mean"))
>>> svg.count('class="pt best"'), 'data-x="1"' in svg
(2, True)
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from substrate.dashboard.markup import Safe, esc, fmt

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 36


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / (n - 1)
    return [lo + i * step for i in range(n)]


def line_chart(points: Sequence[dict], x: str, series: Sequence[str],
               title: str = "", y_label: str = "") -> Safe:
    """An SVG chart of ``series`` (keys of each point) against ``x``."""
    rows = [p for p in points if isinstance(p, dict) and _finite(p.get(x))]
    ys = [p[s] for p in rows for s in series if _finite(p.get(s))]
    if not rows or not ys:
        return Safe('<p class="empty">no points yet</p>')
    x0, x1 = min(p[x] for p in rows), max(p[x] for p in rows)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(v: float) -> float:
        return LEFT + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return TOP + (1 - (v - y0) / (y1 - y0)) * ph

    out = [f'<svg class="chart fitness-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{esc(title)}">']
    if title:
        out.append(f"<title>{esc(title)}</title>")
    out.append(f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}"/>')
    for t in _ticks(y0, y1):
        y = sy(t)
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f"{esc(fmt(float(t)))}</text>")
    for t in _ticks(x0, x1):
        xx = sx(t)
        out.append(f'<text class="tick" x="{xx:.1f}" y="{TOP + ph + 16}" text-anchor="middle">'
                   f"{esc(fmt(round(t)))}</text>")
    out.append(f'<text class="axis" x="{LEFT + pw / 2:.1f}" y="{HEIGHT - 4}" '
               f'text-anchor="middle">{esc(x)}</text>')
    if y_label:
        out.append(f'<text class="axis" x="12" y="{TOP + ph / 2:.1f}" text-anchor="middle" '
                   f'transform="rotate(-90 12 {TOP + ph / 2:.1f})">{esc(y_label)}</text>')
    for name in series:
        pts = [(p[x], p[name]) for p in rows if _finite(p.get(name))]
        if not pts:
            continue
        klass = esc(name)
        path = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in pts)
        out.append(f'<polyline class="line {klass}" points="{path}"/>')
        for a, b in pts:
            out.append(f'<circle class="pt {klass}" cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="2.5" '
                       f'data-x="{a:g}" data-y="{b!r}"><title>{esc(name)} '
                       f"{esc(fmt(b, 6))} at {esc(x)} {esc(fmt(a))}</title></circle>")
    legend_x = LEFT + 8
    for i, name in enumerate(series):
        y = TOP + 14 + 16 * i
        out.append(f'<line class="line {esc(name)}" x1="{legend_x}" x2="{legend_x + 18}" '
                   f'y1="{y - 4}" y2="{y - 4}"/><text class="legend" x="{legend_x + 24}" '
                   f'y="{y}">{esc(name)}</text>')
    out.append("</svg>")
    return Safe("".join(out))
