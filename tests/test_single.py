"""The one-debtor engine (sim.single) against the SimPy world it re-implements, debtor by debtor."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import sim  # noqa: F401  (registers the envs)
from policies import compliance
from sim import load_scenario
from sim.callcentre import lone_call_start
from sim.single import OneDebtor
from sim.state import DebtorState
from sim.world import REWARD_COMPONENTS, World

ODD_SHIFTS = (
    "call_centre.shifts=[{start_hour: 9, end_hour: 17, share: 0.5}, {start_hour: 12, end_hour: 24, share: 0.3},"
    " {start_hour: 17, end_hour: 21, share: 0.2}]"
)
NO_HOURS = "compliance_profile=none"
LONG_CALLS = ("call_centre.handle_time_min=400", "call_centre.no_answer_time_min=300")
DAY_LONG_CALLS = ("call_centre.handle_time_min=2000", "call_centre.no_answer_time_min=2000")
# engaged contacts mostly end in commitments: promises, settlements and plans, due the same day
COMMITMENTS = (
    "behaviour.promise_days.min=0",
    "behaviour.promise_days.max=0",
    "behaviour.settlement_pay_days=0",
    "behaviour.outcomes.promise.base=2.5",
    "behaviour.outcomes.settlement.base=3.0",
    "behaviour.outcomes.plan.base=2.5",
    "behaviour.plan_instalments=2",
    "channels.sms.engage_logit=2.0",
    "channels.email.engage_logit=2.0",
)
# (scenario, overrides, horizon_days)
CASES = {
    "default": ("default", (), None),
    "telecom": ("telecom", (), None),
    "late_stage": ("late_stage", (), None),
    "uk_fca": ("default", ("compliance_profile=uk_fca",), None),
    # no hours: late calls and messages; two shifts on at once (two agents), one joining mid-window
    "none_odd_shifts": ("default", (NO_HOURS, ODD_SHIFTS, "call_centre.agents=20000"), None),
    # calls long enough to run past their window, into the night and into the next day's calls
    "long_calls": ("default", (NO_HOURS, *LONG_CALLS), None),
    # two agents and calls lasting more than a day: several calls going at once
    "two_agents_day_long_calls": ("default", (NO_HOURS, ODD_SHIFTS, "call_centre.agents=20000", *DAY_LONG_CALLS), None),
    # promises and settlements due the day they are made, at once when made after 18:00
    "commitments_due_today": ("default", (NO_HOURS, *COMMITMENTS), None),
    # debtors sold after 5 days with letters in the post and calls going: their events go stale
    "stale_events": ("default", (NO_HOURS, *LONG_CALLS, "channels.letter.delay_days=6"), 5),
    # a logit so low that exp(-z) overflows: numpy gives probability 0, so must the engine
    "overflowing_logits": ("default", ("behaviour.opt_out_logit=-800", "channels.sms.engage_logit=-800"), None),
}


def _same(a: object, b: object) -> bool:
    """Equal, floats to 1e-12: both engines give the same bits here (both call the rulebook's
    functions, in float64), but numpy's exp may differ from libm's by an ulp on other CPUs. A
    rule applied differently moves values by far more, and changes the discrete fields outright."""
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-9)  # type: ignore[arg-type]
    return a == b


def _same_values(a: object, b: object) -> bool:
    """:func:`_same`, element by element through lists (per-channel columns, the 7-day ring)."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_values(x, y) for x, y in zip(a, b, strict=True))
    return _same(a, b)


