"""The runtime's one-account path (plain Python values) against the batch definitions it specialises.

``encode_row``, ``action_mask_row``, ``check_row``, ``view_key_row`` and the ``*_row`` decision
functions must agree with their array versions exactly, or served decisions would depend on
whether an account came alone or in a batch.
"""

from __future__ import annotations

import itertools

import msgspec
import numpy as np
import pytest
from helpers_views import random_views

from policies import compliance
from policies.actions import N_ACTIONS, decode_flat
from policies.decision import (
    HEAD_WIDTH,
    alternatives,
    argmax_row,
    decision_uniforms,
    masked_argmax,
    masked_probabilities,
    masked_sample,
    probabilities_row,
    propensity_row,
    sample_row,
    uniforms_row,
)
from policies.features import encode, encode_row
from policies.records import FIELDS, Account, RecordError, parse_record, record_row, records_from_views, row_from_account, views_from_records
from policies.rules import view_key_row, view_keys
from policies.schema import ACTION_DIMS


@pytest.fixture(scope="module", params=[0, 1, 2])
def views(request):
    rng = np.random.default_rng(request.param)
    v = random_views(rng, 3000)
    # edge cases the random draw rarely hits: zero balance, last day of the month, no plan progress
    v.balance_eur[:5] = 0.0
    v.outstanding_eur[:5] = 0.0
    v.day_of_month[5:10] = 31
    # a conversation yesterday on a reachable phone with few calls: the cool-off rules decide
    call = 5
    v.days_since_conversation[10:100] = 1
    v.contacts_7d[10:100, call] = 0
    v.on_file[10:100, call] = True
    v.opted_out[10:100, call] = False
    return v


def test_encode_row_equals_encode_bit_for_bit(views):
    batch = encode(views)
    rows = np.array([encode_row(views.row(i)) for i in range(len(views))], dtype=np.float32)
    assert rows.shape == batch.shape
    assert np.array_equal(rows.view(np.uint32), batch.view(np.uint32))


@pytest.mark.parametrize("profile", sorted(compliance.PROFILES))
def test_mask_and_check_rows_equal_the_batch_rules(views, profile):
    p = compliance.get_profile(profile)
    mask = compliance.action_mask(views, p)
    rows = np.array([compliance.action_mask_row(views.row(i), p) for i in range(len(views))])
    assert np.array_equal(rows, mask)
    # every action for a sample of accounts, so every block reason is exercised
    every = decode_flat(np.arange(N_ACTIONS))
    seen: set[int] = set()
    for i in range(0, len(views), 17):
        one = views.take(np.full(N_ACTIONS, i))
        batch = compliance.check(every, one, p)
        r = views.row(i)
        assert [compliance.check_row(a, r, p) for a in every.tolist()] == batch.tolist()
        seen |= set(batch.tolist())
    assert {compliance.Block.OK, compliance.Block.NOT_ON_FILE, compliance.Block.OPTED_OUT} <= seen
    if p.max_calls_7d is not None:
        assert {compliance.Block.OUTSIDE_HOURS, compliance.Block.CALL_LIMIT_7D, compliance.Block.CALL_AFTER_CONVERSATION} <= seen


def test_view_key_and_uniforms_rows_equal_the_batch_hashes(views):
    keys = view_keys(views)
    u = decision_uniforms(views, 12345)
    for i in range(0, len(views), 7):
        k = view_key_row(views.row(i))
        assert k == int(keys[i])
        assert uniforms_row(k, 12345) == u[i].tolist()


def test_row_decision_functions_equal_the_batch_ones(views):
    rng = np.random.default_rng(5)
    n = len(views)
    logits = rng.normal(0.0, 2.0, size=(n, HEAD_WIDTH)).astype(np.float32).astype(np.float64)
    logits[:50, :7] = 0.5  # exact ties: the first allowed index wins in both paths
    mask = compliance.action_mask(views, compliance.get_profile("us_reg_f"))
    probs = masked_probabilities(logits, mask)
    u = rng.random((n, 4))
    sampled = masked_sample(logits, mask, u, probs)
    first = masked_argmax(logits, np.ones_like(mask))
    for i in range(n):
        pr = probabilities_row(logits[i].tolist(), mask[i].tolist())
        assert pr == [p[i].tolist() for p in probs]
        a = sample_row(pr, u[i].tolist())
        assert a == sampled[i].tolist()
        assert argmax_row(logits[i].tolist()) == first[i].tolist()
        expected = probs[0][i, 0] if a[0] == 0 else np.prod([probs[k][i, a[k]] for k in range(4)])
        assert propensity_row(pr, a) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("tied", [False, True])
