"""The SimPy world: money conservation, exact event traces, common random numbers, capacity, compliance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policies
from policies.schema import MINUTES_PER_DAY, Channel, Offer, Tone, ViewBatch, Window
from sim import load_scenario
from sim.ledger import Event
from sim.population import sample
from sim.runner import run_portfolio
from sim.world import Status

# Everyone reachable and attentive: makes delivery and noticing certain, for exact traces.
CERTAIN = [
    *(f"population.archetypes.{a}.deliverability=1.0" for a in ("forgetful", "illiquid", "strategic", "vulnerable", "hard_to_reach")),
    *(f"channels.{c}.delivery_rate=1.0" for c in ("sms", "email", "push", "messenger", "letter", "call")),
    "population.on_file={sms: 1.0, email: 1.0, push: 1.0, messenger: 1.0, letter: 1.0, call: 1.0}",
    "population.entry_spread_days=0",
]


class Scripted:
    """Sends one fixed action on given days in collections, waits otherwise."""

    policy_id = "test/scripted"

    def __init__(self, plan: dict[int, tuple[int, int, int, int]]) -> None:
        self.plan = plan

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        out = np.zeros((len(views), 4), dtype=np.int64)
        for day, action in self.plan.items():
            out[views.days_in_collections == day] = action
        return out


@pytest.fixture(scope="module")
def default():
    return load_scenario("default")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    policy=st.sampled_from(["random", "static_ladder", "no_contact"]),
    discount=st.floats(0.0, 0.9),
    scenario=st.sampled_from(["default", "telecom", "late_stage"]),
    profile=st.sampled_from(["us_reg_f", "uk_fca", "none"]),
)
def test_money_is_conserved_for_every_debtor(seed, policy, discount, scenario, profile):
    sc = load_scenario(scenario, [f"behaviour.settlement_discount={discount}", f"compliance_profile={profile}"])
    w = run_portfolio(sc, policies.make(policy), 300, seed, horizon_days=40)
    assert w.finished
    assert np.abs(w.money_gap()).max() < 1e-6
    assert (w.outstanding == 0).all()  # every debt is resolved or sold at the horizon
    assert (w.collected >= -1e-9).all() and (w.forgiven >= -1e-9).all()
    settled = w.status == Status.SETTLED
    assert (w.forgiven[~settled] == 0).all()
    sold = w.status == Status.SOLD
    assert (w.sold[~sold] == 0).all()


def test_letter_and_sms_event_trace_is_exact(default):
    sc = load_scenario("default", CERTAIN)
    plan = {0: (Channel.LETTER, Window.MORNING, Tone.FRIENDLY, Offer.NONE), 3: (Channel.SMS, Window.AFTERNOON, Tone.FRIENDLY, Offer.NONE)}
    w = run_portfolio(sc, Scripted(plan), 1, seed=3, horizon_days=6, record_events=True)
    cols = w.ledger.columns()
    trace = [
        (float(t), Event(e).name, int(c))
        for t, e, c in zip(cols["time_min"], cols["event"], cols["channel"], strict=True)
        if e in (Event.CONTACT, Event.DELIVERED)
    ]
    letter_arrives = (0 + sc.channels.letter.delay_days) * MINUTES_PER_DAY + 10 * 60  # morning post
    sms_arrives = 3 * MINUTES_PER_DAY + 12 * 60 + 15  # afternoon window opens at 12:00, sent 15 minutes in
    if w.status[0] == Status.OPEN or w.resolved_day[0] > 3 or w.resolved_day[0] < 0 or w.status[0] == Status.SOLD:
        assert trace == [
            (0.0, "CONTACT", Channel.LETTER),
            (float(letter_arrives), "DELIVERED", Channel.LETTER),
            (3.0 * MINUTES_PER_DAY, "CONTACT", Channel.SMS),
            (float(sms_arrives), "DELIVERED", Channel.SMS),
        ]
    else:  # resolved by the letter before the text was due
        assert trace[:2] == [(0.0, "CONTACT", Channel.LETTER), (float(letter_arrives), "DELIVERED", Channel.LETTER)]


def test_trace_of_many_letters_arrives_after_the_postal_delay(default):
    sc = load_scenario("default", [*CERTAIN, "channels.letter.delay_days=4"])
    plan = {0: (Channel.LETTER, Window.MORNING, Tone.FRIENDLY, Offer.NONE)}
    w = run_portfolio(sc, Scripted(plan), 200, seed=1, horizon_days=8, record_events=True)
    cols = w.ledger.columns()
    delivered = cols["event"] == Event.DELIVERED
    still_open_on_arrival = (w.resolved_day < 0) | (w.resolved_day >= 4)  # a debtor who paid first gets no letter
    assert delivered.sum() == still_open_on_arrival.sum() == (cols["event"] == Event.CONTACT).sum() - (~still_open_on_arrival).sum()
    assert delivered.sum() > 150
    assert set(cols["time_min"][delivered].tolist()) == {4 * MINUTES_PER_DAY + 600.0}
    # nothing reacts to a letter before it arrives
    reacts = np.isin(cols["event"], (Event.NOTICED, Event.ENGAGED, Event.COMPLAINT, Event.OPT_OUT))
    assert (cols["time_min"][reacts] >= 4 * MINUTES_PER_DAY + 600).all()


def test_same_seed_same_world_and_different_policies_face_the_same_debtors(default):
    a = run_portfolio(default, policies.make("static_ladder"), 2000, seed=7, record_events=True)
    b = run_portfolio(default, policies.make("static_ladder"), 2000, seed=7, record_events=True)
    for col, va in a.ledger.columns().items():
        np.testing.assert_array_equal(va, b.ledger.columns()[col], err_msg=col)
    np.testing.assert_array_equal(a.net_value, b.net_value)
    c = run_portfolio(default, policies.make("random"), 2000, seed=7)
    assert a.traits is not None and c.traits is not None
    for name in ("ability", "willingness", "archetype", "attention"):
        np.testing.assert_array_equal(getattr(a.traits, name), getattr(c.traits, name))
    np.testing.assert_array_equal(a.balance, c.balance)
    d = run_portfolio(default, policies.make("static_ladder"), 2000, seed=8)
    assert not np.array_equal(a.balance, d.balance)


def test_debtor_j_is_the_same_in_any_portfolio_size(default):
    small = sample(default, 5, 0, 100)
    big = sample(default, 5, 0, 10_000)
    np.testing.assert_array_equal(small.ability, big.ability[:100])
    mid = sample(default, 5, 4090, 20)  # crosses a block boundary
    np.testing.assert_array_equal(mid.balance_eur, big.balance_eur[4090:4110])


def test_common_random_numbers_make_paired_differences_tighter(default):
    """With the same luck, two similar policies differ far less per debtor than across seeds."""
    a = run_portfolio(default, policies.make("static_ladder"), 3000, seed=11)
    b = run_portfolio(load_scenario("default", ["channels.sms.cost_eur=0.07"]), policies.make("static_ladder"), 3000, seed=11)
    c = run_portfolio(load_scenario("default", ["channels.sms.cost_eur=0.07"]), policies.make("static_ladder"), 3000, seed=12)
    paired = np.std(a.net_value - b.net_value)
    unpaired = np.std(a.net_value - c.net_value)
    assert paired < unpaired / 20


def test_call_centre_capacity_drops_calls_beyond_capacity():
    calls = {0: (Channel.CALL, Window.MORNING, Tone.FRIENDLY, Offer.NONE)}
    few = load_scenario("default", [*CERTAIN, "call_centre.agents=10"])  # 10 agents per 10,000 debtors -> 2 on 2,000
    w = run_portfolio(few, Scripted(calls), 2000, seed=2, horizon_days=3)
    made, dropped = int(w.calls_made.sum()), int(w.calls_dropped.sum())
    assert made + dropped == w.calls_requested == 2000
    # the morning window is 4 hours; the early shift has round(2 * 0.6) = 1 agent on duty
    assert dropped > 0
    mean_min = 0.26 * few.call_centre.handle_time_min + 0.74 * few.call_centre.no_answer_time_min
    assert made < 3 * (4 * 60 / mean_min)
    plenty = load_scenario("default", [*CERTAIN, "call_centre.agents=20000"])
    w2 = run_portfolio(plenty, Scripted(calls), 2000, seed=2, horizon_days=3)
    assert int(w2.calls_dropped.sum()) == 0 and int(w2.calls_made.sum()) == 2000


def test_late_calls_without_agents_on_shift_are_dropped():
    # 100 agents for these 500 debtors; the late shift ends at 21:00, when the late window opens,
    # and its agents, idle then, go home instead of taking the late calls
    sc = load_scenario("default", [*CERTAIN, "compliance_profile=none", "call_centre.agents=2000"])
    w = run_portfolio(sc, Scripted({0: (Channel.CALL, Window.LATE, Tone.FRIENDLY, Offer.NONE)}), 500, seed=0, horizon_days=2)
    assert w.calls_requested == 500 and int(w.calls_dropped.sum()) == 500 and int(w.calls_made.sum()) == 0


class Harasser:
    """Calls every day at 22:00 and texts at night: breaks Regulation F on purpose."""

    policy_id = "test/harasser"

    def reset(self, seed: int | None = None) -> None:
        self.day = 0

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        self.day += 1
        out = np.zeros((len(views), 4), dtype=np.int64)
        out[:, 0] = Channel.CALL if self.day % 3 else Channel.SMS
        out[:, 1] = Window.LATE if self.day % 2 else Window.AFTERNOON
        out[:, 2] = Tone.FIRM
        return out


def test_non_compliant_actions_are_blocked_counted_and_never_executed():
    sc = load_scenario("default", ["population.entry_spread_days=0", "call_centre.agents=50000"])
    w = run_portfolio(sc, Harasser(), 300, seed=4, horizon_days=30, record_events=True)
    assert w.blocked_by_reason.sum() > 0 and int(w.blocked_count.sum()) == int(w.blocked_by_reason.sum())
    cols = w.ledger.columns()
    contacts = cols["event"] == Event.CONTACT
    t = cols["time_min"][contacts]
    ch = cols["channel"][contacts]
    who = cols["debtor"][contacts]
    # the world executes contacts at 00:00 of the day and sends in the window; no executed contact is late
    blocked = cols["event"] == Event.BLOCKED
    assert blocked.sum() == w.blocked_by_reason.sum()
    made_calls = (cols["event"] == Event.DELIVERED) & (cols["channel"] == Channel.CALL)
    call_minutes = cols["time_min"][made_calls] % MINUTES_PER_DAY
    assert (call_minutes < 21 * 60).all()
    # at most 7 call attempts in any 7 consecutive days, per debtor
    for d in np.unique(who):
        days = np.sort((t[(who == d) & (ch == Channel.CALL)] // MINUTES_PER_DAY).astype(int))
        for i in range(len(days) - 7):
            assert days[i + 7] - days[i] >= 7
    # no call attempt within 7 days after a conversation
    convo_days = {}
    for d, tm, e, c in zip(cols["debtor"], cols["time_min"], cols["event"], cols["channel"], strict=True):
        if e == Event.NOTICED and c == Channel.CALL:
            convo_days.setdefault(int(d), []).append(int(tm // MINUTES_PER_DAY))
    for d, days_ in convo_days.items():
        calls = (t[(who == d) & (ch == Channel.CALL)] // MINUTES_PER_DAY).astype(int)
        for cd in days_:
            assert not ((calls > cd) & (calls < cd + 7)).any()


def test_shipped_policies_have_no_blocked_actions_under_every_profile():
    for profile in ("us_reg_f", "uk_fca", "none"):
        sc = load_scenario("default", [f"compliance_profile={profile}"])
        for pid in policies.registered():
            w = run_portfolio(sc, policies.make(pid), 400, seed=1, horizon_days=60)
            assert w.blocked_by_reason.sum() == 0, (profile, pid)


def test_reminder_sms_lifts_early_payment_over_no_contact():
    sc = load_scenario("late_stage")
    base = run_portfolio(sc, policies.make("no_contact"), 4000, seed=0, horizon_days=28)
    sms = run_portfolio(sc, Scripted({0: (Channel.SMS, Window.EVENING, Tone.FRIENDLY, Offer.NONE)}), 4000, seed=0, horizon_days=28)
    assert (sms.first_payment_day >= 0).mean() > 1.5 * (base.first_payment_day >= 0).mean()


def test_offers_only_produce_their_outcomes_when_made():
    sc = load_scenario("default", CERTAIN)
    plain = run_portfolio(
        sc,
        Scripted({d: (Channel.CALL, Window.AFTERNOON, Tone.FRIENDLY, Offer.NONE) for d in (0, 8, 16)}),
        1500,
        seed=5,
        horizon_days=40,
        record_events=True,
    )
    cols = plain.ledger.columns()
    assert not (cols["event"] == Event.PLAN).any()
    assert not ((cols["event"] == Event.PROMISE) & (cols["detail"] == 1)).any()  # no settlement without an offer
    offered = run_portfolio(
        sc, Scripted({d: (Channel.CALL, Window.AFTERNOON, Tone.EMPATHETIC, Offer.PLAN) for d in (0, 8, 16)}), 1500, seed=5, horizon_days=120
    )
    assert (offered.plan_total > 0).sum() > 0
    assert ((offered.status == Status.PLAN_COMPLETED) | (offered.plans_broken > 0) | offered.plan_active | (offered.status != Status.OPEN)).all()


def test_firm_tone_backfires_on_the_distressed():
    sc = load_scenario("default", CERTAIN)
    days = (0, 5, 10)
    firm = run_portfolio(sc, Scripted({d: (Channel.SMS, Window.EVENING, Tone.FIRM, Offer.NONE) for d in days}), 20_000, seed=9, horizon_days=15)
    kind = run_portfolio(sc, Scripted({d: (Channel.SMS, Window.EVENING, Tone.EMPATHETIC, Offer.NONE) for d in days}), 20_000, seed=9, horizon_days=15)
    assert firm.traits is not None
    distressed = firm.traits.distressed
    # the same debtors and the same luck: only the tone differs
    assert firm.complaints[distressed].sum() > 1.5 * kind.complaints[distressed].sum() > 0
    assert firm.responses[distressed].sum() < kind.responses[distressed].sum()
    # the KPI counts what was sent in a firm tone: every contact of the one, none of the other
    from sim.kpis import portfolio_kpis

    kf, kk = portfolio_kpis(firm), portfolio_kpis(kind)
    assert kf["firm_contacts_per_debtor"] == kf["contacts_per_debtor"] > 0
    assert kk["firm_contacts_per_debtor"] == 0 < kk["contacts_per_debtor"]


def test_digital_only_attention_and_unprompted_payment_size_come_from_the_scenario():
    base = ["population.digital_only_share=1.0"]
    screened = sample(load_scenario("default", base), 0, 0, 2000)
    attentive = sample(load_scenario("default", [*base, "population.digital_only_attention.call=1.0"]), 0, 0, 2000)
    call = Channel.CALL - 1
    assert np.allclose(screened.attention[:, call] * 10, attentive.attention[:, call])
    assert np.array_equal(screened.attention[:, Channel.SMS - 1], attentive.attention[:, Channel.SMS - 1])

    def self_cured(overrides: list[str]) -> float:
        w = run_portfolio(load_scenario("default", overrides), policies.make("no_contact"), 2000, 0, horizon_days=60)
        return float(w.collected.sum())

    small = self_cured(["behaviour.spontaneous_payment.min_share=0.0", "behaviour.spontaneous_payment.full_at=1.0"])
    large = self_cured(["behaviour.spontaneous_payment.min_share=1.0"])
    assert large > 1.3 * small


def test_promises_fall_due_once_at_18_on_their_day_however_many_days_they_were_made_on():
    """Promises made on day 0 (due in 5 days) and day 2 (due in 3) fall due together on day 5 at
    18:00, each judged once; a promise replaced before its day is not judged, its successor is."""
    sc = load_scenario("default", [*CERTAIN, "call_centre.agents=50000"])
    from sim.world import World

    w = World(sc, 40, seed=6, record_events=True)
    wait = np.zeros((40, 4), dtype=np.int64)
    first, second, replaced = np.arange(0, 15), np.arange(15, 30), np.array([3, 4])
    w._promise(first, w.outstanding[first] * 0.5, np.full(15, 5), 0)
    for _ in range(2):
        w.step(wait)
    w._promise(second, w.outstanding[second] * 0.5, np.full(15, 3), 0)
    w._promise(replaced, w.outstanding[replaced] * 0.5, np.full(2, 4), 0)  # due on day 6 instead
    for _ in range(6):
        w.step(wait)
    cols = w.ledger.columns()
    judged = np.isin(cols["event"], [Event.PROMISE_KEPT, Event.PROMISE_BROKEN])
    when = dict(zip(cols["debtor"][judged].tolist(), cols["time_min"][judged].tolist(), strict=True))
    assert len(when) == int(judged.sum()) == 30  # each promise judged once
    for d in np.concatenate([first, second]).tolist():
        assert when[d] == (6 if d in replaced else 5) * MINUTES_PER_DAY + 18 * 60
    assert not w.promise_active[:30].any()


def test_a_given_population_is_simulated_as_given():
    from sim.world import World

    sc = load_scenario("default")
    d = sample(sc, 9, 0, 200)
    d.balance_eur[:] = 777.0
    d.entry_offset[:] = 3
    w = World(sc, 200, 1, population=d)
    assert (w.balance == 777.0).all() and (w.entry_day == 3).all()
    with pytest.raises(ValueError, match="one debtor per slot"):
        World(sc, 100, 1, population=d)
