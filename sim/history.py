"""A portfolio's history: the format, its validation, and the export of a simulated run into it.

A history is a folder of tables, Parquet or CSV (``collectrl-history``, version 1):

* ``history.json``  the format and version, the number of days the history covers (days are
                    counted from 0, the history's first day), the currency, where it came from;
* ``accounts``      one row per account: id, day of entry, balance and days past due at entry,
                    product, channels on file, app use, and the behaviour score if there is one;
* ``contacts``      one row per contact attempt: account, day, window (or hour), channel, tone,
                    offer, whether it was delivered and opened (a right-party contact, for a
                    call), its outcome, and its cost;
* ``payments``      one row per payment: account, day, amount, and what it paid (on a contact,
                    unprompted, a promise, an instalment, a settlement);
* ``events``        optional: promises made, kept and broken, plans and broken plans,
                    complaints, opt-outs, resolutions, sales;
* ``truth``         only in a history the simulator wrote: each account's latent archetype and
                    traits, for checking what a fit recovers (never read by a fit).

:data:`TABLES` declares every column (its type, allowed values and meaning); the README's
"History format" section is generated from the same declaration and a test keeps the two
equal. :func:`validate` reads a folder and reports every problem with its table, column, row
numbers (1 = the first data row) and reason, and never drops a row: fatal problems make
:func:`read_history` raise :class:`HistoryError` with the whole report. :func:`from_ledger`
turns a simulated run (its event ledger and accounts) into a history, so that every estimator
built on histories can be checked on a world whose truth is known.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from policies.fileio import atomic_write
from policies.schema import CONTACT_CHANNEL_NAMES, OFFER_NAMES, PRODUCT_NAMES, TONE_NAMES, WINDOW_HOURS, WINDOW_NAMES
from sim.config import ARCHETYPES
from sim.ledger import PAYMENT_KIND_NAMES, Event
from sim.state import Status

FORMAT = "collectrl-history"
VERSION = 1
CSV_LIST_SEPARATOR = ";"
# what came of a contact attempt
CONTACT_OUTCOMES: tuple[str, ...] = (
    "dropped",  # a call never made: no agent was free in its window
    "not_delivered",  # bounced, wrong number, returned mail
    "not_opened",  # delivered, never opened / no right-party contact
    "ignored",  # opened, no response
    "complaint",
    "opt_out",  # the debtor opted out of the channel
    "engaged",  # responded, but no payment or commitment
    "paid_full",
    "paid_part",
    "promise",
    "plan",
    "settlement",
    "deferral",
)
ENGAGED_OUTCOMES = CONTACT_OUTCOMES[CONTACT_OUTCOMES.index("engaged") :]
EVENT_KINDS: tuple[str, ...] = (
    "promise",
    "settlement_agreed",
    "deferral_agreed",
    "promise_kept",
    "promise_broken",
    "plan",
    "plan_broken",
    "complaint",
    "opt_out",
    "resolved",
    "sold",
    "churned",
    "forgiven",
)

Kind = Literal["id", "account", "int", "float", "bool", "category", "channels"]


@dataclass(frozen=True)
class Column:
    """One column of a history table."""

    name: str
    kind: Kind
    doc: str
    required: bool = True
    values: tuple[str, ...] = ()  # the allowed values of a category
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False


def _c(name: str, kind: Kind, doc: str, **kw: Any) -> Column:
    return Column(name, kind, doc, **kw)


TABLES: dict[str, tuple[Column, ...]] = {
    "accounts": (
        _c("account_id", "id", "the account's identifier (unique; any text)"),
        _c("entry_day", "int", "day the account entered collections", min=0),
        _c("balance_eur", "float", "balance at entry, EUR", min=0, min_exclusive=True),
        _c("dpd_at_entry", "int", "days past due at entry", min=0, max=3650),
        _c("product", "category", "product", values=PRODUCT_NAMES),
        _c("channels_on_file", "channels", "channels with a usable address (in CSV: names joined by ';')"),
        _c("app_user", "bool", "uses the app (push reaches them)"),
        _c("behaviour_score", "float", "behaviour or bureau score, 1 = good", required=False, min=0, max=1),
    ),
    "contacts": (
        _c("account_id", "account", "the account contacted"),
        _c("day", "int", "day the contact was sent", min=0),
        _c("window", "category", "local send window (or give 'hour', 0-23, instead)", values=WINDOW_NAMES),
        _c("channel", "category", "channel", values=CONTACT_CHANNEL_NAMES),
        _c("tone", "category", "tone of the message or call", values=TONE_NAMES),
        _c("offer", "category", "offer made", values=OFFER_NAMES),
        _c("delivered", "bool", "reached the address (for a call: the call was made and rang)"),
        _c("opened", "bool", "opened or read (for a call: a right-party conversation)"),
        _c("outcome", "category", "what came of it", values=CONTACT_OUTCOMES),
        _c("cost_eur", "float", "what the attempt cost, EUR", required=False, min=0),
    ),
    "payments": (
        _c("account_id", "account", "the account paying"),
        _c("day", "int", "day of the payment", min=0),
        _c("amount_eur", "float", "amount paid, EUR", min=0, min_exclusive=True),
        _c("kind", "category", "what it paid", values=PAYMENT_KIND_NAMES),
    ),
    "events": (
        _c("account_id", "account", "the account"),
        _c("day", "int", "day of the event", min=0),
        _c("event", "category", "what happened", values=EVENT_KINDS),
        _c("amount_eur", "float", "amount promised, forgiven or sold, EUR", required=False, min=0),
        _c("channel", "category", "channel of a complaint or opt-out", required=False, values=CONTACT_CHANNEL_NAMES),
    ),
}
REQUIRED_TABLES = ("accounts", "contacts", "payments")
TRUTH_TABLE = "truth"  # simulator only: latent traits per account, never validated as input


class HistoryError(ValueError):
    """A history that cannot be used; the message is the validation report."""


@dataclass
class Problem:
    """One thing wrong with a history: where (table, column, rows) and why."""

    table: str
    reason: str
    column: str | None = None
    rows: list[int] = field(default_factory=list)  # 1 = the first data row
    fatal: bool = True

    def format(self, show: int = 10) -> str:
        where = self.table + (f".{self.column}" if self.column else "")
        rows = ""
        if self.rows:
            listed = ", ".join(str(r) for r in self.rows[:show])
            more = f" and {len(self.rows) - show:,} more" if len(self.rows) > show else ""
            rows = f" (row{'s' if len(self.rows) > 1 else ''} {listed}{more})"
        return f"{'error' if self.fatal else 'warning'}: {where}: {self.reason}{rows}"


@dataclass
class Report:
    """What :func:`validate` found."""

    folder: Path
    problems: list[Problem]
    rows: dict[str, int]

    @property
    def ok(self) -> bool:
        return not any(p.fatal for p in self.problems)

    def format(self) -> str:
        head = f"history {self.folder}: " + ", ".join(f"{n:,} {t}" for t, n in self.rows.items())
        if not self.problems:
            return head + "\nno problems found"
        fatal = sum(p.fatal for p in self.problems)
        lines = [head, f"{fatal} error(s), {len(self.problems) - fatal} warning(s):"]
        lines += ["  " + p.format() for p in self.problems]
        if fatal:
            lines.append("fix the errors above (nothing was dropped); the README's 'History format' section lists every column")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "ok": self.ok,
            "rows": self.rows,
            "problems": [{"table": p.table, "column": p.column, "rows": p.rows, "reason": p.reason, "fatal": p.fatal} for p in self.problems],
        }


@dataclass
class History:
    """A validated history as arrays. Categories are codes (indices into the names above and into
    ``policies.schema``'s names: channel 0 = sms); ``account`` columns index ``accounts``."""

    meta: dict[str, Any]
    accounts: dict[str, np.ndarray]
    contacts: dict[str, np.ndarray]
    payments: dict[str, np.ndarray]
    events: dict[str, np.ndarray] | None = None
    truth: dict[str, np.ndarray] | None = None

    @property
    def days(self) -> int:
        return int(self.meta["days"])

    @property
    def n_accounts(self) -> int:
        return len(self.accounts["account_id"])

    def tables(self) -> dict[str, dict[str, np.ndarray]]:
        out = {"accounts": self.accounts, "contacts": self.contacts, "payments": self.payments}
        if self.events is not None:
            out["events"] = self.events
        if self.truth is not None:
            out[TRUTH_TABLE] = self.truth
        return out


# ------------------------------------------------------------------ reading and validating


def _table_file(folder: Path, name: str) -> tuple[Path | None, Problem | None]:
    found = [folder / f"{name}{ext}" for ext in (".parquet", ".csv") if (folder / f"{name}{ext}").exists()]
    if len(found) > 1:
        return None, Problem(name, f"both {found[0].name} and {found[1].name} exist; keep one", fatal=True)
    return (found[0] if found else None), None


def _read_raw(path: Path) -> dict[str, np.ndarray]:
    """A table's columns as numpy arrays: CSV as text (converted and checked column by column
    later), Parquet with its own types."""
    import pyarrow as pa

    if path.suffix == ".csv":
        import pyarrow.csv as pcsv

        with open(path, "rb") as f:
            header = f.readline().decode("utf-8", errors="replace").strip().split(",")
        types = {h.strip().strip('"'): pa.string() for h in header}
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=False))
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            out[name] = np.array([CSV_LIST_SEPARATOR.join(x) if x is not None else None for x in col.to_pylist()], dtype=object)
        elif pa.types.is_dictionary(col.type) or pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out[name] = np.array(col.to_pylist(), dtype=object)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


