"""Batch scoring: account records from CSV or Parquet -> decisions as Parquet.

In a CSV, channel lists are written ``sms;email`` and per-channel counts ``call:2;sms:1``; in
Parquet they may also be list and map/struct columns. Bad rows are reported by row number and
reason, good rows are scored, and the output is written atomically.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from policies.fileio import atomic_write
from policies.records import FIELDS, RecordError, parse_record, views_from_rows
from policies.runtime import DecisionFunction

CHUNK = 32_768  # rows per scored batch: large enough for the runtime to use every core
_KINDS = {f.name: f.kind for f in FIELDS}
_INT_KINDS = ("int", "days_since")


def _coerce(row: dict[str, Any]) -> dict[str, Any]:
    """CSV strings (and empty cells) to the record types; Parquet values pass through."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k == "account_id":
            out[k] = v
            continue
        kind = _KINDS.get(k)
        if isinstance(v, str):
            s = v.strip()
            if s == "":
                continue  # an empty cell means "use the default"
            if kind == "channels":
                v = [c.strip() for c in s.replace("|", ";").replace(",", ";").split(";") if c.strip()]
            elif kind == "counts":
                if s.startswith("{"):
                    v = json.loads(s)
                else:
                    v = {p.split(":")[0].strip(): _num(p.split(":")[1]) for p in s.split(";") if ":" in p}
            elif kind == "bool":
                v = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(s.lower(), s)
            elif kind in _INT_KINDS or kind == "float":
                v = _num(s)
        elif kind == "counts" and isinstance(v, list):  # parquet map column: list of (key, value)
            v = dict(v)
        out[k] = v
    return out


def _num(s: str) -> Any:
    try:
        f = float(s)
    except ValueError:
        return s  # left for the record validator to report
    return int(f) if f.is_integer() else f


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        raise FileNotFoundError(f"input file {path} does not exist")
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            yield from csv.DictReader(f)
    elif path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK):
            yield from batch.to_pylist()
    else:
        raise ValueError(f"unsupported input {path.suffix!r}: give a .csv or .parquet file")


def decide_file(fn: DecisionFunction, src: Path, dst: Path, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Score every good row of ``src``; returns counts and the first errors (row numbers from 1)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list[Any]] = {
        k: [] for k in ("row", "account_id", "channel", "window", "window_start", "window_end", "tone", "offer", "propensity", "reason")
    }
    errors: list[dict[str, Any]] = []
    buf: list[tuple[int, dict[str, Any]]] = []

    def flush() -> None:
        if not buf:
            return
        good: list[tuple[int, dict[str, Any]]] = []
        parsed: list[dict[str, Any]] = []
        for n, rec in buf:
            try:
                parsed.append(parse_record(rec, n))
                good.append((n, rec))
            except RecordError as e:
                errors.append({"row": n, "reason": str(e).split(": ", 1)[1]})
        if good:
            decisions = fn.decide_batch(views_from_rows(parsed), alternatives=False)
            for (n, rec), d in zip(good, decisions, strict=True):
                cols["row"].append(n)
                cols["account_id"].append(None if rec.get("account_id") is None else str(rec.get("account_id")))
                for k in ("channel", "window", "window_start", "window_end", "tone", "offer", "propensity", "reason"):
                    cols[k].append(getattr(d, k))
        if progress is not None:
            progress(len(buf))
        buf.clear()

    for n, row in enumerate(read_rows(src), start=1):
        try:
            buf.append((n, _coerce(row)))
        except (ValueError, json.JSONDecodeError) as e:
            errors.append({"row": n, "reason": f"cannot parse: {e}"})
        if len(buf) >= CHUNK:
            flush()
    flush()
    table = pa.table(cols)
    atomic_write(dst, lambda p: pq.write_table(table, p))
    if errors:
        err_path = dst.with_name(dst.stem + ".errors.csv")

        def write_errors(p: Path) -> None:
            with p.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["row", "reason"])
                w.writeheader()
                w.writerows(errors)

        atomic_write(err_path, write_errors)
    return {"scored": len(cols["row"]), "bad_rows": len(errors), "errors": errors[:20], "output": str(dst)}
