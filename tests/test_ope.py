"""Decision logs and off-policy evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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