def _rows(mask: np.ndarray) -> list[int]:
    return (np.flatnonzero(mask) + 1).tolist()


def _convert(table: str, col: Column, raw: np.ndarray, problems: list[Problem]) -> np.ndarray:
    """One column converted to its type, every bad row reported."""
    n = len(raw)
    if col.kind in ("id", "account"):
        vals = np.array(["" if v is None else str(v).strip() for v in raw.tolist()], dtype=object)
        bad = vals == ""
        if bad.any():
            problems.append(Problem(table, "empty", col.name, _rows(bad)))
        return vals
    if col.kind == "bool":
        if raw.dtype == bool:
            return raw
        if raw.dtype.kind in "iuf":
            bad = ~np.isin(raw, (0, 1))
            is_true = raw == 1
        else:
            text = np.array([str(v).strip().lower() if v is not None else "" for v in raw.tolist()], dtype=object)
            is_true = np.isin(text, list(_TRUE))
            bad = ~(is_true | np.isin(text, list(_FALSE)))
        if bad.any():
            problems.append(Problem(table, "not true/false (use true, false, 1 or 0)", col.name, _rows(bad)))
        return is_true
    if col.kind in ("int", "float"):
        if raw.dtype.kind in "iuf":
            vals = raw.astype(np.float64)
            bad = np.isinf(vals)
        else:
            vals = np.full(n, np.nan)
            bad = np.zeros(n, dtype=bool)
            for i, v in enumerate(raw.tolist()):
                item = "" if v is None else str(v).strip()
                if item and item.lower() != "nan":
                    try:
                        vals[i] = float(item)
                    except ValueError:
                        bad[i] = True
        if col.required:
            missing = np.isnan(vals) & ~bad
            if missing.any():
                problems.append(Problem(table, "missing", col.name, _rows(missing)))
        if bad.any():
            problems.append(Problem(table, "not a number", col.name, _rows(bad)))
        ok = ~bad & ~np.isnan(vals)
        if col.kind == "int":
            frac = ok & (vals != np.round(vals))
            if frac.any():
                problems.append(Problem(table, "not a whole number", col.name, _rows(frac)))
        if col.min is not None:
            low = ok & ((vals <= col.min) if col.min_exclusive else (vals < col.min))
            if low.any():
                rel = "above" if col.min_exclusive else "at least"
                what = " (a negative or zero amount)" if col.min == 0 and col.min_exclusive else (" (negative)" if col.min == 0 else "")
                problems.append(Problem(table, f"must be {rel} {col.min:g}{what}", col.name, _rows(low)))
        if col.max is not None:
            high = ok & (vals > col.max)
            if high.any():
                problems.append(Problem(table, f"must be at most {col.max:g}", col.name, _rows(high)))
        return vals if col.kind == "float" else np.where(ok, vals, -1).astype(np.int64)
    if col.kind == "category":
        text = np.array([str(v).strip().lower() if v is not None else "" for v in raw.tolist()], dtype=object)
        lookup = {v: i for i, v in enumerate(col.values)}
        codes = np.array([lookup.get(v, -1) for v in text.tolist()], dtype=np.int16)
        bad = codes < 0
        if not col.required:
            bad &= text != ""
        if bad.any():
            seen = sorted(set(text[bad].tolist()))[:5]
            problems.append(Problem(table, f"unknown value(s) {seen}; allowed: {', '.join(col.values)}", col.name, _rows(bad)))
        return codes
    # channels: a list of channel names
    on_file = np.zeros((n, len(CONTACT_CHANNEL_NAMES)), dtype=bool)
    bad = np.zeros(n, dtype=bool)
    unknown: set[str] = set()
    for i, v in enumerate(raw.tolist()):
        for name in (x.strip().lower() for x in ("" if v is None else str(v)).replace(",", CSV_LIST_SEPARATOR).split(CSV_LIST_SEPARATOR)):
            if not name:
                continue
            if name in CONTACT_CHANNEL_NAMES:
                on_file[i, CONTACT_CHANNEL_NAMES.index(name)] = True
            else:
                bad[i] = True
                unknown.add(name)
    if bad.any():
        problems.append(
            Problem(table, f"unknown channel(s) {sorted(unknown)[:5]}; allowed: {', '.join(CONTACT_CHANNEL_NAMES)}", col.name, _rows(bad))
        )
    return on_file


