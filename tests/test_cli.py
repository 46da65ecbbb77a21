"""The collectrl command line: outputs, files and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from experiments.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiments.cli", *args], capture_output=True, text=True)


def test_simulate_json_prints_one_object_with_every_kpi():
    from sim.kpis import KPI_NAMES

    p = run("simulate", "--debtors", "1500", "--days", "60", "--seed", "3", "--json", "--no-progress")
    assert p.returncode == 0, p.stderr
    obj = json.loads(p.stdout)
    assert set(KPI_NAMES) <= set(obj)
    assert obj["debtors"] == 1500 and 0 < obj["recovery_rate_amount"] < 1
    assert obj["contacts_per_debtor"] == pytest.approx(
        sum(obj[f"contacts_per_debtor_{c}"] for c in ("sms", "email", "push", "messenger", "letter", "call"))
    )


def test_simulate_writes_parquet_events_png_and_kpis(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["simulate", "--debtors", "800", "--days", "40", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "recovery rate by amount" in text and "right-party contact" in text
    table = pq.read_table(out / "events.parquet")
    assert table.num_rows > 800 and {"time_min", "debtor", "event", "channel", "amount_eur"} <= set(table.column_names)
    events = set(table.column("event").to_pylist())
    assert {"contact", "payment"} <= events
    assert (out / "recovery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    kpis = json.loads((out / "kpis.json").read_text())
    paid = sum(a for a, e in zip(table.column("amount_eur").to_pylist(), table.column("event").to_pylist(), strict=True) if e == "payment")
    assert paid / 800 == pytest.approx(kpis["kpis"]["collected_per_debtor"], rel=1e-3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "--set", "channels.sms.cost_eur=-1"], "channels.sms.cost_eur = -1"),
        (["simulate", "--set", "nosuch=1"], "unknown key 'nosuch'"),
        (["simulate", "--scenario", "mars"], "unknown scenario 'mars'"),
        (["simulate", "--policy", "psychic"], "unknown policy 'psychic'"),
        (["simulate", "--debtors", "-5"], "must be at least 1"),
        (["simulate", "--seed", "x"], "expected a whole number"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(args, message):
    p = run(*args)
    assert p.returncode == 2
    assert message in p.stderr and "Traceback" not in p.stderr


def test_scenarios_lists_the_presets(capsys):
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "telecom" in out and "late_stage" in out


def test_policies_lists_every_registered_policy_with_its_version(capsys):
    import agents.bandit  # noqa: F401
    import policies
    import sim  # noqa: F401

    assert main(["policies"]) == 0
    out = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split()[1] for line in out}
    assert set(listed) == set(policies.registered())
    for pid in policies.registered():
        version, doc = policies.base.describe(pid)
        assert version >= 1 and doc, pid
        assert listed[pid] == f"v{version}"


def test_seed_lists_counts_and_the_single_large_seed_trap():
    from experiments.cli import _seeds

    assert _seeds("3") == [0, 1, 2]
    assert _seeds("1000,") == [1000]
    assert _seeds("1000,1001") == [1000, 1001]
    r = run("evaluate", "--seeds", "1000", "--debtors", "10")
    assert r.returncode == 2 and "'1000,'" in r.stderr  # the error shows how to ask for seed 1000 alone
    for bad in ("0", "-1", "a", ",", "3,3"):
        r = run("evaluate", "--seeds", bad, "--debtors", "10")
        assert r.returncode == 2 and "--seeds" in r.stderr, bad


def test_perf_serve_without_wrk_says_how_to_install_it_before_measuring(monkeypatch, capsys):
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "wrk" else real_which(name, *a, **k))
    assert main(["perf", "serve", "--artifact", "artifacts/none"]) == 2
    err = capsys.readouterr().err
    assert "wrk" in err and "apt-get install wrk" in err
