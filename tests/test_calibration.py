"""Every published figure a preset claims (``calibration:`` in its YAML) is reproduced within tolerance."""

from __future__ import annotations

import pytest

from sim.calibration import measure_all
from sim.config import available_scenarios, load_scenario

CASES = [(name, i) for name in available_scenarios() for i in range(len(load_scenario(name).calibration))]
_CACHE: dict[str, list] = {}


def _measurements(name: str):
    if name not in _CACHE:
        _CACHE[name] = measure_all(load_scenario(name), debtors=20_000, seed=0)
    return _CACHE[name]


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "row"), CASES, ids=[f"{n}-{load_scenario(n).calibration[i].metric}" for n, i in CASES])
def test_preset_reproduces_published_figure(scenario, row):
    m = _measurements(scenario)[row]
    t = m.target
    assert m.passed, f"{scenario}: {t.metric} = {m.value:.4f}, target {t.target} (tolerance {t.tolerance}, {t.check}) — {t.figure} [{t.source}]"


@pytest.mark.slow
@pytest.mark.parametrize("scenario", available_scenarios())
def test_over_contact_does_not_pay_and_contact_beats_silence(scenario):
    """The industry ladder beats both random daily contact and never contacting anyone."""
    import policies
    from sim.kpis import portfolio_kpis
    from sim.runner import run_portfolio

    sc = load_scenario(scenario)
    nv = {p: portfolio_kpis(run_portfolio(sc, policies.make(p), 8000, 0))["net_value_per_debtor"] for p in ("static_ladder", "random", "no_contact")}
    assert nv["static_ladder"] > nv["random"], nv
    assert nv["static_ladder"] > nv["no_contact"], nv