def _hour_to_window(hours: np.ndarray) -> np.ndarray:
    out = np.full(len(hours), -1, dtype=np.int16)
    for w, (start, end) in enumerate(WINDOW_HOURS):
        out[(hours >= start) & (hours < end)] = w
    return out


def _read_table(folder: Path, name: str, problems: list[Problem]) -> dict[str, np.ndarray] | None:
    path, clash = _table_file(folder, name)
    if clash is not None:
        problems.append(clash)
        return None
    if path is None:
        if name in REQUIRED_TABLES:
            problems.append(Problem(name, f"missing: put {name}.parquet or {name}.csv in {folder}"))
        return None
    try:
        raw = _read_raw(path)
    except Exception as e:  # a file pyarrow cannot read: say which and why
        problems.append(Problem(name, f"{path.name} cannot be read: {e}"))
        return None
    cols = TABLES[name]
    names = [c.name for c in cols]
    present = set(raw)
    if name == "contacts" and "window" not in present and "hour" in present:
        hours = _convert(name, Column("hour", "int", "", min=0, max=23), raw["hour"], problems)
        raw["window"] = np.array(
            [WINDOW_NAMES[w] if w >= 0 else f"hour {h}" for w, h in zip(_hour_to_window(hours), hours, strict=True)], dtype=object
        )
        present = set(raw) - {"hour"}
    missing = [c.name for c in cols if c.required and c.name not in present]
    unknown = sorted(present - set(names) - ({"hour"} if name == "contacts" else set()))
    for m in missing:
        close = difflib.get_close_matches(m, unknown, n=1, cutoff=0.6)
        hint = f"; is '{close[0]}' it, misspelt?" if close else ""
        problems.append(Problem(name, f"required column missing{hint}", m))
    for u in unknown:
        close = difflib.get_close_matches(u, names, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(Problem(name, f"unknown column, ignored{hint}", u, fatal=False))
    n = len(next(iter(raw.values()))) if raw else 0
    out: dict[str, np.ndarray] = {}
    for c in cols:
        if c.name in raw:
            out[c.name] = _convert(name, c, raw[c.name], problems)
        elif c.required:
            continue  # reported above; the checks that need it are skipped
        elif c.kind == "float":
            out[c.name] = np.full(n, np.nan)
        elif c.kind == "category":
            out[c.name] = np.full(n, -1, dtype=np.int16)
    return out


def _meta(folder: Path, problems: list[Problem]) -> dict[str, Any]:
    path = folder / "history.json"
    if not path.exists():
        problems.append(Problem("history.json", f"missing: it says which format and how many days the history covers (e.g. {_example_meta()})"))
        return {}
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problems.append(Problem("history.json", f"not valid JSON: {e}"))
        return {}
    if not isinstance(meta, dict):
        problems.append(Problem("history.json", "must be a JSON object"))
        return {}
    if meta.get("format") != FORMAT:
        problems.append(Problem("history.json", f"format must be {FORMAT!r}, got {meta.get('format')!r}"))
    if meta.get("version") != VERSION:
        problems.append(Problem("history.json", f"version {meta.get('version')!r} is not supported (this collectrl reads version {VERSION})"))
    days = meta.get("days")
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        problems.append(Problem("history.json", f"days must be a whole number >= 1 (the days the history covers), got {days!r}"))
    return meta


def _example_meta() -> str:
    return json.dumps({"format": FORMAT, "version": VERSION, "days": 210, "currency": "EUR"})


def _check_accounts(a: dict[str, np.ndarray], days: int | None, problems: list[Problem]) -> dict[str, int] | None:
    if "account_id" not in a:
        return None
    ids = a["account_id"]
    index: dict[str, int] = {}
    dup = np.zeros(len(ids), dtype=bool)
    for i, v in enumerate(ids.tolist()):
        if v in index:
            dup[i] = True
        else:
            index[v] = i
    if dup.any():
        problems.append(Problem("accounts", "duplicate account id", "account_id", _rows(dup)))
    if days is not None and "entry_day" in a:
        late = a["entry_day"] >= days
        if late.any():
            problems.append(Problem("accounts", f"entry day outside the history (days 0-{days - 1})", "entry_day", _rows(late)))
    return index


def _check_days(name: str, t: dict[str, np.ndarray], days: int | None, problems: list[Problem]) -> None:
    if days is not None and "day" in t:
        after = t["day"] >= days
        if after.any():
            problems.append(Problem(name, f"day outside the history (days 0-{days - 1})", "day", _rows(after)))


def _link(name: str, t: dict[str, np.ndarray], index: dict[str, int], a: dict[str, np.ndarray], problems: list[Problem]) -> None:
    """Resolve a table's account ids to account rows; report unknown accounts and days before entry."""
    if "account_id" not in t:
        return
    acc = np.array([index.get(v, -1) for v in t["account_id"].tolist()], dtype=np.int64)
    unknown = acc < 0
    if unknown.any():
        problems.append(Problem(name, "account not in accounts", "account_id", _rows(unknown)))
    t["account"] = acc
    if "day" in t and "entry_day" in a:
        known = ~unknown & (t["day"] >= 0)
        before = known & (t["day"] < a["entry_day"][np.maximum(acc, 0)])
        if before.any():
            problems.append(Problem(name, "day before the account entered collections", "day", _rows(before)))


def _check_contacts(c: dict[str, np.ndarray], problems: list[Problem]) -> None:
    if not {"outcome", "opened", "delivered", "channel"} <= set(c):
        return
    out = c["outcome"]
    names = np.array(CONTACT_OUTCOMES)
    code = {v: i for i, v in enumerate(CONTACT_OUTCOMES)}
    valid = out >= 0
    opened_needed = valid & (out >= code["ignored"])
    bad = opened_needed & ~c["opened"]
    if bad.any():
        problems.append(Problem("contacts", "an outcome that needs the contact opened, but opened is false", "opened", _rows(bad)))
    bad = c["opened"] & ~c["delivered"]
    if bad.any():
        problems.append(Problem("contacts", "opened but not delivered", "delivered", _rows(bad)))
    dropped = valid & (out == code["dropped"])
    bad = dropped & (c["channel"] != CONTACT_CHANNEL_NAMES.index("call"))
    if bad.any():
        problems.append(Problem("contacts", "only a call can be dropped", "outcome", _rows(bad)))
    bad = valid & (out <= code["not_delivered"]) & c["delivered"]
    if bad.any():
        problems.append(Problem("contacts", f"outcome {'/'.join(names[: code['not_delivered'] + 1])} but delivered is true", "outcome", _rows(bad)))


def _check_payments(p: dict[str, np.ndarray], a: dict[str, np.ndarray], problems: list[Problem]) -> None:
    if "account" not in p or "amount_eur" not in p or "balance_eur" not in a:
        return
    acc = p["account"]
    ok = (acc >= 0) & np.isfinite(p["amount_eur"])
    paid = np.bincount(acc[ok], weights=p["amount_eur"][ok], minlength=len(a["balance_eur"]))
    over = paid > a["balance_eur"] + 0.01
    if over.any():
        rows = ok & over[np.maximum(acc, 0)]
        problems.append(Problem("payments", "the account's payments add up to more than its balance", "amount_eur", _rows(rows)))


def validate(folder: str | Path) -> tuple[Report, History | None]:
    """Read and check a history folder: every problem found, and the history if none is fatal."""
    folder = Path(folder)
    problems: list[Problem] = []
    if not folder.is_dir():
        problems.append(Problem("history", f"{folder} is not a folder"))
        return Report(folder, problems, {}), None
    meta = _meta(folder, problems)
    days = meta.get("days") if isinstance(meta.get("days"), int) else None
    tables = {name: _read_table(folder, name, problems) for name in TABLES}
    rows = {name: len(next(iter(t.values()))) if t else 0 for name, t in tables.items() if t is not None}
    for name, t in tables.items():
        if t is not None:
            _check_days(name, t, days, problems)
    a = tables["accounts"]
    index = _check_accounts(a, days, problems) if a is not None else None
    if a is not None and index is not None:
        for name in ("contacts", "payments", "events"):
            t = tables[name]
            if t is not None:
                _link(name, t, index, a, problems)
        if tables["payments"] is not None:
            _check_payments(tables["payments"], a, problems)
    if tables["contacts"] is not None:
        _check_contacts(tables["contacts"], problems)
    report = Report(folder, problems, rows)
    if not report.ok:
        return report, None
    tpath = folder / f"{TRUTH_TABLE}.parquet"
    truth = read_truth(tpath) if tpath.exists() else None
    return report, History(meta, a, tables["contacts"], tables["payments"], tables["events"], truth)  # type: ignore[arg-type]


def read_truth(path: str | Path) -> dict[str, np.ndarray]:
    """The simulator's ``truth`` table (latent archetype and traits per account)."""
    return _read_raw(Path(path))


def read_history(folder: str | Path) -> History:
    """A validated history; raises :class:`HistoryError` with the report if anything is fatal."""
    report, history = validate(folder)
    if history is None:
        raise HistoryError(report.format())
    return history


def format_markdown() -> str:
    """The README's tables of every column (generated from :data:`TABLES`)."""
    lines = []
    for name, cols in TABLES.items():
        lines += [f"`{name}`{'' if name in REQUIRED_TABLES else ' (optional)'}:", "", "| column | type | meaning |", "|---|---|---|"]
        for c in cols:
            kind = {"id": "text", "account": "text (an accounts id)", "channels": "list of channels"}.get(c.kind, c.kind)
            if c.values:
                kind = " / ".join(f"`{v}`" for v in c.values)
            elif c.min is not None or c.max is not None:
                lo = "" if c.min is None else (f"> {c.min:g}" if c.min_exclusive else f">= {c.min:g}")
                hi = "" if c.max is None else f"<= {c.max:g}"
                kind += " " + ", ".join(x for x in (lo, hi) if x)
            lines.append(f"| `{c.name}`{'' if c.required else ' (optional)'} | {kind} | {c.doc} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------ writing


def _to_arrow(name: str, t: dict[str, np.ndarray], csv: bool) -> Any:
    import pyarrow as pa

    cols: dict[str, Any] = {}
    for c in TABLES[name]:
        v = t.get(c.name)
        if v is None:
            continue
        if c.kind == "category":
            text = np.array((*c.values, ""), dtype=object)[np.where(v >= 0, v, len(c.values))]
            cols[c.name] = pa.array(text.tolist(), type=pa.string())
        elif c.kind == "channels":
            lists = [[CONTACT_CHANNEL_NAMES[k] for k in np.flatnonzero(row)] for row in v]
            cols[c.name] = pa.array([CSV_LIST_SEPARATOR.join(x) for x in lists]) if csv else pa.array(lists, type=pa.list_(pa.string()))
        elif c.kind == "int":
            cols[c.name] = pa.array(np.asarray(v, dtype=np.int64))
        elif c.kind == "float":
            f = np.asarray(v, dtype=np.float64)
            if not c.required and np.isnan(f).all():
                continue
            cols[c.name] = pa.array(f, from_pandas=True)
        elif c.kind == "bool":
            cols[c.name] = pa.array(np.asarray(v, dtype=bool))
        else:
            cols[c.name] = pa.array([str(x) for x in v.tolist()], type=pa.string())
    return pa.table(cols)


def _truth_to_arrow(t: dict[str, np.ndarray]) -> Any:
    import pyarrow as pa

    return pa.table({k: pa.array(v.tolist() if v.dtype == object else v) for k, v in t.items()})


def write_history(h: History, folder: str | Path, fmt: Literal["parquet", "csv"] = "parquet") -> Path:
    """Write a history folder atomically: it is assembled beside ``folder`` and swapped in, so a
    failed write never leaves a half-written history where a good one was."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        for name, t in h.tables().items():
            if name == TRUTH_TABLE:
                pq.write_table(_truth_to_arrow(t), tmp / f"{name}.parquet")
                continue
            table = _to_arrow(name, t, fmt == "csv")
            if fmt == "csv":
                pcsv.write_csv(table, tmp / f"{name}.csv")
            else:
                pq.write_table(table, tmp / f"{name}.parquet", compression="zstd")
        (tmp / "history.json").write_text(json.dumps(h.meta, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        old = None
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{os.getpid()}"
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# ------------------------------------------------------------------ from a simulated run


def _names(values: Iterable[str], codes: np.ndarray) -> np.ndarray:
    return np.array(list(values), dtype=object)[codes]


def accounts_table(debtor_id: np.ndarray, entry_day: np.ndarray, balance: np.ndarray, traits: Any) -> dict[str, np.ndarray]:
    """The ``accounts`` table of simulated debtors (``traits``: their :class:`sim.population.Debtors`)."""
    return {
        "account_id": np.array([str(i) for i in debtor_id.tolist()], dtype=object),
        "entry_day": entry_day.astype(np.int64),
        "balance_eur": balance.astype(np.float64),
        "dpd_at_entry": traits.dpd_at_entry.astype(np.int64),
        "product": traits.product.astype(np.int16),
        "channels_on_file": traits.on_file.astype(bool),
        "app_user": traits.app_user.astype(bool),
        "behaviour_score": traits.behaviour_score.astype(np.float64),
    }


def truth_table(debtor_id: np.ndarray, traits: Any) -> dict[str, np.ndarray]:
    """The simulator's ``truth`` table: each account's latent archetype and traits."""
    out: dict[str, np.ndarray] = {
        "account_id": np.array([str(i) for i in debtor_id.tolist()], dtype=object),
        "archetype": _names(ARCHETYPES, traits.archetype.astype(np.int64)),
    }
    for name in ("ability", "willingness", "distressed", "self_cure", "ability_growth", "complaint_logit", "churn_logit", "payday"):
        out[name] = np.asarray(getattr(traits, name))
    for name, columns in (
        ("attention", CONTACT_CHANNEL_NAMES),
        ("deliverability", CONTACT_CHANNEL_NAMES),
        ("window_fit", WINDOW_NAMES),
        ("tone_effect", TONE_NAMES),
        ("offer_effect", OFFER_NAMES),
    ):
        arr = np.asarray(getattr(traits, name))
        for k, col in enumerate(columns):
            out[f"{name}_{col}"] = arr[:, k]
    return out


# ledger outcome of an engaged contact (sim.behaviour's order) -> contact outcome
_ENGAGED = ("paid_full", "paid_part", "promise", "plan", "settlement", "deferral", "engaged")
_EVENT_OF = {
    Event.PROMISE_KEPT: "promise_kept",
    Event.PROMISE_BROKEN: "promise_broken",
    Event.PLAN: "plan",
    Event.PLAN_BROKEN: "plan_broken",
    Event.COMPLAINT: "complaint",
    Event.OPT_OUT: "opt_out",
    Event.RESOLVED: "resolved",
    Event.SOLD: "sold",
    Event.CHURNED: "churned",
    Event.FORGIVEN: "forgiven",
}
_PROMISE_EVENT = ("promise", "settlement_agreed", "deferral_agreed")  # by promise kind


def from_ledger(
    ledger: dict[str, np.ndarray], accounts: dict[str, np.ndarray], meta: dict[str, Any], truth: dict[str, np.ndarray] | None = None
) -> History:
    """A history from a simulated run: its event ledger's columns (``sim.ledger.Ledger.columns`` or
    its Parquet file), the ``accounts`` table of its debtors (ids as text of the ledger's debtor
    numbers) and ``meta`` (must give ``days``)."""
    ids = accounts["account_id"]
    ev = ledger["event"].astype(np.int64)
    debtor = ledger["debtor"].astype(np.int64)
    day = (ledger["time_min"] // 1440).astype(np.int64)
    contact = ledger["contact"].astype(np.int64)
    # each ledger row's account: its debtor number looked up among the ids (a binary search, not a dict per row)
    numbers = np.array([int(v) for v in ids.tolist()], dtype=np.int64)
    account = np.full(len(debtor), -1, dtype=np.int64)
    if len(numbers):
        order = np.argsort(numbers, kind="stable")
        ranked = numbers[order]
        pos = np.minimum(np.searchsorted(ranked, debtor), len(numbers) - 1)
        account = np.where(ranked[pos] == debtor, order[pos], -1)
    if (account < 0).any():
        missing = sorted(set(debtor[account < 0].tolist()))[:5]
        raise HistoryError(f"the ledger has events of debtors {missing} that are not in the accounts table")

    # contacts: the CONTACT events, and everything keyed to them by (account, contact ordinal)
    sent = np.flatnonzero(ev == Event.CONTACT)
    key = account * 65536 + contact
    order = np.argsort(key[sent], kind="stable")
    sent = sent[order]
    skey = key[sent]

    def flag(event: Event) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero((ev == event) & (contact >= 0))
        pos = np.searchsorted(skey, key[rows])
        ok = (pos < len(skey)) & (skey[np.minimum(pos, len(skey) - 1)] == key[rows])
        return pos[ok], rows[ok]

    n = len(sent)
    detail = ledger["detail"][sent].astype(np.int64)
    ch = ledger["channel"][sent].astype(np.int64) - 1
    outcome = np.full(n, CONTACT_OUTCOMES.index("not_delivered"), dtype=np.int16)
    delivered = np.zeros(n, dtype=bool)
    opened = np.zeros(n, dtype=bool)
    cost = ledger["amount_eur"][sent].astype(np.float64)
    pos, rows = flag(Event.DELIVERED)
    delivered[pos] = True
    cost[pos] += ledger["amount_eur"][rows]
    outcome[delivered] = CONTACT_OUTCOMES.index("not_opened")
    pos, rows = flag(Event.NOTICED)
    opened[pos] = True
    cost[pos] += ledger["amount_eur"][rows]
    outcome[opened] = CONTACT_OUTCOMES.index("ignored")
    for event, name in ((Event.COMPLAINT, "complaint"), (Event.OPT_OUT, "opt_out"), (Event.CALL_DROPPED, "dropped")):
        pos, _ = flag(event)
        outcome[pos] = CONTACT_OUTCOMES.index(name)
    pos, rows = flag(Event.ENGAGED)
    outcome[pos] = np.array([CONTACT_OUTCOMES.index(x) for x in _ENGAGED], dtype=np.int16)[ledger["detail"][rows].astype(np.int64)]
    contacts = {
        "account_id": ids[account[sent]],
        "account": account[sent],
        "day": day[sent],
        "window": (detail // 16).astype(np.int16),
        "channel": ch.astype(np.int16),
        "tone": ((detail // 4) % 4).astype(np.int16),
        "offer": (detail % 4).astype(np.int16),
        "delivered": delivered,
        "opened": opened,
        "outcome": outcome,
        "cost_eur": cost,
    }
    by_time = np.lexsort((contacts["account"], contacts["day"]))
    contacts = {k: v[by_time] for k, v in contacts.items()}

    paid = np.flatnonzero(ev == Event.PAYMENT)
    payments = {
        "account_id": ids[account[paid]],
        "account": account[paid],
        "day": day[paid],
        "amount_eur": ledger["amount_eur"][paid].astype(np.float64),
        "kind": ledger["detail"][paid].astype(np.int16),
    }

    rows_e: list[np.ndarray] = []
    names_e: list[np.ndarray] = []
    for event, name in _EVENT_OF.items():
        r = np.flatnonzero(ev == event)
        rows_e.append(r)
        names_e.append(np.full(len(r), EVENT_KINDS.index(name), dtype=np.int16))
    r = np.flatnonzero(ev == Event.PROMISE)
    rows_e.append(r)
    names_e.append(np.array([EVENT_KINDS.index(_PROMISE_EVENT[k]) for k in ledger["detail"][r].astype(np.int64).tolist()], dtype=np.int16))
    er = np.concatenate(rows_e)
    en = np.concatenate(names_e)
    o = np.argsort(ledger["time_min"][er], kind="stable")
    er, en = er[o], en[o]
    ech = ledger["channel"][er].astype(np.int64) - 1
    with_channel = (en == EVENT_KINDS.index("complaint")) | (en == EVENT_KINDS.index("opt_out"))
    events = {
        "account_id": ids[account[er]],
        "account": account[er],
        "day": day[er],
        "event": en,
        "amount_eur": np.where(ledger["amount_eur"][er] != 0, ledger["amount_eur"][er], np.nan).astype(np.float64),
        "channel": np.where(with_channel, ech, -1).astype(np.int16),
    }
    meta = {"format": FORMAT, "version": VERSION, "currency": "EUR", **meta}
    return History(meta, accounts, contacts, payments, events, truth)


def accounts_from_arrow(table: Any) -> dict[str, np.ndarray]:
    """The ``accounts`` table of a run's ``accounts.parquet`` (as :func:`write_run_accounts` wrote it), as arrays."""
    raw = {name: table.column(name) for name in table.column_names}
    problems: list[Problem] = []
    out = {}
    for c in TABLES["accounts"]:
        col = raw[c.name]
        if c.kind == "channels":
            values = np.array([CSV_LIST_SEPARATOR.join(x or []) for x in col.to_pylist()], dtype=object)
        elif c.kind in ("id", "category"):
            values = np.array(col.to_pylist(), dtype=object)
        else:
            values = col.to_numpy()
        out[c.name] = _convert("accounts", c, values, problems)
    if problems:
        raise HistoryError("\n".join(p.format() for p in problems))
    return out


def write_run_accounts(world: Any, folder: str | Path) -> None:
    """Write the accounts and truth of a finished simulated world beside its ledger (what
    ``collectrl history export`` needs besides ``events.parquet``)."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    s, t = world.state, world.traits
    entered = np.flatnonzero(s.status != Status.WAITING)
    traits = t.take(entered)
    accounts = accounts_table(s.debtor_id[entered], s.entry_day[entered], s.balance[entered], traits)
    truth = truth_table(s.debtor_id[entered], traits)
    tables = {"accounts": _to_arrow("accounts", accounts, csv=False), TRUTH_TABLE: _truth_to_arrow(truth)}
    for name, table in tables.items():

        def write(tmp: Path, table: Any = table) -> None:
            pq.write_table(table, tmp, compression="zstd")

        atomic_write(folder / f"{name}.parquet", write)
