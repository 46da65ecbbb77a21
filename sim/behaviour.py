"""The rulebook: every behaviour formula of the world, once.

Each rule is one function of traits, state and scenario parameters, callable on numpy arrays (a
batch of debtors: :class:`sim.world.World`, the oracle) and on Python numbers (one debtor:
:class:`sim.single.OneDebtor`), with the same numbers out: the functions use only arithmetic that
numpy and Python compute alike in float64 (``+ - * /`` and comparisons), and route ``exp``,
``where``, ``clip`` and ``max`` through the small helpers below, which pick numpy or :mod:`math`
by the type of their argument. No rule is written anywhere else, and every constant a rule uses
is a key of the scenario (``behaviour``, ``channels`` or the debtor's traits), so changing a rule
is one function here and one key there.

Units: probabilities per contact or per day, money in EUR, time in days; logits are log-odds.
The funnel of a contact, in the order the world applies it:

    delivered (a trait) -> noticed (:func:`p_notice`) -> complaint (:func:`complaint_logit`) or
    opt-out (:func:`opt_out_logit`), else engaged (:func:`engage_logit`) -> an outcome
    (:func:`outcome_probabilities`, :func:`draw_outcome`)

and, over the days: promises and instalments kept or broken (:func:`promise_keep_logit`,
:func:`instalment_keep_logit`), unprompted payments from a self-exciting intensity
(:func:`baseline_intensity`, :func:`decayed_intensity`, :func:`contact_jump`,
:func:`payment_jump`, :func:`p_spontaneous`, :func:`spontaneous_share`), fatigue that decays
(:func:`decayed_fatigue`), liquidity that varies (:func:`effective_ability`) and churn on
resolution (:func:`churn_logit`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.schema import MONTH_DAYS, Channel, Offer, Tone, Window
from sim.config import Behaviour, Scenario, SpontaneousPayment

CHANNEL_KEYS = ("sms", "email", "push", "messenger", "letter", "call")
LETTER, CALL = int(Channel.LETTER) - 1, int(Channel.CALL) - 1  # contact-channel columns (no "wait")
FIRM, EMPATHETIC, LATE = int(Tone.FIRM), int(Tone.EMPATHETIC), int(Window.LATE)
PAY_FULL, PAY_PART, PROMISE, PLAN, SETTLEMENT, DEFERRAL, NOTHING = range(7)
N_OUTCOMES = 7  # the six of behaviour.outcomes, then "nothing" (the reference, logit 0)
OFFERED_OUTCOME = ((PLAN, int(Offer.PLAN)), (SETTLEMENT, int(Offer.SETTLEMENT)), (DEFERRAL, int(Offer.DEFERRAL)))
PROMISE_KIND, SETTLEMENT_KIND, DEFERRAL_KIND = 0, 1, 2  # what a promise is for
LOG_BALANCE_REFERENCE_EUR = 1000.0  # outcomes' log_balance coefficients are per unit of ln(outstanding / this)

Num = Any  # a Python number or a numpy array of them (the rules accept both)


# ------------------------------------------------------------------ array-or-number helpers


def _exp(x: Num) -> Num:
    if type(x) is np.ndarray:
        return np.exp(x)
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _expm1(x: Num) -> Num:
    if type(x) is np.ndarray:
        return np.expm1(x)
    try:
        return math.expm1(x)
    except OverflowError:
        return math.inf


def _exp2(x: Num) -> Num:
    if type(x) is np.ndarray:
        return np.exp2(x)
    try:
        return math.exp2(x)
    except OverflowError:
        return math.inf


def _clip(x: Num, lo: float, hi: float) -> Num:
    if type(x) is np.ndarray:
        return np.clip(x, lo, hi)
    return lo if x < lo else (hi if x > hi else x)


def _min(x: Num, hi: float) -> Num:
    if type(x) is np.ndarray:
        return np.minimum(x, hi)
    return x if x < hi else hi


def _max(x: Num, lo: float) -> Num:
    if type(x) is np.ndarray:
        return np.maximum(x, lo)
    return x if x > lo else lo


def _where(cond: Num, a: Num, b: Num) -> Num:
    if type(cond) is np.ndarray:
        return np.where(cond, a, b)
    return a if cond else b


def sigmoid(z: Num) -> Num:
    """The logistic function; a logit whose exp overflows gives 0."""
    return 1.0 / (1.0 + _exp(-z))


# ------------------------------------------------------------------ parameters as arrays


@dataclass(frozen=True)
class Params:
    """Per-channel and outcome parameters of a scenario, as arrays indexed by contact channel
    (built once per world; the one-debtor engine reads them as lists)."""

    cost_eur: np.ndarray  # (6,)
    delivery_rate: np.ndarray  # (6,)
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
            delivery_rate=np.array([s.delivery_rate for s in specs]),
            engage_logit=np.array([s.engage_logit for s in specs]),
            fatigue_weight=np.array([s.fatigue_weight for s in specs]),
            window_sensitivity=np.array([s.window_sensitivity for s in specs]),
            outcome_coef=np.array([[r.base, r.ability, r.willingness, r.log_balance] for r in rows]),
            fatigue_decay=float(np.exp(-1.0 / sc.behaviour.fatigue_decay_days)),
            intensity_decay=float(np.exp(-sc.behaviour.intensity_decay_per_day)),
        )


# ------------------------------------------------------------------ reaching the debtor


def p_notice(attention: Num, window_fit: Num, window_sensitivity: Num) -> Num:
    """Probability a delivered contact is noticed (a message opened, a call answered by the right
    party): the debtor's attention to the channel, less where the window misses their habits."""
    return attention * (1.0 - window_sensitivity * (1.0 - window_fit))


