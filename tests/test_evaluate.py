"""Evaluation: intervals, paired tests, normalised scores, outputs, and that the precision is real."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import policies
import sim  # noqa: F401
from experiments.cli import main
from experiments.evaluate import Interval, _paired, _score, evaluate, t975
from policies.rules import StaticLadder
from policies.schema import Channel, Window
from sim import load_scenario
from sim.kpis import KPI_NAMES
from sim.runner import run_portfolio


@pytest.fixture(scope="module")
def small_eval():
    return evaluate(load_scenario("default"), ["static_ladder", "digital_first", "no_contact"], 1500, [0, 1], champion="static_ladder")


def test_references_are_run_and_scored_zero_and_one(small_eval):
    ev = small_eval
    assert set(ev.results) >= {"static_ladder", "oracle", "digital_first", "no_contact"}
    assert ev.results["static_ladder"].score.mean == pytest.approx(0.0)
    assert ev.results["oracle"].score.mean == pytest.approx(1.0)
    assert ev.results["no_contact"].score.mean < 0 < ev.results["digital_first"].score.high


def test_every_kpi_has_an_interval_that_contains_its_estimate(small_eval):
    for p in small_eval.policies:
        for k in KPI_NAMES:
            iv = small_eval.results[p].kpis[k]
            if math.isnan(iv.mean):
                continue
            assert iv.low <= iv.mean <= iv.high, (p, k, iv)


def test_paired_difference_matches_a_direct_computation(small_eval):
    sc = load_scenario("default")
    a = np.concatenate([run_portfolio(sc, policies.make("digital_first"), 1500, s).net_value for s in (0, 1)])
    b = np.concatenate([run_portfolio(sc, policies.make("static_ladder"), 1500, s).net_value for s in (0, 1)])
    d = small_eval.paired["digital_first"]
    assert d.diff.mean == pytest.approx(float((a - b).mean()))
    assert d.n_pairs == 3000
    assert d.diff.half_width == pytest.approx(1.959964 * (a - b).std(ddof=1) / math.sqrt(3000), rel=1e-6)


def test_statistics_helpers_on_known_data():
    rng = np.random.default_rng(0)
    x = rng.normal(10.0, 1.0, 40_000)
    y = x + rng.normal(0.5, 0.1, 40_000)
    diff, unpaired, p = _paired(y, x)
    assert diff.low < 0.5 < diff.high and p < 1e-100
    assert unpaired.half_width > 5 * diff.half_width
    same, _, p_same = _paired(x + rng.normal(0, 0.1, 40_000), x)
    assert p_same > 1e-3 or abs(same.mean) < 3 * same.half_width
    s = _score(x + 0.25, x, x + 1.0)
    assert s.mean == pytest.approx(0.25)
    assert t975(4) == pytest.approx(2.776) and t975(1000) == pytest.approx(1.962, abs=0.002)
    assert Interval(1.0, 0.5, 1.5).half_width == 0.5


class EveningCalls(StaticLadder):
    """A champion/challenger variant: the ladder with its calls moved to the evening."""

    policy_id = "test/ladder_evening_calls"

    def act(self, views, mask):
        a = super().act(views, mask)
        a[(a[:, 0] == Channel.CALL) & mask[:, 7 + Window.EVENING], 1] = Window.EVENING
        return a


def test_precision_is_real_paired_interval_at_least_3x_narrower():
    """Common random numbers: the paired CI of a champion/challenger difference is >= 3x narrower
    than the unpaired CI on the very same runs."""
    sc = load_scenario("default")
    champ, chall = [], []
    for seed in (0, 1):
        champ.append(run_portfolio(sc, StaticLadder(), 6000, seed).net_value)
        chall.append(run_portfolio(sc, EveningCalls(), 6000, seed).net_value)
    diff, unpaired, _ = _paired(np.concatenate(chall), np.concatenate(champ))
    assert unpaired.half_width >= 3 * diff.half_width, (diff, unpaired)


def test_evaluate_cli_writes_report_csv_json_and_figures(tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--policies", "static_ladder,random", "--debtors", "800", "--seeds", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "normalised score" in text and "paired difference" in text
    report = (out / "report.md").read_text()
    assert "## Against the champion `static_ladder`" in report and "`random`" in report
    rows = (out / "kpis.csv").read_text().splitlines()
    assert rows[0] == "scenario,policy,metric,mean,ci_low,ci_high"
    assert any(r.startswith("default,random,net_value_diff_vs_static_ladder,") for r in rows)
    obj = json.loads((out / "kpis.json").read_text())
    assert set(obj["policies"]) == {"static_ladder", "random"}
    assert obj["policies"]["random"]["paired_vs_champion"]["p_value"] is not None
    for png in ("recovery_by_day", "cost_vs_recovery", "channel_mix", "net_value_by_archetype"):
        assert (out / f"{png}.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_json_is_the_same_object(capsys):
    rc = main(["evaluate", "--policies", "static_ladder,segment_journeys", "--debtors", "500", "--seeds", "1", "--json", "--no-progress"])
    assert rc == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["champion"] == "static_ladder" and obj["seeds"] == [0]
    ns = obj["policies"]["segment_journeys"]["normalised_score"]
    assert ns["ci_low"] <= ns["mean"] <= ns["ci_high"]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--policies", "nope"], "unknown policy 'nope'"), (["--seeds", "0,0"], "distinct"), (["--champion", "x"], "unknown policy 'x'")],
)
def test_evaluate_bad_input_exits_2_without_a_traceback(args, message):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "experiments.cli", "evaluate", *args, "--no-progress"], capture_output=True, text=True)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_compliance_accounting_every_policy_reports_blocked_actions_zero_under_reg_f(small_eval):
    for p in small_eval.results.values():
        assert p.kpis["blocked_actions"].mean == 0
        assert all(v == 0 for v in p.blocked_by_reason.values())
