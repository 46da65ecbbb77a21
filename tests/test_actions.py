"""The action codec: flat <-> (channel, window, tone, offer), validation, canonical form, names."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from policies.actions import N_ACTIONS, Action, canonical, decode_flat, encode_flat, validate
from policies.schema import (
    ACTION_DIMS,
    CHANNEL_NAMES,
    OFFER_NAMES,
    TONE_NAMES,
    WINDOW_HOURS,
    WINDOW_NAMES,
    Channel,
    Window,
)

COLUMN_NAMES = ("channel", "window", "tone", "offer")


def all_actions() -> np.ndarray:
    """Every (channel, window, tone, offer) combination, in lexicographic order."""
    return np.array(list(itertools.product(*(range(n) for n in ACTION_DIMS))), dtype=np.int64)


def test_n_actions_is_product_of_dimensions():
    assert N_ACTIONS == int(np.prod(ACTION_DIMS)) == len(all_actions())


def test_decode_then_encode_is_identity_over_every_flat_index():
    idx = np.arange(N_ACTIONS)
    decoded = decode_flat(idx)
    assert decoded.shape == (N_ACTIONS, 4)
    np.testing.assert_array_equal(encode_flat(decoded), idx)


def test_decoded_actions_are_in_range_and_distinct():
    decoded = decode_flat(np.arange(N_ACTIONS))
    for k, n in enumerate(ACTION_DIMS):
        assert decoded[:, k].min() == 0
        assert decoded[:, k].max() == n - 1
    assert len({tuple(row) for row in decoded.tolist()}) == N_ACTIONS


def test_encode_then_decode_is_identity_over_every_action():
    actions = all_actions()
    flat = encode_flat(actions)
    assert sorted(flat.tolist()) == list(range(N_ACTIONS))
    np.testing.assert_array_equal(decode_flat(flat), actions)


def test_flat_index_is_lexicographic_in_channel_window_tone_offer():
    # all_actions() enumerates with the offer varying fastest, so the flat index is the position
    np.testing.assert_array_equal(encode_flat(all_actions()), np.arange(N_ACTIONS))


def test_encode_accepts_a_single_row():
    row = np.array([Channel.CALL, Window.EVENING, 1, 2])
    (flat,) = encode_flat(row)
    np.testing.assert_array_equal(decode_flat(np.array([flat]))[0], row)


@pytest.mark.parametrize("bad", [-1, N_ACTIONS, N_ACTIONS + 100, -N_ACTIONS])
def test_decode_rejects_out_of_range_index(bad):
    with pytest.raises(ValueError, match=str(N_ACTIONS - 1)):
        decode_flat(np.array([0, bad, 1]))


def test_decode_of_empty_input_is_empty():
    assert decode_flat(np.array([], dtype=np.int64)).shape == (0, 4)


def test_validate_returns_int64_n_by_4():
    actions = all_actions().astype(np.int8)
    out = validate(actions)
    assert out.dtype == np.int64
    assert out.shape == (N_ACTIONS, 4)
    np.testing.assert_array_equal(out, all_actions())


def test_validate_promotes_one_row_to_1_by_4():
    out = validate(np.array([1, 2, 3, 0]))
    assert out.shape == (1, 4)
    assert out.tolist() == [[1, 2, 3, 0]]


@pytest.mark.parametrize("shape", [(3,), (5,), (2, 3), (2, 5), (2, 4, 1), (4, 1)])
def test_validate_rejects_bad_shapes_and_names_the_columns(shape):
    with pytest.raises(ValueError, match=r"\(N, 4\)") as err:
        validate(np.zeros(shape, dtype=np.int64))
    msg = str(err.value)
    assert str(shape) in msg
    for name in COLUMN_NAMES:
        assert name in msg


@pytest.mark.parametrize("column", range(4))
@pytest.mark.parametrize("too_big", [False, True])
def test_validate_rejects_out_of_range_column_and_identifies_it(column, too_big):
    actions = np.zeros((3, 4), dtype=np.int64)
    actions[1, column] = ACTION_DIMS[column] if too_big else -1
    with pytest.raises(ValueError) as err:
        validate(actions)
    msg = str(err.value)
    # the message identifies the offending column (by its index or its name) and its valid range
    assert f"column {column}" in msg or COLUMN_NAMES[column] in msg
    assert f"0..{ACTION_DIMS[column] - 1}" in msg
    other = [k for k in range(4) if k != column]
    assert not any(f"column {k}" in msg for k in other)


def test_validate_accepts_the_largest_value_of_every_column():
    top = np.array([[n - 1 for n in ACTION_DIMS]])
    np.testing.assert_array_equal(validate(top), top)


def test_canonical_zeroes_window_tone_offer_only_for_wait():
    actions = all_actions()
    c = canonical(actions)
    wait = actions[:, 0] == Channel.WAIT
    assert (c[wait] == 0).all()
    np.testing.assert_array_equal(c[~wait], actions[~wait])


def test_canonical_does_not_modify_its_input():
    actions = np.array([[0, 3, 2, 1], [2, 1, 1, 1]])
    before = actions.copy()
    out = canonical(actions)
    np.testing.assert_array_equal(actions, before)
    assert out.tolist() == [[0, 0, 0, 0], [2, 1, 1, 1]]


def test_canonical_maps_all_wait_actions_to_one_flat_index():
    waits = all_actions()[all_actions()[:, 0] == Channel.WAIT]
    assert len(waits) > 1
    assert set(encode_flat(canonical(waits)).tolist()) == {0}


@pytest.mark.parametrize("window", list(Window))
def test_action_from_row_window_times_match_window_hours(window):
    start, end = WINDOW_HOURS[window]
    a = Action.from_row(np.array([Channel.SMS, window, 2, 1]))
    assert a.window == WINDOW_NAMES[window]
    assert a.window_start == f"{start:02d}:00"
    assert a.window_end == f"{end:02d}:00"
    assert int(a.window_start[:2]) == start and int(a.window_end[:2]) == end
    assert a.window_start < a.window_end


def test_action_from_row_names_every_dimension():
    for row in all_actions():
        a = Action.from_row(row)
        c, w, t, o = (int(x) for x in row)
        if c == Channel.WAIT:
            assert a == Action("wait", "", "", "", "", "")
        else:
            assert (a.channel, a.window, a.tone, a.offer) == (CHANNEL_NAMES[c], WINDOW_NAMES[w], TONE_NAMES[t], OFFER_NAMES[o])


def test_late_window_ends_at_23_and_evening_at_21():
    # the compliance profiles rely on LATE being the only window reaching past 21:00
    late = [w for w in Window if WINDOW_HOURS[w][1] > 21]
    assert late == [Window.LATE]
    assert all(WINDOW_HOURS[w][0] >= 8 for w in Window)


def test_validate_names_the_column_and_rejects_fractions():
    with pytest.raises(ValueError, match=r"column 1 \(window\) must be in 0..3"):
        validate(np.array([[1, 4, 0, 0]]))
    with pytest.raises(ValueError, match="whole numbers"):
        validate(np.array([[1.7, 0, 0, 0]]))
    with pytest.raises(ValueError, match="whole numbers"):
        validate(np.array([[np.nan, 0, 0, 0]]))
    assert validate(np.array([[1.0, 2.0, 0.0, 3.0]])).tolist() == [[1, 2, 0, 3]]


def test_the_one_action_flat_index_is_the_batch_codecs():
    from policies.actions import encode_flat, flat_index

    every = all_actions()
    assert [flat_index(a) for a in every.tolist()] == encode_flat(every).tolist()
