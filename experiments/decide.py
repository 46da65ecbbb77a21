"""Batch scoring: account records from CSV or Parquet -> decisions as Parquet.

In a CSV, channel lists are written ``sms;email`` and per-channel counts ``call:2;sms:1``; in
Parquet they may also be list and map/struct columns. Bad rows are reported by row number and
reason, good rows are scored, and the output is written atomically.

With a ``log_dir`` the scored rows are also written as a decision log (``decisions.parquet`` in the
format of :mod:`experiments.decision_log`: policy id and version, the chosen action's propensity,
the per-dimension probabilities and the compliance mask that recompute every allowed action's
probability, and the view), which ``collectrl ope`` reads once the outcomes are known. A logged row
needs ``account_id`` and ``day`` (outcomes are joined on them); a row without them is a bad row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from policies import compliance
from policies.fileio import atomic_write
from policies.records import FIELDS, RecordError, parse_record, views_from_rows
from policies.runtime import Decision, DecisionFunction
from policies.schema import ViewBatch

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
        if kind == "counts" and isinstance(v, dict):  # a struct column fills a channel it lacks with null: none counted
            v = {c: n for c, n in v.items() if n is not None}
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


def _log_key(rec: dict[str, Any]) -> tuple[str, int]:
    """A logged row's account id and day; ValueError names what is missing or wrong."""
    acc, day = rec.get("account_id"), rec.get("day")
    if acc is None or str(acc).strip() == "":
        raise ValueError("account_id is required with --log-decisions (the outcomes are joined on it)")
    if isinstance(day, str):
        day = _num(day.strip()) if day.strip() else None
    if day is None:
        raise ValueError("day is required with --log-decisions (the day of the decision, as in the outcomes)")
    if isinstance(day, bool) or not isinstance(day, int) or day < 0:
        raise ValueError(f"day must be a whole number >= 0, got {rec.get('day')!r}")
    return str(acc), day


class _LogParts:
    """The decision-log columns of the scored chunks, stacked into one table at the end."""

    def __init__(self, fn: DecisionFunction) -> None:
        self.fn = fn
        self.parts: list[dict[str, Any]] = []

    def add(self, keys: list[tuple[str, int]], views: ViewBatch, decisions: list[Decision]) -> None:
        from experiments.decision_log import point_mass

        actions = np.array([d.action for d in decisions], dtype=np.int64)
        allowed = compliance.action_mask(views, self.fn.profile)
        probs = point_mass(actions, allowed).probs  # a policy without probabilities chose with probability 1
        for i, d in enumerate(decisions):
            if d.probs is not None:
                probs[i] = np.concatenate([np.asarray(h, dtype=np.float64) for h in d.probs])
        self.parts.append(
            {
                "account_id": np.array([k[0] for k in keys], dtype=object),
                "day": np.array([k[1] for k in keys], dtype=np.int64),
                "actions": actions,
                "propensity": np.array([d.propensity for d in decisions], dtype=np.float64),
                "probs": probs,
                "epsilon": np.zeros(len(decisions)),
                "allowed": allowed,
                "views": views,
            }
        )

    def write(self, folder: Path) -> Path:
        from experiments.decision_log import stack_decisions, write_decisions

        ids = np.concatenate([p["account_id"] for p in self.parts])
        return write_decisions(stack_decisions(self.parts, ids, self.fn.policy_id, self.fn.version), folder)


def decide_file(
    fn: DecisionFunction, src: Path, dst: Path, progress: Callable[[int], None] | None = None, log_dir: Path | None = None
) -> dict[str, Any]:
    """Score every good row of ``src``; returns counts and the first errors (row numbers from 1).
    With ``log_dir``, the scored rows are also written there as a decision log."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list[Any]] = {
        k: [] for k in ("row", "account_id", "channel", "window", "window_start", "window_end", "tone", "offer", "propensity", "reason")
    }
    errors: list[dict[str, Any]] = []
    buf: list[tuple[int, dict[str, Any]]] = []
    log = _LogParts(fn) if log_dir is not None else None

    def flush() -> None:
        if not buf:
            return
        good: list[tuple[int, dict[str, Any]]] = []
        parsed: list[dict[str, Any]] = []
        keys: list[tuple[str, int]] = []
        for n, rec in buf:
            try:
                row = parse_record(rec, n)
                if log is not None:
                    keys.append(_log_key(rec))
                parsed.append(row)
                good.append((n, rec))
            except RecordError as e:
                errors.append({"row": n, "reason": str(e).split(": ", 1)[1]})
            except ValueError as e:
                errors.append({"row": n, "reason": str(e)})
        if good:
            views = views_from_rows(parsed)
            decisions = fn.decide_batch(views, alternatives=False, probs=log is not None)
            if log is not None:
                log.add(keys, views, decisions)
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
    logged = log.write(log_dir) if log is not None and log_dir is not None and log.parts else None
    atomic_write(dst, lambda p: pq.write_table(table, p))
    if errors:
        err_path = dst.with_name(dst.stem + ".errors.csv")

        def write_errors(p: Path) -> None:
            with p.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["row", "reason"])
                w.writeheader()
                w.writerows(errors)

        atomic_write(err_path, write_errors)
    out = {"scored": len(cols["row"]), "bad_rows": len(errors), "errors": errors[:20], "output": str(dst)}
    return out | ({"decision_log": None if logged is None else str(logged)} if log_dir is not None else {})
