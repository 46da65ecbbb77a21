"""The feature encoder: shape, dtype, finiteness, ``out=``, column semantics, batch == row by row."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_views import clean_views, random_views, with_fields

from policies.features import FEATURE_NAMES, FEATURES, N_FEATURES, encode
from policies.schema import CONTACT_CHANNEL_NAMES, N_CONTACT_CHANNELS, NEVER_DAYS, PRODUCT_NAMES, LastOutcome

COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def changed_columns(a: np.ndarray, b: np.ndarray) -> set[str]:
    """Names of the feature columns that differ anywhere between two encodings."""
    return {FEATURE_NAMES[j] for j in np.flatnonzero((a != b).any(axis=0))}


@pytest.fixture(scope="module")
def views():
    return random_views(np.random.default_rng(20240601), 2000)


def test_feature_names_are_unique_and_documented():
    assert len(FEATURE_NAMES) == N_FEATURES == len(FEATURES)
    assert len(set(FEATURE_NAMES)) == N_FEATURES
    assert all(desc.strip() for _, desc in FEATURES)


def test_encode_returns_float32_n_by_n_features(views):
    x = encode(views)
    assert x.dtype == np.float32
    assert x.shape == (len(views), N_FEATURES)


@pytest.mark.parametrize("seed", range(5))
def test_encode_is_finite_for_random_valid_views(seed):
    v = random_views(np.random.default_rng(seed), 500)
    assert np.isfinite(encode(v)).all()


def test_encode_is_finite_and_bounded_for_never_and_zero_balance_edge_cases():
    v = clean_views(3, balance_eur=0.0, outstanding_eur=0.0, days_since_contact=NEVER_DAYS)
    x = encode(v)
    assert np.isfinite(x).all()
    assert x[:, COL["days_since_contact"]].tolist() == [1.0] * 3


def test_encode_of_empty_batch_has_zero_rows(views):
    assert encode(views.take(np.array([], dtype=np.int64))).shape == (0, N_FEATURES)


def test_encode_into_out_matches_and_returns_out(views):
    expected = encode(views)
    out = np.full((len(views), N_FEATURES), np.nan, dtype=np.float32)
    got = encode(views, out=out)
    assert got is out
    np.testing.assert_array_equal(out, expected)


def test_encode_into_a_row_slice_of_a_larger_buffer(views):
    sub = views.take(np.arange(10))
    buf = np.full((20, N_FEATURES), -7.0, dtype=np.float32)
    encode(sub, out=buf[5:15])
    np.testing.assert_array_equal(buf[5:15], encode(sub))
    assert (buf[:5] == -7.0).all() and (buf[15:] == -7.0).all()


def test_batch_encoding_equals_row_by_row(views):
    x = encode(views)
    for i in range(0, len(views), 37):
        np.testing.assert_array_equal(x[i], encode(views.take(np.array([i])))[0])


def test_encode_does_not_modify_the_views(views):
    before = {name: getattr(views, name).copy() for name in views.field_names()}
    encode(views)
    for name, arr in before.items():
        np.testing.assert_array_equal(getattr(views, name), arr, err_msg=name)


def test_binary_and_one_hot_columns_are_zero_or_one(views):
    x = encode(views)
    binary = [n for n in FEATURE_NAMES if n.startswith(("product_", "on_file_", "opted_out_", "last_outcome_"))]
    binary += ["app_user", "never_responded", "promise_active", "plan_active", "vulnerable"]
    for name in binary:
        assert set(np.unique(x[:, COL[name]]).tolist()) <= {0.0, 1.0}, name


@pytest.mark.parametrize("prefix,n", [("product_", len(PRODUCT_NAMES)), ("last_outcome_", len(LastOutcome))])
def test_one_hot_groups_have_exactly_one_hot_column(views, prefix, n):
    cols = [COL[name] for name in FEATURE_NAMES if name.startswith(prefix)]
    assert len(cols) == n
    x = encode(views)
    np.testing.assert_array_equal(x[:, cols].sum(axis=1), np.ones(len(views)))


def test_product_one_hot_matches_product_index(views):
    x = encode(views)
    for p, name in enumerate(PRODUCT_NAMES):
        np.testing.assert_array_equal(x[:, COL[f"product_{name}"]] == 1.0, views.product == p)


def test_last_outcome_one_hot_matches_enum_names(views):
    x = encode(views)
    for outcome in LastOutcome:
        col = COL[f"last_outcome_{outcome.name.lower()}"]
        np.testing.assert_array_equal(x[:, col] == 1.0, views.last_outcome == outcome)


def test_promise_active_flip_changes_only_the_promise_active_column():
    v = clean_views(4)
    flipped = with_fields(v, promise_active=True)
    a, b = encode(v), encode(flipped)
    assert changed_columns(a, b) == {"promise_active"}
    assert (a[:, COL["promise_active"]] == 0).all() and (b[:, COL["promise_active"]] == 1).all()


@pytest.mark.parametrize("k", range(N_CONTACT_CHANNELS))
def test_on_file_of_channel_k_sets_column_on_file_k(k):
    on_file = np.zeros((1, N_CONTACT_CHANNELS), dtype=bool)
    v = clean_views(1, on_file=on_file)
    on_file_k = on_file.copy()
    on_file_k[0, k] = True
    a, b = encode(v), encode(with_fields(v, on_file=on_file_k))
    name = f"on_file_{CONTACT_CHANNEL_NAMES[k]}"
    assert changed_columns(a, b) == {name}
    assert a[0, COL[name]] == 0.0 and b[0, COL[name]] == 1.0


@pytest.mark.parametrize("k", range(N_CONTACT_CHANNELS))
def test_opted_out_and_contacts_of_channel_k_set_their_own_columns(k):
    v = clean_views(1)
    opted = np.zeros((1, N_CONTACT_CHANNELS), dtype=bool)
    opted[0, k] = True
    contacts = np.zeros((1, N_CONTACT_CHANNELS), dtype=np.int16)
    contacts[0, k] = 7
    ch = CONTACT_CHANNEL_NAMES[k]
    assert changed_columns(encode(v), encode(with_fields(v, opted_out=opted))) == {f"opted_out_{ch}"}
    x = encode(with_fields(v, contacts_7d=contacts))
    assert changed_columns(encode(v), x) == {f"contacts_7d_{ch}"}
    assert x[0, COL[f"contacts_7d_{ch}"]] == pytest.approx(1.0)


def test_vulnerable_and_plan_active_flip_only_their_columns():
    v = clean_views(2)
    assert changed_columns(encode(v), encode(with_fields(v, vulnerable=True))) == {"vulnerable"}
    assert changed_columns(encode(v), encode(with_fields(v, plan_active=True))) == {"plan_active"}
    assert changed_columns(encode(v), encode(with_fields(v, app_user=False))) == {"app_user"}


@pytest.mark.parametrize("field", ["days_since_contact", "days_since_response", "days_since_conversation"])
def test_days_since_is_increasing_and_capped_with_never_at_one(field):
    days = np.array([0, 1, 7, 30, 89, 90, 91, 365, NEVER_DAYS])
    x = encode(clean_views(len(days), **{field: days}))[:, COL[field]]
    assert x[0] == 0.0
    assert (np.diff(x) >= 0).all()
    assert (np.diff(x[:6]) > 0).all()  # strictly increasing below the cap
    assert (x[5:] == 1.0).all()  # 90 days and beyond (and never) saturate


def test_never_responded_follows_days_since_response():
    v = clean_views(2, days_since_response=np.array([NEVER_DAYS, 3]))
    x = encode(v)
    assert x[:, COL["never_responded"]].tolist() == [1.0, 0.0]


def test_outstanding_share_and_monotone_money_columns():
    v = clean_views(3, balance_eur=1000.0, outstanding_eur=np.array([0.0, 250.0, 1000.0]))
    x = encode(v)
    np.testing.assert_allclose(x[:, COL["outstanding_share"]], [0.0, 0.25, 1.0], rtol=1e-6)
    assert np.all(np.diff(x[:, COL["log_outstanding"]]) > 0)
    assert len(set(x[:, COL["log_balance"]].tolist())) == 1


def test_plan_progress_is_paid_over_total_and_zero_without_plan():
    v = clean_views(
        3,
        plan_active=np.array([True, True, False]),
        plan_instalments_paid=np.array([3, 0, 0]),
        plan_instalments_total=np.array([4, 6, 0]),
    )
    np.testing.assert_allclose(encode(v)[:, COL["plan_progress"]], [0.75, 0.0, 0.0])


def test_more_days_past_due_increases_dpd_feature_only():
    v = clean_views(1, dpd=40)
    a, b = encode(v), encode(with_fields(v, dpd=80))
    assert changed_columns(a, b) == {"dpd"}
    assert b[0, COL["dpd"]] > a[0, COL["dpd"]]


def test_calendar_features_lie_on_unit_circles_and_separate_days(views):
    x = encode(views)
    for a, b in (("dow_sin", "dow_cos"), ("dom_sin", "dom_cos")):
        np.testing.assert_allclose(x[:, COL[a]] ** 2 + x[:, COL[b]] ** 2, 1.0, rtol=1e-5)
    week = encode(clean_views(7, day_of_week=np.arange(7)))[:, [COL["dow_sin"], COL["dow_cos"]]]
    assert len({tuple(np.round(r, 5)) for r in week.tolist()}) == 7
    month = encode(clean_views(28, day_of_month=np.arange(1, 29)))[:, [COL["dom_sin"], COL["dom_cos"]]]
    assert len({tuple(np.round(r, 5)) for r in month.tolist()}) == 28