def complaint_logit(b: Behaviour, base: Num, fatigue: Num, firm: Num, distressed: Num, late: Num) -> Num:
    """Log-odds that a noticed contact draws a complaint: tired debtors, a firm tone to the
    distressed and contact after 21:00 complain more."""
    return base + b.fatigue_complaint * fatigue + b.firm_distressed_complaint * (firm & distressed) + b.late_window_complaint * late


def opt_out_logit(b: Behaviour, fatigue: Num) -> Num:
    """Log-odds that a noticed message (not a letter) makes the debtor opt out of its channel."""
    return b.opt_out_logit + b.fatigue_opt_out * fatigue


def engage_logit(
    b: Behaviour, channel_logit: Num, willingness: Num, tone_effect: Num, offer_effect: Num, tone: Num, distressed: Num, fatigue: Num, dpd: Num
) -> Num:
    """Log-odds that a noticed contact is engaged with (a reply, a conversation, a click-through):
    the channel's base, willingness, the debtor's reaction to the tone and (a share of) the offer,
    tone x distress, fatigue and the age of the debt."""
    return (
        channel_logit
        + b.willingness_engage * (willingness - 0.5)
        + tone_effect
        + b.offer_engage_share * offer_effect
        + b.firm_distressed_engage * ((tone == FIRM) & distressed)
        + b.empathetic_distressed_engage * ((tone == EMPATHETIC) & distressed)
        + b.fatigue_engage * fatigue
        + b.age_engage_per_30d * (dpd / 30.0)
    )


# ------------------------------------------------------------------ what an engaged contact brings


def log_balance(outstanding: Num) -> Num:
    """``ln(outstanding / 1000 EUR)``, at least ``ln(1 / 1000)``: the balance term of the outcome logits."""
    if type(outstanding) is np.ndarray:
        return np.log(np.maximum(outstanding, 1.0) / LOG_BALANCE_REFERENCE_EUR)
    return math.log((outstanding if outstanding > 1.0 else 1.0) / LOG_BALANCE_REFERENCE_EUR)


