"""The behaviour model: pure functions of traits, state and parameters (no SimPy, no global RNG).

The SimPy world draws from these probabilities with its seeded uniforms; the oracle policy uses the
same functions to compute expected values. Units: probabilities per contact or per day, money in
EUR, time in days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.schema import Offer, Tone, Window
from sim.config import Scenario

CHANNEL_KEYS = ("sms", "email", "push", "messenger", "letter", "call")
N_OUTCOMES = 7  # pay_full, pay_part, promise, plan, settlement, deferral, nothing (reference)
OFFERED_OUTCOME = ((3, int(Offer.PLAN)), (4, int(Offer.SETTLEMENT)), (5, int(Offer.DEFERRAL)))
_FIRM, _EMPATHETIC, _LATE = int(Tone.FIRM), int(Tone.EMPATHETIC), int(Window.LATE)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Params:
    """Per-channel and behaviour parameters of a scenario, as arrays (built once per world)."""

    cost_eur: np.ndarray  # (6,)
    engage_logit: np.ndarray  # (6,)
    fatigue_weight: np.ndarray  # (6,)
    window_sensitivity: np.ndarray  # (6,)
    outcome_coef: np.ndarray  # (6, 4): base, ability, willingness, log balance
    fatigue_decay: float  # per-day multiplier
    intensity_decay: float  # per-day multiplier

    @classmethod
    def of(cls, sc: Scenario) -> Params:
        specs = [sc.channels.spec(k) for k in CHANNEL_KEYS]
        o = sc.behaviour.outcomes
        rows = [o.pay_full, o.pay_part, o.promise, o.plan, o.settlement, o.deferral]
        return cls(
            cost_eur=np.array([s.cost_eur for s in specs]),
            engage_logit=np.array([s.engage_logit for s in specs]),
            fatigue_weight=np.array([s.fatigue_weight for s in specs]),
            window_sensitivity=np.array([s.window_sensitivity for s in specs]),
            outcome_coef=np.array([[r.base, r.ability, r.willingness, r.log_balance] for r in rows]),
            fatigue_decay=float(np.exp(-1.0 / sc.behaviour.fatigue_decay_days)),
            intensity_decay=float(np.exp(-sc.behaviour.intensity_decay_per_day)),
        )


def p_notice(attention: np.ndarray, window_fit: np.ndarray, window_sensitivity: np.ndarray) -> np.ndarray:
    """Probability a delivered contact is noticed (opened, or answered by the right party)."""
    return attention * (1.0 - window_sensitivity * (1.0 - window_fit))


def effective_ability(sc: Scenario, ability: np.ndarray, growth: np.ndarray, days_in: np.ndarray, payday: np.ndarray, day: int) -> np.ndarray:
    """Ability to pay today: liquidity recovers over time for the illiquid, and peaks after payday."""
    since_payday = (day % 28 + 1 - payday) % 28
    ab = ability + growth * (days_in / 30.0) + np.where(since_payday < 5, sc.behaviour.payday_ability_boost, 0.0)
    return np.clip(ab, 0.0, 1.0)


def complaint_logit(sc: Scenario, base: np.ndarray, fatigue: np.ndarray, firm: np.ndarray, distressed: np.ndarray, late: np.ndarray) -> np.ndarray:
    b = sc.behaviour
    return base + b.fatigue_complaint * fatigue + b.firm_distressed_complaint * (firm & distressed) + b.late_window_complaint * late


def opt_out_logit(sc: Scenario, fatigue: np.ndarray) -> np.ndarray:
    return sc.behaviour.opt_out_logit + sc.behaviour.fatigue_opt_out * fatigue


def engage_logit(
    sc: Scenario,
    prm: Params,
    ch: np.ndarray,
    tone: np.ndarray,
    willingness: np.ndarray,
    tone_effect_of_tone: np.ndarray,
    offer_effect_of_offer: np.ndarray,
    distressed: np.ndarray,
    fatigue: np.ndarray,
    dpd: np.ndarray,
) -> np.ndarray:
    """Log-odds that a noticed contact is engaged with (reply, conversation, click-through)."""
    b = sc.behaviour
    return (
        prm.engage_logit[ch]
        + b.willingness_engage * (willingness - 0.5)
        + tone_effect_of_tone
        + 0.5 * offer_effect_of_offer
        + b.firm_distressed_engage * ((tone == _FIRM) & distressed)
        + b.empathetic_distressed_engage * ((tone == _EMPATHETIC) & distressed)
        + b.fatigue_engage * fatigue
        + b.age_engage_per_30d * (dpd / 30.0)
    )


def outcome_probabilities(
    prm: Params, ability: np.ndarray, willingness: np.ndarray, outstanding: np.ndarray, offer: np.ndarray, offer_effect: np.ndarray
) -> np.ndarray:
    """(N, 7) probabilities of the outcomes of an engaged contact; an outcome that needs an offer
    (plan, settlement, deferral) is only possible when that offer is made. ``offer_effect`` is the
    debtor's (N, 4) sensitivity to each offer."""
    lb = np.log(np.maximum(outstanding, 1.0) / 1000.0)
    c = prm.outcome_coef
    logits = np.zeros((len(ability), N_OUTCOMES))
    # term by term, in this order, not as a matrix product: BLAS kernels sum in an order (and with
    # fused multiply-adds) that depends on the CPU, and the one-debtor engine (sim.single) computes
    # these same sums in plain Python to the last bit
    logits[:, :6] = c[:, 0] + ability[:, None] * c[:, 1] + willingness.astype(np.float64)[:, None] * c[:, 2] + lb[:, None] * c[:, 3]
    rows = np.arange(len(ability))
    for out, off in OFFERED_OUTCOME:
        logits[:, out] = np.where(offer == off, logits[:, out] + offer_effect[rows, off], -np.inf)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def keep_logit(base: float, ability: np.ndarray, willingness: np.ndarray) -> np.ndarray:
    """Log-odds that a promise (or an instalment) due today is paid."""
    return base + 3.0 * (ability - 0.5) + 2.0 * (willingness - 0.5)


def baseline_intensity(sc: Scenario, self_cure: np.ndarray, dpd: np.ndarray) -> np.ndarray:
    """Long-run daily intensity of unprompted repayment; halves every ``intensity_age_halflife_days`` of debt age."""
    return self_cure * np.exp2(-dpd / sc.behaviour.intensity_age_halflife_days)


def churn_logit(sc: Scenario, base: np.ndarray, firm_contacts: np.ndarray, complaints: np.ndarray, contacts: np.ndarray) -> np.ndarray:
    c = sc.behaviour
    return base + c.churn_per_firm_contact * firm_contacts + c.churn_per_complaint * complaints + c.churn_per_10_contacts * contacts / 10.0
