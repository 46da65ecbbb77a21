"""The rulebook (sim.behaviour): every rule gives the same numbers on arrays and on Python numbers,
and the batched world, the one-debtor engine and the oracle all apply it."""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import policies
import sim  # noqa: F401  (registers the oracle)
from policies import compliance
from sim import behaviour as rules
from sim import load_scenario
from sim.ledger import Event
from sim.runner import run_portfolio
from sim.single import OneDebtor
from sim.world import World

SC = load_scenario("default")
B = SC.behaviour
PRM = rules.Params.of(SC)
N = 300


def _inputs(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    u = lambda lo=0.0, hi=1.0: rng.uniform(lo, hi, N)
    i = lambda lo, hi: rng.integers(lo, hi, N)
    return {
        "unit": u(),
        "logit": u(-12, 12),
        "fatigue": u(0, 6),
        "bool_a": rng.random(N) < 0.5,
        "bool_b": rng.random(N) < 0.5,
        "tone": i(0, 4),
        "offer": i(0, 4),
        "channel": i(0, 6),
        "dpd": i(1, 400),
        "days": i(0, 200),
        "payday": i(1, 29),
        "count": i(0, 30),
        "money": np.concatenate([u(0, 5000)[:-3], [0.0, 0.5, 1.0]]),
        "offer_effect": rng.normal(0, 1, (N, 4)),
        "intensity": u(0, 0.3),
    }


# rule -> (the arguments of element j, as a function of the inputs and j); each case calls the
# rule once on whole arrays and once per element on Python numbers
def _cases() -> dict[str, Callable[[dict[str, Any], Any], tuple[Any, ...]]]:
    coef = PRM.outcome_coef
    return {
        "sigmoid": lambda x, j: (x["logit"][j],),
        "p_notice": lambda x, j: (x["unit"][j], x["fatigue"][j] / 6, PRM.window_sensitivity[x["channel"][j]]),
        "complaint_logit": lambda x, j: (B, x["logit"][j], x["fatigue"][j], x["bool_a"][j], x["bool_b"][j], x["tone"][j] == 3),
        "opt_out_logit": lambda x, j: (B, x["fatigue"][j]),
        "engage_logit": lambda x, j: (
            B,
            PRM.engage_logit[x["channel"][j]],
            x["unit"][j],
            x["logit"][j] / 10,
            x["offer_effect"][j, 0],
            x["tone"][j],
            x["bool_a"][j],
            x["fatigue"][j],
            x["dpd"][j],
        ),
        "log_balance": lambda x, j: (x["money"][j],),
        "outcome_probabilities": lambda x, j: (coef, x["unit"][j], x["fatigue"][j] / 6, x["money"][j], x["offer"][j], x["offer_effect"][j]),
        "draw_outcome": lambda x, j: (
            [p[j] for p in rules.outcome_probabilities(coef, x["unit"], x["fatigue"] / 6, x["money"], x["offer"], x["offer_effect"])],
            x["unit"][::-1][j],
        ),
        "part_payment_share": lambda x, j: (B, x["unit"][j]),
        "promise_days": lambda x, j: (B, x["unit"][j]),
        "settlement_amount": lambda x, j: (B, x["money"][j]),
        "effective_ability": lambda x, j: (B, x["unit"][j], x["fatigue"][j] / 60, x["days"][j], x["payday"][j], int(x["days"][0]) + 3),
        "keep_logit": lambda x, j: (B, 0.5, x["unit"][j], x["fatigue"][j] / 6),
        "promise_keep_logit": lambda x, j: (B, x["unit"][j], x["fatigue"][j] / 6, x["offer"][j] % 3),
        "instalment_keep_logit": lambda x, j: (B, x["unit"][j], x["fatigue"][j] / 6),
        "plan_instalment": lambda x, j: (B, x["money"][j]),
        "baseline_intensity": lambda x, j: (B, x["unit"][j] / 50, x["dpd"][j]),
        "decayed_intensity": lambda x, j: (PRM.intensity_decay, x["unit"][j] / 50, x["intensity"][j]),
        "expected_unprompted": lambda x, j: (B, x["unit"][j] / 50, x["intensity"][j], x["days"][j]),
        "contact_jump": lambda x, j: (B, x["unit"][j]),
        "payment_jump": lambda x, j: (B, x["money"][::-1][j] / 2, x["money"][j]),
        "p_spontaneous": lambda x, j: (x["intensity"][j],),
        "spontaneous_share": lambda x, j: (B.spontaneous_payment, x["unit"][j], x["fatigue"][j] / 6),
        "decayed_fatigue": lambda x, j: (PRM.fatigue_decay, x["fatigue"][j]),
        "churn_logit": lambda x, j: (B, x["logit"][j] / 4, x["count"][j], x["count"][::-1][j] // 5, x["count"][j] * 2),
    }


def _plain(v: Any) -> Any:
    """A numpy element as the Python number the one-debtor engine holds; lists element by element."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _whole(args_of: Callable[[dict[str, Any], Any], tuple[Any, ...]], x: dict[str, Any]) -> tuple[Any, ...]:
    return args_of(x, slice(None))


def test_every_rule_has_a_case_here():
    public = {n for n, f in inspect.getmembers(rules, inspect.isfunction) if f.__module__ == rules.__name__ and not n.startswith("_")}
    assert public == set(_cases()), "a rule without an arrays-and-numbers case (add it to _cases)"


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", sorted(_cases()))
def test_a_rule_gives_the_same_numbers_on_arrays_and_on_python_numbers(name, seed):
    rule, args_of = getattr(rules, name), _cases()[name]
    x = _inputs(seed)
    batch = rule(*_whole(args_of, x))
    for j in range(N):
        one = rule(*(_plain(a) for a in args_of(x, j)))
        want = [p[j] for p in batch] if isinstance(batch, list) else batch[j]
        if isinstance(one, list):
            assert len(one) == len(want) and all(type(v) is float for v in one), (name, j)
            assert all(math.isclose(a, float(b), rel_tol=1e-12, abs_tol=1e-15) for a, b in zip(one, want, strict=True)), (name, j, one, want)
        else:
            assert type(one) in (int, float), (name, type(one))  # Python numbers stay Python numbers (speed)
            assert math.isclose(one, float(want), rel_tol=1e-12, abs_tol=1e-15), (name, j, one, want)


def test_outcome_probabilities_sum_to_one_and_need_their_offer():
    x = _inputs(3)
    for offer in range(4):
        p = rules.outcome_probabilities(PRM.outcome_coef, x["unit"], x["fatigue"] / 6, x["money"], np.full(N, offer), x["offer_effect"])
        np.testing.assert_allclose(sum(p), 1.0, rtol=1e-12)
        for out, needs in rules.OFFERED_OUTCOME:
            assert (p[out] > 0).all() == (offer == needs) and ((p[out] == 0).all() or offer == needs)


def _spy(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the calls of every rule (the engines and the oracle call them through the module)."""
    calls: Counter[str] = Counter()
    for name in _cases():
        f = getattr(rules, name)

        def counted(*a: Any, _f: Callable[..., Any] = f, _n: str = name) -> Any:
            calls[_n] += 1
            return _f(*a)

        monkeypatch.setattr(rules, name, counted)
    return calls


def _random_days(step: Callable[[list[int]], Any], mask_of: Callable[[], list[bool]], days: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(days):
        m, a, start = mask_of(), [], 0
        for size in (7, 4, 4, 4):
            allowed = [i for i in range(size) if m[start + i]]
            a.append(allowed[int(rng.integers(0, len(allowed)))])
            start += size
        step(a)


# rules only the oracle needs (it values a contact; the engines draw what happens)
ORACLE_ONLY = {"expected_unprompted"}


def test_the_world_the_engine_and_the_oracle_apply_the_same_rules(monkeypatch):
    sc = load_scenario("default", ["behaviour.promise_days.min=0", "behaviour.promise_days.max=2", "behaviour.plan_interval_days=7"])
    calls = _spy(monkeypatch)
    world = World(sc, 400, 2, mode="episodic", horizon_days=40)

    def world_step(_a: list[int]) -> None:
        mask = world.action_mask()
        rng = np.random.default_rng(world.day)
        acts = np.zeros((world.n, 4), dtype=np.int64)
        for i in range(world.n):
            m, row, start = mask[i], [], 0
            for size in (7, 4, 4, 4):
                allowed = np.flatnonzero(m[start : start + size])
                row.append(int(rng.choice(allowed)))
                start += size
            acts[i] = row
        res = world.step(acts)
        world.refill(np.flatnonzero(res.terminated | res.truncated))

    _random_days(world_step, lambda: [True] * 19, 60, 0)
    by_world = set(calls)
    calls.clear()
    eng = OneDebtor(sc, 2, horizon_days=40)

    def engine_step(a: list[int]) -> None:
        res = eng.step(a)
        if res.terminated or res.truncated:
            eng.next_debtor()

    _random_days(engine_step, eng.mask, 3000, 1)
    by_engine = set(calls)
    calls.clear()
    oracle = policies.make("oracle")
    w = World(sc, 500, 3, mode="portfolio", horizon_days=30)
    for _ in range(20):
        v = w.views()
        w.step(oracle.act_with_world(w, v, compliance.action_mask(v, w.profile)), v)  # type: ignore[attr-defined]
    by_oracle = set(calls)

    every = set(_cases())
    # the two engines draw from the same rules; between them they use every rule but the oracle's own
    assert by_world == by_engine, by_world ^ by_engine
    assert by_world == every - ORACLE_ONLY, sorted(every - ORACLE_ONLY - by_world)
    # the oracle's expected values come from the rules the world draws from, not from copies
    assert by_oracle >= {
        "p_notice",
        "complaint_logit",
        "opt_out_logit",
        "engage_logit",
        "outcome_probabilities",
        "effective_ability",
        "promise_keep_logit",
        "instalment_keep_logit",
        "baseline_intensity",
        "expected_unprompted",
        "churn_logit",
        "settlement_amount",
        "part_payment_share",
        "sigmoid",
    }, sorted(by_oracle)


def test_one_key_changes_a_rule_for_the_world_the_engine_and_the_oracle():
    """The deferral keep bonus: a scenario key, read by one rule (promise_keep_logit)."""
    keep = {}
    deferrals = {}
    for bonus in (0.0, 4.0):
        sc = load_scenario("default", [f"behaviour.deferral_keep_bonus={bonus}"])
        w = run_portfolio(sc, policies.make("oracle"), 3000, seed=4, horizon_days=90, record_events=True)
        cols = w.ledger.columns()
        ev, detail = cols["event"], cols["detail"]
        contacts = ev == Event.CONTACT
        deferrals[bonus] = int((contacts & (detail % 4 == 3)).sum())  # contacts offering a deferral
        made = int(((ev == Event.PROMISE) & (detail == rules.DEFERRAL_KIND)).sum())
        keep[bonus] = (int((ev == Event.PROMISE_KEPT).sum()), made)
        e = OneDebtor(sc, 4)
        assert rules.sigmoid(rules.promise_keep_logit(e.b, 0.5, 0.5, rules.DEFERRAL_KIND)) == pytest.approx(
            rules.sigmoid(B.promise_keep_logit + bonus)
        )
    # the oracle values a deferral by the rule, so it offers more of them when they are kept more
    assert deferrals[4.0] > 1.5 * deferrals[0.0] > 0, deferrals
    # and the world keeps more promises
    assert keep[4.0][0] > keep[0.0][0], keep