def _random_action(rng: np.random.Generator, mask: list[bool]) -> list[int]:
    if rng.random() < 0.1:  # sometimes anything, so blocked actions are compared too
        return [int(rng.integers(0, 7)), int(rng.integers(0, 4)), int(rng.integers(0, 4)), int(rng.integers(0, 4))]
    out, start = [], 0
    for size in (7, 4, 4, 4):
        allowed = [i for i in range(size) if mask[start + i]]
        out.append(allowed[int(rng.integers(0, len(allowed)))])
        start += size
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_debtor_engine_equals_the_world_of_one_slot(case):
    scenario, overrides, horizon = CASES[case]
    sc = load_scenario(scenario, list(overrides))
    world, eng = World(sc, 1, 7, mode="episodic", horizon_days=horizon), OneDebtor(sc, 7, horizon_days=horizon)
    rng = np.random.default_rng(7)
    seen = {"episodes": 0, "blocked": 0, "cash_days": 0, "terminated": 0, "truncated": 0, "calls": 0, "stale": 0}
    for day in range(1200):
        row_w, row_e = world.views().row(0), eng.row()
        assert row_w.keys() == row_e.keys()
        diff = {k: (row_w[k], row_e[k]) for k in row_w if not _same(row_w[k], row_e[k])}
        assert not diff, f"day {day}: views differ {diff}"
        mask = compliance.action_mask_row(row_w, world.profile)
        assert eng.mask() == mask
        a = _random_action(rng, mask)
        with np.errstate(over="ignore"):  # the overflowing case: numpy's exp gives inf, as it should
            rw = world.step(np.array([a]))
        re_ = eng.step(np.array(a))
        for k in REWARD_COMPONENTS:
            assert _same(float(rw.components[k][0]), re_.components[k]), (day, k, float(rw.components[k][0]), re_.components[k])
        assert _same(float(rw.reward[0]), re_.reward)
        assert (bool(rw.terminated[0]), bool(rw.truncated[0]), bool(rw.blocked[0])) == (re_.terminated, re_.truncated, re_.blocked), day
        state_w, state_e = world.state.snapshot(), eng.snapshot()
        assert state_w.keys() == state_e.keys()
        diff = {k: (state_w[k][0].tolist(), state_e[k]) for k in state_w if not _same_values(state_w[k][0].tolist(), state_e[k])}
        assert not diff, f"day {day}: state differs {diff}"
        assert abs(eng.money_gap()) < 1e-6
        seen["blocked"] += re_.blocked
        seen["cash_days"] += re_.components["cash"] > 0
        seen["calls"] += a[0] == 6 and not re_.blocked
        if re_.terminated or re_.truncated:
            seen["episodes"] += 1
            seen["terminated"] += re_.terminated
            seen["truncated"] += re_.truncated
            seen["stale"] += len(eng._events) > 0  # the next debtor starts with the last one's events pending
            world.refill(np.array([0]))
            eng.next_debtor()
            assert eng.debtor_id == int(world.debtor_id[0])
    # the comparison covered the paths that matter, not just quiet days
    assert eng.snapshot().keys() == {name for name, _ in DebtorState.columns()}
    assert seen["episodes"] >= 4 and seen["blocked"] >= 5 and seen["cash_days"] >= 2 and seen["calls"] >= 20, seen
    seen["promises"], seen["plans"] = eng.promise_serial, eng.plan_serial
    if case == "commitments_due_today":
        assert seen["promises"] >= 20 and seen["plans"] >= 5 and seen["terminated"] >= 15, str(seen)
    if case == "stale_events":
        assert seen["stale"] >= 50, seen
    if case == "two_agents_day_long_calls":
        assert eng.calls_dropped >= 1 or seen["calls"] >= 100, seen


def test_debtor_env_runs_on_the_one_debtor_engine_with_the_worlds_rollout():
    env = gym.make("collectrl/Debtor-v1", scenario="telecom")
    obs, info = env.reset(seed=11)
    sc = load_scenario("telecom")
    world = World(sc, 1, 11, mode="episodic")
    from policies.features import encode

    rng = np.random.default_rng(0)
    for _ in range(300):
        np.testing.assert_allclose(obs, encode(world.views())[0], rtol=1e-6, atol=1e-7)
        mask = env.unwrapped.action_masks()
        np.testing.assert_array_equal(mask, world.action_mask()[0])
        a = _random_action(rng, mask.tolist())
        mask[:] = False  # the caller's own array: changing it changes nothing in the env
        np.testing.assert_array_equal(env.unwrapped.action_masks(), world.action_mask()[0])
        obs, r, term, trunc, info = env.step(np.array(a))
        res = world.step(np.array([a]))
        assert _same(r, float(res.reward[0])) and info["blocked"] == bool(res.blocked[0])
        assert _same(info["outstanding_eur"], float(world.outstanding[0]))
        if term or trunc:
            obs, info = env.reset()
            world.refill(np.array([0]))
            assert info["debtor"] == int(world.debtor_id[0])


def test_bad_actions_name_the_column_and_the_range():
    eng = OneDebtor(load_scenario("default"), 0)
    with pytest.raises(ValueError, match=r"column 2 \(tone\) must be in 0..3"):
        eng.step([1, 0, 4, 0])
    with pytest.raises(ValueError, match="whole numbers"):
        eng.step(np.array([1.5, 0, 0, 0]))
    with pytest.raises(ValueError, match="4 entries"):
        eng.step(np.array([1, 0, 0]))
    with pytest.raises(ValueError, match="4 entries"):
        eng.step(np.array([[1, 0], [0, 0]]))  # four numbers, not one action
    with pytest.raises(ValueError, match="integers"):
        eng.step(np.array(["a", "b", "c", "d"]))
    assert eng.day == 0  # nothing ran
    assert eng.step(np.array([[0, 0, 0, 0]])).blocked is False  # one action with a batch axis is fine, as for the world


