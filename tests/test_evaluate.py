"""Evaluation: intervals, paired tests, normalised scores, outputs, and that the precision is real."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import policies
import sim  # noqa: F401
from experiments import stats
from experiments.cli import main
from experiments.evaluate import evaluate
from policies.rules import StaticLadder
from policies.schema import Channel, Window
from sim import load_scenario
from sim.kpis import KPI_NAMES
from sim.runner import run_portfolio
from sim.world import Status


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


def _batch_net(world) -> tuple[float, np.ndarray]:
    """A run's net value per debtor and its per-batch means, computed directly from the world."""
    entered = world.status != Status.WAITING
    net, batch = world.net_value[entered], world.debtor_id[entered] % 10
    return float(net.mean()), np.array([net[batch == b].mean() for b in range(10)])


def test_paired_difference_matches_a_direct_computation(small_eval):
    sc = load_scenario("default")
    chall = [_batch_net(run_portfolio(sc, policies.make("digital_first"), 1500, s)) for s in (0, 1)]
    champ = [_batch_net(run_portfolio(sc, policies.make("static_ladder"), 1500, s)) for s in (0, 1)]
    d = small_eval.paired["digital_first"]
    diffs = np.concatenate([a[1] - b[1] for a, b in zip(chall, champ, strict=True)])
    assert d.diff.mean == pytest.approx(np.mean([a[0] - b[0] for a, b in zip(chall, champ, strict=True)]))
    assert d.n_pairs == 3000 and d.diff.replicates == 20
    assert d.diff.half_width == pytest.approx(stats.t_quantile(19) * diffs.std(ddof=1) / math.sqrt(20), rel=1e-9)


def test_kpi_rates_stay_within_zero_and_one_and_scores_hit_their_references(small_eval):
    for p, r in small_eval.results.items():
        for k in stats.RATE_KPIS:
            iv = r.kpis[k]
            if math.isfinite(iv.low):
                assert 0.0 <= iv.low <= iv.mean <= iv.high <= 1.0, (p, k, iv)
        assert r.kpis["net_value_per_debtor"].replicates == 20
    assert small_eval.results["oracle"].score.low == pytest.approx(1.0)  # the reference against itself: no spread


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
        champ.append(run_portfolio(sc, StaticLadder(), 6000, seed))
        chall.append(run_portfolio(sc, EveningCalls(), 6000, seed))
    a, b = [_batch_net(w) for w in chall], [_batch_net(w) for w in champ]
    args = ([x[0] for x in a], [x[0] for x in b], [x[1] for x in a], [x[1] for x in b])
    diff, unpaired = stats.paired_difference(*args), stats.unpaired_difference(*args)
    assert unpaired.half_width >= 3 * diff.half_width, (diff, unpaired)


def test_evaluate_cli_writes_report_csv_json_and_figures(tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--policies", "static_ladder,random", "--debtors", "800", "--seeds", "2", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "normalised score" in text and "paired difference" in text
    report = (out / "report.md").read_text()
    assert "## Against the champion `static_ladder`" in report and "`random`" in report
    assert report.count("2 seeds x 10 debtor batches = 20 replicates") == 3  # under each table of intervals
    rows = (out / "kpis.csv").read_text().splitlines()
    assert rows[0] == "scenario,policy,metric,mean,ci_low,ci_high,replicates"
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
