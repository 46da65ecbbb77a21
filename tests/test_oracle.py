"""The oracle: legal, deterministic, and the strongest policy on every preset."""

from __future__ import annotations

import numpy as np
import pytest

import policies
import sim  # noqa: F401  (registers the oracle)
from sim import load_scenario
from sim.config import available_scenarios
from sim.kpis import portfolio_kpis
from sim.runner import run_portfolio


def test_oracle_is_registered_and_refuses_to_act_blind():
    assert "oracle" in policies.registered()
    o = policies.make("oracle")
    with pytest.raises(TypeError, match="latent traits"):
        o.act(None, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("profile", ["us_reg_f", "uk_fca", "none"])
def test_oracle_is_always_compliant_and_deterministic(profile):
    sc = load_scenario("default", [f"compliance_profile={profile}"])
    a = run_portfolio(sc, policies.make("oracle"), 1500, seed=3, horizon_days=60, record_events=True)
    b = run_portfolio(sc, policies.make("oracle"), 1500, seed=3, horizon_days=60, record_events=True)
    assert a.blocked_by_reason.sum() == 0
    np.testing.assert_array_equal(a.ledger.columns()["debtor"], b.ledger.columns()["debtor"])
    np.testing.assert_array_equal(a.net_value, b.net_value)


def test_oracle_never_offers_a_settlement_to_someone_who_would_pay_in_full():
    sc = load_scenario("default")
    w = run_portfolio(sc, policies.make("oracle"), 3000, seed=1, horizon_days=60)
    assert w.traits is not None
    forgetful = w.traits.archetype == 0
    # the forgetful-but-willing would pay; forgiving half their debt would be a loss
    assert w.forgiven[forgetful].sum() < 0.01 * w.collected[forgetful].sum()


@pytest.mark.slow
@pytest.mark.parametrize("scenario", available_scenarios())
def test_oracle_beats_every_other_policy_on_every_preset(scenario):
    sc = load_scenario(scenario)
    nv = {}
    for pid in policies.registered():
        nv[pid] = portfolio_kpis(run_portfolio(sc, policies.make(pid), 6000, seed=0))["net_value_per_debtor"]
    best_other = max(v for k, v in nv.items() if k != "oracle")
    assert nv["oracle"] > best_other, nv