def test_the_view_handed_out_is_not_the_engines_state():
    eng = OneDebtor(load_scenario("default"), 0)
    on_file = list(eng.on_file)
    r = eng.row()
    r["on_file"][:] = [False] * 6
    r["opted_out"][0] = True
    assert eng.on_file == on_file and eng.opted_out == [False] * 6


def test_stepping_a_finished_debtor_is_an_error():
    eng = OneDebtor(load_scenario("default"), 0, horizon_days=3)
    ends = [eng.step([0, 0, 0, 0]) for _ in range(3)]
    assert ends[-1].truncated and not any(e.truncated for e in ends[:-1])
    assert eng.sold > 0 and eng.outstanding == 0.0 and abs(eng.money_gap()) < 1e-9
    with pytest.raises(RuntimeError, match="start the next debtor"):
        eng.step([0, 0, 0, 0])
    eng.next_debtor()
    assert eng.debtor_id == 1 and eng.days_in == 0 and eng.step([0, 0, 0, 0]).truncated is False


# a lone call: the first moment of its window with an agent on shift and free
DAY_SHIFT = [0] * 9 + [1] * 8 + [0] * 7  # 09:00-17:00, one agent


@pytest.mark.parametrize(
    ("duty", "opens", "closes", "going", "expected"),
    [
        (DAY_SHIFT, 8 * 60, 12 * 60, [], 9 * 60),  # the shift starts mid-window
        (DAY_SHIFT, 12 * 60, 17 * 60, [], 12 * 60),  # on shift at the opening
        (DAY_SHIFT, 17 * 60, 21 * 60, [], None),  # the shift ended at the opening
        (DAY_SHIFT, 12 * 60, 17 * 60, [13 * 60 + 5.5], 13 * 60 + 5.5),  # the one agent is on an earlier call
        (DAY_SHIFT, 12 * 60, 17 * 60, [17 * 60 + 1], None),  # ... until after the close
        (DAY_SHIFT, 12 * 60, 17 * 60, [11 * 60], 12 * 60),  # a call that ended before the opening holds no one
        ([2] * 24, 12 * 60, 17 * 60, [13 * 60], 12 * 60),  # a second agent is free
        ([2] * 24, 12 * 60, 17 * 60, [14 * 60, 13 * 60 + 1], 13 * 60 + 1),  # both are on calls: the first to end
        # two agents until 09:00, then one; both on calls until 09:30 and 10:00: the one freed at
        # 09:30 goes off shift, so the call waits for the other
        ([2] * 9 + [1] * 15, 8 * 60, 12 * 60, [9 * 60 + 30, 10 * 60], 10 * 60),
        ([0] * 12 + [1] + [0] * 11, 8 * 60, 12 * 60, [], None),  # the shift starts at the close
        ([1] * 24, 1440 + 21 * 60, 1440 + 23 * 60, [], 1440 + 21 * 60),  # a later day
    ],
)
def test_lone_call_start(duty, opens, closes, going, expected):
    assert lone_call_start(duty, opens, closes, going) == expected


def test_a_long_stream_of_debtors_keeps_its_draw_tables_bounded():
    eng = OneDebtor(load_scenario("default"), 5, horizon_days=30)
    for _ in range(4000):  # at least 130 debtors: each is sold at 30 days if it has not paid
        res = eng.step([0, 0, 0, 0])
        if res.terminated or res.truncated:
            eng.next_debtor()
    assert eng.day == 4000 and eng.debtor_id >= 130
    # the day-keyed tables cover days around today, not every day since day 0
    assert eng._spont_from > 3900 and len(eng._spont) == 30
    assert eng._day_keys_from > 2000 or not eng._day_keys


def test_maskable_ppo_learns_and_predicts_on_debtor_v0_without_warnings():
    import warnings

    from sb3_contrib import MaskablePPO

    env = gym.make("collectrl/Debtor-v1")
    obs, _ = env.reset(seed=0)
    model = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=32, seed=0, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. torch on a read-only mask array
        model.learn(128)
        for _ in range(20):
            mask = env.unwrapped.action_masks()
            action, _ = model.predict(obs, action_masks=mask)
            starts = (0, 7, 11, 15)
            assert all(mask[s + int(v)] for s, v in zip(starts, action, strict=True))  # only allowed values
            obs, _, term, trunc, _ = env.step(action)
            if term or trunc:
                obs, _ = env.reset()
