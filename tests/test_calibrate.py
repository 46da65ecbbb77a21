"""Calibrating a world to a history (experiments.calibrate): a fit on a history simulated from a
known, perturbed world moves towards the truth and covers it; the fitted file loads and simulates;
a replay gives back the history's own contacts; bad input is refused with exit code 2."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from experiments import calibrate as cal
from experiments.cli import main
from sim import history as H
from sim import load_scenario
from sim.config import load_raw
from sim.runner import run_portfolio

ACCOUNTS = 5000
# two keys moved well away from the preset (0.92 and 0.0): the fit must find them again
TRUTH = {"channels.email.delivery_rate": 0.70, "channels.sms.engage_logit": -0.6}
LOGGING = "exploring_ladder:0.05"


@pytest.fixture(scope="module")
def perturbed_history(tmp_path_factory):
    sc = load_scenario("default", [f"{k}={v}" for k, v in TRUTH.items()])
    world = run_portfolio(sc, cal.make_policy(LOGGING), ACCOUNTS, seed=11, record_events=True)
    folder = tmp_path_factory.mktemp("history")
    H.write_history(cal.world_history(world), folder)
    return folder


@pytest.fixture(scope="module")
def fitted(perturbed_history):
    return cal.fit(perturbed_history, "default", seed=5, replicates=1, logging_policy=LOGGING)


def _estimate(fit: cal.Fit, key: str) -> cal.Estimate:
    return next(e for e in fit.estimates() if e.key == key)


@pytest.mark.parametrize("key", sorted(TRUTH))
def test_the_fit_moves_to_the_true_value_and_its_interval_covers_it(fitted, key):
    e = _estimate(fitted, key)
    truth = TRUTH[key]
    assert e.covers(truth), (e.value, e.low, e.high, truth)
    assert abs(e.value - truth) < 0.4 * abs(e.base - truth)  # moved most of the way from the base value
    assert e.high - e.low < abs(e.base - truth)  # and the interval is narrow enough to exclude the base value
    assert not e.covers(e.base)


def test_unperturbed_keys_stay_near_the_base_and_population_shares_are_read_off_the_accounts(fitted):
    # a key the history was simulated with at its base value: most intervals cover it
    unmoved = [e for e in fitted.behaviour if e.key not in TRUTH]
    assert len(unmoved) >= 20
    assert sum(e.covers(e.base) for e in unmoved) >= 0.8 * len(unmoved)
    app = _estimate(fitted, "population.app_user_share")
    assert app.covers(0.55) and app.high - app.low < 0.04
    median = _estimate(fitted, "population.balance.median_eur")
    assert median.covers(1200.0)


def test_keys_the_history_cannot_identify_are_named_and_keep_the_base_value(fitted):
    named = " ".join(k for k, _ in fitted.not_identified)
    assert "channels.call.delivery_rate" in named and "archetypes.*.share" in named
    base = load_raw("default")
    assert fitted.raw["channels"]["call"]["delivery_rate"] == base["channels"]["call"]["delivery_rate"]
    assert fitted.raw["population"]["archetypes"]["strategic"]["share"] == base["population"]["archetypes"]["strategic"]["share"]


def test_the_fitted_file_extends_the_base_loads_and_simulates(fitted, tmp_path):
    path = cal.write_scenario(fitted, tmp_path / "my_portfolio.yaml")
    text = path.read_text()
    assert "extends: default" in text and "95 % [" in text
    sc = load_scenario(str(path))
    assert sc.name == "my_portfolio"
    assert math.isclose(sc.channels.email.delivery_rate, _estimate(fitted, "channels.email.delivery_rate").value, rel_tol=1e-5)
    assert math.isclose(sc.channels.sms.engage_logit, _estimate(fitted, "channels.sms.engage_logit").value, abs_tol=1e-5)
    assert math.isclose(sc.behaviour.outcomes.pay_full.base, _estimate(fitted, "behaviour.outcomes.pay_full.base").value, abs_tol=1e-5)
    world = run_portfolio(sc, cal.make_policy("static_ladder"), 300, seed=0)
    assert world.collected.sum() > 0


def test_a_replay_on_the_true_world_gives_back_the_history(perturbed_history):
    # same scenario and seed: the replayed accounts draw the same latent traits and the same luck, so
    # replaying the logged contacts must reproduce every contact's outcome and every payment
    h = H.read_history(perturbed_history)
    sc = load_scenario("default", [f"{k}={v}" for k, v in TRUTH.items()])
    again = cal.world_history(cal.replay(sc, h, seed=11))
    for col in ("account", "day", "channel", "window", "tone", "offer", "outcome"):
        np.testing.assert_array_equal(again.contacts[col], h.contacts[col], err_msg=col)
    np.testing.assert_allclose(again.payments["amount_eur"], h.payments["amount_eur"])
    # another seed: other debtors behind the same accounts, the same decisions where accounts are open
    other = cal.world_history(cal.replay(sc, h, seed=12))
    logged = set(zip(h.contacts["account"].tolist(), h.contacts["day"].tolist(), h.contacts["channel"].tolist(), strict=True))
    replayed = set(zip(other.contacts["account"].tolist(), other.contacts["day"].tolist(), other.contacts["channel"].tolist(), strict=True))
    assert replayed <= logged and len(replayed) > 0.4 * len(logged)
    # a second contact of an account on a day it already has one is not replayed, and is counted
    c = h.contacts
    doubled = H.History(h.meta, h.accounts, {k: np.concatenate([v, v[:3]]) for k, v in c.items()}, h.payments, h.events)
    assert cal.ReplayPolicy(h).skipped_ == 0 and cal.ReplayPolicy(doubled).skipped_ == 3


def test_simulate_with_a_replay_policy(perturbed_history, capsys):
    assert main(["simulate", "--policy", f"replay:{perturbed_history}", "--no-progress", "--json"]) == 0
    assert '"policy": "replay:' in capsys.readouterr().out


def test_bad_input_exits_2_naming_the_problem(perturbed_history, tmp_path, capsys):
    assert main(["calibrate", "fit", "--history", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.yaml"), "--no-progress"]) == 2
    assert "nowhere is not a folder" in capsys.readouterr().err
    assert main(["calibrate", "fit", "--history", str(perturbed_history), "--base", "no_such_preset", "--out", str(tmp_path / "x.yaml")]) == 2
    assert "unknown scenario 'no_such_preset'" in capsys.readouterr().err
    assert main(["calibrate", "fit", "--history", str(perturbed_history), "--out", str(tmp_path / "x.txt")]) == 2
    assert "is a .yaml file" in capsys.readouterr().err
    assert main(["simulate", "--policy", f"replay:{tmp_path / 'nowhere'}", "--no-progress"]) == 2
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "history.json").write_text('{"format": "collectrl-history", "version": 1, "days": 10}')
    assert main(["calibrate", "fit", "--history", str(broken), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "accounts" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


def test_check_perturbs_every_knob_within_30_percent():
    raw0 = load_raw("default")
    raw, truth = cal.perturb(raw0, np.random.default_rng(0))
    assert set(truth) == {k.label() for k in cal.KNOBS}
    for k in cal.KNOBS:
        base = k.natural(k.theta(raw0)) if not k.per_archetype else 1.0
        ratio = truth[k.label()] / base if base else 1.0
        assert 0.7 - 1e-9 <= ratio <= 1.3 + 1e-9 or (k.unit == "rate" and truth[k.label()] == 1.0)
    assert raw["population"]["archetypes"]["forgetful"]["self_cure_per_day"] != raw0["population"]["archetypes"]["forgetful"]["self_cure_per_day"]


def test_the_report_compares_history_and_fitted_world_with_a_verdict_per_figure(fitted, perturbed_history, tmp_path):
    from experiments.calibrate_report import compare, write_report

    h = H.read_history(perturbed_history)
    path = cal.write_scenario(fitted, tmp_path / "fitted.yaml")
    sc = load_scenario(str(path))
    files = write_report(fitted, h, sc, tmp_path / "report", path, replays=1, logging=cal.make_policy(LOGGING))
    md = (tmp_path / "report" / "report.md").read_text()
    for figure in (
        "recovery by month 6",
        "response sms",
        "response evening window",
        "promise keeping",
        "complaints per contact",
        "opt-outs per contact",
    ):
        assert figure in md
    assert '<img src="data:image/png;base64,' in (tmp_path / "report" / "report.html").read_text()
    assert all(p.exists() for p in files)
    rows, _, _ = compare(h, sc, replays=1, logging=cal.make_policy(LOGGING))
    by = {r["figure"]: r for r in rows}
    assert by["response sms (engaged / delivered)"]["verdict"] == "agrees"
    # a world that answers texts far less often than the history did is caught
    wrong = load_scenario(str(path), ["channels.sms.engage_logit=-3.0"])
    rows, _, _ = compare(h, wrong, replays=1, logging=cal.make_policy(LOGGING))
    by = {r["figure"]: r for r in rows}
    assert by["response sms (engaged / delivered)"]["verdict"] == "differs: history higher"


def test_a_small_known_truth_check_covers_the_truth_and_ranks_policies_alike(tmp_path):
    # calibrate check in small: one world with every fitted key perturbed, 3,000 accounts, a (tiny) learner valued too
    from helpers_train import tiny_run

    run = tiny_run(tmp_path / "runs")
    result = cal.check(
        "default", perturbations=1, accounts=3000, explore_share=0.05, debtors=2000, seed=3, out=tmp_path, learners=(str(run),), draws=3
    )
    assert result["perturbations"] == 1 and result["parameters"] >= 30
    # the fitted world ranked under its own uncertainty: the pair far apart is ordered, and as in the true world
    assert result["draws"] == 3 and result["values"] == len(result["policies"])
    (r,) = result["runs"]
    pair = next(p for p in r["fit_pairs"] if {p["ahead"], p["behind"]} == {"static_ladder", "no_contact"})
    assert pair["ordered"] and pair["ahead"] == "static_ladder" and r["value_true"]["static_ladder"] > r["value_true"]["no_contact"]
    assert result["pairs_fit_ordered_alike"] == result["pairs_fit_ordered"] >= 1
    covered = sum(c["covered"] for c in result["coverage"].values())
    assert covered >= 0.8 * result["parameters"], result["coverage"]
    assert result["policies"] == [*cal.RULE_POLICIES, cal.learner_label(str(run))]
    assert max(result["value_error_max_abs"].values()) < 0.10, result["value_error_max_abs"]
    assert (tmp_path / "check.json").exists()
    assert f"{cal.learner_label(str(run))}" in cal.format_check(result)


def test_worker_processes_and_ray_tasks_give_the_same_fit(perturbed_history, tmp_path):
    # the replicates of each step on two local workers: the same seeds, so the same numbers
    h = H.read_history(perturbed_history)
    small = h.accounts["entry_day"] < 3  # a few hundred accounts keep this quick
    keep = np.flatnonzero(small)
    index = -np.ones(h.n_accounts, dtype=np.int64)
    index[keep] = np.arange(len(keep))

    def subset(t):
        rows = small[t["account"]]
        out = {k: v[rows] for k, v in t.items()}
        out["account"] = index[out["account"]]
        return out

    part = H.History(h.meta, {k: v[keep] for k, v in h.accounts.items()}, subset(h.contacts), subset(h.payments), subset(h.events))
    H.write_history(part, tmp_path / "part")
    one = cal.fit(tmp_path / "part", "default", seed=2, replicates=2, logging_policy=LOGGING)
    two = cal.fit(tmp_path / "part", "default", seed=2, replicates=2, logging_policy=LOGGING, workers=2)
    on_ray = cal.fit(tmp_path / "part", "default", seed=2, replicates=2, logging_policy=LOGGING, workers=2, backend="ray")
    numbers = [(e.key, e.value, e.low, e.high) for e in one.estimates()]
    assert numbers == [(e.key, e.value, e.low, e.high) for e in two.estimates()]
    assert numbers == [(e.key, e.value, e.low, e.high) for e in on_ray.estimates()]
    with pytest.raises(cal.CalibrationError, match="unknown backend 'dask'"):
        cal.fit(tmp_path / "part", "default", seed=2, replicates=2, logging_policy=LOGGING, backend="dask")


def test_transfer_trains_on_the_fitted_and_the_true_world_and_values_both_on_the_true_one(tmp_path):
    from helpers_train import TINY

    t = cal.transfer("default", perturbations=1, accounts=2000, debtors=1000, seed=3, out=tmp_path, timesteps=512, train_overrides=TINY)
    w = t["worlds"][0]
    assert set(w["runs"]) == {"true", "fitted"} and all(Path(r["run"]).is_dir() for r in w["runs"].values())
    # both trained on their own world: the scenario each run recorded
    assert "fitted" in (Path(w["runs"]["fitted"]["run"]) / "config.yaml").read_text()
    # valued on the true world: the ladder's value is check's for the same world, debtors and luck
    same = cal._values(cal._scenario(next(cal._worlds("default", 3, 1))[2]), 1000, 3 * 1000 + 2)
    assert w["static_ladder"] == pytest.approx(same["static_ladder"])
    assert w["lift_true"] == pytest.approx(w["trained_on_true"] - w["static_ladder"])
    assert w["kept"] == pytest.approx(w["lift_fitted"] / w["lift_true"]) or w["lift_true"] <= 0
    assert (tmp_path / "transfer.json").exists() and "lift kept" in cal.format_transfer(t)


def test_population_share_intervals_cover_the_configured_share_across_fresh_populations():
    # the recovery check's population keys in small: 60 independent populations of one block each
    from sim.config import load_scenario
    from sim.population import sample_block

    sc = load_scenario("default")
    want = {"sms": sc.population.on_file.sms, "email": sc.population.on_file.email, "app": sc.population.app_user_share}
    hits = dict.fromkeys(want, 0)
    for seed in range(60):
        d = sample_block(sc, 9000 + seed, 0)
        n = len(d)
        seen = {"sms": d.on_file[:, cal._CH["sms"]].sum(), "email": d.on_file[:, cal._CH["email"]].sum(), "app": d.app_user.sum()}
        for k, p in want.items():
            lo, hi = cal._share_interval(float(seen[k]), n)
            hits[k] += lo <= p <= hi
    assert all(h >= 0.85 * 60 for h in hits.values()), hits


def test_intervals_carry_the_other_stages_errors_and_cover_a_linear_two_stage_fit():
    # A linear world of two stages: statistic 0 moves with knob 0 (slope 1); statistic 1 with knob 1
    # (slope 0.8) and with knob 0 (cross slope 1.5). Fitting both to noisy observations, knob 1 absorbs
    # knob 0's error: an interval from its own statistic alone covers too rarely, the propagated one 95 %.
    rng = np.random.default_rng(3)
    jac = np.array([[1.0, 0.0], [1.5, 0.8]])
    sd = np.array([0.1, 0.05])
    truth = np.array([0.3, -0.2])
    own = cal.Z95 * sd / np.diag(jac)
    half = cal.propagated_half_widths(own, np.diag(jac), np.array([[0.0, 0.0], [1.5, 0.0]]), np.array([0, 1]))
    assert half[0] == pytest.approx(own[0])  # the first stage sees nothing of the second
    assert half[1] == pytest.approx(math.hypot(own[1], 1.5 / 0.8 * own[0]))
    fits = np.linalg.solve(jac, (jac @ truth + sd * rng.standard_normal((4000, 2))).T).T
    err = np.abs(fits - truth)
    assert np.mean(err[:, 1] <= own[1]) < 0.5
    assert 0.93 < np.mean(err[:, 1] <= half[1]) < 0.97
    assert 0.93 < np.mean(err[:, 0] <= half[0]) < 0.97
    # a stage of several knobs errs as one with their typical (root mean square) error
    two = cal.propagated_half_widths(np.array([0.3, 0.4, 0.1]), np.ones(3), np.array([[0, 0], [0, 0], [2.0, 0]]), np.array([0, 0, 1]))
    assert two[2] == pytest.approx(math.hypot(0.1, 2.0 * math.sqrt((0.3**2 + 0.4**2) / 2)))
    assert two[:2] == pytest.approx([0.3, 0.4])


def test_bootstrap_quantiles_follow_the_distribution_of_actual_resamples():
    # the order-statistic draw against resampling itself, on a skewed sample with ties: each quantile's
    # replicates agree in mean, spread and tails (the quartiles' difference too, as the balance's spread uses it)
    rng = np.random.default_rng(8)
    x = np.sort(np.round(rng.lognormal(6.0, 1.0, size=1500), 0))  # (n - 1) q falls between ranks: the interpolation is used
    qs = (0.25, 0.5, 0.75)
    fast = cal.bootstrap_quantiles(x, qs, 6000, np.random.default_rng(1))
    slow = np.quantile(x[np.random.default_rng(2).integers(0, len(x), size=(6000, len(x)))], qs, axis=1).T
    for a, b in ((fast, slow), (fast[:, 2:] - fast[:, :1], slow[:, 2:] - slow[:, :1])):
        for j in range(a.shape[1]):
            assert a[:, j].mean() == pytest.approx(b[:, j].mean(), rel=0.01)
            assert a[:, j].std() == pytest.approx(b[:, j].std(), rel=0.06)
            assert np.quantile(a[:, j], [0.025, 0.975]) == pytest.approx(np.quantile(b[:, j], [0.025, 0.975]), rel=0.02)
    # every replicate lies between the sample's extremes, and the draw is reproducible from its generator
    assert x[0] <= fast.min() and fast.max() <= x[-1]
    assert np.array_equal(fast, cal.bootstrap_quantiles(x, qs, 6000, np.random.default_rng(1)))


def test_pairs_ordered_separates_near_ties_from_real_swaps():
    rows = [
        {"value_true": {"a": 100.0, "b": 100.2, "c": 50.0}, "value_fitted": {"a": 101.0, "b": 100.5, "c": 51.0}},  # a near tie swapped
        {"value_true": {"a": 100.0, "b": 120.0, "c": 50.0}, "value_fitted": {"a": 125.0, "b": 121.0, "c": 49.0}},  # a 17 % gap swapped
        {"value_true": {"a": 100.0, "b": 120.0, "c": 50.0}, "value_fitted": {"a": 99.0, "b": 118.0, "c": 52.0}},
    ]
    p = cal.pairs_ordered(rows)
    assert (p["pairs"], p["pairs_alike"], p["pairs_apart"], p["pairs_apart_alike"]) == (9, 7, 8, 7)
    assert p["swapped_gaps"] == pytest.approx([0.2 / 100.2, 20 / 120])


def _ratio_statistic(g: float, g_se: float, m: int = 50) -> cal.Statistic:
    """A ratio statistic whose g is ``g`` and whose standard error on the g scale is ``g_se``."""
    v = math.exp(g)
    z = np.linspace(-1.0, 1.0, m)
    z /= np.linalg.norm(z)
    return cal.Statistic(v + g_se * v * m * z, np.ones(m), "ratio")


@pytest.mark.parametrize("one_by_one", [True, False])
def test_outcome_knobs_get_their_own_slopes_and_intervals_that_cover_when_outcomes_move_together(monkeypatch, one_by_one):
    # A linear world of the six outcome knobs whose statistics move 0.7 per unit of their own knob
    # and 0.1 per unit of each other outcome knob (as outcome odds do in the simulator). Moving the
    # six together reads a slope of 1.2 for each: intervals divided by it cover ~75 %. One replay
    # per knob reads 0.7 and the other knobs' errors come in through the cross slopes: ~95 %.
    knobs = [k for k in cal.KNOBS if k.name.startswith("outcome.")]
    raw0 = load_raw("default")
    theta0 = np.array([k.theta(raw0) for k in knobs])
    jac = 0.6 * np.eye(6) + 0.1
    sd_obs, sd_sim = 0.06, 0.04
    truth = theta0 + 0.15
    rng = np.random.default_rng(11)
    if not one_by_one:
        monkeypatch.setattr(cal, "ONE_BY_ONE", frozenset())
    noise: dict[int, np.ndarray] = {}

    def stats(g: np.ndarray, sd: float) -> dict[str, cal.Statistic]:
        return {k.statistic: _ratio_statistic(float(x), sd) for k, x in zip(knobs, g, strict=True)}

    monkeypatch.setattr(cal, "_with", lambda raw0, knobs, theta: np.array(theta, dtype=float))

    def simulated(thetas, h, seed, reps, logging, pool=None, done=None):
        return [stats(jac @ (theta - theta0) + noise[seed], sd_sim) for theta in thetas]

    monkeypatch.setattr(cal, "_simulated", simulated)
    covered = np.zeros(6)
    fits = 150
    for _ in range(fits):
        observed = jac @ (truth - theta0) + sd_obs * rng.standard_normal(6)
        noise.clear()
        noise[0] = sd_sim * rng.standard_normal(6)  # one replicate: the same simulation noise at every theta
        monkeypatch.setattr(cal, "statistics", lambda h, early_only=True, limit=None, g=observed: stats(g, sd_obs))
        est, _skipped, *_ = cal.fit_behaviour(None, raw0, seed=0, replicates=1)  # type: ignore[arg-type]
        assert [e.key for e in est] == [k.label() for k in knobs]
        covered += [e.covers(t) for e, t in zip(est, truth, strict=True)]
    coverage = covered / fits
    if one_by_one:
        assert cal.slope_replays(knobs) == 6
        assert np.all(coverage >= 0.88), coverage
    else:
        assert cal.slope_replays(knobs) == 1
        assert np.mean(coverage) < 0.85, coverage


def test_pairs_ordered_counts_only_pairs_of_known_true_order_against_a_world():
    margins = {"a|b": 1.0, "a|c": 1.0, "b|c": 1.0}
    rows = [  # a and b 0.2 apart in truth, within two standard errors: no known order, so their swap does not count
        {"perturbation": 0, "value_true": {"a": 100.0, "b": 100.2, "c": 50.0}, "value_fitted": {"a": 101.0, "b": 100.5, "c": 51.0}},
        {"perturbation": 1, "value_true": {"a": 100.0, "b": 120.0, "c": 50.0}, "value_fitted": {"a": 125.0, "b": 121.0, "c": 49.0}},
        {"perturbation": 2, "value_true": {"a": 100.0, "b": 120.0, "c": 50.0}, "value_fitted": {"a": 99.0, "b": 118.0, "c": 52.0}},
    ]
    assert "pairs_known" not in cal.pairs_ordered(rows)  # rows of a check run before the margins were kept
    p = cal.pairs_ordered([r | {"true_margins": margins} for r in rows])
    assert (p["pairs_known"], p["pairs_known_alike"], p["same_known_order"]) == (8, 7, 2)
    assert len(p["swaps_of_unknown_order"]) == 1 and p["swaps_of_unknown_order"][0].startswith("world 0: a / b, -0.20 EUR")
    full = [r | {"true_margins": margins, "covered": {}, "value_error": {k: 0.0 for k in r["value_true"]}, "same_ranking": False} for r in rows]
    text = cal.format_check(cal.summarise_check(full, "default", 10, 0.05, 100, 1.0))
    assert "every pair the true world orders" in text and "2 of 3 worlds" in text


def test_value_margins_are_two_standard_errors_of_the_difference_over_evaluation_seeds():
    sc = cal._scenario(next(cal._worlds("default", 0, 1))[2])
    pair = "digital_first|segment_journeys"
    diffs, margins = [], []
    for s in range(10):
        v, m = cal._values_and_margins(sc, 600, s)
        assert set(m) == {f"{a}|{b}" for a, b in itertools.combinations(sorted(v), 2)} and all(0 < x < np.inf for x in m.values())
        diffs.append(v["digital_first"] - v["segment_journeys"])
        margins.append(m[pair])
    # the seed-to-seed spread of the difference is what the margin says (half of it: one standard error)
    assert 0.5 < np.std(diffs, ddof=1) / (np.mean(margins) / 2) < 2.0


def test_worlds_drawn_from_a_fit_follow_its_intervals(fitted):
    # each fitted key is drawn around its value with its interval as the 95 % range; keys not fitted stay put
    draws = cal.draw_scenarios(fitted.raw, fitted.estimates(), 1500, np.random.default_rng(0))
    engage = _estimate(fitted, "channels.sms.engage_logit")
    x = np.array([d["channels"]["sms"]["engage_logit"] for d in draws])
    assert 0.93 < np.mean((x >= engage.low) & (x <= engage.high)) < 0.97
    assert abs(x.mean() - engage.value) < 0.1 * (engage.high - engage.low)
    delivery = _estimate(fitted, "channels.email.delivery_rate")
    y = np.array([d["channels"]["email"]["delivery_rate"] for d in draws])
    assert 0.93 < np.mean((y >= delivery.low) & (y <= delivery.high)) < 0.97 and y.max() <= 1.0
    # a family of archetype keys moves as one: every archetype's attention to e-mail by the same odds factor
    arche = fitted.raw["population"]["archetypes"]

    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)))

    shifts = np.array(
        [[logit(d["population"]["archetypes"][a]["attention"]["email"]) - logit(arche[a]["attention"]["email"]) for a in arche] for d in draws]
    )
    assert np.allclose(shifts, shifts[:, :1], atol=1e-9)
    attention = _estimate(fitted, "population.archetypes.*.attention.email (odds multiplier)")
    multiplier = attention.value * np.exp(shifts[:, 0])  # the family's odds multiplier on the base, as the fit reports it
    assert 0.93 < np.mean((multiplier >= attention.low) & (multiplier <= attention.high)) < 0.97
    median = _estimate(fitted, "population.balance.median_eur")
    m = np.array([d["population"]["balance"]["median_eur"] for d in draws])
    assert 0.93 < np.mean((m >= median.low) & (m <= median.high)) < 0.97
    app = _estimate(fitted, "population.app_user_share")
    z = np.array([d["population"]["app_user_share"] for d in draws])
    assert 0.92 < np.mean((z >= app.low) & (z <= app.high)) < 0.98 and z.min() >= 0.0 and z.max() <= 1.0
    assert all(d["behaviour"]["fatigue_engage"] == fitted.raw["behaviour"]["fatigue_engage"] for d in draws[:20])
    assert all(d["population"]["products"] == fitted.raw["population"]["products"] for d in draws[:20])
    # a scale family stops at the schema's bound: self-cure rates far up are 1, and the world still validates
    far = copy.deepcopy(fitted.raw)
    cal.KNOB_BY_LABEL["population.archetypes.*.self_cure_per_day (multiplier)"].apply(far, 20.0, fitted.raw)
    assert all(a["self_cure_per_day"] == 1.0 for a in far["population"]["archetypes"].values())
    cal._scenario(far)
    again = cal.draw_scenarios(fitted.raw, fitted.estimates(), 3, np.random.default_rng(0))
    assert again == draws[:3]  # the same seed, the same worlds


def test_ranking_under_the_fit_orders_policies_far_apart_and_leaves_a_policy_and_its_copy_open(fitted):
    named = [("ladder", "static_ladder"), ("ladder_again", "static_ladder"), ("none", "no_contact")]
    rk = cal.rank_under_fit(fitted.raw, fitted.estimates(), named, debtors=800, seed=4, draws=3)
    pairs = {(p["ahead"], p["behind"]): p for p in rk.pairs()}
    same = pairs.get(("ladder", "ladder_again")) or pairs[("ladder_again", "ladder")]
    assert same["difference"] == 0.0 and not same["ordered"] and same["fit_sd"] == 0.0
    far = pairs[("ladder", "none")]
    assert far["ordered"] and far["ahead_in_draws"] == 3 and far["fit_sd"] > 0
    assert far["half_width"] > 1.96 * far["evaluation_se"] and far["half_width"] > far["fit_sd"]
    assert len(set(rk.drawn["ladder"])) == 3 and rk.half_width("ladder") > 0  # the drawn worlds differ
    with pytest.raises(cal.CalibrationError, match="at least 3 drawn worlds"):
        cal.rank_under_fit(fitted.raw, fitted.estimates(), named, debtors=100, draws=2)
    # with every interval shut, the drawn worlds are the fitted one: the same debtors and luck give the same values
    shut = [cal.Estimate(e.key, e.value, e.value, e.value, e.base, e.method) for e in fitted.behaviour]
    still = cal.rank_under_fit(fitted.raw, shut, named[::2], debtors=400, seed=4, draws=3)
    assert all(still.drawn[p] == [still.values[p]] * 3 for p in still.values)
    assert all(q["fit_sd"] == 0.0 for q in still.pairs())


def test_policy_labels_keep_two_learners_apart_and_refuse_one_given_twice(tmp_path):
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    named = cal.policy_labels(["static_ladder", str(a), str(b)])
    assert named[0] == ("static_ladder", "static_ladder")
    assert len({label for label, _ in named}) == 3 and all(label.startswith("learner:") for label, _ in named[1:])
    assert cal.policy_labels(["static_ladder", str(a)])[1] == ("learner:run", str(a))
    with pytest.raises(cal.CalibrationError, match="are the same policy"):
        cal.policy_labels([str(a), str(a) + "/"])
    with pytest.raises(cal.CalibrationError, match="are the same policy"):
        cal.policy_labels(["random", "random"])


def test_fit_orders_counts_what_the_fitted_world_claims_against_the_truth():
    def pair(a, b, diff, ordered):
        return {"ahead": a, "behind": b, "difference": diff, "half_width": 1.0, "ahead_in_draws": 3, "draws": 3, "ordered": ordered}

    margins = {"a|b": 1.0, "a|c": 1.0, "b|c": 1.0}

    def row(j, true, fitted, pairs, halves):
        return {"perturbation": j, "value_true": true, "value_fitted": fitted, "true_margins": margins, "fit_pairs": pairs, "fit_half_widths": halves}

    rows = [  # world 0: every pair claimed, all as in the truth; world 1: a near tie left open (no claim), and one claim wrong
        row(
            0,
            {"a": 120.0, "b": 100.0, "c": 50.0},
            {"a": 119.0, "b": 101.0, "c": 50.5},
            [pair("a", "b", 18.0, True), pair("a", "c", 68.5, True), pair("b", "c", 50.5, True)],
            {"a": 2.0, "b": 0.5, "c": 1.0},
        ),
        row(
            1,
            {"a": 100.0, "b": 100.2, "c": 50.0},
            {"a": 101.0, "b": 100.5, "c": 101.5},
            [pair("a", "b", 0.5, False), pair("c", "a", 0.5, False), pair("c", "b", 1.0, True)],
            {"a": 2.0, "b": 2.0, "c": 2.0},
        ),
    ]
    f = cal.fit_orders(rows)
    assert (f["pairs_fit_ordered"], f["pairs_fit_ordered_alike"], f["worlds_fit_order_alike"]) == (4, 3, 1)
    assert (f["worlds_fit_orders_every_pair"], f["worlds_fit_orders_every_pair_alike"]) == (1, 1)
    assert f["pairs_known_fit_ordered"] == 4 and cal.pairs_ordered(rows)["pairs_known"] == 5
    assert (f["values_within_fit_interval"], f["values"]) == (4, 6)  # b is 1.0 off in world 0 (+- 0.5), c 51.5 in world 1
    assert len(f["fit_left_open"]) == 2 and f["fit_ordered_wrongly"][0].startswith("world 1: c ahead of b")
    assert "pairs_fit_ordered" in cal.pairs_ordered(rows)


def test_calibrate_rank_reads_the_fit_beside_the_scenario_and_writes_its_report(fitted, tmp_path, capsys):
    from experiments.calibrate_report import FIT_JSON
    from experiments.io import write_json

    path = cal.write_scenario(fitted, tmp_path / "mine.yaml")
    args = ["calibrate", "rank", "--scenario", str(path), "--policies", "static_ladder,no_contact", "--debtors", "500", "--draws", "3"]
    assert main([*args, "--no-progress"]) == 2
    assert "mine_report/fit.json is missing" in capsys.readouterr().err
    write_json(tmp_path / "mine_report" / FIT_JSON, cal.fit_summary(fitted))
    assert main([*args, "--out", str(tmp_path / "rank"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| `static_ladder` | `no_contact` |" in out and "| ordered |" in out
    import json

    r = json.loads((tmp_path / "rank" / "rank.json").read_text())
    assert [p["policy"] for p in r["policies"]] == ["static_ladder", "no_contact"] and len(r["pairs"]) == 1 and r["draws"] == 3
    assert (tmp_path / "rank" / "rank.png").stat().st_size > 1000 and "rank.png" in (tmp_path / "rank" / "rank.md").read_text()
    assert main([*args[:-1], "1", "--no-progress"]) == 2  # --draws 1
    assert "at least 3 drawn worlds" in capsys.readouterr().err
    assert main(["calibrate", "rank", "--scenario", str(path), "--policies", "static_ladder", "--no-progress"]) == 2
    assert "two or more different policies" in capsys.readouterr().err
    assert main(["calibrate", "rank", "--scenario", str(tmp_path / "gone.yaml"), "--no-progress"]) == 2
    assert "gone.yaml: no such file" in capsys.readouterr().err
    assert main([*args, "--set", "channels.sms.engage_logit=0", "--no-progress"]) == 2
    assert "takes no --set or --learner" in capsys.readouterr().err
    # a fit.json of another scenario is refused; a value edited by hand is drawn around, and said
    import shutil

    import yaml

    def beside(name: str, text: str) -> Path:
        (tmp_path / f"{name}_report").mkdir()
        shutil.copy(tmp_path / "mine_report" / FIT_JSON, tmp_path / f"{name}_report" / FIT_JSON)
        (tmp_path / f"{name}.yaml").write_text(text)
        return tmp_path / f"{name}.yaml"

    other = beside("other", "extends: default\nname: other\n")
    assert main(["calibrate", "rank", "--scenario", str(other), "--no-progress"]) == 2
    assert "belongs to another scenario" in capsys.readouterr().err
    data = yaml.safe_load(path.read_text())
    data["channels"]["sms"]["engage_logit"] = -2.0
    edited = beside("edited", yaml.safe_dump(data))
    rargs = ["calibrate", "rank", "--scenario", str(edited), "--policies", "static_ladder,no_contact", "--debtors", "300", "--draws", "3"]
    assert main([*rargs, "--no-progress"]) == 0
    assert "channels.sms.engage_logit differ from the fit's values" in capsys.readouterr().err
    assert main(["calibrate", "rank", "--scenario", str(path), "--policies", "static_ladder,no_such_policy", "--no-progress"]) == 2
    assert "no_such_policy" in capsys.readouterr().err
    assert main(["calibrate", "rank", "--no-progress"]) == 2
    assert "needs --scenario FITTED.yaml" in capsys.readouterr().err
    (tmp_path / "mine_report" / FIT_JSON).write_text("{not json")
    assert main([*args, "--no-progress"]) == 2
    assert "not a fit's estimates" in capsys.readouterr().err
    (tmp_path / "mine_report" / FIT_JSON).write_text('{"estimates": [{"key": "channels.sms.engage_logit", "value": "-0.6", "low": 0, "high": 1}]}')
    assert main([*args, "--no-progress"]) == 2
    assert "estimate 0 needs a key and numbers" in capsys.readouterr().err
