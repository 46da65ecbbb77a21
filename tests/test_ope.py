"""Decision logs and off-policy evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import ope
from experiments.cli import main
from experiments.decision_log import Dist, TargetPolicy, log_run, point_mass, read_decisions, sample
from experiments.errors import EXIT_BAD_INPUT, UsageError
from policies.actions import N_ACTIONS, canonical, decode_flat
from policies.records import records_from_views
from sim.config import load_scenario


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ope") / "logs"
    log_run(load_scenario("default", []), "static_ladder", 300, 3, out, epsilon=0.2, horizon_days=60)
    return out


def _all_actions() -> np.ndarray:
    a = canonical(decode_flat(np.arange(N_ACTIONS)))
    return np.unique(a, axis=0)


def test_distribution_sums_to_one_and_sampling_follows_it() -> None:
    rng = np.random.default_rng(0)
    n = 4
    allowed = rng.random((n, 19)) < 0.7
    allowed[:, [0, 7, 11, 15]] = True
    probs = rng.random((n, 19)) * allowed
    for s, k in ((0, 7), (7, 4), (11, 4), (15, 4)):
        probs[:, s : s + k] /= probs[:, s : s + k].sum(axis=1, keepdims=True)
    d = Dist(probs, np.array([0.0, 0.3, 1.0, 0.1]), allowed)
    acts = _all_actions()
    m = len(acts)
    for i in range(n):
        row = Dist(np.repeat(d.probs[[i]], m, 0), np.repeat(d.epsilon[[i]], m), np.repeat(d.allowed[[i]], m, 0))
        assert row.prob(acts).sum() == pytest.approx(1.0, abs=1e-9)
    # the empirical frequency of one action matches its probability
    big = Dist(np.repeat(probs[[1]], 40_000, 0), np.full(40_000, 0.3), np.repeat(allowed[[1]], 40_000, 0))
    drawn = sample(big, np.random.default_rng(1))
    top = np.unique(drawn, axis=0, return_counts=True)
    a = top[0][top[1].argmax()]
    p = big.prob(np.repeat(a[None], 40_000, 0))[0]
    assert top[1].max() / 40_000 == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / 40_000))


def test_support_deficiency_of_a_point_mass_logger() -> None:
    allowed = np.ones((2, 19), dtype=bool)
    logger = point_mass(np.array([[1, 0, 0, 0], [0, 0, 0, 0]]), allowed)
    target = point_mass(np.array([[1, 0, 0, 0], [2, 1, 0, 0]]), allowed)
    assert target.mass_outside(logger).tolist() == [0.0, 1.0]
    uniform = Dist(np.zeros((2, 19)), np.ones(2), allowed)
    assert uniform.mass_outside(Dist(logger.probs, np.full(2, 0.1), allowed)).tolist() == [0.0, 0.0]
    # against the point logger, a uniform target puts all but the logged action's share outside
    expected = 1 - uniform.prob(np.array([[1, 0, 0, 0], [0, 0, 0, 0]]))
    assert uniform.mass_outside(logger) == pytest.approx(expected)


def test_logged_run_round_trips_with_consistent_propensities(logs: Path) -> None:
    d = read_decisions(logs)
    assert len(d) > 1000 and set(d.policy_id.tolist()) == {"static_ladder"}
    assert np.allclose(d.logger.prob(d.actions), d.propensity)
    # the ladder's own action has probability at least 1 - epsilon; random contacts are there too
    ladder = TargetPolicy("static_ladder").dist(d.views, d.allowed)
    own = ladder.prob(d.actions) == 1
    assert (d.propensity[own] >= 0.8).all() and (~own).sum() > 0.05 * len(d)
    # every logged action is allowed by the logged mask
    rows = np.arange(len(d))
    assert d.allowed[rows, d.actions[:, 0]].all()


def test_jsonl_log_maps_onto_the_table(logs: Path, tmp_path: Path) -> None:
    d = read_decisions(logs).take(np.arange(50))
    recs = records_from_views(d.views)
    names = (("wait", "sms", "email", "push", "messenger", "letter", "call"),)
    with (tmp_path / "decisions.jsonl").open("w") as f:
        for i in range(len(d)):
            a = d.actions[i].tolist()
            if i % 2:  # the server's own form: decision + action_index, the view as a row of view fields
                server = {
                    "account_id": d.account_id[i],
                    "day": int(d.day[i]),
                    "arm": "champion",
                    "assignment_prob": 0.9,
                    "policy_id": "static_ladder",
                    "policy_version": 1,
                    "decision": {"channel": names[0][a[0]]},
                    "action_index": int(a[0] * 64 + a[1] * 16 + a[2] * 4 + a[3]),
                    "propensity": float(d.propensity[i]),
                    "probs": {
                        k: d.probs[i, s : s + n].tolist() for k, s, n in (("channel", 0, 7), ("window", 7, 4), ("tone", 11, 4), ("offer", 15, 4))
                    },
                    "epsilon": float(d.epsilon[i]),
                    "view": d.views.row(i),
                }
                f.write(json.dumps(server) + "\n")
                continue
            line = {
                "request_id": str(i),
                "time": "2026-01-01T00:00:00Z",
                "account_id": d.account_id[i],
                "day": int(d.day[i]),
                "arm": "champion",
                "assignment_prob": 0.9,
                "policy_id": "static_ladder",
                "policy_version": 1,
                "action": {"channel": names[0][a[0]], "index": int(a[0] * 64 + a[1] * 16 + a[2] * 4 + a[3])},
                "propensity": float(d.propensity[i]),
                "probs": {
                    "channel": d.probs[i, :7].tolist(),
                    "window": d.probs[i, 7:11].tolist(),
                    "tone": d.probs[i, 11:15].tolist(),
                    "offer": d.probs[i, 15:].tolist(),
                },
                "epsilon": float(d.epsilon[i]),
                "view": recs[i],
            }
            f.write(json.dumps(line) + "\n")
    j = read_decisions(tmp_path)
    assert (j.actions == d.actions).all() and np.allclose(j.propensity, d.propensity)
    assert (j.allowed == d.allowed).all()  # recomputed from the view with the profile
    assert set(j.arm.tolist()) == {"champion"}


def test_bad_logs_are_named(logs: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no decisions\.parquet"):
        read_decisions(tmp_path)
    (tmp_path / "decisions.jsonl").write_text('{"account_id": "1", "day": 0}\n')
    with pytest.raises(UsageError, match="missing field"):
        read_decisions(tmp_path)
    import pyarrow.parquet as pq

    t = pq.read_table(logs / "decisions.parquet").drop(["propensity"])
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(t, bad / "decisions.parquet")
    with pytest.raises(UsageError, match="missing column 'propensity'"):
        read_decisions(bad)


def test_simulate_log_decisions_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "l"
    assert main(["simulate", "--debtors", "60", "--days", "30", "--log-decisions", str(out), "--epsilon", "0.1", "--no-progress"]) == 0
    assert (out / "decisions.parquet").exists() and (out / "payments.parquet").exists()
    assert main(["simulate", "--debtors", "60", "--policy", "oracle", "--log-decisions", str(out), "--no-progress"]) == EXIT_BAD_INPUT
    assert "cannot re-score" in capsys.readouterr().err


# ------------------------------------------------------------------ estimators


@pytest.fixture(scope="module")
def random_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ope") / "random"
    log_run(load_scenario("default", []), "random", 300, 5, out, horizon_days=60)
    return out


def test_the_logger_evaluated_on_its_own_logs_gets_its_logged_value(random_logs: Path) -> None:
    data = ope.load_logs(random_logs)
    fit = ope.Fitted.of(data, seed=1, bootstrap=100)
    res = ope.evaluate_target(fit, TargetPolicy("random"))
    logged = ope.logged_value(fit)
    e = res.estimates
    # weights are exactly 1: the importance-sampling estimates are the observed means, bit for bit up to rounding
    assert res.diagnostics["ess_share"] == pytest.approx(1.0)
    for name in ("ips", "snips"):
        assert e[name].value == pytest.approx(logged["decision"].value, rel=1e-9)
    assert e["wpdis"].value == pytest.approx(logged["account"].value, rel=1e-9)
    # the doubly robust estimates add a mean-zero correction: close, well inside the interval
    half = (logged["decision"].high - logged["decision"].low) / 2
    assert abs(e["dr"].value - logged["decision"].value) < 0.1 * half
    assert e["dr"].low < logged["decision"].value < e["dr"].high
    assert e["wdr"].low < logged["account"].value < e["wdr"].high


def test_ips_and_dr_cover_a_known_value_on_logged_views(random_logs: Path) -> None:
    """Logged views and masks, actions from the uniform logger, rewards from a known function of the
    action: the true value of any target is known exactly; IPS is unbiased and must cover it."""
    base = ope.load_logs(random_logs)
    d = base.decisions
    n = len(d)
    uniform = Dist(np.zeros((n, 19)), np.ones(n), d.allowed)
    channel_value = np.array([1.0, 3.0, 1.0, 0.5, 0.5, 6.0, 9.0])  # EUR by channel: wait, sms, ..., call
    targets = ("no_contact", "static_ladder")
    dists = {t: TargetPolicy(t).dist(d.views, d.allowed) for t in targets}
    truth = {t: float((dists[t].expected_onehots()[:, :7] @ channel_value).mean()) for t in targets}
    covered = 0
    errors: dict[str, list[list[float]]] = {t: [] for t in targets}
    for rep in range(10):
        rng = np.random.default_rng(rep)
        actions = sample(uniform, rng)
        reward = channel_value[actions[:, 0]] + rng.normal(0, 2.0, n)
        logged = d.take(np.arange(n))
        logged.actions, logged.probs, logged.epsilon, logged.propensity = actions, uniform.probs, uniform.epsilon, uniform.prob(actions)
        fit = ope.Fitted.of(ope.Logged(logged, base.account, reward, reward, base.n_accounts, base.x), rep, 200)
        for t in targets:
            e = ope.evaluate_target(fit, TargetPolicy(t), sequential=False).estimates
            covered += t == "no_contact" and e["ips"].low <= truth[t] <= e["ips"].high
            errors[t].append([e[k].value - truth[t] for k in ("ips", "snips", "dr")])
    assert covered >= 8  # 95 % intervals, 10 repetitions
    wait = np.array(errors["no_contact"])
    assert (np.abs(wait.mean(axis=0)) < 4 * wait.std(axis=0) / np.sqrt(10) + 1e-9).all()
    # the ladder contacts rarely and on one action in hundreds: IPS is noisy there, while the doubly
    # robust estimate (the reward is linear in the channel, so the model is right) stays close
    ladder = np.array(errors["static_ladder"])
    assert ladder.std(axis=0)[2] < 0.5 * ladder.std(axis=0)[0]
    assert abs(ladder[:, 2].mean()) < 0.05 * truth["static_ladder"]


def test_bench_small(capsys: pytest.CaptureFixture[str]) -> None:
    sc = load_scenario("default", [])
    r = ope.bench(
        sc, targets=("static_ladder", "no_contact"), repetitions=2, debtors=150, horizon_days=40, bootstrap=50, truth_debtors=300, progress=False
    )
    assert set(r["table"]) == set(ope.DECISION_ESTIMATORS + ope.ACCOUNT_ESTIMATORS)
    for m in r["table"].values():
        assert 0 <= m["coverage"] <= 1 and m["rmse"] >= m["mean_abs_bias"] - 1e-9
    acc = {row["target"]: row["truth"] for row in r["rows"] if row["estimator"] == "fqe" and row["rep"] == 0}
    assert acc["static_ladder"] > acc["no_contact"]  # the truth runs are the policies' own
    assert "| doubly robust | decision |" in ope.bench_markdown(r)
    assert all(0 < r["one_decision_truth_se"][t] < abs(r["one_decision_truth"][t]) for t in ("static_ladder", "no_contact"))
    assert f"| no_contact | {r['one_decision_truth']['no_contact']:.2f} +- {r['one_decision_truth_se']['no_contact']:.2f} |" in ope.bench_markdown(r)


def test_verdicts_and_the_logging_needed() -> None:
    rng = np.random.default_rng(0)
    champ = ope.Estimate("dr", 10.0, 9.0, 11.0, 10 + rng.normal(0, 0.5, 400))
    better = ope.Estimate("dr", 12.0, 11.0, 13.0, champ.boot + 2 + rng.normal(0, 0.2, 400))
    unclear = ope.Estimate("dr", 10.5, 9.0, 12.0, champ.boot + 0.5 + rng.normal(0, 0.5, 400))
    assert ope.verdict("b", "c", "dr", better, champ, 1000).word == "better"
    assert ope.verdict("w", "c", "dr", champ, better, 1000).word == "worse"
    v = ope.verdict("u", "c", "dr", unclear, champ, 1000)
    assert v.word == "cannot tell" and v.low < 0 < v.high
    # the interval narrows as 1/sqrt(n): the decisions needed make its half-width the difference
    half = (v.high - v.low) / 2
    assert v.more_decisions == pytest.approx(1000 * (half / v.diff) ** 2 - 1000, rel=0.01)
    assert "cannot tell" in v.sentence()
    assert ope.spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 30, 20, 40])) == pytest.approx(0.8)


def test_known_pairs_are_those_the_truth_can_order() -> None:
    truth = {"a": 100.0, "b": 103.0, "c": 120.0}
    assert ope.known_pairs(truth, {"a": 2.0, "b": 2.0, "c": 2.0}) == [("a", "c"), ("b", "c")]  # a-b: 3 < 2 x 2.83
    assert ope.known_pairs(truth, None) == [("a", "b"), ("a", "c"), ("b", "c")]
    # an estimator that swaps a and b (whose order is unknown) but orders c right orders every known pair
    rows = [
        {"rep": 0, "target": t, "estimator": name, "value": v, "low": v - 1, "high": v + 1, "truth": truth[t]}
        for name in ope.DECISION_ESTIMATORS + ope.ACCOUNT_ESTIMATORS
        for t, v in (("a", 104.0), ("b", 101.0), ("c", 119.0))
    ]
    table = ope.bench_table(rows, ["a", "b", "c"], 1, {"a": 2.0, "b": 2.0, "c": 2.0})
    dr, fqe = table["dr"], table["fqe"]
    assert dr["known_pairs"] == 2 and dr["known_pairs_ordered"] == 1.0 and dr["spearman"] == pytest.approx(0.5)
    assert fqe["known_pairs"] == 3 and fqe["known_pairs_ordered"] == pytest.approx(2 / 3)  # exact truths: a-b counts


def test_ope_cli_writes_a_report_with_a_verdict(logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    assert main(["ope", "--logs", str(logs), "--policy", "segment_journeys", "--policy", "no_contact", "--out", str(out), "--bootstrap", "50"]) == 0
    md = (out / "report.md").read_text()
    assert "## Verdict" in md and "segment_journeys" in md and md.count("| `no_contact` |") == 3
    assert "<table>" in (out / "report.html").read_text() and (out / "estimates.png").stat().st_size > 1000
    summary = json.loads((out / "ope.json").read_text())
    assert {v["word"] for v in summary["verdicts"]} <= {"better", "worse", "cannot tell"}
    capsys.readouterr()
    for argv, needle in (
        (["ope", "--logs", str(tmp_path / "none"), "--policy", "random"], "is not a folder"),
        (["ope", "--logs", str(logs), "--policy", "nope"], "unknown policy"),
        (["ope", "--logs", str(logs), "--policy", "oracle"], "cannot re-score"),
        (["ope", "--logs", str(logs)], "at least one --policy"),
        (["ope", "--logs", str(logs), "--policy", "random", "--estimator", "magic"], "unknown estimator"),
    ):
        assert main(argv) == EXIT_BAD_INPUT, argv
        assert needle in capsys.readouterr().err


def test_perf_ope_small() -> None:
    from experiments.perf import perf_ope

    r = perf_ope(debtors=150, days=30)
    assert r["accounts"] == 150 and r["decisions"] > 150
    assert r["per_decision_seconds"] > 0 and r["sequential_seconds"] > 0  # (no timing relation: a loaded machine reorders them)
    # the ratio is of the unrounded times; the JSON rounds seconds and ratios to 0.01
    pd, sim = r["per_decision_seconds"], r["sim_seconds"]
    low, high = (pd - 0.005) / (sim + 0.005), (pd + 0.005) / max(sim - 0.005, 1e-9)
    assert low - 0.005 <= r["ratio_per_decision_to_sim"] <= high + 0.005, r


@pytest.fixture(scope="module")
def learned_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A barely trained MaskablePPO, exported: a learner that logs its own softmax probabilities."""
    from helpers_train import tiny_run

    from agents.export import export

    root = tmp_path_factory.mktemp("learned")
    run = tiny_run(root / "runs")
    return Path(export(str(run), root / "artifact", eval_debtors=100))


