"""Compliance profiles: the mask never allows what check() blocks, and each profile's rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers_views import clean_views, random_views
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.compliance import PROFILES, Block, action_mask, channel_available, check, get_profile
from policies.schema import ACTION_DIMS, CONTACT_CHANNELS, ELECTRONIC_CHANNELS, N_CONTACT_CHANNELS, Channel, Offer, Tone, Window

PROFILE_NAMES = sorted(PROFILES)
CALL = Channel.CALL - 1  # index of calls in the per-channel arrays
TIMED_CHANNELS = (*ELECTRONIC_CHANNELS, Channel.CALL)


def act(channel: Channel, window: Window = Window.AFTERNOON, tone: Tone = Tone.FRIENDLY, offer: Offer = Offer.NONE) -> np.ndarray:
    return np.array([[channel, window, tone, offer]], dtype=np.int64)


def reason(profile: str, channel: Channel, window: Window = Window.AFTERNOON, tone: Tone = Tone.FRIENDLY, **view_fields) -> Block:
    """The check() verdict for one action on one clean account with ``view_fields`` changed."""
    v = clean_views(1, **view_fields)
    return Block(int(check(act(channel, window, tone), v, get_profile(profile))[0]))


def per_channel(channel: Channel, value, default, dtype) -> np.ndarray:
    arr = np.full((1, N_CONTACT_CHANNELS), default, dtype=dtype)
    arr[0, channel - 1] = value
    return arr


def sample_from_mask(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """One action per row, each dimension uniform over that row's allowed values."""
    out = np.empty((mask.shape[0], 4), dtype=np.int64)
    start = 0
    for k, size in enumerate(ACTION_DIMS):
        keys = rng.random((mask.shape[0], size))
        keys[~mask[:, start : start + size]] = -1.0
        out[:, k] = keys.argmax(axis=1)
        start += size
    return out


# ---------------------------------------------------------------------------------- the property


def test_profiles_are_the_three_documented_ones():
    assert set(PROFILES) == {"us_reg_f", "uk_fca", "none"}
    assert all(PROFILES[name].name == name for name in PROFILES)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_mask_shape_and_wait_and_some_value_per_dimension_always_allowed(profile):
    v = random_views(np.random.default_rng(1), 1000)
    m = action_mask(v, get_profile(profile))
    assert m.shape == (len(v), sum(ACTION_DIMS)) and m.dtype == bool
    assert m[:, 0].all()
    start = 0
    for size in ACTION_DIMS:
        assert m[:, start : start + size].any(axis=1).all()
        start += size


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300))
def test_property_actions_drawn_from_the_mask_pass_check(profile, seed, n):
    rng = np.random.default_rng(seed)
    v = random_views(rng, n)
    p = get_profile(profile)
    mask = action_mask(v, p)
    for _ in range(5):
        actions = sample_from_mask(rng, mask)
        reasons = check(actions, v, p)
        bad = np.flatnonzero(reasons)
        assert bad.size == 0, f"row {bad[:1]} action {actions[bad[:1]]} blocked as {Block(int(reasons[bad[0]])).name}"


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_every_action_allowed_in_every_dimension_of_the_mask_passes_check(profile):
    """Exhaustive version of the property: all 448 actions on each of 300 random accounts."""
    v = random_views(np.random.default_rng(7), 300)
    p = get_profile(profile)
    mask = action_mask(v, p)
    actions = np.array(list(itertools.product(*(range(n) for n in ACTION_DIMS))))
    rows = np.repeat(np.arange(len(v)), len(actions))
    a = np.tile(actions, (len(v), 1))
    offsets = np.cumsum((0, *ACTION_DIMS[:-1]))
    allowed = np.ones(len(a), dtype=bool)
    for k in range(4):
        allowed &= mask[rows, offsets[k] + a[:, k]]
    reasons = check(a, v.take(rows), p)
    assert allowed.sum() > len(v)  # not only waits
    assert (reasons[allowed] == 0).all()


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_mask_channel_entry_is_exactly_whether_a_plain_message_passes_check(profile):
    """The channel mask is not stricter than check(): a masked channel is really blocked."""
    v = random_views(np.random.default_rng(11), 2000)
    p = get_profile(profile)
    avail = channel_available(v, p)
    np.testing.assert_array_equal(action_mask(v, p)[:, 1:7], avail)
    for ch in CONTACT_CHANNELS:
        a = np.tile(act(ch, Window.MORNING, Tone.FRIENDLY), (len(v), 1))
        np.testing.assert_array_equal(check(a, v, p) == 0, avail[:, ch - 1], err_msg=ch.name)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_mask_and_check_do_not_modify_the_views(profile):
    v = random_views(np.random.default_rng(3), 200)
    before = {name: getattr(v, name).copy() for name in v.field_names()}
    p = get_profile(profile)
    check(sample_from_mask(np.random.default_rng(0), action_mask(v, p)), v, p)
    for name, arr in before.items():
        np.testing.assert_array_equal(getattr(v, name), arr, err_msg=name)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_wait_is_always_allowed_whatever_the_other_columns(profile):
    v = random_views(np.random.default_rng(5), 500, vulnerable=True, opted_out=True, on_file=False)
    rng = np.random.default_rng(0)
    a = np.column_stack([np.zeros(len(v), dtype=np.int64), *(rng.integers(0, n, len(v)) for n in ACTION_DIMS[1:])])
    assert (check(a, v, get_profile(profile)) == 0).all()


