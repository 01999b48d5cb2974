"""A run's per-generation statistics, kept as arrays: one row per island and generation.

:class:`History` is what both engines fill while islands evolve and what
:attr:`genetic.Result.history` is built from. Rows are keyed by ``(island, generation)``;
each island's rows live in arrays indexed by generation, so taking in a batch of rows from an
island executor is a few vectorised assignments whatever its size, a row received twice
(a relaunched island replaying, a final status repeating its batches) lands on the same slot,
and the table comes out ordered by generation then island without sorting dictionaries.
Rows travel between processes as the column arrays of :func:`pack_rows` (see
:mod:`genetic.protocol`), never as one JSON object per row.

What a row holds is :meth:`genetic.island.Island.stats`; how rows are shown (progress,
dashboard) belongs to :mod:`genetic.progress` and :mod:`genetic.status`.

Examples
--------
>>> h = History()
>>> h.add_rows([{"generation": 1, "island": 0, "best": 3.0, "mean": 5.0, "std": 1.0,
...              "diversity": 1.0, "evaluations": 20, "seconds": 0.1}])
>>> cols = pack_rows([(1, 1, 2.0, 4.0, 1.0, 0.5, 20, 0.1), (2, 1, 1.0, 3.0, 1.0, 0.5, 40, 0.2)])
>>> h.add(1, cols)
(2, 0, 0)
>>> len(h), h.table().column("island").to_pylist()
(3, [0, 1, 1])
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["COLUMNS", "History", "pack_rows"]

#: A row's fields, in :data:`genetic.result.HISTORY_SCHEMA`'s order.
COLUMNS = ("generation", "island", "best", "mean", "std", "diversity", "evaluations", "seconds")
#: The float fields, stored side by side in one matrix per island.
_FLOATS = ("best", "mean", "std", "diversity", "seconds")
_INTS = ("generation", "evaluations")


def pack_rows(rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Statistics rows as tuples in :data:`COLUMNS` order -> one array per column (the
    ``island`` column is left out: a batch comes from one island)."""
    if not rows:
        return {"generation": np.zeros(0, np.int64), "evaluations": np.zeros(0, np.int64),
                **{k: np.zeros(0) for k in _FLOATS}}
    cols = list(zip(*rows))
    out = {name: np.array(cols[i], dtype=np.float64)
           for i, name in enumerate(COLUMNS) if name in _FLOATS}
    out["generation"] = np.array(cols[0], dtype=np.int64)
    out["evaluations"] = np.array(cols[6], dtype=np.int64)
    return out


class _Block:
    """One island's rows, indexed by generation."""

    __slots__ = ("have", "floats", "evaluations")

    def __init__(self, capacity: int) -> None:
        self.have = np.zeros(capacity, bool)
        self.floats = np.zeros((capacity, len(_FLOATS)))
        self.evaluations = np.zeros(capacity, np.int64)

    def reserve(self, top: int) -> None:
        n = self.have.shape[0]
        if top < n:
            return
        size = max(top + 1, 2 * n)
        for name in self.__slots__:
            old = getattr(self, name)
            new = np.zeros((size,) + old.shape[1:], old.dtype)
            new[:n] = old
            setattr(self, name, new)


