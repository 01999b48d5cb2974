"""Frameworks' own progress reports: parsed, checked and kept by the master for the dashboard.

A scheduler publishes a small JSON object with :meth:`substrate.SchedulerDriver.publish_status`
(a ``PUBLISH_STATUS`` call). The master only parses it as JSON (never unpickles), refuses
anything that is too big, too deep, not an object or holds non-finite numbers, and keeps the
latest document per framework. What the document means is the framework's business; two keys
have a meaning here:

``kind``
    A short name (``"dataflow"``, ``"genetic"``) the dashboard uses to pick a view.
``metrics``
    ``{name: number}``, exported on ``/metrics`` as ``offerpool_framework_<name>`` with the
    framework's id and name as labels; names ending in ``_total`` are counters.

Examples
--------
>>> parse_status('{"kind": "demo", "metrics": {"items_total": 3}}')["kind"]
'demo'
>>> try:
...     parse_status("[1, 2]")
... except InvalidRequest as exc:
...     print(exc)
a framework status must be a JSON object
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator

from substrate.errors import InvalidRequest

#: Cap on one status document, in bytes of JSON.
MAX_STATUS_BYTES = 64 * 1024
#: How deeply objects and arrays may nest.
MAX_DEPTH = 12
_METRIC_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")


def _reject_constant(name: str) -> Any:
    raise InvalidRequest(f"a framework status must not contain {name}")


def _depth_ok(value: Any, depth: int = 0) -> bool:
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return all(_depth_ok(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_depth_ok(v, depth + 1) for v in value)
    return True


def parse_status(text: str) -> dict:
    """Parse and check one status document; raises :class:`InvalidRequest` when it is bad."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_STATUS_BYTES:
        raise InvalidRequest(f"a framework status is {size} bytes, over the cap of "
                             f"{MAX_STATUS_BYTES} bytes")
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except InvalidRequest:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"a framework status is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("a framework status must be a JSON object")
    if not _depth_ok(doc):
        raise InvalidRequest(f"a framework status nests deeper than {MAX_DEPTH} levels")
    kind = doc.get("kind", "")
    if not isinstance(kind, str) or len(kind) > 64:
        raise InvalidRequest("a framework status 'kind' must be a short string")
    metrics = doc.get("metrics", {})
    if not isinstance(metrics, dict):
        raise InvalidRequest("a framework status 'metrics' must be an object")
    for name, value in metrics.items():
        if not _METRIC_NAME.match(name):
            raise InvalidRequest(f"metric name {name!r} must match {_METRIC_NAME.pattern}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise InvalidRequest(f"metric {name!r} must be a finite number")
    return doc


def framework_metrics(frameworks: Any) -> Iterator[tuple[str, str, str, str, float]]:
    """``(metric name, kind, framework id, framework name, value)`` for every framework
    record whose latest status carries metrics."""
    for fw in frameworks:
        doc = getattr(fw, "status", None)
        if not doc:
            continue
        kind = str(doc.get("kind", ""))
        for name, value in doc.get("metrics", {}).items():
            yield name, kind, fw.framework_id, fw.info.name, float(value)
