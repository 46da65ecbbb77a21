"""Builders of valid :class:`policies.schema.ViewBatch` objects for tests.

``random_views(rng, n)`` draws N accounts with realistic ranges (including ``NEVER_DAYS`` for
things that never happened); ``clean_views(n)`` gives N identical, fully reachable accounts with
no history, so a test can switch on exactly the one fact it is about. Both accept field
overrides, and ``with_fields`` replaces fields of an existing batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from policies.schema import N_CONTACT_CHANNELS, NEVER_DAYS, PRODUCT_NAMES, LastOutcome, ViewBatch

HORIZON_DAYS = 180  # days from entry to collections until the debt is sold


def _days_since(rng: np.random.Generator, n: int, p_never: float, max_days: int = 120) -> np.ndarray:
    days = rng.integers(0, max_days + 1, size=n)
    return np.where(rng.random(n) < p_never, NEVER_DAYS, days).astype(np.int32)


def random_views(rng: np.random.Generator, n: int, **overrides: Any) -> ViewBatch:
    """N valid views drawn from ``rng``; keyword arguments replace whole fields."""
    nc = N_CONTACT_CHANNELS
    balance = np.exp(rng.uniform(np.log(30.0), np.log(25_000.0), size=n))
    outstanding = balance * rng.uniform(0.0, 1.0, size=n)
    untouched = rng.random(n) < 0.3  # nothing paid yet
    outstanding[untouched] = balance[untouched]
    days_in = rng.integers(0, HORIZON_DAYS + 1, size=n).astype(np.int32)
    dpd = (rng.integers(30, 121, size=n) + days_in).astype(np.int32)

    on_file = rng.random((n, nc)) < 0.8
    opted_out = rng.random((n, nc)) < 0.12
    contacts_7d = rng.integers(0, 10, size=(n, nc)).astype(np.int16)
    contacts_total = (contacts_7d.sum(axis=1) + rng.integers(0, 30, size=n)).astype(np.int16)

    days_since_contact = _days_since(rng, n, p_never=0.25)
    # a conversation is a contact, so it is never more recent than the last contact
    conv_gap = rng.integers(0, 30, size=n)
    days_since_conversation = np.where(
        (rng.random(n) < 0.4) | (days_since_contact >= NEVER_DAYS),
        NEVER_DAYS,
        np.minimum(days_since_contact + conv_gap, NEVER_DAYS),
    ).astype(np.int32)
    days_since_response = _days_since(rng, n, p_never=0.35)
    never_responded = days_since_response >= NEVER_DAYS
    responses_total = np.where(never_responded, 0, rng.integers(1, 11, size=n)).astype(np.int16)
    last_outcome = np.where(never_responded, LastOutcome.NONE, rng.integers(0, len(LastOutcome), size=n)).astype(np.int8)

    promise_active = rng.random(n) < 0.15
    promise_due = np.where(promise_active, rng.integers(0, 31, size=n), 0).astype(np.int32)
    plan_active = (rng.random(n) < 0.1) & ~promise_active
    plan_total = np.where(plan_active, rng.integers(2, 13, size=n), 0).astype(np.int16)
    plan_paid = np.where(plan_active, rng.integers(0, np.maximum(plan_total, 1)), 0).astype(np.int16)

    fields: dict[str, Any] = dict(
        balance_eur=balance,
        outstanding_eur=outstanding,
        dpd=dpd,
        days_in_collections=days_in,
        days_left=(HORIZON_DAYS - days_in).astype(np.int32),
        product=rng.integers(0, len(PRODUCT_NAMES), size=n).astype(np.int8),
        behaviour_score=rng.random(n).astype(np.float32),
        app_user=rng.random(n) < 0.5,
        on_file=on_file,
        opted_out=opted_out,
        contacts_7d=contacts_7d,
        contacts_total=contacts_total,
        days_since_contact=days_since_contact,
        days_since_response=days_since_response,
        days_since_conversation=days_since_conversation,
        responses_total=responses_total,
        promise_active=promise_active,
        promise_due_in_days=promise_due,
        promises_broken=rng.integers(0, 4, size=n).astype(np.int16),
        plan_active=plan_active,
        plan_instalments_paid=plan_paid,
        plan_instalments_total=plan_total,
        plans_broken=rng.integers(0, 3, size=n).astype(np.int16),
        complaints=rng.integers(0, 3, size=n).astype(np.int16),
        vulnerable=rng.random(n) < 0.15,
        last_outcome=last_outcome,
        day_of_week=rng.integers(0, 7, size=n).astype(np.int8),
        day_of_month=rng.integers(1, 29, size=n).astype(np.int8),
    )
    return _build(fields, n, overrides)


def clean_views(n: int = 1, **overrides: Any) -> ViewBatch:
    """N identical accounts: app user, every channel on file, nothing opted out, no history."""
    nc = N_CONTACT_CHANNELS
    i32 = lambda value: np.full(n, value, dtype=np.int32)
    fields: dict[str, Any] = dict(
        balance_eur=np.full(n, 1000.0),
        outstanding_eur=np.full(n, 1000.0),
        dpd=i32(40),
        days_in_collections=i32(10),
        days_left=i32(HORIZON_DAYS - 10),
        product=np.zeros(n, dtype=np.int8),
        behaviour_score=np.full(n, 0.5, dtype=np.float32),
        app_user=np.ones(n, dtype=bool),
        on_file=np.ones((n, nc), dtype=bool),
        opted_out=np.zeros((n, nc), dtype=bool),
        contacts_7d=np.zeros((n, nc), dtype=np.int16),
        contacts_total=np.zeros(n, dtype=np.int16),
        days_since_contact=i32(NEVER_DAYS),
        days_since_response=i32(NEVER_DAYS),
        days_since_conversation=i32(NEVER_DAYS),
        responses_total=np.zeros(n, dtype=np.int16),
        promise_active=np.zeros(n, dtype=bool),
        promise_due_in_days=i32(0),
        promises_broken=np.zeros(n, dtype=np.int16),
        plan_active=np.zeros(n, dtype=bool),
        plan_instalments_paid=np.zeros(n, dtype=np.int16),
        plan_instalments_total=np.zeros(n, dtype=np.int16),
        plans_broken=np.zeros(n, dtype=np.int16),
        complaints=np.zeros(n, dtype=np.int16),
        vulnerable=np.zeros(n, dtype=bool),
        last_outcome=np.zeros(n, dtype=np.int8),
        day_of_week=np.full(n, 2, dtype=np.int8),
        day_of_month=np.full(n, 15, dtype=np.int8),
    )
    return _build(fields, n, overrides)


def with_fields(v: ViewBatch, **changes: Any) -> ViewBatch:
    """A copy of ``v`` with the given fields replaced (scalars broadcast to the field's shape)."""
    fixed = {}
    for name, value in changes.items():
        old = getattr(v, name)
        fixed[name] = np.broadcast_to(np.asarray(value, dtype=old.dtype), old.shape).copy()
    return dataclasses.replace(v, **fixed)


def _build(fields: dict[str, Any], n: int, overrides: dict[str, Any]) -> ViewBatch:
    unknown = set(overrides) - set(fields)
    if unknown:
        raise TypeError(f"unknown ViewBatch fields {sorted(unknown)}")
    for name, value in overrides.items():
        old = fields[name]
        fields[name] = np.broadcast_to(np.asarray(value, dtype=old.dtype), old.shape).copy()
    v = ViewBatch(**fields)
    assert len(v) == n
    return v