def test_an_exported_learner_logs_its_own_probabilities(learned_artifact: Path, tmp_path: Path) -> None:
    from policies.decision import masked_probabilities
    from policies.features import encode
    from policies.runtime import load

    out = tmp_path / "ppo"
    log_run(load_scenario("default", []), str(learned_artifact), 100, 4, out, horizon_days=30)
    d = read_decisions(out)
    assert set(d.policy_id.tolist()) != {"static_ladder"} and (d.epsilon == 0).all()
    heads = np.concatenate(masked_probabilities(load(learned_artifact).scores(encode(d.views)), d.allowed), axis=1)
    assert np.allclose(d.probs, heads)  # what was logged is the artifact's own softmax on the logged view
    assert (d.propensity < 1).mean() > 0.9
    fit = ope.Fitted.of(ope.load_logs(out), 0, 50)
    res = ope.evaluate_target(fit, TargetPolicy(str(learned_artifact)), sequential=False)
    assert res.estimates["snips"].value == pytest.approx(ope.logged_value(fit)["decision"].value, rel=1e-9)


def _records_with_keys(logs: Path, n: int) -> tuple[list[dict[str, object]], object]:
    """``n`` logged views as account records carrying the log's account id and day."""
    d = read_decisions(logs).take(np.arange(n))
    recs = records_from_views(d.views)
    for r, acc, day in zip(recs, d.account_id.tolist(), d.day.tolist(), strict=True):
        r["account_id"], r["day"] = acc, int(day)
    return recs, d


