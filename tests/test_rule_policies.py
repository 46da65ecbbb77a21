"""Rule policies: a conformance suite over every registered policy, then each rule's behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_views import clean_views, random_views, with_fields

import policies
import sim  # noqa: F401  (registers the world-backed policies too, e.g. the oracle)
from policies.compliance import PROFILES, Block, action_mask, check, get_profile
from policies.schema import ACTION_DIMS, CONTACT_CHANNELS, N_CONTACT_CHANNELS, Channel, Offer, Tone, Window
from sim.runner import WorldPolicy

# Policies that act on views alone; world-backed ones (the oracle) have their suite in test_oracle.py.
POLICY_IDS = tuple(p for p in policies.registered() if not isinstance(policies.make(p), WorldPolicy))
WORLD_POLICY_IDS = tuple(p for p in policies.registered() if p not in POLICY_IDS)
PROFILE_NAMES = sorted(PROFILES)
OFFSETS = np.cumsum((0, *ACTION_DIMS[:-1]))


@pytest.fixture(scope="module")
def views():
    # 3000 accounts spread over 0..180 days in collections hit every ladder day many times
    return random_views(np.random.default_rng(99), 3000)


def fresh(policy_id: str, seed: int | None = 0) -> policies.Policy:
    p = policies.make(policy_id)
    p.reset(seed)
    return p


def decide(policy_id: str, v, profile: str = "us_reg_f") -> np.ndarray:
    return fresh(policy_id).act(v, action_mask(v, get_profile(profile)))


def only(channel: Channel, value, default, dtype=bool) -> np.ndarray:
    arr = np.full((1, N_CONTACT_CHANNELS), default, dtype=dtype)
    arr[0, channel - 1] = value
    return arr


# ---------------------------------------------------------------------------------- conformance


def test_the_baseline_policies_are_registered():
    assert {"no_contact", "random", "static_ladder"} <= set(POLICY_IDS)
    assert list(POLICY_IDS) == sorted(POLICY_IDS)


@pytest.mark.parametrize("policy_id", POLICY_IDS)
def test_make_returns_a_new_policy_instance_with_its_id(policy_id):
    a, b = policies.make(policy_id), policies.make(policy_id)
    assert a is not b
    assert isinstance(a, policies.Policy)
    assert a.policy_id == policy_id


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@pytest.mark.parametrize("policy_id", POLICY_IDS)
def test_actions_have_shape_n_by_4_and_are_in_range(views, policy_id, profile):
    a = decide(policy_id, views, profile)
    assert a.shape == (len(views), 4)
    assert np.issubdtype(a.dtype, np.integer)
    for k, n in enumerate(ACTION_DIMS):
        assert a[:, k].min() >= 0 and a[:, k].max() < n


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@pytest.mark.parametrize("policy_id", POLICY_IDS)
def test_actions_pass_compliance_check(views, policy_id, profile):
    p = get_profile(profile)
    a = fresh(policy_id).act(views, action_mask(views, p))
    r = check(a, views, p)
    bad = np.flatnonzero(r)
    assert bad.size == 0, f"{policy_id} under {profile}: {len(bad)} blocked, e.g. {a[bad[0]]} as {Block(int(r[bad[0]])).name}"


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@pytest.mark.parametrize("policy_id", POLICY_IDS)
def test_actions_stay_inside_the_mask_in_every_dimension_for_contacts(views, policy_id, profile):
    mask = action_mask(views, get_profile(profile))
    a = fresh(policy_id).act(views, mask)
    contact = a[:, 0] != Channel.WAIT
    rows = np.flatnonzero(contact)
    assert mask[rows, a[rows, 0]].all()
    assert mask[rows, OFFSETS[2] + a[rows, 2]].all()  # tone
    assert mask[rows, OFFSETS[3] + a[rows, 3]].all()  # offer
    timed = rows[a[rows, 0] != Channel.LETTER]  # a letter's window is not a send time
    assert mask[timed, OFFSETS[1] + a[timed, 1]].all()


@pytest.mark.parametrize("policy_id", POLICY_IDS)
def test_same_seed_gives_same_actions_on_fresh_instances(views, policy_id):
    mask = action_mask(views, get_profile("none"))
    a1, b1 = fresh(policy_id, 123), fresh(policy_id, 123)
    first = (a1.act(views, mask), a1.act(views, mask))
    second = (b1.act(views, mask), b1.act(views, mask))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


@pytest.mark.parametrize("policy_id", POLICY_IDS)
def test_reset_with_the_same_seed_replays_the_run(views, policy_id):
    mask = action_mask(views, get_profile("none"))
    p = fresh(policy_id, 7)
    run = [p.act(views, mask) for _ in range(2)]
    p.reset(7)
    replay = [p.act(views, mask) for _ in range(2)]
    for a, b in zip(run, replay, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("policy_id", POLICY_IDS)
def test_act_does_not_modify_views_or_mask(views, policy_id):
    mask = action_mask(views, get_profile("uk_fca"))
    mask_before = mask.copy()
    fields_before = {name: getattr(views, name).copy() for name in views.field_names()}
    fresh(policy_id).act(views, mask)
    np.testing.assert_array_equal(mask, mask_before)
    for name, arr in fields_before.items():
        np.testing.assert_array_equal(getattr(views, name), arr, err_msg=name)


def test_make_unknown_policy_raises_value_error_listing_registered_ids():
    with pytest.raises(ValueError) as err:
        policies.make("nope")
    msg = str(err.value)
    assert "'nope'" in msg
    for pid in POLICY_IDS:
        assert pid in msg


def test_register_refuses_a_duplicate_id():
    with pytest.raises(ValueError, match="static_ladder"):
        policies.register("static_ladder", policies.make)


# ---------------------------------------------------------------------------------- static_ladder


def test_static_ladder_sends_friendly_morning_sms_on_day_one():
    a = decide("static_ladder", clean_views(1, days_in_collections=1))
    assert a.tolist() == [[Channel.SMS, Window.MORNING, Tone.FRIENDLY, Offer.NONE]]


@pytest.mark.parametrize("blocker", ["opted_out", "on_file"])
def test_static_ladder_falls_back_to_email_when_sms_is_unusable(blocker):
    field = only(Channel.SMS, True, False) if blocker == "opted_out" else only(Channel.SMS, False, True)
    a = decide("static_ladder", clean_views(1, days_in_collections=1, **{blocker: field}))
    assert a[0, 0] == Channel.EMAIL


def test_static_ladder_falls_back_to_letter_when_sms_and_email_are_opted_out():
    opted = only(Channel.SMS, True, False)
    opted[0, Channel.EMAIL - 1] = True
    a = decide("static_ladder", clean_views(1, days_in_collections=1, opted_out=opted))
    assert a[0, 0] == Channel.LETTER


def test_static_ladder_skips_the_step_when_no_fallback_is_usable():
    v = clean_views(1, days_in_collections=1, on_file=False)
    assert decide("static_ladder", v)[0, 0] == Channel.WAIT


@pytest.mark.parametrize("day", [1, 5, 10, 15, 25, 35, 42, 49])
@pytest.mark.parametrize("paused_by", ["promise_active", "plan_active"])
def test_static_ladder_sends_nothing_while_a_promise_or_plan_is_active(day, paused_by):
    v = clean_views(1, days_in_collections=day)
    assert decide("static_ladder", v)[0, 0] != Channel.WAIT  # it would contact without the pause
    assert decide("static_ladder", with_fields(v, **{paused_by: True}))[0, 0] == Channel.WAIT


def test_static_ladder_is_paused_for_every_promise_or_plan_in_random_views(views):
    a = decide("static_ladder", views, "none")
    paused = views.promise_active | views.plan_active
    assert paused.any()
    assert (a[paused, 0] == Channel.WAIT).all()


def test_static_ladder_calls_on_day_15_when_the_call_mask_allows_it():
    v = clean_views(1, days_in_collections=15)
    assert decide("static_ladder", v)[0, 0] == Channel.CALL


@pytest.mark.parametrize(
    "blocked",
    [
        {"contacts_7d": only(Channel.CALL, 7, 0, np.int16)},  # call limit
        {"days_since_conversation": 3},  # cool-off after a conversation
        {"opted_out": only(Channel.CALL, True, False)},
        {"on_file": only(Channel.CALL, False, True)},
    ],
    ids=["limit", "cooloff", "opted_out", "not_on_file"],
)
def test_static_ladder_does_not_call_on_day_15_when_the_call_mask_forbids_it(blocked):
    v = clean_views(1, days_in_collections=15, **blocked)
    mask = action_mask(v, get_profile("us_reg_f"))
    assert not mask[0, Channel.CALL]
    assert fresh("static_ladder").act(v, mask)[0, 0] != Channel.CALL


def test_static_ladder_follows_the_call_mask_not_its_own_rules():
    v = clean_views(1, days_in_collections=15)
    mask = action_mask(v, get_profile("none"))
    mask[:, Channel.CALL] = False
    assert fresh("static_ladder").act(v, mask)[0, 0] != Channel.CALL


def test_static_ladder_waits_on_days_without_a_step():
    days = np.array([0, 2, 3, 4, 6, 11, 16, 24, 26, 34, 36])
    a = decide("static_ladder", clean_views(len(days), days_in_collections=days))
    assert (a[:, 0] == Channel.WAIT).all()


def test_static_ladder_contacts_only_on_ladder_days(views):
    a = decide("static_ladder", views, "none")
    d = views.days_in_collections
    ladder_day = np.isin(d, [1, 5, 10, 15, 25]) | ((d >= 35) & ((d - 35) % 14 == 0)) | ((d >= 42) & ((d - 42) % 30 == 0))
    assert (a[~ladder_day, 0] == Channel.WAIT).all()
    assert (a[ladder_day, 0] != Channel.WAIT).any()


def test_static_ladder_never_uses_firm_tone_for_vulnerable_under_uk_fca():
    v = clean_views(1, days_in_collections=10, vulnerable=True)  # day 10: the firm reminder letter
    a = decide("static_ladder", v, "uk_fca")
    assert a[0, 0] == Channel.LETTER
    assert a[0, 2] != Tone.FIRM
    assert decide("static_ladder", with_fields(v, vulnerable=False), "uk_fca")[0, 2] == Tone.FIRM


# ---------------------------------------------------------------------------------- no_contact


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_no_contact_always_waits(views, profile):
    a = decide("no_contact", views, profile)
    assert (a == 0).all()


# ---------------------------------------------------------------------------------- random


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_random_never_picks_a_masked_value(views, profile):
    mask = action_mask(views, get_profile(profile))
    policy = fresh("random", 5)
    for _ in range(5):
        a = policy.act(views, mask)
        for k in range(4):
            assert mask[np.arange(len(views)), OFFSETS[k] + a[:, k]].all(), f"dimension {k}"


def test_random_respects_an_arbitrary_mask():
    rng = np.random.default_rng(3)
    v = random_views(rng, 2000)
    mask = rng.random((len(v), sum(ACTION_DIMS))) < 0.5
    for start in OFFSETS:
        mask[np.arange(len(v)), start + rng.integers(0, 4, len(v))] = True  # at least one value each
    a = fresh("random", 1).act(v, mask)
    for k in range(4):
        assert mask[np.arange(len(v)), OFFSETS[k] + a[:, k]].all()


def distinct(v):
    """Identical accounts that differ only in balance: the random policy keys its choice on the view."""
    n = len(v)
    return with_fields(v, balance_eur=v.balance_eur + np.arange(n), outstanding_eur=v.outstanding_eur + np.arange(n))


def test_random_picks_every_allowed_channel_and_value():
    v = distinct(clean_views(4000))
    mask = action_mask(v, get_profile("none"))
    a = fresh("random", 2).act(v, mask)
    assert set(a[:, 0].tolist()) == {0, *(int(c) for c in CONTACT_CHANNELS)}
    for k in range(1, 4):
        assert set(a[:, k].tolist()) == set(range(ACTION_DIMS[k]))


def test_random_picks_every_allowed_channel_of_each_account(views):
    mask = action_mask(views, get_profile("us_reg_f"))
    policy = fresh("random", 4)
    seen = np.zeros((len(views), len(Channel)), dtype=bool)
    for i in range(120):
        # the same accounts on 120 different days: a new view each time, the same mask
        seen[np.arange(len(views)), policy.act(with_fields(views, contacts_total=views.contacts_total + i), mask)[:, 0]] = True
    np.testing.assert_array_equal(seen, mask[:, : len(Channel)])


def test_random_choice_is_roughly_uniform_over_allowed_channels():
    v = distinct(clean_views(7000))
    a = fresh("random", 8).act(v, action_mask(v, get_profile("none")))
    counts = np.bincount(a[:, 0], minlength=len(Channel))
    assert counts.min() > 0.8 * 1000 and counts.max() < 1.2 * 1000


def test_random_different_seeds_give_different_actions(views):
    mask = action_mask(views, get_profile("none"))
    assert not np.array_equal(fresh("random", 1).act(views, mask), fresh("random", 2).act(views, mask))


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@pytest.mark.parametrize("policy_id", POLICY_IDS)
def test_every_policy_gives_the_same_actions_in_a_batch_as_one_view_at_a_time(views, profile, policy_id):
    sub = views.take(np.arange(300))
    mask = action_mask(sub, get_profile(profile))
    batch = fresh(policy_id, 5).act(sub, mask)
    policy = fresh(policy_id, 5)
    for i in range(len(sub)):
        np.testing.assert_array_equal(policy.act(sub.take(np.array([i])), mask[i : i + 1])[0], batch[i], err_msg=f"{policy_id} row {i}")


def test_random_gives_equal_views_equal_actions_and_is_keyed_on_the_seed():
    v = clean_views(50)
    mask = action_mask(v, get_profile("none"))
    a = fresh("random", 3).act(v, mask)
    assert (a == a[0]).all()  # a deterministic function of (seed, view)
    assert not all(np.array_equal(fresh("random", s).act(v, mask)[0], a[0]) for s in range(4, 12))


def test_the_registry_is_the_same_whatever_was_imported():
    """Built-in policies are declared in one place (policies.base.BUILTIN), not registered by importing
    their modules: a bare `import policies` sees them all, and loads neither the simulator nor the learners."""
    import subprocess
    import sys

    loaded = "any(m.split('.')[0] in ('sim', 'agents', 'simpy') for m in sys.modules)"
    code = f"import sys, policies; print(','.join(policies.registered())); print({loaded})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0].split(",") == list(policies.registered())
    assert {"oracle", "linear_ts", "static_ladder"} <= set(out[0].split(","))
    assert out[1] == "False"
    assert type(policies.make("linear_ts")).__module__ == "agents.bandit"  # made on demand, from its entry
