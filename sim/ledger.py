"""The columnar event ledger: every contact, delivery, response, payment, promise, plan,
complaint, opt-out, block and dropped call, as typed columns that write to Parquet."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from policies.fileio import atomic_write


class Event(IntEnum):
    """What happened. ``contact`` is the debtor's contact ordinal (0 for their first contact) on
    the contact's own events and everything it led to, -1 on events no contact caused."""

    CONTACT = 0  # attempt executed; detail = (window * 4 + tone) * 4 + offer; amount = cost charged now (not for calls)
    DELIVERED = 1  # reached the address; for a call: the call was made, amount = its cost
    NOTICED = 2  # opened / right-party contact; for a call: amount = the conversation's cost
    ENGAGED = 3  # detail = the outcome (sim.behaviour: PAY_FULL .. NOTHING)
    PAYMENT = 4  # amount in EUR; detail = PaymentKind
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
    RESOLVED = 15  # detail = sim.state.Status
    SOLD = 16  # amount = face value sold
    CHURNED = 17
    FORGIVEN = 18  # settlement discount, amount in EUR


class PaymentKind(IntEnum):
    """What a payment paid (the detail of a PAYMENT event)."""

    CONTACT = 0  # paid in full or in part on a contact
    UNPROMPTED = 1
    PROMISE = 2  # a promise (or a deferral) kept
    INSTALMENT = 3
    SETTLEMENT = 4


EVENT_NAMES: tuple[str, ...] = tuple(e.name.lower() for e in Event)
PAYMENT_KIND_NAMES: tuple[str, ...] = tuple(k.name.lower() for k in PaymentKind)
COLUMNS = ("time_min", "debtor", "event", "channel", "amount_eur", "detail", "contact")
_DTYPES = (np.float64, np.int64, np.int8, np.int8, np.float64, np.int8, np.int16)


def _column(x: Any, n: int, dtype: Any) -> np.ndarray:
    """``x`` (a scalar, or an array of one value per row) as a fresh column of ``n`` rows: ``np.full`` for a
    scalar (a broadcast and a copy cost four times as much, and an event-recording run adds hundreds of
    thousands of chunks)."""
    if isinstance(x, np.ndarray) and x.ndim:
        return np.broadcast_to(x.astype(dtype, copy=False), (n,)).copy()
    return np.full(n, x, dtype=dtype)


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
        contact: int | np.ndarray = -1,
    ) -> None:
        if not self.enabled:
            return
        n = len(debtor)
        if n == 0:
            return
        self._chunks.append(
            (
                np.full(n, time_min, dtype=np.float64),
                np.asarray(debtor, dtype=np.int64),
                np.full(n, int(event), dtype=np.int8),
                _column(channel, n, np.int8),
                _column(amount, n, np.float64),
                _column(detail, n, np.int8),
                _column(contact, n, np.int16),
            )
        )
        self._n += n

    def columns(self) -> dict[str, np.ndarray]:
        if not self._chunks:
            return {c: np.empty(0, dtype=t) for c, t in zip(COLUMNS, _DTYPES, strict=True)}
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
                "contact": cols["contact"],
            }
        )
        return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def read_parquet(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a ledger written by :meth:`Ledger.write_parquet` (events as ``Event`` codes)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not an event ledger of this collectrl (missing columns {missing}); write it again with `collectrl simulate --out`")
    names = table.column("event").combine_chunks()
    codes = {name: i for i, name in enumerate(EVENT_NAMES)}
    events = np.array([codes[n] for n in names.dictionary.to_pylist()], dtype=np.int8)[names.indices.to_numpy(zero_copy_only=False)]
    out = {c: table.column(c).to_numpy() for c in COLUMNS if c != "event"}
    out["event"] = events
    return out