def test_collectrl_decide_writes_a_decision_log_ope_reads(logs: Path, learned_artifact: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from policies.decision import masked_probabilities
    from policies.features import encode
    from policies.runtime import load

    recs, d = _records_with_keys(logs, 300)
    recs[7].pop("day")  # a row the log cannot place in time: reported, not logged, not silently dropped
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "accounts.parquet")
    out, log = tmp_path / "decisions_out.parquet", tmp_path / "log"
    args = ["--input", str(tmp_path / "accounts.parquet"), "--output", str(out), "--log-decisions", str(log), "--no-progress"]
    code = main(["decide", str(learned_artifact), *args])
    assert code == 0
    errors = (tmp_path / "decisions_out.errors.csv").read_text()
    assert errors.splitlines()[1:] == ['8,"day is required with --log-decisions (the day of the decision, as in the outcomes)"']
    scored = pq.read_table(out).to_pylist()
    logged = read_decisions(log)  # checks every propensity against the logged probabilities
    fn = load(learned_artifact)
    keep = np.array([i for i in range(300) if i != 7])
    assert len(logged) == len(scored) == 299
    assert set(logged.policy_id.tolist()) == {fn.policy_id} and set(logged.policy_version.tolist()) == {fn.version}
    assert logged.account_id.tolist() == d.account_id[keep].tolist() and (logged.day == d.day[keep]).all()
    # the logged views are the accounts' views, and the logged probabilities the artifact's own heads on them
    assert all(np.array_equal(getattr(logged.views, f), getattr(d.views.take(keep), f)) for f in type(d.views).field_names())
    heads = np.concatenate(masked_probabilities(fn.scores(encode(logged.views)), logged.allowed), axis=1)
    assert np.allclose(logged.probs, heads)
    assert [r["channel"] for r in scored] == [("wait", "sms", "email", "push", "messenger", "letter", "call")[a] for a in logged.actions[:, 0]]
    assert np.allclose([r["propensity"] for r in scored], logged.propensity)


