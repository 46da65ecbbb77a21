"""The feature encoder: observable view -> float32 vector.

The Gymnasium envs and the production runtime call this same function, so training and serving
cannot drift apart. ``FEATURES`` documents each column with its unit and scaling.

:func:`encode` is the definition. :func:`encode_row` is the same encoder for one account held as
plain Python values, for the runtime's single-decision path (a numpy call per column would cost
more than the model); tests check the two agree bit for bit on random views.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from policies.schema import CONTACT_CHANNEL_NAMES, N_CONTACT_CHANNELS, NEVER_DAYS, PRODUCT_NAMES, ViewBatch

_DAYS_CAP = 90.0

# (name, description with unit and scaling)
FEATURES: tuple[tuple[str, str], ...] = (
    ("log_balance", "ln(1 + balance at entry in EUR) / 10"),
    ("outstanding_share", "outstanding / balance at entry, 0..1"),
    ("log_outstanding", "ln(1 + outstanding EUR) / 10"),
    ("dpd", "days past due / 365"),
    ("days_in_collections", "days in collections / 365"),
    ("days_left", "days until sale / 365"),
    *((f"product_{p}", "1 if the product, else 0") for p in PRODUCT_NAMES),
    ("behaviour_score", "behaviour score 0..1 (1 = good)"),
    ("app_user", "1 if the debtor uses the app"),
    *((f"on_file_{c}", "1 if a usable address is on file") for c in CONTACT_CHANNEL_NAMES),
    *((f"opted_out_{c}", "1 if the debtor opted out of the channel") for c in CONTACT_CHANNEL_NAMES),
    *((f"contacts_7d_{c}", "contact attempts in the last 7 days / 7") for c in CONTACT_CHANNEL_NAMES),
    ("contacts_total", "all contact attempts / 30"),
    ("days_since_contact", "min(days, 90) / 90; 1 if never"),
    ("days_since_response", "min(days, 90) / 90; 1 if never"),
    ("days_since_conversation", "min(days, 90) / 90; 1 if never"),
    ("never_responded", "1 if the debtor never responded"),
    ("responses_total", "responses / 10"),
    ("promise_active", "1 if a promise to pay is open"),
    ("promise_due_in_days", "days until the promise is due / 30"),
    ("promises_broken", "broken promises / 3"),
    ("plan_active", "1 if an instalment plan is running"),
    ("plan_progress", "instalments paid / instalments in the plan; 0 without a plan"),
    ("plans_broken", "broken plans / 2"),
    ("complaints", "complaints / 2"),
    ("vulnerable", "1 if vulnerability was disclosed"),
    *(
        (f"last_outcome_{k}", "1 if the last response was this")
        for k in ("none", "ignored", "paid", "promised", "plan", "settlement", "complained", "opted_out", "broke_promise")
    ),
    ("dow_sin", "sin(2 pi day-of-week / 7)"),
    ("dow_cos", "cos(2 pi day-of-week / 7)"),
    ("dom_sin", "sin(2 pi day-of-month / 28), payday cycle"),
    ("dom_cos", "cos(2 pi day-of-month / 28)"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(n for n, _ in FEATURES)
N_FEATURES = len(FEATURES)


def _days(x: np.ndarray) -> np.ndarray:
    return np.minimum(x, _DAYS_CAP) / _DAYS_CAP


# one-hot rows and the calendar columns by value (sin and cos of 2 pi day-of-week / 7 and of
# 2 pi day-of-month / 28), computed once; both encoders index them
_PRODUCT_HOT_A = np.eye(len(PRODUCT_NAMES))
_OUTCOME_HOT_A = np.eye(9)
_DOW_SIN_A, _DOW_COS_A = np.sin(2 * np.pi * np.arange(7) / 7.0), np.cos(2 * np.pi * np.arange(7) / 7.0)
_DOM_SIN_A, _DOM_COS_A = np.sin(2 * np.pi * np.arange(32) / 28.0), np.cos(2 * np.pi * np.arange(32) / 28.0)


def encode(v: ViewBatch, out: np.ndarray | None = None) -> np.ndarray:
    """Encode a batch of views as an (N, N_FEATURES) float32 matrix (written into ``out`` if given)."""
    n = len(v)
    x = np.empty((n, N_FEATURES), dtype=np.float32) if out is None else out
    bal = v.balance_eur.astype(np.float64)
    col = 0

    def put(values: np.ndarray) -> None:
        nonlocal col
        values = np.asarray(values)
        width = 1 if values.ndim == 1 else values.shape[1]
        x[:, col : col + width] = values.reshape(n, width)
        col += width

    put(np.log1p(bal) / 10.0)
    put(v.outstanding_eur / np.maximum(bal, 1e-9))
    put(np.log1p(v.outstanding_eur) / 10.0)
    put(v.dpd / 365.0)
    put(v.days_in_collections / 365.0)
    put(v.days_left / 365.0)
    put(_PRODUCT_HOT_A[v.product])
    put(v.behaviour_score)
    put(v.app_user)
    put(v.on_file)
    put(v.opted_out)
    put(v.contacts_7d / 7.0)
    put(v.contacts_total / 30.0)
    put(_days(v.days_since_contact))
    put(_days(v.days_since_response))
    put(_days(v.days_since_conversation))
    put(v.days_since_response >= NEVER_DAYS)
    put(v.responses_total / 10.0)
    put(v.promise_active)
    put(v.promise_due_in_days / 30.0)
    put(v.promises_broken / 3.0)
    put(v.plan_active)
    put(np.where(v.plan_instalments_total > 0, v.plan_instalments_paid / np.maximum(v.plan_instalments_total, 1), 0.0))
    put(v.plans_broken / 2.0)
    put(v.complaints / 2.0)
    put(v.vulnerable)
    put(_OUTCOME_HOT_A[v.last_outcome])
    put(_DOW_SIN_A[v.day_of_week])
    put(_DOW_COS_A[v.day_of_week])
    put(_DOM_SIN_A[v.day_of_month])
    put(_DOM_COS_A[v.day_of_month])
    assert col == N_FEATURES, (col, N_FEATURES)
    assert N_CONTACT_CHANNELS == 6
    return x


_PRODUCT_HOT, _OUTCOME_HOT = _PRODUCT_HOT_A.tolist(), _OUTCOME_HOT_A.tolist()
_DOW_SIN, _DOW_COS, _DOM_SIN, _DOM_COS = (t.tolist() for t in (_DOW_SIN_A, _DOW_COS_A, _DOM_SIN_A, _DOM_COS_A))


_PER_WEEK = (7.0).__rtruediv__  # c -> c / 7.0 (a comprehension costs a frame per row)
_DOW_SIN_COS = list(zip(_DOW_SIN, _DOW_COS, strict=True))
_DOM_SIN_COS = list(zip(_DOM_SIN, _DOM_COS, strict=True))
_log1p = math.log1p


def encode_row(r: Mapping[str, Any]) -> list[float]:
    """One account's features (as float64 values; the caller casts to float32) from a view held as
    a dict of plain values keyed by ViewBatch field (per-channel fields as lists of 6). Written for
    speed (it runs once per decision and per Debtor-v1 step): conditionals instead of min/max and
    float() calls, giving the same values."""
    bal = float(r["balance_eur"])
    out = r["outstanding_eur"]
    total = r["plan_instalments_total"]
    dsc, dsr, dsv = r["days_since_contact"], r["days_since_response"], r["days_since_conversation"]
    return [
        _log1p(bal) / 10.0,
        out / (bal if bal > 1e-9 else 1e-9),
        _log1p(out) / 10.0,
        r["dpd"] / 365.0,
        r["days_in_collections"] / 365.0,
        r["days_left"] / 365.0,
        *_PRODUCT_HOT[r["product"]],
        r["behaviour_score"],
        1.0 if r["app_user"] else 0.0,
        *map(float, r["on_file"]),
        *map(float, r["opted_out"]),
        *map(_PER_WEEK, r["contacts_7d"]),
        r["contacts_total"] / 30.0,
        (dsc if dsc < _DAYS_CAP else _DAYS_CAP) / _DAYS_CAP,
        (dsr if dsr < _DAYS_CAP else _DAYS_CAP) / _DAYS_CAP,
        (dsv if dsv < _DAYS_CAP else _DAYS_CAP) / _DAYS_CAP,
        1.0 if dsr >= NEVER_DAYS else 0.0,
        r["responses_total"] / 10.0,
        1.0 if r["promise_active"] else 0.0,
        r["promise_due_in_days"] / 30.0,
        r["promises_broken"] / 3.0,
        1.0 if r["plan_active"] else 0.0,
        r["plan_instalments_paid"] / total if total > 0 else 0.0,
        r["plans_broken"] / 2.0,
        r["complaints"] / 2.0,
        1.0 if r["vulnerable"] else 0.0,
        *_OUTCOME_HOT[r["last_outcome"]],
        *_DOW_SIN_COS[r["day_of_week"]],
        *_DOM_SIN_COS[r["day_of_month"]],
    ]


def encode_row_f32(r: Mapping[str, Any]) -> np.ndarray:
    """:func:`encode_row` as a float32 array of shape (N_FEATURES,)."""
    return np.array(encode_row(r), dtype=np.float32)