# ---------------------------------------------------------------------------------- us_reg_f


def test_us_reg_f_eighth_call_in_seven_days_is_blocked():
    assert reason("us_reg_f", Channel.CALL, contacts_7d=per_channel(Channel.CALL, 7, 0, np.int16)) == Block.CALL_LIMIT_7D
    assert reason("us_reg_f", Channel.CALL, contacts_7d=per_channel(Channel.CALL, 6, 0, np.int16)) == Block.OK


def test_us_reg_f_call_limit_counts_only_calls():
    many_sms = per_channel(Channel.SMS, 9, 0, np.int16)
    assert reason("us_reg_f", Channel.CALL, contacts_7d=many_sms) == Block.OK
    many_calls = per_channel(Channel.CALL, 9, 0, np.int16)
    assert reason("us_reg_f", Channel.SMS, contacts_7d=many_calls) == Block.OK


@pytest.mark.parametrize(
    "days,expected",
    [(0, Block.CALL_AFTER_CONVERSATION), (3, Block.CALL_AFTER_CONVERSATION), (6, Block.CALL_AFTER_CONVERSATION), (7, Block.OK), (30, Block.OK)],
)
def test_us_reg_f_no_call_within_seven_days_of_a_conversation(days, expected):
    assert reason("us_reg_f", Channel.CALL, days_since_conversation=days) == expected


def test_us_reg_f_recent_conversation_does_not_block_other_channels():
    assert reason("us_reg_f", Channel.SMS, days_since_conversation=1) == Block.OK


@pytest.mark.parametrize("channel", TIMED_CHANNELS)
def test_us_reg_f_late_window_is_outside_hours(channel):
    assert reason("us_reg_f", channel, Window.LATE) == Block.OUTSIDE_HOURS
    assert reason("us_reg_f", channel, Window.EVENING) == Block.OK


def test_us_reg_f_letter_with_late_window_value_is_allowed():
    assert reason("us_reg_f", Channel.LETTER, Window.LATE) == Block.OK


@pytest.mark.parametrize("channel", CONTACT_CHANNELS)
def test_us_reg_f_opted_out_channel_is_blocked(channel):
    opted = per_channel(channel, True, False, bool)
    assert reason("us_reg_f", channel, opted_out=opted) == Block.OPTED_OUT
    other = Channel.LETTER if channel != Channel.LETTER else Channel.SMS
    assert reason("us_reg_f", other, opted_out=opted) == Block.OK


@pytest.mark.parametrize("channel", CONTACT_CHANNELS)
def test_us_reg_f_channel_not_on_file_is_blocked(channel):
    assert reason("us_reg_f", channel, on_file=per_channel(channel, False, True, bool)) == Block.NOT_ON_FILE


def test_push_to_non_app_user_is_not_on_file():
    assert reason("us_reg_f", Channel.PUSH, app_user=False) == Block.NOT_ON_FILE
    assert reason("us_reg_f", Channel.PUSH, app_user=True) == Block.OK
    assert reason("us_reg_f", Channel.SMS, app_user=False) == Block.OK


@pytest.mark.parametrize("profile", PROFILE_NAMES)
def test_push_to_non_app_user_is_not_on_file_under_every_profile(profile):
    assert reason(profile, Channel.PUSH, app_user=False) == Block.NOT_ON_FILE


def test_us_reg_f_firm_tone_to_vulnerable_account_is_allowed():
    assert reason("us_reg_f", Channel.SMS, tone=Tone.FIRM, vulnerable=True) == Block.OK