def test_a_live_server_log_feeds_ope(logs: Path, learned_artifact: Path, tmp_path: Path) -> None:
    """The server's own JSON lines, as written by `collectrl serve --decision-log`, read by `collectrl ope`."""
    import shutil
    import urllib.request

    from experiments.served import serving
    from policies.runtime import load

    recs, _ = _records_with_keys(logs, 400)
    folder = tmp_path / "served"
    folder.mkdir()
    answers = []
    with serving(str(learned_artifact), "--decision-log", str(folder / "decisions.jsonl")) as url:
        for chunk in (recs[:150], recs[150:]):
            req = urllib.request.Request(f"{url}/v1/decide/batch", json.dumps({"accounts": chunk}).encode(), {"content-type": "application/json"})
            answers += json.loads(urllib.request.urlopen(req, timeout=30).read())["decisions"]
        for r in recs[:5]:  # and the one-account route
            req = urllib.request.Request(f"{url}/v1/decide", json.dumps(r).encode(), {"content-type": "application/json"})
            answers.append(json.loads(urllib.request.urlopen(req, timeout=30).read())["decision"])
    d = read_decisions(folder)  # checks every propensity against the logged probabilities
    assert len(d) == 405 and set(d.policy_version.tolist()) == {load(learned_artifact).version}
    assert [a["channel"] for a in answers] == [("wait", "sms", "email", "push", "messenger", "letter", "call")[a] for a in d.actions[:, 0]]
    assert np.allclose([a["propensity"] for a in answers], d.propensity)
    # with the outcomes beside it, the log is evaluated: the logging policy on its own log gets its logged value
    for f in logs.iterdir():
        if not f.name.startswith("decisions."):
            shutil.copy(f, folder / f.name)
    fit = ope.Fitted.of(ope.load_logs(folder), 0, 50)
    res = ope.evaluate_target(fit, TargetPolicy(str(learned_artifact)), sequential=False)
    assert res.estimates["snips"].value == pytest.approx(ope.logged_value(fit)["decision"].value, rel=1e-9)
    assert res.diagnostics["ess_share"] == pytest.approx(1.0)


