"""Safe-by-default HTML building for the dashboard: every value is escaped unless it is
:class:`Safe` (markup this module or a page made). Pages never format user text themselves.

Examples
--------
>>> str(cell("<script>x</script>"))
'&lt;script&gt;x&lt;/script&gt;'
>>> table(["name"], [[link("/a?b=1&c", "<b>")]])
'<table><thead><tr><th>name</th></tr></thead><tbody><tr><td><a href="/a?b=1&amp;c">&lt;b&gt;</a></td></tr></tbody></table>'
"""
from __future__ import annotations

import html
import json
import math
import time
from typing import Any, Iterable, Optional, Sequence
from urllib.parse import quote


class Safe(str):
    """Markup that is already escaped."""


def esc(value: Any) -> Safe:
    """Escape any value (quotes too, so it may go into an attribute)."""
    return Safe(html.escape("" if value is None else str(value), quote=True))


def cell(value: Any) -> Safe:
    return value if isinstance(value, Safe) else esc(value)


def join(parts: Iterable[Any], sep: str = "") -> Safe:
    return Safe(sep.join(cell(p) for p in parts))


def seg(value: str) -> str:
    """One URL path segment."""
    return quote(str(value), safe="")


def link(href: str, text: Any, cls: str = "") -> Safe:
    klass = f' class="{esc(cls)}"' if cls else ""
    return Safe(f'<a href="{esc(href)}"{klass}>{cell(text)}</a>')


def tag(name: str, content: Any = "", **attrs: Any) -> Safe:
    """``<name attrs>content</name>``; attribute names use ``_`` for ``-`` and ``cls`` for
    ``class``."""
    rendered = "".join(
        f' {"class" if k == "cls" else k.rstrip("_").replace("_", "-")}="{esc(v)}"'
        for k, v in attrs.items() if v is not None)
    return Safe(f"<{name}{rendered}>{cell(content)}</{name}>")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "",
          empty: str = "") -> Safe:
    rows = list(rows)
    if not rows and empty:
        return tag("p", empty, cls="empty")
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    klass = f' class="{esc(cls)}"' if cls else ""
    return Safe(f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def kv(pairs: Iterable[tuple[str, Any]]) -> Safe:
    """A two-column table of labels and values."""
    body = "".join(f"<tr><th>{esc(k)}</th><td>{cell(v)}</td></tr>" for k, v in pairs)
    return Safe(f'<table class="kv"><tbody>{body}</tbody></table>')


def progress(done: float, total: float, label: Optional[str] = None) -> Safe:
    """A native ``<progress>`` with its numbers beside it (no inline styles: CSP)."""
    total = max(float(total), 0.0)
    done = min(max(float(done), 0.0), total) if total else 0.0
    text = label if label is not None else f"{fmt(done)}/{fmt(total)}"
    return Safe(f'<span class="progress"><progress value="{done:g}" max="{total or 1:g}">'
                f'</progress> <span class="progress-text">{esc(text)}</span></span>')


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers for people: integers as such, floats to ``digits`` significant digits."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.{digits}g}"
    return str(value)


def nbytes(value: Any) -> str:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def ago(when: Optional[float], now: Optional[float] = None) -> str:
    if not when:
        return ""
    delta = (now or time.time()) - float(when)
    if delta < 1:
        return "just now"
    if delta < 120:
        return f"{delta:.0f} s ago"
    if delta < 7200:
        return f"{delta / 60:.0f} min ago"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(when)))


def clock(when: Optional[float]) -> str:
    if not when:
        return ""
    return time.strftime("%H:%M:%S", time.localtime(float(when))) + f".{int(when * 1000) % 1000:03d}"


def pretty_json(value: Any) -> Safe:
    return tag("pre", json.dumps(value, indent=1, sort_keys=True, default=str), cls="json")
