"""Measuring a scenario against the published figures it claims (``calibration:`` in its YAML).

Each metric names a protocol: which policy runs, and what is measured. Unless a metric says
otherwise the policy is ``static_ladder``.

=============================  ==============================================================
metric                         protocol
=============================  ==============================================================
recovery_rate_amount           share of the balance collected by the horizon
recovery_rate_count            share of debtors who paid anything by the horizon
rpc_rate                       right-party contacts per call attempt made
{channel}_open_rate            noticed / delivered, e.g. ``sms_open_rate``
{channel}_response_rate        engaged / delivered
paid_28d_no_contact            no contact at all: share paying anything within 28 days
reminder_lift_28d              one friendly SMS on day 0 vs no contact: ratio of the shares
                               paying within 28 days (UK fines trial design)
overcontact_complaint_ratio    a text and a call every allowed day vs static_ladder: ratio of
                               complaint rates
overcontact_opt_out_ratio      the same, ratio of opt-out rates
=============================  ==============================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.base import make
from policies.schema import Channel, Offer, Tone, ViewBatch, Window
from sim.config import CalibrationTarget, Scenario
from sim.kpis import funnel_rates, portfolio_kpis
from sim.runner import run_portfolio
from sim.world import Status, World


class _SingleReminder:
    """One friendly SMS on the first day in collections (fallback e-mail), nothing after."""

    policy_id = "calibration/single_reminder"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        out = np.zeros((len(views), 4), dtype=np.int64)
        first = views.days_in_collections == 0
        for ch in (Channel.SMS, Channel.EMAIL):
            take = first & mask[:, ch] & (out[:, 0] == 0)
            out[take] = (ch, Window.MORNING, Tone.FRIENDLY, Offer.NONE)
        return out


class _OverContact:
    """A firm text every morning and a firm call every afternoon the profile allows."""

    policy_id = "calibration/over_contact"

    def __init__(self) -> None:
        self.flip = 0

    def reset(self, seed: int | None = None) -> None:
        self.flip = 0

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        out = np.zeros((len(views), 4), dtype=np.int64)
        self.flip ^= 1
        order = (Channel.CALL, Channel.SMS) if self.flip else (Channel.SMS, Channel.CALL)
        for ch in (*order, Channel.EMAIL):
            take = mask[:, ch] & (out[:, 0] == 0)
            out[take] = (ch, Window.AFTERNOON, Tone.FIRM, Offer.NONE)
        return out


def _paid_within(w: World, days: int) -> float:
    e = w.status != Status.WAITING
    f = w.first_payment_day[e]
    return float(((f >= 0) & (f < days)).mean())


@dataclass
class Measurement:
    target: CalibrationTarget
    value: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.value)) and self.target.passes(self.value)


def measure_all(sc: Scenario, debtors: int = 20000, seed: int = 0) -> list[Measurement]:
    """Measure every calibration target of ``sc`` (runs each needed protocol once)."""
    cache: dict[str, World] = {}

    def run(name: str) -> World:
        if name not in cache:
            pol = {"single_reminder": _SingleReminder, "over_contact": _OverContact}.get(name)
            policy = pol() if pol else make(name)
            cache[name] = run_portfolio(sc, policy, debtors, seed)  # type: ignore[arg-type]
        return cache[name]

    out = []
    for t in sc.calibration:
        out.append(Measurement(t, measure(t.metric, run)))
    return out


def measure(metric: str, run) -> float:  # type: ignore[no-untyped-def]
    if metric == "paid_28d_no_contact":
        return _paid_within(run("no_contact"), 28)
    if metric == "reminder_lift_28d":
        base = _paid_within(run("no_contact"), 28)
        return _paid_within(run("single_reminder"), 28) / base if base > 0 else float("inf")
    if metric in ("overcontact_complaint_ratio", "overcontact_opt_out_ratio"):
        key = "complaint_rate" if "complaint" in metric else "opt_out_rate"
        ref = portfolio_kpis(run("static_ladder"))[key]
        return portfolio_kpis(run("over_contact"))[key] / ref if ref > 0 else float("inf")
    ladder = run("static_ladder")
    k = portfolio_kpis(ladder)
    if metric in k:
        return k[metric]
    f = funnel_rates(ladder)
    if metric in f:
        return f[metric]
    raise ValueError(f"unknown calibration metric {metric!r}; see sim.calibration for the list")
