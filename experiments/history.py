"""``collectrl history``: turn a simulated run into the history format, and check a history folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from sim import history as fmt
from sim.ledger import read_parquet


class HistoryUsageError(ValueError):
    """A run or ledger that cannot be exported; the message says what is missing and how to get it."""


def _run_files(source: Path) -> tuple[Path, Path]:
    """(events.parquet, the run folder) for a run folder or a ledger file."""
    if source.is_dir():
        ledger, folder = source / "events.parquet", source
    elif source.suffix == ".parquet":
        ledger, folder = source, source.parent
    else:
        raise HistoryUsageError(f"{source}: give a run folder written by `collectrl simulate --out` or its events.parquet")
    if not ledger.exists():
        raise HistoryUsageError(f"{ledger} does not exist: simulate with `collectrl simulate --out {folder}` to write the run's event ledger")
    if not (folder / "accounts.parquet").exists():
        raise HistoryUsageError(
            f"{folder / 'accounts.parquet'} does not exist: a ledger alone does not hold the accounts' balances and channels; "
            f"simulate again with `collectrl simulate --out {folder}` (which writes it beside events.parquet)"
        )
    return ledger, folder


def export_run(source: str | Path, out: str | Path, file_format: Literal["parquet", "csv"] = "parquet") -> fmt.History:
    """Write the history of a simulated run (``collectrl simulate --out``) to ``out``."""
    import pyarrow.parquet as pq

    ledger_path, folder = _run_files(Path(source))
    try:
        ledger = read_parquet(ledger_path)
    except ValueError as e:
        raise HistoryUsageError(str(e)) from None
    raw = pq.read_table(folder / "accounts.parquet")
    accounts = fmt.accounts_from_arrow(raw)
    truth = fmt.read_truth(folder / "truth.parquet") if (folder / "truth.parquet").exists() else None
    meta: dict[str, object] = {"source": f"collectrl simulate ({folder})"}
    run_info = folder / "kpis.json"
    if run_info.exists():
        info = json.loads(run_info.read_text())
        meta |= {k: info[k] for k in ("scenario", "overrides", "policy", "seed", "debtors") if k in info}
        if "simulated_days" in info:
            meta["days"] = int(info["simulated_days"])
    if "days" not in meta:
        meta["days"] = int(ledger["time_min"].max() // 1440) + 1 if len(ledger["time_min"]) else 1
    try:
        history = fmt.from_ledger(ledger, accounts, meta, truth)
    except fmt.HistoryError as e:
        raise HistoryUsageError(str(e)) from None
    fmt.write_history(history, out, file_format)
    return history
