"""Account records (JSON objects, CSV/Parquet rows) <-> observable views, with validation.

A record is what a production system sends for one account. Required fields: ``balance_eur``,
``outstanding_eur``, ``dpd``, ``days_in_collections`` and ``channels_on_file``; every other field
has the default of an account with no contact history. Channel sets are lists of channel names
(``["sms", "email"]``); per-channel counts are objects (``{"call": 2}``); "days since" fields are
whole days or ``null`` for never. :class:`RecordError` names the record, the field and what is
allowed.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
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
# fields of a record that are not part of the view: the caller's references, echoed and logged
META_FIELDS = ("account_id", "day")
_ALLOWED = frozenset(FIELD_NAMES) | frozenset(META_FIELDS)
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
        raise RecordError(index, str(unknown[0]), f"unknown field; allowed fields: {', '.join(FIELD_NAMES)} (and {', '.join(META_FIELDS)})")
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
    # outstanding_eur may exceed balance_eur (interest and fees accrue): each is bounded on its own,
    # which is all the published schema can say, so the validator says no more
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


# -- the wire schema: msgspec Structs generated from FIELDS; the HTTP service decodes and validates
# requests with them and publishes their JSON Schema as its OpenAPI document (one definition, both uses)

_ChannelName = Literal[CONTACT_CHANNEL_NAMES]  # type: ignore[valid-type]
_Meta: Any = msgspec.Meta  # constraints built from FIELDS as keyword dicts, which its typed overloads cannot check


def _whole(lo: float, hi: float | None = None, **meta: Any) -> Any:
    """A whole number from ``lo`` to ``hi``. JSON Schema counts 3.0 as an integer, so the decoder
    takes an int or a float and :func:`row_from_account` refuses a fractional part; the published
    schema shows only the integer branch (see :func:`wire_schema_components`)."""
    bounds = {"ge": int(lo)} | ({"le": int(hi)} if hi is not None and hi != math.inf else {})
    return Annotated[int, _Meta(**bounds, **meta)] | Annotated[float, _Meta(**bounds, **meta)]


ContactCounts = msgspec.defstruct(
    "ContactCounts",
    [(c, _whole(0, 10_000), 0) for c in CONTACT_CHANNEL_NAMES],
    kw_only=True,
    forbid_unknown_fields=True,
)


def _wire_field(f: FieldSpec) -> tuple[str, Any, Any] | tuple[str, Any]:
    meta: dict[str, Any] = {"description": f.doc} if f.doc else {}
    t: Any
    if f.kind in ("float", "int"):
        if f.kind == "int":
            t = _whole(f.lo, f.hi, **meta)
        else:
            t = Annotated[float, _Meta(ge=f.lo, **({"le": f.hi} if f.hi != math.inf else {}), **meta)]
    elif f.kind == "bool":
        t = Annotated[bool, _Meta(**meta)] if meta else bool
    elif f.kind == "days_since":
        desc = (f.doc + "; " if f.doc else "") + "whole days, or null for never"
        t = Annotated[_whole(0, NEVER_DAYS) | None, msgspec.Meta(description=desc)]
        return (f.name, t, None)
    elif f.kind == "channels":
        t = Annotated[list[_ChannelName], msgspec.Meta(max_length=len(CONTACT_CHANNEL_NAMES), **meta)]
    elif f.kind == "counts":
        t = Annotated[ContactCounts, _Meta(**meta)] if meta else ContactCounts
    elif f.kind == "product":
        t = Annotated[Literal[PRODUCT_NAMES], _Meta(**meta)]  # type: ignore[valid-type]
    elif f.kind == "outcome":
        t = Annotated[Literal[LAST_OUTCOME_NAMES], _Meta(**meta)]  # type: ignore[valid-type]
    else:  # pragma: no cover - FIELDS and this table are declared together
        raise AssertionError(f.kind)
    if f.default is None:
        return (f.name, t)
    if f.kind == "channels":
        return (f.name, t, msgspec.field(default_factory=list))
    if f.kind == "counts":
        return (f.name, t, msgspec.field(default_factory=ContactCounts))
    return (f.name, t, f.default)


Account = msgspec.defstruct(
    "Account",
    [
        (
            "account_id",
            Annotated[Annotated[str, msgspec.Meta(max_length=200)] | None, msgspec.Meta(description="your reference, echoed back and logged")],
            None,
        ),
        (
            "day",
            Annotated[
                _whole(0) | None,
                msgspec.Meta(
                    description="your day number for this decision (e.g. days since an epoch), logged for evaluation; not used by the policy"
                ),
            ],
            None,
        ),
        *(_wire_field(f) for f in FIELDS),
    ],
    kw_only=True,
    forbid_unknown_fields=True,
)
"""One account as the HTTP service receives it (a msgspec Struct made from ``FIELDS``)."""

_PRODUCT_INDEX = {p: k for k, p in enumerate(PRODUCT_NAMES)}
_OUTCOME_INDEX = {o: k for k, o in enumerate(LAST_OUTCOME_NAMES)}


class WireError(ValueError):
    """A decoded account whose value the schema's types could not refuse (a whole number with a
    fractional part); ``loc`` is the path inside the account."""

    def __init__(self, loc: list[str | int], message: str) -> None:
        self.loc = loc
        super().__init__(message)


def _int(v: int | float, loc: list[str | int]) -> int:
    if type(v) is int:
        return v
    if not float(v).is_integer():
        raise WireError(loc, f"expected a whole number, got {v!r}")
    return int(v)


def _channel_flags(v: list[str], _name: str) -> list[bool]:
    flags = [False] * len(CONTACT_CHANNEL_NAMES)
    for c in v:
        flags[_CHANNEL_INDEX[c]] = True
    return flags


def _count_list(v: Any, name: str) -> list[int]:
    out = list(_astuple(v))  # ContactCounts' fields are the channels, in order
    return out if _INT_ONLY.issuperset(map(type, out)) else [_int(x, [name, c]) for x, c in zip(out, CONTACT_CHANNEL_NAMES, strict=True)]


_INT_ONLY = frozenset({int})


# the view's keys in the Account's field order (after account_id and day), and the fields by kind
# that need converting (float fields arrive as floats, booleans as booleans)
_WIRE_NAMES = tuple(_VIEW_NAME.get(f.name, f.name) for f in FIELDS)
_WIRE_INTS = tuple((_VIEW_NAME.get(f.name, f.name), f.name) for f in FIELDS if f.kind == "int")
_DAYS_SINCE_NAMES = tuple(f.name for f in FIELDS if f.kind == "days_since")
_CHANNEL_SET_NAMES = tuple(_VIEW_NAME.get(f.name, f.name) for f in FIELDS if f.kind == "channels")
_COUNT_NAMES = tuple((_VIEW_NAME.get(f.name, f.name), f.name) for f in FIELDS if f.kind == "counts")
assert [f.kind for f in FIELDS if f.kind in ("product", "outcome")] == ["product", "outcome"]
assert all(_VIEW_NAME.get(f.name, f.name) == f.name for f in FIELDS if f.kind in ("days_since", "product", "outcome"))
# the positions (in an Account's tuple) of the day and every whole-number field: when all of them
# arrived as ints (or null where allowed: msgspec refused null elsewhere), nothing needs converting
_wholes_of = operator.itemgetter(1, *(2 + k for k, f in enumerate(FIELDS) if f.kind in ("int", "days_since")))
_INT_OR_NONE = frozenset({int, type(None)})
_astuple = msgspec.structs.astuple
assert Account.__struct_fields__ == (*META_FIELDS, *(f.name for f in FIELDS)), "row_from_account reads the fields by position"
assert ContactCounts.__struct_fields__ == CONTACT_CHANNEL_NAMES, "views_from_accounts reads the counts by position"


def row_from_account(a: Any) -> dict[str, Any]:
    """The view row of a decoded :data:`Account`: the same dict :func:`parse_record` returns for
    the same record (tested). Raises :class:`WireError` for a fractional whole number."""
    values = _astuple(a)
    out = dict(zip(_WIRE_NAMES, values[2:], strict=True))
    if not _INT_OR_NONE.issuperset(map(type, _wholes_of(values))):  # a whole number sent as 12.0 (rare)
        if values[1] is not None and type(values[1]) is not int:
            _int(values[1], ["day"])
        for name, field_name in _WIRE_INTS:
            out[name] = _int(out[name], [field_name])
        for name in _DAYS_SINCE_NAMES:
            if out[name] is not None:
                out[name] = _int(out[name], [name])
    for name in _DAYS_SINCE_NAMES:
        if out[name] is None:
            out[name] = NEVER_DAYS
    for name in _CHANNEL_SET_NAMES:
        out[name] = list(_channel_set_flags(tuple(out[name])))
    for name, field_name in _COUNT_NAMES:
        out[name] = _count_list(out[name], field_name)
    out["product"] = _PRODUCT_INDEX[out["product"]]
    out["last_outcome"] = _OUTCOME_INDEX[out["last_outcome"]]
    return out


def record_row(rec: Any, index: int = 0) -> dict[str, Any]:
    """:func:`parse_record` of one record, through the wire decoder where it takes the record (msgspec
    converts and checks it in C: a third of the time); anything it refuses, or a type it does not
    take (numpy integers, say), goes to :func:`parse_record`, which accepts it or raises its
    :class:`RecordError`. Both validators are made from ``FIELDS`` and agree (tested)."""
    try:
        return row_from_account(_convert(rec, Account))
    except Exception:  # whatever the fast path cannot take (msgspec raises IndexError on a numpy scalar): the validator decides
        return parse_record(rec, index)


_convert = msgspec.convert


def _whole_column(values: Sequence[Any], loc: Any) -> np.ndarray:
    """Whole numbers as int64; ``loc(i)`` names the first account with a fractional part."""
    arr = np.asarray(values)
    if arr.dtype.kind == "f":
        bad = np.flatnonzero((arr != np.floor(arr)).reshape(len(values), -1).any(axis=1))
        if bad.size:
            i = int(bad[0])
            raise WireError(loc(i), f"expected a whole number, got {values[i]!r}")
    return arr.astype(np.int64)


@functools.lru_cache(maxsize=4096)
def _channel_set_flags(chosen: tuple[str, ...]) -> tuple[bool, ...]:
    """The flags of a list of channel names (few distinct lists occur: each is worked out once)."""
    return tuple(_channel_flags(list(chosen), ""))


def views_from_accounts(accounts: Sequence[Any]) -> ViewBatch:
    """The views of decoded :data:`Account` objects, built column by column: the same ViewBatch as
    :func:`views_from_rows` of their :func:`row_from_account` rows (tested), without a dict per
    account. Raises :class:`WireError` (``loc`` starting with the account's index)."""
    n = len(accounts)
    # one tuple per account, transposed: a column per field (in C, no attribute lookups)
    columns = list(zip(*map(_astuple, accounts), strict=True)) if n else [() for _ in META_FIELDS + FIELD_NAMES]
    for i, day in enumerate(columns[1]):
        if day is not None and type(day) is not int:
            _int(day, [i, "day"])
    cols: dict[str, Any] = {}
    for f, values in zip(FIELDS, columns[2:], strict=True):
        name = _VIEW_NAME.get(f.name, f.name)
        if f.kind == "float":
            cols[name] = np.array(values, dtype=np.float64).reshape(n)
        elif f.kind == "bool":
            cols[name] = np.array(values, dtype=bool).reshape(n)
        elif f.kind == "int":
            cols[name] = _whole_column(values, lambda i, f=f: [i, f.name]).reshape(n)
        elif f.kind == "days_since":
            cols[name] = _whole_column([NEVER_DAYS if v is None else v for v in values], lambda i, f=f: [i, f.name]).reshape(n)
        elif f.kind == "channels":
            flags = [_channel_set_flags(tuple(chosen)) for chosen in values]
            cols[name] = np.array(flags, dtype=bool).reshape(n, len(CONTACT_CHANNEL_NAMES))
        elif f.kind == "counts":
            counts = list(map(_astuple, values))  # ContactCounts' fields are the channels, in order
            try:
                cols[name] = _whole_column(counts, lambda i, f=f: [i, f.name]).reshape(n, len(CONTACT_CHANNEL_NAMES))
            except WireError as e:
                i = int(e.loc[0])
                c = next(c for c, x in zip(CONTACT_CHANNEL_NAMES, counts[i], strict=True) if not float(x).is_integer())
                raise WireError([i, f.name, c], f"expected a whole number, got {getattr(values[i], c)!r}") from None
        elif f.kind == "product":
            cols[name] = np.array([_PRODUCT_INDEX[v] for v in values], dtype=np.int64).reshape(n)
        else:
            cols[name] = np.array([_OUTCOME_INDEX[v] for v in values], dtype=np.int64).reshape(n)
    return ViewBatch(**cols)


def wire_schema_components(types: Sequence[Any], ref_template: str = "#/components/schemas/{name}") -> dict[str, Any]:
    """JSON Schema components of msgspec types, with each whole-number field shown as the integer it
    is (the decoder's float branch is an implementation detail: JSON Schema's integers include 3.0)."""
    _, components = msgspec.json.schema_components(types, ref_template=ref_template)
    return _integer_only(components)  # type: ignore[no-any-return]


def _integer_only(node: Any) -> Any:
    if isinstance(node, dict):
        branches = node.get("anyOf")
        if isinstance(branches, list):
            types = [b.get("type") for b in branches if isinstance(b, dict)]
            if "integer" in types and "number" in types:
                branches = [b for b in branches if b.get("type") != "number"]
                node = {k: v for k, v in node.items() if k != "anyOf"}
                if len(branches) == 1:
                    node |= branches[0]
                else:
                    node["anyOf"] = branches
        return {k: _integer_only(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_integer_only(v) for v in node]
    return node


_PATH_STEP = re.compile(r"\.([A-Za-z_]\w*)|\[(\d+)\]")
_AT = re.compile(r"^(.*?)(?: - at `\$([^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"(?:unknown|required) field `([^`]*)`")
_SPECS = {f.name: f for f in FIELDS}


def wire_error(e: msgspec.ValidationError | msgspec.DecodeError) -> tuple[list[str | int], str]:
    """The location (``["dpd"]``, ``["accounts", 1, "contacts_7d", "call"]``) and a message naming
    what is allowed, from a msgspec error."""
    if not isinstance(e, msgspec.ValidationError):  # (a ValidationError is also a DecodeError)
        return [], f"the body is not valid JSON: {e}"
    m = _AT.match(str(e))
    assert m is not None  # the pattern matches any text
    text, path = m.group(1), m.group(2) or ""
    loc: list[str | int] = [name if name else int(index) for name, index in _PATH_STEP.findall(path)]
    named = _NAMED_FIELD.search(text)
    if named:
        loc.append(named.group(1))
        if "unknown" in text:
            text += f"; allowed fields: {', '.join(FIELD_NAMES)} (and {', '.join(META_FIELDS)})" if len(loc) == 1 or isinstance(loc[-2], int) else ""
    spec = next((_SPECS[x] for x in reversed(loc) if isinstance(x, str) and x in _SPECS), None)
    if spec is not None and not named:
        text += f" ({_allowed(spec)})"
    return loc, text


def _allowed(f: FieldSpec) -> str:
    if f.kind in ("float", "int"):
        return f"{f.name}: {'a number' if f.kind == 'float' else 'a whole number'} from {f.lo:g} to {f.hi:g}"
    if f.kind == "days_since":
        return f"{f.name}: whole days from 0 to {NEVER_DAYS}, or null for never"
    if f.kind == "channels":
        return f"{f.name}: a list of channel names from {list(CONTACT_CHANNEL_NAMES)}"
    if f.kind == "counts":
        return f'{f.name}: an object of counts per channel, e.g. {{"call": 2}}, each from 0 to 10000'
    if f.kind == "product":
        return f"{f.name}: one of {list(PRODUCT_NAMES)}"
    if f.kind == "outcome":
        return f"{f.name}: one of {list(LAST_OUTCOME_NAMES)}"
    return f"{f.name}: true or false"
