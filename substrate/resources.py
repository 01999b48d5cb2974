"""Resource vectors: cpus, memory, disk, gpus and port ranges, with their arithmetic.

This module owns validation (finite, non-negative, well-formed port ranges) and the
operations the allocator and the master need: add, subtract, containment and the
dominant share used by DRF. It knows nothing about agents, offers or the wire format.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from substrate.errors import ResourceError

#: Scalar resource names in a fixed order (the order of :meth:`Resources.scalars`).
SCALARS = ("cpus", "mem", "disk", "gpus")

# Below this a scalar counts as zero: float sums and differences leave dust behind.
EPSILON = 1e-9

PortRanges = tuple[tuple[int, int], ...]


def _normalize_ports(ranges: Iterable[tuple[int, int]]) -> PortRanges:
    """Sort and merge inclusive ranges; reject inverted or out-of-range ones."""
    cleaned = []
    for pair in ranges:
        begin, end = int(pair[0]), int(pair[1])
        if begin < 0 or end > 65535 or begin > end:
            raise ResourceError(f"invalid port range [{begin}, {end}]")
        cleaned.append((begin, end))
    cleaned.sort()
    merged: list[tuple[int, int]] = []
    for begin, end in cleaned:
        if merged and begin <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return tuple(merged)


def _ports_count(ranges: PortRanges) -> int:
    return sum(end - begin + 1 for begin, end in ranges)


def _ports_contains(outer: PortRanges, inner: PortRanges) -> bool:
    i = 0
    for begin, end in inner:
        while i < len(outer) and outer[i][1] < begin:
            i += 1
        if i == len(outer) or outer[i][0] > begin or outer[i][1] < end:
            return False
    return True


def _ports_subtract(outer: PortRanges, inner: PortRanges) -> PortRanges:
    result: list[tuple[int, int]] = []
    for begin, end in outer:
        pieces = [(begin, end)]
        for ib, ie in inner:
            next_pieces = []
            for pb, pe in pieces:
                if ie < pb or ib > pe:
                    next_pieces.append((pb, pe))
                    continue
                if pb < ib:
                    next_pieces.append((pb, ib - 1))
                if ie < pe:
                    next_pieces.append((ie + 1, pe))
            pieces = next_pieces
        result.extend(pieces)
    return tuple(result)


@dataclass(frozen=True)
class Resources:
    """An immutable vector of resources.

    Parameters
    ----------
    cpus, mem, disk, gpus : float
        Scalars; memory and disk in MiB. Must be finite and non-negative.
    ports : tuple of (int, int)
        Inclusive port ranges, normalised (sorted and merged) on construction.

    Examples
    --------
    >>> a = Resources(cpus=2, mem=1024, ports=((8000, 8009),))
    >>> b = Resources(cpus=0.5, mem=256, ports=((8000, 8000),))
    >>> a.contains(b)
    True
    >>> (a - b).cpus, (a - b).ports
    (1.5, ((8001, 8009),))
    >>> Resources(cpus=-1)
    Traceback (most recent call last):
    ...
    substrate.errors.ResourceError: cpus must be finite and non-negative, got -1.0
    """

    cpus: float = 0.0
    mem: float = 0.0
    disk: float = 0.0
    gpus: float = 0.0
    ports: PortRanges = field(default=())

    def __post_init__(self) -> None:
        for name in SCALARS:
            value = getattr(self, name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ResourceError(f"{name} must be a number, got {value!r}") from None
            if not math.isfinite(value) or value < 0:
                raise ResourceError(f"{name} must be finite and non-negative, got {value}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "ports", _normalize_ports(self.ports))

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> "Resources":
        """Build from a mapping such as ``{"cpus": 1, "mem": 512}``; unknown keys are refused."""
        unknown = set(values) - set(SCALARS) - {"ports"}
        if unknown:
            raise ResourceError(f"unknown resource names: {sorted(unknown)}")
        return cls(**values)  # type: ignore[arg-type]

    def scalars(self) -> tuple[float, float, float, float]:
        """The scalars as a tuple in :data:`SCALARS` order."""
        return (self.cpus, self.mem, self.disk, self.gpus)

    @property
    def port_count(self) -> int:
        """How many ports the ranges hold."""
        return _ports_count(self.ports)

    def is_empty(self) -> bool:
        """True when every scalar is (nearly) zero and there are no ports."""
        return all(v <= EPSILON for v in self.scalars()) and not self.ports

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(
            self.cpus + other.cpus, self.mem + other.mem, self.disk + other.disk,
            self.gpus + other.gpus, self.ports + other.ports,
        )

    def __sub__(self, other: "Resources") -> "Resources":
        """Subtract, clamping float dust at zero; subtracting more than held is an error."""
        if not self.contains(other):
            raise ResourceError(f"cannot subtract {other} from {self}")
        values = [max(0.0, a - b) for a, b in zip(self.scalars(), other.scalars())]
        values = [0.0 if v <= EPSILON else v for v in values]
        return Resources(*values, ports=_ports_subtract(self.ports, other.ports))

    def contains(self, other: "Resources") -> bool:
        """True when ``other`` fits inside this vector."""
        for a, b in zip(self.scalars(), other.scalars()):
            if b > a + EPSILON:
                return False
        return _ports_contains(self.ports, other.ports)

    def dominant_share(self, total: "Resources") -> float:
        """The largest fraction of ``total`` this vector uses over all resources (DRF)."""
        share = 0.0
        for used, whole in zip(self.scalars(), total.scalars()):
            if whole > 0:
                share = max(share, used / whole)
        whole_ports = total.port_count
        if whole_ports:
            share = max(share, self.port_count / whole_ports)
        return share

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly mapping."""
        return {
            "cpus": self.cpus, "mem": self.mem, "disk": self.disk, "gpus": self.gpus,
            "ports": [list(r) for r in self.ports],
        }

    def __str__(self) -> str:
        parts = [f"{n}={getattr(self, n):g}" for n in SCALARS if getattr(self, n)]
        if self.ports:
            parts.append("ports=" + ",".join(f"{b}-{e}" for b, e in self.ports))
        return "Resources(" + ", ".join(parts) + ")"


EMPTY = Resources()
