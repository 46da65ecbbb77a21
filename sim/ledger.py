"""The columnar event ledger: every contact, delivery, response, payment, promise, plan,
complaint, opt-out, block and dropped call, as typed columns that write to Parquet."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path

import numpy as np

from policies.fileio import atomic_write


class Event(IntEnum):
    CONTACT = 0  # attempt executed (detail = (window * 4 + tone) * 4 + offer)
    DELIVERED = 1
    NOTICED = 2  # opened / right-party contact
    ENGAGED = 3
    PAYMENT = 4  # amount in EUR
    PROMISE = 5  # amount promised; detail 1 = settlement, 2 = deferral
    PROMISE_KEPT = 6
    PROMISE_BROKEN = 7
    PLAN = 8  # amount = instalment
    INSTALMENT_PAID = 9
    PLAN_BROKEN = 10
    COMPLAINT = 11
    OPT_OUT = 12
    BLOCKED = 13  # detail = policies.compliance.Block
    CALL_DROPPED = 14  # over call-centre capacity
    RESOLVED = 15  # detail = sim.world.Status
    SOLD = 16  # amount = face value sold
    CHURNED = 17
    FORGIVEN = 18  # settlement discount, amount in EUR


EVENT_NAMES: tuple[str, ...] = tuple(e.name.lower() for e in Event)
COLUMNS = ("time_min", "debtor", "event", "channel", "amount_eur", "detail")


class Ledger:
    """Append-only columnar event log. ``enabled=False`` makes every call a no-op."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._chunks: list[tuple[np.ndarray, ...]] = []
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(
        self,
        time_min: float,
        debtor: np.ndarray,
        event: Event,
        channel: int | np.ndarray = 0,
        amount: float | np.ndarray = 0.0,
        detail: int | np.ndarray = 0,
    ) -> None:
        if not self.enabled:
            return
        n = len(debtor)
        if n == 0:
            return
        self._chunks.append(
            (
                np.full(n, time_min, dtype=np.float32),
                np.asarray(debtor, dtype=np.int64),
                np.full(n, int(event), dtype=np.int8),
                np.broadcast_to(np.asarray(channel, dtype=np.int8), (n,)).copy(),
                np.broadcast_to(np.asarray(amount, dtype=np.float32), (n,)).copy(),
                np.broadcast_to(np.asarray(detail, dtype=np.int8), (n,)).copy(),
            )
        )
        self._n += n

    def columns(self) -> dict[str, np.ndarray]:
        if not self._chunks:
            empty = (np.float32, np.int64, np.int8, np.int8, np.float32, np.int8)
            return {c: np.empty(0, dtype=t) for c, t in zip(COLUMNS, empty, strict=True)}
        cols = {c: np.concatenate([ch[i] for ch in self._chunks]) for i, c in enumerate(COLUMNS)}
        order = np.argsort(cols["time_min"], kind="stable")
        return {c: v[order] for c, v in cols.items()}

    def counts(self) -> dict[str, int]:
        total = np.zeros(len(Event), dtype=np.int64)
        for ch in self._chunks:
            total[ch[2][0]] += len(ch[2])
        return {EVENT_NAMES[i]: int(total[i]) for i in range(len(Event))}

    def write_parquet(self, path: str | Path) -> Path:
        """Write atomically (temp file + rename): a failed write never replaces a good file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        cols = self.columns()
        table = pa.table(
            {
                "time_min": cols["time_min"],
                "day": (cols["time_min"] // 1440).astype(np.int32),
                "debtor": cols["debtor"],
                "event": pa.DictionaryArray.from_arrays(cols["event"].astype(np.int32), EVENT_NAMES),
                "channel": cols["channel"],
                "amount_eur": cols["amount_eur"],
                "detail": cols["detail"],
            }
        )
        return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
