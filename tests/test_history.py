"""The history format (sim.history): a simulated run exported into it agrees with the world that
made it, and a broken history is reported row by row, never silently trimmed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import policies
from experiments.cli import main
from sim import history as H
from sim import load_scenario
from sim.runner import run_portfolio
from sim.state import Status


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    sc = load_scenario("default", ["behaviour.plan_instalments=2", "behaviour.plan_interval_days=7"])
    world = run_portfolio(sc, policies.make("segment_journeys"), 1500, seed=3, record_events=True)
    s = world.state
    entered = np.flatnonzero(s.status != Status.WAITING)
    traits = world.traits.take(entered)
    accounts = H.accounts_table(s.debtor_id[entered], s.entry_day[entered], s.balance[entered], traits)
    h = H.from_ledger(world.ledger.columns(), accounts, {"days": world.day}, H.truth_table(s.debtor_id[entered], traits))
    return world, entered, h


def test_a_simulated_history_adds_up_to_the_world(simulated):
    world, entered, h = simulated
    s = world.state
    n = len(entered)
    assert h.n_accounts == n and h.days == world.day
    # every payment, and nothing else, is money collected; every contact's cost is what the world charged
    paid = np.bincount(h.payments["account"], weights=h.payments["amount_eur"], minlength=n)
    np.testing.assert_allclose(paid, s.collected[entered], atol=1e-6)
    cost = np.bincount(h.contacts["account"], weights=h.contacts["cost_eur"], minlength=n)
    np.testing.assert_allclose(cost, s.cost_eur[entered], atol=1e-9)
    # the funnel: contacts sent, delivered, opened and engaged per channel, as the world counted them
    ch = h.contacts["channel"]
    engaged = np.isin(h.contacts["outcome"], [H.CONTACT_OUTCOMES.index(x) for x in H.ENGAGED_OUTCOMES])
    assert np.bincount(ch, minlength=6).tolist() == world.funnel["sent"].tolist()
    assert np.bincount(ch[h.contacts["delivered"]], minlength=6).tolist() == world.funnel["delivered"].tolist()
    assert np.bincount(ch[h.contacts["opened"]], minlength=6).tolist() == world.funnel["noticed"].tolist()
    assert np.bincount(ch[engaged], minlength=6).tolist() == world.funnel["engaged"].tolist()
    # complaints and opt-outs per account, and the kinds of payment the run made
    complaints = np.bincount(h.contacts["account"][h.contacts["outcome"] == H.CONTACT_OUTCOMES.index("complaint")], minlength=n)
    assert complaints.tolist() == s.complaints[entered].tolist()
    kinds = {H.PAYMENT_KIND_NAMES[k] for k in np.unique(h.payments["kind"])}
    assert {"contact", "unprompted", "promise", "instalment"} <= kinds
    assert (h.contacts["day"] >= h.accounts["entry_day"][h.contacts["account"]]).all()
    assert h.truth is not None and list(h.truth["account_id"]) == list(h.accounts["account_id"])


def test_ledger_rows_find_their_account_in_any_order_of_the_accounts_table_and_strangers_are_refused(simulated):
    world, entered, _ = simulated
    s = world.state
    ledger = world.ledger.columns()
    perm = np.random.default_rng(4).permutation(len(entered))
    traits = world.traits.take(entered[perm])
    shuffled = H.accounts_table(s.debtor_id[entered][perm], s.entry_day[entered][perm], s.balance[entered][perm], traits)
    again = H.from_ledger(ledger, shuffled, {"days": world.day})
    paid = np.bincount(again.payments["account"], weights=again.payments["amount_eur"], minlength=len(entered))
    np.testing.assert_allclose(paid, s.collected[entered][perm], atol=1e-6)
    assert (again.accounts["account_id"][again.contacts["account"]] == again.contacts["account_id"]).all()
    fewer = {k: v[1:] for k, v in shuffled.items()}  # one account left out of the table
    with pytest.raises(H.HistoryError, match=f"debtors \\[{int(shuffled['account_id'][0])}\\] that are not in the accounts table"):
        H.from_ledger(ledger, fewer, {"days": world.day})


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_written_and_read_back_a_history_is_the_same(simulated, tmp_path, file_format):
    _, _, h = simulated
    H.write_history(h, tmp_path / "h", file_format)
    report, back = H.validate(tmp_path / "h")
    assert report.ok and not report.problems, report.format()
    assert back is not None
    for name in ("accounts", "contacts", "payments", "events"):
        a, b = h.tables()[name], back.tables()[name]
        for col in H.TABLES[name]:
            x, y = a[col.name], b[col.name]
            if x.dtype.kind == "f":
                np.testing.assert_allclose(x, y, rtol=1e-12, equal_nan=True, err_msg=f"{name}.{col.name}")
            else:
                assert np.array_equal(x, y), f"{name}.{col.name}"


def _rewrite_csv(path: Path, edit) -> None:
    rows = list(csv.reader(path.open()))
    edit(rows)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_every_problem_is_reported_with_its_rows_and_nothing_is_dropped(simulated, tmp_path, capsys):
    _, _, h = simulated
    folder = H.write_history(h, tmp_path / "h", "csv")
    head = {name: next(csv.reader((folder / f"{name}.csv").open())) for name in ("accounts", "contacts", "payments")}

    def accounts(rows):
        rows[0][head["accounts"].index("balance_eur")] = "balanse_eur"  # misspelt

    def contacts(rows):
        rows[3][head["contacts"].index("day")] = "three"  # wrong type
        rows[7][head["contacts"].index("channel")] = "fax"  # unknown value
        rows[9][head["contacts"].index("day")] = "9999"  # outside the history
        rows[11][0] = "no-such-account"

    def payments(rows):
        rows[2][head["payments"].index("amount_eur")] = "-5"  # negative
        rows[4][head["payments"].index("amount_eur")] = "1e9"  # beyond any balance
        rows[6][0] = "ghost"

    _rewrite_csv(folder / "accounts.csv", accounts)
    _rewrite_csv(folder / "contacts.csv", contacts)
    _rewrite_csv(folder / "payments.csv", payments)
    report, history = H.validate(folder)
    assert history is None and not report.ok
    found = {(p.table, p.column, p.reason.split(" (")[0].split(";")[0]): p.rows for p in report.problems}
    assert found[("accounts", "balance_eur", "required column missing")] == []
    assert any("is 'balanse_eur' it, misspelt?" in p.reason for p in report.problems)
    assert found[("contacts", "day", "not a number")] == [3]
    assert found[("contacts", "channel", "unknown value(s) ['fax']")] == [7]
    assert 9 in found[("contacts", "day", "day outside the history")]
    assert found[("contacts", "account_id", "account not in accounts")] == [11]
    assert found[("payments", "amount_eur", "must be above 0")] == [2]
    assert found[("payments", "account_id", "account not in accounts")] == [6]
    # without its balance column the accounts table cannot bound the payments; everything else was
    # still checked, and rows are never dropped: every row is counted
    assert report.rows["contacts"] == len(h.contacts["day"]) and report.rows["payments"] == len(h.payments["day"])
    assert main(["history", "validate", str(folder)]) == 2
    out = capsys.readouterr().out
    assert "error: payments.amount_eur: must be above 0 (a negative or zero amount) (row 2)" in out
    with pytest.raises(H.HistoryError, match="required column missing"):
        H.read_history(folder)


def test_duplicate_ids_and_payments_beyond_the_balance(simulated, tmp_path):
    _, _, h = simulated
    folder = H.write_history(h, tmp_path / "h", "csv")
    bal = h.accounts["balance_eur"]

    def accounts(rows):
        rows[5][0] = rows[4][0]  # data row 5 repeats data row 4's id (rows[0] is the header)

    _rewrite_csv(folder / "accounts.csv", accounts)
    with (folder / "payments.csv").open("a") as f:
        f.write(f'"{h.accounts["account_id"][0]}",{h.accounts["entry_day"][0] + 1},{bal[0] + 50},"unprompted"\n')
    report, _ = H.validate(folder)
    dup = [p for p in report.problems if p.reason == "duplicate account id"]
    assert dup and dup[0].rows == [5]
    over = [p for p in report.problems if "more than its balance" in p.reason]
    assert over and len(h.payments["day"]) + 1 in over[0].rows


def test_a_history_may_give_the_hour_instead_of_the_window(simulated, tmp_path):
    _, _, h = simulated
    folder = H.write_history(h, tmp_path / "h", "csv")
    start = {name: str(hs) for name, (hs, _) in zip(("morning", "afternoon", "evening", "late"), ((9, 0), (13, 0), (18, 0), (22, 0)), strict=True)}

    def to_hours(rows):
        w = rows[0].index("window")
        rows[0][w] = "hour"
        for r in rows[1:]:
            r[w] = start[r[w]]

    _rewrite_csv(folder / "contacts.csv", to_hours)
    back = H.read_history(folder)
    assert np.array_equal(back.contacts["window"], h.contacts["window"])


def test_history_json_names_the_format_version_and_days(simulated, tmp_path):
    _, _, h = simulated
    folder = H.write_history(h, tmp_path / "h")
    meta = json.loads((folder / "history.json").read_text())
    (folder / "history.json").write_text(json.dumps(meta | {"version": 99}))
    with pytest.raises(H.HistoryError, match="version 99 is not supported"):
        H.read_history(folder)
    (folder / "history.json").unlink()
    with pytest.raises(H.HistoryError, match=r"history\.json: missing"):
        H.read_history(folder)


def test_a_failed_write_keeps_the_history_that_was_there(simulated, tmp_path, monkeypatch):
    _, _, h = simulated
    folder = H.write_history(h, tmp_path / "h")
    before = sorted(p.name for p in folder.iterdir())
    import pyarrow.parquet as pq

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        H.write_history(h, folder)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["h"]


def test_history_export_from_a_simulated_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["simulate", "--debtors", "300", "--days", "40", "--out", str(run), "--no-progress"]) == 0
    assert main(["history", "export", str(run), "--out", str(tmp_path / "h")]) == 0
    h = H.read_history(tmp_path / "h")
    kpis = json.loads((run / "kpis.json").read_text())
    assert h.days == kpis["simulated_days"] and h.n_accounts == 300
    assert h.meta["scenario"] == "default" and h.meta["policy"] == "static_ladder"
    (run / "accounts.parquet").unlink()
    assert main(["history", "export", str(run / "events.parquet"), "--out", str(tmp_path / "h2")]) == 2
    assert "a ledger alone does not hold the accounts" in capsys.readouterr().err


def test_the_readme_documents_every_column():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert H.format_markdown() in readme, "regenerate the README's 'History format' tables with sim.history.format_markdown()"