class History:
    """Statistics rows keyed by ``(island, generation)``; the last row written for a key wins
    (unless :meth:`add` is told to fill only)."""

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self._count = 0

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> History:
        h = cls()
        h.add_rows(rows)
        return h

    def __len__(self) -> int:
        return self._count

    def _block(self, island: int, top: int) -> _Block:
        b = self._blocks.get(island)
        if b is None:
            b = self._blocks[island] = _Block(max(64, top + 1))
        b.reserve(top)
        return b

    def add_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows as dictionaries (a checkpoint's JSON, the inline engine's islands)."""
        for r in rows:
            g = int(r["generation"])
            b = self._block(int(r["island"]), g)
            if not b.have[g]:
                b.have[g] = True
                self._count += 1
            b.floats[g] = [r[k] for k in _FLOATS]
            b.evaluations[g] = r["evaluations"]

    def add(self, island: int, cols: Mapping[str, np.ndarray], *,
            fill_only: bool = False, limit: int | None = None) -> tuple[int, int, int]:
        """Take in one island's batch of rows (the arrays of :func:`pack_rows`).

        With ``fill_only``, rows already present are kept and compared instead of replaced.
        A generation below 0 or above ``limit`` raises :class:`ValueError` (and adds nothing).
        Returns ``(new, agreed, differed)``: rows that were missing, and among those present
        how many equal the batch's and how many do not (both 0 without ``fill_only``).
        """
        if "generation" not in cols:
            return 0, 0, 0
        gens = np.asarray(cols["generation"], np.int64)
        if gens.size == 0:
            return 0, 0, 0
        if int(gens.min()) < 0 or (limit is not None and int(gens.max()) > limit):
            raise ValueError(f"statistics rows for generations {int(gens.min())}.."
                             f"{int(gens.max())}, outside 0..{limit}")
        b = self._block(int(island), int(gens.max()))
        floats = np.column_stack([np.asarray(cols[k], np.float64) for k in _FLOATS])
        evals = np.asarray(cols["evaluations"], np.int64)
        present = b.have[gens]
        new = int(gens.size - np.count_nonzero(present))
        agreed = differed = 0
        if fill_only and new < gens.size:
            old_f, old_e = b.floats[gens[present]], b.evaluations[gens[present]]
            f = floats[present]
            same = ((old_f == f) | (np.isnan(old_f) & np.isnan(f))).all(axis=1) & \
                (old_e == evals[present])
            agreed = int(np.count_nonzero(same))
            differed = int(same.size - agreed)
            keep = ~present
            gens, floats, evals = gens[keep], floats[keep], evals[keep]
        b.floats[gens] = floats
        b.evaluations[gens] = evals
        # (a generation repeated within the batch counts once)
        before = int(np.count_nonzero(b.have))
        b.have[gens] = True
        self._count += int(np.count_nonzero(b.have)) - before
        return new, agreed, differed

    def truncate(self, island: int, generation: int) -> None:
        """Forget ``island``'s rows after ``generation`` (what a relaunch will redo)."""
        b = self._blocks.get(island)
        if b is not None and generation + 1 < b.have.shape[0]:
            self._count -= int(np.count_nonzero(b.have[generation + 1:]))
            b.have[generation + 1:] = False

    def last_generation(self, island: int) -> int:
        """The highest generation ``island`` has a row for (0 without rows)."""
        b = self._blocks.get(island)
        if b is None:
            return 0
        idx = np.flatnonzero(b.have)
        return int(idx[-1]) if idx.size else 0

    # -- views ----------------------------------------------------------------------------------

    def columns(self, upto: int | None = None) -> dict[str, np.ndarray]:
        """All rows (up to generation ``upto``) ordered by generation, then island."""
        parts = []
        for island in sorted(self._blocks):
            b = self._blocks[island]
            have = b.have if upto is None else b.have[:upto + 1]
            g = np.flatnonzero(have)
            parts.append((g, np.full(g.size, island, np.int32), b.floats[g], b.evaluations[g]))
        if not parts:
            return {"generation": np.zeros(0, np.int64), "island": np.zeros(0, np.int32),
                    **{k: np.zeros(0) for k in _FLOATS},
                    "evaluations": np.zeros(0, np.int64)}
        gen = np.concatenate([p[0] for p in parts]).astype(np.int64)
        isl = np.concatenate([p[1] for p in parts])
        floats = np.concatenate([p[2] for p in parts])
        evals = np.concatenate([p[3] for p in parts])
        order = np.lexsort((isl, gen))
        out = {"generation": gen[order], "island": isl[order],
               "evaluations": evals[order]}
        for j, k in enumerate(_FLOATS):
            out[k] = floats[order, j]
        return {k: out[k] for k in COLUMNS}

    def rows(self, upto: int | None = None) -> list[dict[str, Any]]:
        """The rows as dictionaries of Python numbers (what a checkpoint stores as JSON)."""
        cols = self.columns(upto)
        lists = [cols[k].tolist() for k in COLUMNS]
        return [dict(zip(COLUMNS, values)) for values in zip(*lists)]

    def table(self) -> pa.Table:
        """The rows as :data:`genetic.result.HISTORY_SCHEMA`'s Arrow table."""
        from .result import HISTORY_SCHEMA
        cols = self.columns()
        return pa.table([pa.array(cols[k], type=HISTORY_SCHEMA.field(k).type) for k in COLUMNS],
                        schema=HISTORY_SCHEMA)

    def generations(self) -> np.ndarray:
        """The generations at least one island has a row for, in order."""
        blocks = list(self._blocks.values())
        any_row = np.zeros(max((b.have.shape[0] for b in blocks), default=0), bool)
        for b in blocks:
            any_row[:b.have.shape[0]] |= b.have
        return np.flatnonzero(any_row)

    def per_generation(self, maximize: bool, generations: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Across islands, per generation that has rows: ``(generation, best, mean, islands)``.

        ``best`` is the best of the islands' finite ``best`` in the objective's direction,
        ``mean`` the average of their finite means (NaN when none is finite), ``islands`` how
        many islands have a row. ``generations`` restricts the answer to those generations.
        """
        blocks = list(self._blocks.values())
        gens = self.generations() if generations is None else np.asarray(generations, np.int64)
        worst = -np.inf if maximize else np.inf
        best = np.full(gens.size, worst)
        msum = np.zeros(gens.size)
        mcount = np.zeros(gens.size, np.int64)
        count = np.zeros(gens.size, np.int64)
        for b in blocks:
            inside = gens < b.have.shape[0]
            g = gens[inside]
            have = np.zeros(gens.size, bool)
            have[inside] = b.have[g]
            rows = np.where(have)[0]
            count[rows] += 1
            bb, mm = b.floats[gens[rows], 0], b.floats[gens[rows], 1]
            ok = np.isfinite(bb)
            pick = np.maximum if maximize else np.minimum
            best[rows[ok]] = pick(best[rows[ok]], bb[ok])
            ok = np.isfinite(mm)
            msum[rows[ok]] += mm[ok]
            mcount[rows[ok]] += 1
        best[~np.isfinite(best)] = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(mcount > 0, msum / np.maximum(mcount, 1), np.nan)
        return gens, best, mean, count