def test_alternatives_are_the_most_probable_other_actions(tied):
    # the pruned search against every one of the 384 actions; with integer logits, many products tie
    # and the lower action must win each tie (the brute force multiplies in the search's order, so
    # that a tie is a tie in both)
    rng = np.random.default_rng(9)
    for _ in range(600 if tied else 300):
        logits = rng.integers(-1, 2, size=HEAD_WIDTH).astype(float) if tied else rng.normal(0.0, 1.5, size=HEAD_WIDTH)
        mask = rng.random(HEAD_WIDTH) < 0.75
        for s in (0, 7, 11, 15):  # every dimension keeps an allowed value (waiting always is)
            mask[s] = True
        probs = probabilities_row(logits.tolist(), mask.tolist())
        chosen = [int(rng.integers(n)) for n in ACTION_DIMS]
        got = alternatives(probs, chosen, 3)
        # brute force over every action, waiting counted once
        joint = {(0, 0, 0, 0): probs[0][0]}
        for c, w, t, o in itertools.product(range(1, 7), range(4), range(4), range(4)):
            joint[(c, w, t, o)] = probs[1][w] * probs[2][t] * probs[3][o] * probs[0][c]
        same = (0, 0, 0, 0) if chosen[0] == 0 else tuple(chosen)
        best = sorted(((p, a) for a, p in joint.items() if p > 0 and a != same), key=lambda x: (-x[0], x[1]))[:3]
        assert [a for _, a in got] == [a for _, a in best]
        assert [p for p, _ in got] == [p for p, _ in best]
        assert all(p > 0 for p, _ in got) and same not in [a for _, a in got]


def test_parse_record_is_the_validator_behind_views_from_records(views):
    records = records_from_views(views.take(np.arange(200)))
    batch = views_from_records(records)
    for i, rec in enumerate(records):
        assert parse_record(rec, i) == batch.row(i)


def _outcome(f, rec):
    """A row with each value's type (1 and 1.0 would hash differently in the decision log), or the error."""
    try:
        return {k: (type(v), v) for k, v in f(rec).items()}
    except RecordError as e:
        return ("refused", str(e))


def test_record_row_accepts_and_refuses_exactly_what_parse_record_does(views):
    """``record_row`` (the wire decoder first, then ``parse_record`` for what it refuses) must give
    the same row, or the same error, as ``parse_record`` for good and bad records alike."""
    records = records_from_views(views.take(np.arange(40)))
    edge = [None, -1, 0, 1, 12.0, 2.5, 1e12, True, "3", [], {}, ["sms", "sms"], ["fax"], {"sms": 1.0}, {"sms": -1}, {"fax": 1}]
    edge += ["credit_card", "none", np.int64(3), np.float64(2.0)]
    cases = [dict(rec) for rec in records]
    for i, f in enumerate(FIELDS):
        for j, value in enumerate(edge):
            cases.append(records[(i * len(edge) + j) % len(records)] | {f.name: value})
        cases.append({k: v for k, v in records[i % len(records)].items() if k != f.name})
    cases += [records[0] | {"account_id": "a-1", "day": 3}, records[1] | {"day": 2.0}, records[2] | {"day": 2.5}, records[3] | {"colour": "red"}]
    refused = 0
    for rec in cases:
        expected = _outcome(parse_record, rec)
        assert _outcome(record_row, rec) == expected, rec
        refused += isinstance(expected, tuple)
    assert 100 < refused < len(cases) - 100  # both kinds of record were tried
    # and the fast path really takes good records (else the agreement above would be parse_record's with itself)
    for rec in records:
        assert _outcome(lambda r: row_from_account(msgspec.convert(r, Account)), rec) == _outcome(parse_record, rec)


def test_behaviour_uniforms_of_a_few_debtors_equal_those_drawn_in_bulk():
    """sim.rng.uniforms takes a plain-Python path for a handful of debtors (the single-debtor env);
    a debtor's luck must not depend on how many others are drawn with it."""
    from sim.rng import uniforms

    ids = np.random.default_rng(4).integers(0, 2**62, size=300, dtype=np.uint64)
    bulk = uniforms(0xC0FFEE, ids, 17, 3, 2)
    assert np.array_equal(np.concatenate([uniforms(0xC0FFEE, ids[i : i + 1], 17, 3, 2) for i in range(300)]), bulk)
    assert np.array_equal(np.concatenate([uniforms(0xC0FFEE, ids[i : i + 3], 17, 3, 2) for i in range(0, 300, 3)]), bulk)
    assert uniforms(0xC0FFEE, ids[:0], 17, 3, 2).shape == (0,)


def test_the_row_paths_float32_packing_rounds_as_numpy_does():
    from policies.features import N_FEATURES
    from policies.runtime import _OBS_ROW

    rng = np.random.default_rng(4)
    # values at float32's rounding edges: halfway cases, subnormals, big, negative zero, NaN
    x = np.concatenate([rng.normal(size=N_FEATURES * 200) * 10.0 ** rng.integers(-40, 38, N_FEATURES * 200)])
    x[:5] = [np.nextafter(np.float32(1.0), np.float32(2.0)) / 2 + 0.5, 1e-45, -0.0, np.nan, 3.4e38]
    packed, numpy = np.zeros((1, N_FEATURES), np.float32), np.zeros((1, N_FEATURES), np.float32)
    compared = 0
    for row in x.reshape(-1, N_FEATURES).tolist():
        try:
            _OBS_ROW.pack_into(packed, 0, *row)
        except OverflowError:  # the runtime falls back to numpy's assignment here (inf)
            assert any(abs(v) > 3.4028235e38 for v in row if v == v)
            continue
        numpy[0] = row
        assert packed.tobytes() == numpy.tobytes()
        compared += 1
    assert compared >= 150