def test_the_truths_standard_error_matches_the_spread_of_resampled_accounts() -> None:
    """The bench's truth carries a standard error; checked against the account bootstrap's spread."""
    rng = np.random.default_rng(5)
    counts = rng.integers(1, 30, 4000).astype(np.float64)
    sums = counts * rng.gamma(0.3, 500, 4000)  # lumpy per-account cash, like the probe runs'
    value, se = ope.ratio_with_se(sums, counts)
    assert value == pytest.approx(sums.sum() / counts.sum())
    boot = ope._ratio("x", rng.multinomial(4000, np.full(4000, 1 / 4000), size=2000).astype(np.float64), sums, counts).boot
    assert se == pytest.approx(boot.std(), rel=0.1)


def test_the_model_term_of_the_bootstrap_is_the_refit_to_first_order(tmp_path: Path) -> None:
    """DM and DR intervals include the reward model's sampling error through a one-step
    linearisation of refitting the ridge model on each bootstrap sample; it must agree with
    actually refitting it (here for DM, where it matters most)."""
    log_run(load_scenario("default", []), "static_ladder", 1500, 3, tmp_path / "logs", epsilon=0.2, horizon_days=60)
    data = ope.load_logs(tmp_path / "logs")
    fit = ope.Fitted.of(data, seed=3, bootstrap=30)
    dist = TargetPolicy("segment_journeys").dist(data.decisions.views, data.decisions.allowed)
    expected = dist.expected_onehots()
    folds = [np.flatnonzero(fit.fold == k) for k in (0, 1)]
    model = fit.model_bootstrap([fit.feats.sums(expected, (fit.fold == k).astype(float)) for k in (0, 1)])
    # refit each fold's model with the bootstrap sample's account weights: the change in the DM numerator
    acc = data.account
    refit = []
    for c in fit.counts:
        w = c[acc]
        num = 0.0
        for k, f in enumerate(folds):
            on = np.flatnonzero(fit.fold == 1 - k)
            p = fit.phi[on]
            beta = ope.ridge(p.T @ (w[on, None] * p), p.T @ (w[on] * data.reward[on]), len(on))
            num += float(fit.feats.predict(beta, expected[f], f).sum())
        refit.append(num)
    q_pi = fit.q_target(expected)
    by_refit = np.array(refit) - q_pi.sum()
    assert np.corrcoef(model, by_refit)[0, 1] > 0.9
    assert 0.8 < model.std() / by_refit.std() < 1.25
    sampling = fit.counts @ np.bincount(acc, weights=q_pi, minlength=data.n_accounts)
    assert model.std() > 0.3 * sampling.std()  # not negligible: without it DM's interval was too narrow