def _outcome_logit(coef: Sequence[float], ability: Num, willingness: Num, log_balance: Num) -> Num:
    """One outcome's logit relative to "nothing": base + ability + willingness + balance terms."""
    return coef[0] + ability * coef[1] + willingness * coef[2] + log_balance * coef[3]


def outcome_probabilities(
    coef: Sequence[Sequence[float]] | np.ndarray, ability: Num, willingness: Num, outstanding: Num, offer: Num, offer_effect: Num
) -> list[Num]:
    """The probabilities of the 7 outcomes of an engaged contact (pay in full, pay part, promise,
    plan, settlement, deferral, nothing), as a list of 7 numbers or arrays. Multinomial logit with
    "nothing" as the reference; an outcome that needs an offer (plan, settlement, deferral) is only
    possible when that offer is made, and the debtor's sensitivity to it (``offer_effect``: 4
    values per debtor, by offer; an (N, 4) array for a batch) shifts its logit."""
    lb = log_balance(outstanding)
    if type(offer_effect) is np.ndarray and offer_effect.ndim == 2:  # a batch: one row per debtor, one column per outcome
        logits = np.zeros((len(lb), N_OUTCOMES))
        for k, c in enumerate(coef):
            logits[:, k] = _outcome_logit(c, ability, willingness, lb)
        for out, off in OFFERED_OUTCOME:
            logits[:, out] = np.where(offer == off, logits[:, out] + offer_effect[:, off], -np.inf)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return list((p / p.sum(axis=1, keepdims=True)).T)
    z = [_outcome_logit(c, ability, willingness, lb) for c in coef]
    z.append(0.0)  # "nothing", the reference
    for out, off in OFFERED_OUTCOME:
        z[out] = z[out] + offer_effect[off] if offer == off else -math.inf
    top = max(z)
    e = [_exp(x - top) for x in z]
    total = e[0]
    for x in e[1:]:
        total = total + x
    return [x / total for x in e]


def draw_outcome(p: Sequence[Num], u: Num) -> Num:
    """The outcome (index into :func:`outcome_probabilities`) that uniform ``u`` picks by inverse cdf."""
    acc = p[0]
    k = (u > acc).astype(np.int64) if type(u) is np.ndarray else int(u > acc)
    for x in p[1:-1]:
        acc = acc + x
        k = k + (u > acc)
    return k


def part_payment_share(b: Behaviour, u: Num) -> Num:
    """The share of the outstanding a part payment pays, for a uniform ``u``."""
    lo, hi = b.part_payment_share.min / 100.0, b.part_payment_share.max / 100.0
    return lo + (hi - lo) * u


def promise_days(b: Behaviour, u: Num) -> Num:
    """Days until a promise to pay falls due, for a uniform ``u``."""
    lo, hi = b.promise_days.min, b.promise_days.max
    if type(u) is np.ndarray:
        return lo + np.floor((hi - lo + 1) * u).astype(np.int32)
    return lo + math.floor((hi - lo + 1) * u)


def settlement_amount(b: Behaviour, outstanding: Num) -> Num:
    """What a settlement asks: the outstanding less the discount."""
    return outstanding * (1 - b.settlement_discount)


# ------------------------------------------------------------------ commitments


def effective_ability(b: Behaviour, ability: Num, growth: Num, days_in: Num, payday: Num, day: int) -> Num:
    """Ability to pay today: liquidity recovers over time for the illiquid (``growth`` per 30
    days in collections), and is higher for ``payday_window_days`` days after payday."""
    since_payday = (day % MONTH_DAYS + 1 - payday) % MONTH_DAYS
    return _clip(ability + growth * (days_in / 30.0) + b.payday_ability_boost * (since_payday < b.payday_window_days), 0.0, 1.0)


def keep_logit(b: Behaviour, base: float, ability: Num, willingness: Num) -> Num:
    """Log-odds that a commitment due today (a promise, an instalment) is paid."""
    return base + b.keep_ability * (ability - 0.5) + b.keep_willingness * (willingness - 0.5)


