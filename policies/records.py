"""Account records (JSON objects, CSV/Parquet rows) <-> observable views, with validation.

A record is what a production system sends for one account. Required fields: ``balance_eur``,
``outstanding_eur``, ``dpd``, ``days_in_collections`` and ``channels_on_file``; every other field
has the default of an account with no contact history. Channel sets are lists of channel names
(``["sms", "email"]``); per-channel counts are objects (``{"call": 2}``); "days since" fields are
whole days or ``null`` for never. :class:`RecordError` names the record, the field and what is
allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.schema import CONTACT_CHANNEL_NAMES, NEVER_DAYS, PRODUCT_NAMES, LastOutcome, ViewBatch

LAST_OUTCOME_NAMES = tuple(o.name.lower() for o in LastOutcome)


class RecordError(ValueError):
    """A bad account record: ``index`` and ``field`` say where; ``loc`` is the path inside the
    record (``("channels_on_file", 1)`` for its second entry, ``("contacts_7d", "call")``)."""

    def __init__(self, index: int, field: str, message: str, loc: tuple[str | int, ...] | None = None) -> None:
        self.index, self.field = index, field
        self.loc: tuple[str | int, ...] = loc if loc is not None else tuple(field.split("."))
        super().__init__(f"record {index}: {field}: {message}")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # "float", "int", "bool", "days_since", "channels", "counts", "product", "outcome"
    lo: float = 0.0
    hi: float = math.inf
    default: Any = None  # None: required
    doc: str = ""


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("balance_eur", "float", 0.0, 1e9, None, "balance at entry to collections, EUR"),
    FieldSpec("outstanding_eur", "float", 0.0, 1e9, None, "still owed, EUR"),
    FieldSpec("dpd", "int", 0, 10_000, None, "days past due today"),
    FieldSpec("days_in_collections", "int", 0, 10_000, None, "days since the account entered collections"),
    FieldSpec("channels_on_file", "channels", default=None, doc=f"channels with a usable address, from {list(CONTACT_CHANNEL_NAMES)}"),
    FieldSpec("days_left", "int", 0, 10_000, 180, "days until the debt is sold or written off"),
    FieldSpec("product", "product", default="credit_card", doc=f"one of {list(PRODUCT_NAMES)}"),
    FieldSpec("behaviour_score", "float", 0.0, 1.0, 0.5, "0..1, 1 = good"),
    FieldSpec("app_user", "bool", default=False),
    FieldSpec("opted_out", "channels", default=(), doc="channels the debtor asked us to stop using"),
    FieldSpec("contacts_7d", "counts", default={}, doc="contact attempts per channel in the last 7 days (today excluded)"),
    FieldSpec("contacts_total", "int", 0, 100_000, 0),
    FieldSpec("days_since_contact", "days_since", default=None),
    FieldSpec("days_since_response", "days_since", default=None),
    FieldSpec("days_since_conversation", "days_since", default=None, doc="last right-party telephone conversation"),
    FieldSpec("responses_total", "int", 0, 100_000, 0),
    FieldSpec("promise_active", "bool", default=False),
    FieldSpec("promise_due_in_days", "int", 0, 10_000, 0),
    FieldSpec("promises_broken", "int", 0, 10_000, 0),
    FieldSpec("plan_active", "bool", default=False),
    FieldSpec("plan_instalments_paid", "int", 0, 1_000, 0),
    FieldSpec("plan_instalments_total", "int", 0, 1_000, 0),
    FieldSpec("plans_broken", "int", 0, 1_000, 0),
    FieldSpec("complaints", "int", 0, 10_000, 0),
    FieldSpec("vulnerable", "bool", default=False, doc="vulnerability disclosed or flagged"),
    FieldSpec("last_outcome", "outcome", default="none", doc=f"one of {list(LAST_OUTCOME_NAMES)}"),
    FieldSpec("day_of_week", "int", 0, 6, 0, "0 = Monday"),
    FieldSpec("day_of_month", "int", 1, 31, 1),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
_CHANNEL_INDEX = {c: k for k, c in enumerate(CONTACT_CHANNEL_NAMES)}


def _number(i: int, f: FieldSpec, v: Any, integer: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise RecordError(i, f.name, f"expected a {'whole number' if integer else 'number'}, got {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise RecordError(i, f.name, f"expected a finite number, got {v!r}")
    if integer and float(v) != int(v):
        raise RecordError(i, f.name, f"expected a whole number, got {v!r}")
    if not f.lo <= v <= f.hi:
        raise RecordError(i, f.name, f"must be between {f.lo:g} and {f.hi:g}, got {v!r}")
    return float(v)


def _channels(i: int, f: FieldSpec, v: Any) -> list[bool]:
    if isinstance(v, str) or not isinstance(v, Sequence):
        raise RecordError(i, f.name, f"expected a list of channel names from {list(CONTACT_CHANNEL_NAMES)}, got {v!r}")
    out = [False] * len(CONTACT_CHANNEL_NAMES)
    for j, c in enumerate(v):
        k = _CHANNEL_INDEX.get(c) if isinstance(c, str) else None
        if k is None:
            raise RecordError(i, f.name, f"unknown channel {c!r}; allowed: {list(CONTACT_CHANNEL_NAMES)}", (f.name, j))
        out[k] = True
    return out


def _counts(i: int, f: FieldSpec, v: Any) -> list[int]:
    if not isinstance(v, Mapping):
        raise RecordError(i, f.name, f'expected an object of counts per channel, e.g. {{"call": 2}}, got {v!r}')
    out = [0] * len(CONTACT_CHANNEL_NAMES)
    for c, n in v.items():
        k = _CHANNEL_INDEX.get(c) if isinstance(c, str) else None
        if k is None:
            raise RecordError(i, f.name, f"unknown channel {c!r}; allowed: {list(CONTACT_CHANNEL_NAMES)}", (f.name, str(c)))
        out[k] = int(_number(i, FieldSpec(f"{f.name}.{c}", "int", 0, 10_000), n, True))
    return out


def _parse_float(i: int, f: FieldSpec, v: Any) -> float:
    if (type(v) is float or type(v) is int) and f.lo <= v <= f.hi:  # the common case, without the error paths
        return float(v)
    return _number(i, f, v, False)


def _parse_int(i: int, f: FieldSpec, v: Any) -> int:
    if type(v) is int and f.lo <= v <= f.hi:
        return v
    return int(_number(i, f, v, True))


def _parse_bool(i: int, f: FieldSpec, v: Any) -> bool:
    if not isinstance(v, bool):
        raise RecordError(i, f.name, f"expected true or false, got {v!r}")
    return v


def _parse_days_since(i: int, f: FieldSpec, v: Any) -> int:
    return NEVER_DAYS if v is None else int(_number(i, FieldSpec(f.name, "int", 0, NEVER_DAYS), v, True))


def _parse_product(i: int, f: FieldSpec, v: Any) -> int:
    if v not in PRODUCT_NAMES:
        raise RecordError(i, f.name, f"unknown product {v!r}; allowed: {list(PRODUCT_NAMES)}")
    return PRODUCT_NAMES.index(v)


def _parse_outcome(i: int, f: FieldSpec, v: Any) -> int:
    if v not in LAST_OUTCOME_NAMES:
        raise RecordError(i, f.name, f"unknown outcome {v!r}; allowed: {list(LAST_OUTCOME_NAMES)}")
    return LAST_OUTCOME_NAMES.index(v)


_PARSERS = {
    "float": _parse_float,
    "int": _parse_int,
    "bool": _parse_bool,
    "days_since": _parse_days_since,
    "product": _parse_product,
    "outcome": _parse_outcome,
    "channels": _channels,
    "counts": _counts,
}
# record field -> view field (the two channel sets and the counts are named for people in records)
_VIEW_NAME = {"channels_on_file": "on_file"}
_PLAN = tuple((f, _VIEW_NAME.get(f.name, f.name), _PARSERS[f.kind], f.default is None and f.kind != "days_since") for f in FIELDS)
_ALLOWED = frozenset(FIELD_NAMES) | {"account_id"}
_EMPTY_CHANNELS = [False] * len(CONTACT_CHANNEL_NAMES)
_ZERO_COUNTS = [0] * len(CONTACT_CHANNEL_NAMES)


def parse_record(rec: Any, index: int = 0) -> dict[str, Any]:
    """Validate one record; its view as a dict of plain Python values keyed by ViewBatch field
    (per-channel fields as lists of 6). Raises :class:`RecordError` at the first problem.

    This is the one validator: :func:`views_from_records` stacks its results, and the runtime's
    one-account path uses them directly.
    """
    if not isinstance(rec, Mapping):
        raise RecordError(index, "(record)", f"expected an object with the account's fields, got {type(rec).__name__}")
    if not _ALLOWED.issuperset(rec):
        unknown = sorted(set(rec) - _ALLOWED)
        raise RecordError(index, str(unknown[0]), f"unknown field; allowed fields: {', '.join(FIELD_NAMES)} (and account_id)")
    out: dict[str, Any] = {}
    for f, name, parse, required in _PLAN:
        v = rec.get(f.name)
        if v is None:
            if f.kind == "days_since":
                out[name] = NEVER_DAYS
                continue
            if required:
                raise RecordError(index, f.name, "required field is missing")
            if f.kind == "channels":
                out[name] = list(_EMPTY_CHANNELS)
            elif f.kind == "counts":
                out[name] = list(_ZERO_COUNTS)
            else:
                out[name] = parse(index, f, f.default)
            continue
        out[name] = parse(index, f, v)
    if out["outstanding_eur"] > out["balance_eur"] * 10 + 1e6:
        raise RecordError(index, "outstanding_eur", "is implausibly larger than balance_eur")
    return out


_DTYPES = {"float": np.float64, "int": np.int64, "days_since": np.int64, "product": np.int64, "outcome": np.int64, "bool": bool, "channels": bool}


def views_from_records(records: Sequence[Mapping[str, Any]]) -> ViewBatch:
    """Validate records and build their views; raises :class:`RecordError` at the first problem."""
    return views_from_rows([parse_record(rec, i) for i, rec in enumerate(records)])


def views_from_rows(rows: Sequence[Mapping[str, Any]]) -> ViewBatch:
    """Stack rows from :func:`parse_record` (or ``ViewBatch.row``) into a ViewBatch."""
    n = len(rows)
    cols: dict[str, Any] = {}
    for f, name, _, _ in _PLAN:
        dtype = _DTYPES.get(f.kind, np.int64)
        shape = (n, len(CONTACT_CHANNEL_NAMES)) if f.kind in ("channels", "counts") else (n,)
        cols[name] = np.array([r[name] for r in rows], dtype=dtype).reshape(shape)
    return ViewBatch(**cols)


def records_from_views(v: ViewBatch) -> list[dict[str, Any]]:
    """The inverse of :func:`views_from_records` (for tests, fixtures and sample files)."""
    out = []
    for i in range(len(v)):
        rec: dict[str, Any] = {
            "balance_eur": float(v.balance_eur[i]),
            "outstanding_eur": float(v.outstanding_eur[i]),
            "dpd": int(v.dpd[i]),
            "days_in_collections": int(v.days_in_collections[i]),
            "channels_on_file": [c for k, c in enumerate(CONTACT_CHANNEL_NAMES) if v.on_file[i, k]],
            "days_left": int(v.days_left[i]),
            "product": PRODUCT_NAMES[int(v.product[i])],
            "behaviour_score": float(v.behaviour_score[i]),
            "app_user": bool(v.app_user[i]),
            "opted_out": [c for k, c in enumerate(CONTACT_CHANNEL_NAMES) if v.opted_out[i, k]],
            "contacts_7d": {c: int(v.contacts_7d[i, k]) for k, c in enumerate(CONTACT_CHANNEL_NAMES) if v.contacts_7d[i, k]},
            "contacts_total": int(v.contacts_total[i]),
            "responses_total": int(v.responses_total[i]),
            "promise_active": bool(v.promise_active[i]),
            "promise_due_in_days": int(v.promise_due_in_days[i]),
            "promises_broken": int(v.promises_broken[i]),
            "plan_active": bool(v.plan_active[i]),
            "plan_instalments_paid": int(v.plan_instalments_paid[i]),
            "plan_instalments_total": int(v.plan_instalments_total[i]),
            "plans_broken": int(v.plans_broken[i]),
            "complaints": int(v.complaints[i]),
            "vulnerable": bool(v.vulnerable[i]),
            "last_outcome": LAST_OUTCOME_NAMES[int(v.last_outcome[i])],
            "day_of_week": int(v.day_of_week[i]),
            "day_of_month": int(v.day_of_month[i]),
        }
        for k in ("days_since_contact", "days_since_response", "days_since_conversation"):
            d = int(getattr(v, k)[i])
            rec[k] = None if d >= NEVER_DAYS else d
        out.append(rec)
    return out
