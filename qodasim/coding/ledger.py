"""An exact bit ledger: bits per worker and per round, split by category, from real streams."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..validate import check_int
from .protocol import Message

__all__ = ["BitLedger", "CATEGORIES"]

#: Bit categories a ledger counts separately.
CATEGORIES = ("header", "level_tables", "norms", "payload")
_CATEGORY_SET = frozenset(CATEGORIES)


class BitLedger:
    """Records every message sent: ``(worker, round, bits per category)``.

    ``record`` takes a :class:`~qodasim.coding.protocol.Message` (bits counted from the stream) or
    an explicit mapping of category → bits (e.g. an exact expected length, which may be fractional).
    """

    def __init__(self) -> None:
        self._rows: list[tuple[int, int, float, float, float, float]] = []

    def record(self, worker: int, round: int, message) -> None:
        """Add one message of ``worker`` in ``round``: a :class:`~qodasim.coding.Message` or a mapping
        category → bits (categories from :data:`CATEGORIES`; finite, non-negative)."""
        if isinstance(message, Message):
            bits = message.bits
        elif isinstance(message, dict):
            bits = message
        else:
            raise TypeError(f"message must be a Message or a dict of bits, got {type(message).__name__}")
        if not _CATEGORY_SET.issuperset(bits):
            raise ValueError(f"unknown bit categories: {sorted(set(bits) - _CATEGORY_SET)}")
        try:
            vals = [float(bits.get(c, 0.0)) for c in CATEGORIES]
        except (TypeError, ValueError):
            raise ValueError(f"bits must be finite and non-negative numbers, got {bits}") from None
        if not all(math.isfinite(x) and x >= 0 for x in vals):
            raise ValueError(f"bits must be finite and non-negative, got {bits}")
        for name, val in (("worker", worker), ("round", round)):
            check_int(val, name, 0, what="a non-negative integer")
        self._rows.append((int(worker), int(round), *vals))

    def record_all(self, workers: int, round: int, message) -> None:
        """The same message from each of workers ``0 … workers − 1`` in ``round`` (validated once):
        e.g. the uncompressed float32 vectors every worker sends."""
        check_int(workers, "workers", 1, what="a positive integer")
        self.record(0, round, message)
        row = self._rows[-1][1:]
        self._rows.extend((k, *row) for k in range(1, int(workers)))

    def __len__(self) -> int:
        return len(self._rows)

    def table(self) -> np.ndarray:
        """Rows ``(worker, round, header, level_tables, norms, payload)`` as a float64 array."""
        return np.array(self._rows, np.float64).reshape(-1, 2 + len(CATEGORIES))

    def total(self, category: str | None = None) -> float:
        """All bits (or one category's)."""
        t = self.table()
        if category is None:
            return float(t[:, 2:].sum())
        return float(t[:, 2 + CATEGORIES.index(category)].sum())

    def totals(self) -> dict[str, float]:
        """Bits per category and ``"total"`` over every recorded message."""
        t = self.table()
        return {c: float(t[:, 2 + i].sum()) for i, c in enumerate(CATEGORIES)} | {"total": float(t[:, 2:].sum())}

    def messages(self, worker: int | None = None, round: int | None = None) -> int:
        """Number of messages recorded (optionally of one worker and/or round)."""
        t = self.table()
        m = np.ones(len(t), bool)
        if worker is not None:
            m &= t[:, 0] == worker
        if round is not None:
            m &= t[:, 1] == round
        return int(m.sum())

    def per_worker(self) -> dict[int, float]:
        """Total bits sent by each worker."""
        t = self.table()
        return {int(w): float(t[t[:, 0] == w, 2:].sum()) for w in np.unique(t[:, 0])}

    def per_round(self) -> dict[int, float]:
        """Total bits sent in each round (all workers)."""
        t = self.table()
        return {int(r): float(t[t[:, 1] == r, 2:].sum()) for r in np.unique(t[:, 1])}

    def cumulative_by_round(self) -> tuple[np.ndarray, np.ndarray]:
        """Rounds (sorted) and the cumulative bits sent up to and including each."""
        rounds = self.per_round()
        r = np.array(sorted(rounds), np.int64)
        return r, np.cumsum([rounds[int(x)] for x in r])

    def to_dict(self) -> dict:
        """A JSON-able mapping (columns and rows); :meth:`from_dict` reads it back."""
        return {"columns": ["worker", "round", *CATEGORIES], "rows": [list(r) for r in self._rows]}

    @classmethod
    def from_dict(cls, raw: dict) -> BitLedger:
        """The ledger written by :meth:`to_dict`."""
        led = cls()
        for row in raw["rows"]:
            led._rows.append((int(row[0]), int(row[1]), *map(float, row[2:])))
        return led

    def save(self, path) -> Path:
        """Write the ledger as JSON to ``path``; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path) -> BitLedger:
        """Read a ledger written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