def promise_keep_logit(b: Behaviour, ability: Num, willingness: Num, kind: Num) -> Num:
    """Log-odds that a promise due today is kept; a deferral (kind 2), chosen by the debtor as a
    date they can meet, is kept more often."""
    return keep_logit(b, b.promise_keep_logit, ability, willingness) + b.deferral_keep_bonus * (kind == DEFERRAL_KIND)


def instalment_keep_logit(b: Behaviour, ability: Num, willingness: Num) -> Num:
    """Log-odds that a plan instalment due today is paid."""
    return keep_logit(b, b.instalment_pay_logit, ability, willingness)


def plan_instalment(b: Behaviour, outstanding: Num) -> Num:
    """The amount of each instalment of a plan agreed on ``outstanding``."""
    return outstanding / b.plan_instalments


# ------------------------------------------------------------------ unprompted repayment (Chehrazi & Weber)


def baseline_intensity(b: Behaviour, self_cure: Num, dpd: Num) -> Num:
    """Long-run daily intensity of unprompted repayment; halves every ``intensity_age_halflife_days`` of debt age."""
    return self_cure * _exp2(-dpd / b.intensity_age_halflife_days)


def decayed_intensity(decay: float, baseline: Num, intensity: Num) -> Num:
    """The intensity a day later: its excess over the baseline decays by ``decay`` (``Params.intensity_decay``)."""
    return baseline + (intensity - baseline) * decay


def contact_jump(b: Behaviour, willingness: Num) -> Num:
    """The rise of the repayment intensity after an engaged contact: larger for the willing."""
    return b.intensity_jump_contact * (b.intensity_jump_contact_base + willingness)


def payment_jump(b: Behaviour, amount: Num, balance: Num) -> Num:
    """The rise of the repayment intensity after a payment: larger the more of the balance it paid."""
    fraction = amount / _max(balance, 1e-9)
    return b.intensity_jump_payment * (b.intensity_jump_payment_base + fraction)


def expected_unprompted(b: Behaviour, baseline: Num, intensity: Num, days: Num) -> Num:
    """The expected number of unprompted payments over the next ``days`` days if nothing else
    happens: the integral of the intensity, whose baseline halves every
    ``intensity_age_halflife_days`` and whose excess over it decays at ``intensity_decay_per_day``
    (used by the oracle to value what a contact adds beyond self-cure)."""
    h = b.intensity_age_halflife_days
    return baseline * h / math.log(2) * (1 - _exp2(-days / h)) + _max(intensity - baseline, 0.0) / b.intensity_decay_per_day


def p_spontaneous(intensity: Num) -> Num:
    """Probability of an unprompted payment today at daily intensity ``intensity``."""
    return -_expm1(-intensity)


def spontaneous_share(sp: SpontaneousPayment, u: Num, ability: Num) -> Num:
    """The share of the outstanding an unprompted payment pays, for a uniform ``u`` (1 = all of it)."""
    share = _min((sp.min_share + (1.0 - sp.min_share) * u) * (sp.ability_offset + ability), 1.0)
    return _where(share >= sp.full_at, 1.0, share)


def decayed_fatigue(decay: float, fatigue: Num) -> Num:
    """Fatigue a day later (``Params.fatigue_decay``: annoyance fades over ``fatigue_decay_days``)."""
    return fatigue * decay


# ------------------------------------------------------------------ on resolution


def churn_logit(b: Behaviour, base: Num, firm_contacts: Num, complaints: Num, contacts: Num) -> Num:
    """Log-odds that a customer whose debt is resolved leaves: firm contacts, complaints and
    sheer contact volume push them away."""
    return base + b.churn_per_firm_contact * firm_contacts + b.churn_per_complaint * complaints + b.churn_per_10_contacts * contacts / 10.0