def test_us_reg_f_plain_contacts_on_a_clean_account_are_allowed():
    for ch in CONTACT_CHANNELS:
        for w in (Window.MORNING, Window.AFTERNOON, Window.EVENING):
            assert reason("us_reg_f", ch, w) == Block.OK, (ch.name, w.name)


def test_check_reports_one_reason_per_row_in_a_mixed_batch():
    v = clean_views(
        4,
        contacts_7d=np.array([[0] * 6, [0, 0, 0, 0, 0, 7], [0] * 6, [0] * 6]),
        opted_out=np.array([[False] * 6, [False] * 6, [True] + [False] * 5, [False] * 6]),
    )
    actions = np.array([[Channel.SMS, 0, 0, 0], [Channel.CALL, 0, 0, 0], [Channel.SMS, 0, 0, 0], [Channel.WAIT, 3, 3, 3]])
    r = check(actions, v, get_profile("us_reg_f"))
    assert r.dtype == np.int8
    assert r.tolist() == [Block.OK, Block.CALL_LIMIT_7D, Block.OPTED_OUT, Block.OK]


# ---------------------------------------------------------------------------------- uk_fca


def test_uk_fca_three_call_limit():
    assert reason("uk_fca", Channel.CALL, contacts_7d=per_channel(Channel.CALL, 3, 0, np.int16)) == Block.CALL_LIMIT_7D
    assert reason("uk_fca", Channel.CALL, contacts_7d=per_channel(Channel.CALL, 2, 0, np.int16)) == Block.OK


@pytest.mark.parametrize("days,expected", [(0, Block.CALL_AFTER_CONVERSATION), (1, Block.CALL_AFTER_CONVERSATION), (2, Block.OK), (3, Block.OK)])
def test_uk_fca_two_day_cool_off_after_conversation(days, expected):
    assert reason("uk_fca", Channel.CALL, days_since_conversation=days) == expected


@pytest.mark.parametrize("channel", CONTACT_CHANNELS)
def test_uk_fca_firm_tone_blocked_only_for_vulnerable_accounts(channel):
    assert reason("uk_fca", channel, tone=Tone.FIRM, vulnerable=True) == Block.FIRM_TONE_VULNERABLE
    assert reason("uk_fca", channel, tone=Tone.FIRM, vulnerable=False) == Block.OK
    for tone in (Tone.FRIENDLY, Tone.EMPATHETIC, Tone.SOCIAL_NORM):
        assert reason("uk_fca", channel, tone=tone, vulnerable=True) == Block.OK


def test_uk_fca_mask_hides_firm_tone_only_for_vulnerable_rows():
    v = clean_views(2, vulnerable=np.array([True, False]))
    tones = action_mask(v, get_profile("uk_fca"))[:, 11:15]
    assert tones[0].tolist() == [True, True, True, False]
    assert tones[1].all()


def test_uk_fca_late_window_is_outside_hours():
    assert reason("uk_fca", Channel.SMS, Window.LATE) == Block.OUTSIDE_HOURS
    assert reason("uk_fca", Channel.LETTER, Window.LATE) == Block.OK


# ---------------------------------------------------------------------------------- none


@pytest.mark.parametrize("channel", CONTACT_CHANNELS)
def test_none_allows_the_late_window(channel):
    assert reason("none", channel, Window.LATE) == Block.OK


def test_none_has_no_call_limits_or_cool_off():
    calls = per_channel(Channel.CALL, 9, 0, np.int16)
    assert reason("none", Channel.CALL, Window.LATE, Tone.FIRM, contacts_7d=calls, days_since_conversation=0, vulnerable=True) == Block.OK


def test_none_mask_allows_every_window_tone_and_offer():
    v = random_views(np.random.default_rng(2), 300)
    assert action_mask(v, get_profile("none"))[:, 7:].all()


@pytest.mark.parametrize("channel", CONTACT_CHANNELS)
def test_none_still_honours_opt_outs_and_addresses(channel):
    assert reason("none", channel, opted_out=per_channel(channel, True, False, bool)) == Block.OPTED_OUT
    assert reason("none", channel, on_file=per_channel(channel, False, True, bool)) == Block.NOT_ON_FILE


# ---------------------------------------------------------------------------------- get_profile


def test_get_profile_returns_the_profile():
    for name in PROFILE_NAMES:
        assert get_profile(name) is PROFILES[name]


def test_get_profile_unknown_raises_value_error_naming_valid_profiles():
    with pytest.raises(ValueError) as err:
        get_profile("x")
    msg = str(err.value)
    assert "'x'" in msg
    for name in PROFILE_NAMES:
        assert name in msg
