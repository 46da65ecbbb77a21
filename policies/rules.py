"""Rule-based policies: the baselines a learned strategy must beat."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.hashing import mix, mix_scalar, row_key_scalar, row_keys, to_unit
from policies.schema import ACTION_DIMS, Channel, Offer, Tone, ViewBatch, Window


class NoContact:
    """Never contacts anyone: the floor, and the control arm of the reminder calibration."""

    policy_id = "no_contact"
    version = 1

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        return np.zeros((len(views), 4), dtype=np.int64)


def view_keys(views: ViewBatch) -> np.ndarray:
    """A uint64 key per view from its content: equal views get equal keys."""
    return row_keys(
        views.balance_eur,
        views.outstanding_eur,
        views.days_in_collections,
        views.dpd,
        views.behaviour_score,
        views.contacts_total,
        views.responses_total,
        views.day_of_month,
        views.last_outcome,
        views.contacts_7d,
    )


def view_key_row(r: Mapping[str, Any]) -> int:
    """:func:`view_keys` of one account held as plain values (``ViewBatch.row``)."""
    return row_key_scalar(
        [
            r["balance_eur"],
            r["outstanding_eur"],
            r["days_in_collections"],
            r["dpd"],
            r["behaviour_score"],
            r["contacts_total"],
            r["responses_total"],
            r["day_of_month"],
            r["last_outcome"],
            *r["contacts_7d"],
        ]
    )


class RandomPolicy:
    """Uniform over the allowed values of each action dimension (so always compliant).

    Its randomness is a hash of the seed and the view, so a batch gives the same actions as one
    view at a time, and the same seed gives the same actions.
    """

    policy_id = "random"
    version = 1

    def __init__(self) -> None:
        self.key_ = 0

    def reset(self, seed: int | None = None) -> None:
        self.key_ = mix_scalar(0x52414E44 if seed is None else int(seed) + 1)

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        n = len(views)
        base = view_keys(views) ^ np.uint64(self.key_)
        out = np.empty((n, 4), dtype=np.int64)
        start = 0
        for k, size in enumerate(ACTION_DIMS):
            m = mask[:, start : start + size]
            start += size
            keys = np.stack([to_unit(mix(base + np.uint64(16 * k + j + 1))) for j in range(size)], axis=1)
            keys[~m] = -1.0  # the allowed value with the largest key wins: uniform over the allowed
            out[:, k] = keys.argmax(axis=1)
        return out

    def propensity(self, mask: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The probability of each chosen action: uniform over the allowed values of each dimension."""
        p = 1.0 / mask[:, :7].sum(axis=1)
        contact = actions[:, 0] != Channel.WAIT  # waiting ignores window, tone and offer
        for s, k in ((7, 4), (11, 4), (15, 4)):
            p = np.where(contact, p / mask[:, s : s + k].sum(axis=1), p)
        return p


@dataclass(frozen=True)
class LadderStep:
    day: int  # days in collections
    channel: Channel
    window: Window
    tone: Tone
    name: str


# The classic dunning ladder: reminder, second reminder, letter, call, final notice; then a call
# every two weeks and a text every month until the debt is resolved or sold.
LADDER: tuple[LadderStep, ...] = (
    LadderStep(1, Channel.SMS, Window.MORNING, Tone.FRIENDLY, "reminder"),
    LadderStep(5, Channel.EMAIL, Window.MORNING, Tone.FRIENDLY, "second reminder"),
    LadderStep(10, Channel.LETTER, Window.MORNING, Tone.FIRM, "reminder letter"),
    LadderStep(15, Channel.CALL, Window.AFTERNOON, Tone.FIRM, "collection call"),
    LadderStep(25, Channel.LETTER, Window.MORNING, Tone.FIRM, "final notice"),
)
REPEAT_CALL_FROM_DAY, REPEAT_CALL_EVERY = 35, 14
REPEAT_SMS_FROM_DAY, REPEAT_SMS_EVERY = 42, 30
# Where the step's channel is not usable, the ladder falls back along these.
FALLBACK: dict[Channel, tuple[Channel, ...]] = {
    Channel.SMS: (Channel.SMS, Channel.EMAIL, Channel.LETTER),
    Channel.EMAIL: (Channel.EMAIL, Channel.SMS, Channel.LETTER),
    Channel.LETTER: (Channel.LETTER,),
    Channel.CALL: (Channel.CALL,),
}


def _ladder_table(max_day: int = 730) -> np.ndarray:
    """(max_day + 1, 4) int: the ladder step (channel, window, tone, unused) on each day in
    collections; channel -1 on days without a step. Steps and repeats never fall on the same day."""
    table = np.full((max_day + 1, 4), -1, dtype=np.int64)
    for day in range(REPEAT_CALL_FROM_DAY, max_day + 1, REPEAT_CALL_EVERY):
        table[day] = (Channel.CALL, Window.EVENING, Tone.FIRM, 0)
    for day in range(REPEAT_SMS_FROM_DAY, max_day + 1, REPEAT_SMS_EVERY):
        assert table[day, 0] == -1, day
        table[day] = (Channel.SMS, Window.MORNING, Tone.FIRM, 0)
    for st in LADDER:
        table[st.day] = (st.channel, st.window, st.tone, 0)
    return table


LADDER_TABLE = _ladder_table()


class StaticLadder:
    """The industry default: the same fixed sequence for everyone, paused while a promise or a
    plan is open (as dunning systems do). A step that cannot be sent on its day is skipped; where
    the profile forbids its tone (firm, to a vulnerable debtor) it is said with empathy."""

    policy_id = "static_ladder"
    version = 1

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        n = len(views)
        out = np.zeros((n, 4), dtype=np.int64)
        step = LADDER_TABLE[np.clip(views.days_in_collections, 0, len(LADDER_TABLE) - 1)]
        rows = np.flatnonzero((step[:, 0] >= 0) & ~views.promise_active & ~views.plan_active)
        if len(rows) == 0:
            return out
        st, m = step[rows], mask[rows]
        r = np.arange(len(rows))
        tone = np.where(m[r, 11 + st[:, 2]], st[:, 2], Tone.EMPATHETIC)
        win_ok = m[r, 7 + st[:, 1]]
        chosen = np.zeros(len(rows), dtype=np.int64)
        for first, options in FALLBACK.items():
            pending = st[:, 0] == first
            for ch in options:
                take = pending & m[:, ch] & (win_ok | (ch == Channel.LETTER))
                chosen[take] = ch
                pending &= ~take
        go = chosen > 0
        sel = rows[go]
        out[sel, 0], out[sel, 1], out[sel, 2], out[sel, 3] = chosen[go], st[go, 1], tone[go], Offer.NONE
        return out


# ---------------------------------------------------------------- digital first

# Contact channels from the cheapest to the dearest (default scenario costs: push 0.002, e-mail 0.01,
# messenger 0.03, SMS 0.06, letter 0.90, call 0.80 + 4.45 per conversation).
DIGITAL_FIRST_ORDER: tuple[Channel, ...] = (Channel.PUSH, Channel.EMAIL, Channel.MESSENGER, Channel.SMS, Channel.LETTER, Channel.CALL)
DIGITAL_FIRST_TONES: tuple[Tone, ...] = (Tone.FRIENDLY, Tone.FRIENDLY, Tone.SOCIAL_NORM, Tone.SOCIAL_NORM, Tone.EMPATHETIC, Tone.FIRM)
DIGITAL_FIRST_EVERY_DAYS = 4


class DigitalFirst:
    """Cheapest reachable channel first, escalating by cost while the debtor does not answer.

    Every ``DIGITAL_FIRST_EVERY_DAYS`` days (paused during a promise or a plan) it contacts on the
    channel at escalation level ``contacts - 2 x responses`` of the cost order, skipping channels
    that are not usable; from the third level it offers a self-service instalment plan.
    """

    policy_id = "digital_first"
    version = 1

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        n = len(views)
        out = np.zeros((n, 4), dtype=np.int64)
        due = (views.days_in_collections >= 1) & (views.days_since_contact >= DIGITAL_FIRST_EVERY_DAYS)
        due &= ~(views.promise_active | views.plan_active)
        level = np.clip(views.contacts_total - 2 * views.responses_total, 0, len(DIGITAL_FIRST_ORDER) - 1)
        evening_ok = mask[:, 7 + Window.EVENING]
        window = np.where(evening_ok, Window.EVENING, Window.MORNING)
        pending = due.copy()
        # from the due level upwards, the first usable channel; then downwards if none is
        for shift in (*range(len(DIGITAL_FIRST_ORDER)), *range(-1, -len(DIGITAL_FIRST_ORDER), -1)):
            lv = level + shift
            valid = (lv >= 0) & (lv < len(DIGITAL_FIRST_ORDER))
            ch = np.array(DIGITAL_FIRST_ORDER)[np.clip(lv, 0, len(DIGITAL_FIRST_ORDER) - 1)]
            usable = pending & valid & mask[np.arange(n), ch]
            if usable.any():
                tone = np.array(DIGITAL_FIRST_TONES)[np.clip(lv, 0, len(DIGITAL_FIRST_TONES) - 1)]
                tone = np.where(mask[np.arange(n), 11 + tone], tone, Tone.EMPATHETIC)
                offer = np.where(lv >= 2, Offer.PLAN, Offer.NONE)
                win = np.where(ch == Channel.CALL, np.where(mask[:, 7 + Window.AFTERNOON], Window.AFTERNOON, Window.MORNING), window)
                out[usable] = np.stack([ch, win, tone, offer], axis=1)[usable]
                pending &= ~usable
            if not pending.any():
                break
        return out


# ---------------------------------------------------------------- segment journeys


@dataclass(frozen=True)
class Step:
    day: int  # days in collections
    channel: Channel  # a "digital" or "traditional" role, mapped per contactability segment
    window: Window
    tone: Tone
    offer: Offer


# Three base journeys by risk (behaviour-score band). Channels are written for a phone-reachable
# debtor; the digital segment swaps SMS -> push/e-mail and letter -> e-mail (see _DIGITAL_SWAP).
_LOW_RISK = (
    Step(1, Channel.SMS, Window.EVENING, Tone.FRIENDLY, Offer.NONE),
    Step(6, Channel.EMAIL, Window.EVENING, Tone.SOCIAL_NORM, Offer.NONE),
    Step(13, Channel.SMS, Window.EVENING, Tone.SOCIAL_NORM, Offer.NONE),
    Step(22, Channel.CALL, Window.EVENING, Tone.FRIENDLY, Offer.NONE),
    Step(35, Channel.LETTER, Window.MORNING, Tone.SOCIAL_NORM, Offer.PLAN),
)
_MID_RISK = (
    Step(1, Channel.SMS, Window.EVENING, Tone.FRIENDLY, Offer.NONE),
    Step(4, Channel.EMAIL, Window.EVENING, Tone.EMPATHETIC, Offer.PLAN),
    Step(9, Channel.CALL, Window.EVENING, Tone.EMPATHETIC, Offer.PLAN),
    Step(16, Channel.LETTER, Window.MORNING, Tone.SOCIAL_NORM, Offer.PLAN),
    Step(24, Channel.CALL, Window.AFTERNOON, Tone.EMPATHETIC, Offer.DEFERRAL),
    Step(35, Channel.SMS, Window.EVENING, Tone.SOCIAL_NORM, Offer.PLAN),
)
_HIGH_RISK = (
    Step(1, Channel.SMS, Window.EVENING, Tone.SOCIAL_NORM, Offer.NONE),
    Step(3, Channel.CALL, Window.EVENING, Tone.FIRM, Offer.NONE),
    Step(8, Channel.LETTER, Window.MORNING, Tone.FIRM, Offer.PLAN),
    Step(14, Channel.CALL, Window.AFTERNOON, Tone.FIRM, Offer.SETTLEMENT),
    Step(21, Channel.SMS, Window.EVENING, Tone.FIRM, Offer.SETTLEMENT),
    Step(30, Channel.LETTER, Window.MORNING, Tone.FIRM, Offer.SETTLEMENT),
)
_BASE = {"low": _LOW_RISK, "mid": _MID_RISK, "high": _HIGH_RISK}
_REPEAT = {
    "low": (20, Channel.SMS, Tone.SOCIAL_NORM, Offer.PLAN),
    "mid": (14, Channel.CALL, Tone.EMPATHETIC, Offer.PLAN),
    "high": (14, Channel.CALL, Tone.FIRM, Offer.SETTLEMENT),
}
_DIGITAL_SWAP = {
    Channel.SMS: (Channel.PUSH, Channel.SMS, Channel.EMAIL),
    Channel.LETTER: (Channel.EMAIL, Channel.LETTER),
    Channel.EMAIL: (Channel.EMAIL, Channel.MESSENGER, Channel.SMS),
}
_TRADITIONAL = {
    Channel.SMS: (Channel.SMS, Channel.EMAIL, Channel.LETTER),
    Channel.LETTER: (Channel.LETTER,),
    Channel.EMAIL: (Channel.EMAIL, Channel.SMS, Channel.LETTER),
}
SCORE_BANDS = (0.35, 0.6)  # behaviour score: < 0.35 high risk, < 0.6 mid, else low
LARGE_BALANCE_EUR = 1500.0


def _journey(risk: str, large: bool, digital: bool) -> tuple[tuple[Step, ...], tuple[int, Channel, Tone, Offer]]:
    """The steps of one of the 12 journeys (risk x balance x contactability)."""
    steps = list(_BASE[risk])
    every, rch, rtone, roffer = _REPEAT[risk]
    if not large:
        # a small balance does not pay for calls: a text instead, and no settlement discount
        steps = [
            Step(
                s.day,
                Channel.SMS if s.channel == Channel.CALL else s.channel,
                s.window,
                s.tone,
                Offer.PLAN if s.offer == Offer.SETTLEMENT else s.offer,
            )
            for s in steps
        ]
        rch = Channel.SMS if rch == Channel.CALL else rch
        roffer = Offer.PLAN if roffer == Offer.SETTLEMENT else roffer
    if large and risk != "high":
        steps = [Step(s.day, s.channel, s.window, s.tone, Offer.PLAN if s.offer == Offer.NONE and s.day > 5 else s.offer) for s in steps]
    if digital:
        steps = [Step(s.day, s.channel, Window.EVENING if s.channel != Channel.CALL else s.window, s.tone, s.offer) for s in steps]
    return tuple(steps), (every, rch, rtone, roffer)


JOURNEY_KEYS: tuple[tuple[str, bool, bool], ...] = tuple((r, lg, dg) for r in ("low", "mid", "high") for lg in (False, True) for dg in (False, True))
JOURNEYS = {key: _journey(*key) for key in JOURNEY_KEYS}
_MAX_DAY = 730
_NO_STEP = -1


def _journey_table() -> np.ndarray:
    """(12, _MAX_DAY + 1, 4) int: the step (channel role, window, tone, offer) of each journey on each
    day in collections; channel role -1 where the journey does nothing that day."""
    table = np.full((len(JOURNEY_KEYS), _MAX_DAY + 1, 4), _NO_STEP, dtype=np.int64)
    for j, key in enumerate(JOURNEY_KEYS):
        steps, (every, rch, rtone, roffer) = JOURNEYS[key]
        last = steps[-1].day
        for day in range(last + every, _MAX_DAY + 1, every):
            table[j, day] = (rch, Window.EVENING if rch != Channel.CALL else Window.AFTERNOON, rtone, roffer)
        for st in steps:
            table[j, st.day] = (st.channel, st.window, st.tone, st.offer)
    return table


JOURNEY_TABLE = _journey_table()


class SegmentJourneys:
    """What commercial platforms sell today: debtors segmented from observable signals into 12
    journeys (risk band from the behaviour score x balance band x contactability), each a
    sequence of channel, timing, tone and offer (``JOURNEYS``); with two adaptive rules: a debtor
    who disclosed vulnerability or complained gets an empathetic tone and a plan offer, and one who
    broke a promise or a plan is offered a plan. Paused while a promise or a plan is open.
    """

    policy_id = "segment_journeys"
    version = 1

    def reset(self, seed: int | None = None) -> None:
        pass

    @staticmethod
    def segment(views: ViewBatch) -> np.ndarray:
        """The journey index (into ``JOURNEY_KEYS``) of each account."""
        score = views.behaviour_score
        risk = np.where(score < SCORE_BANDS[0], 2, np.where(score < SCORE_BANDS[1], 1, 0))  # 0 low, 1 mid, 2 high
        large = views.balance_eur >= LARGE_BALANCE_EUR
        digital = views.app_user | (views.on_file[:, Channel.EMAIL - 1] & ~views.on_file[:, Channel.SMS - 1])
        return risk * 4 + large.astype(np.int64) * 2 + digital.astype(np.int64)

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        n = len(views)
        out = np.zeros((n, 4), dtype=np.int64)
        jid = self.segment(views)
        step = JOURNEY_TABLE[jid, np.clip(views.days_in_collections, 0, _MAX_DAY)]
        pending = (step[:, 0] != _NO_STEP) & ~(views.promise_active | views.plan_active)
        if not pending.any():
            return out
        rows = np.arange(n)
        tone, offer = step[:, 2].copy(), step[:, 3].copy()
        care = views.vulnerable | (views.complaints > 0)
        tone[care] = Tone.EMPATHETIC
        offer[(care | ((views.promises_broken + views.plans_broken) > 0)) & (offer == Offer.NONE)] = Offer.PLAN
        tone = np.where(mask[rows, 11 + np.clip(tone, 0, 3)], tone, Tone.EMPATHETIC)
        digital = (jid % 2) == 1
        role = step[:, 0]
        for dg, roles in ((True, _DIGITAL_SWAP), (False, _TRADITIONAL)):
            for first, options in roles.items():
                sel = pending & (digital == dg) & (role == first)
                for ch in options:
                    win = np.where(ch == Channel.LETTER, Window.MORNING, step[:, 1])
                    take = sel & mask[:, ch] & (mask[rows, 7 + np.clip(win, 0, 3)] | (ch == Channel.LETTER))
                    out[take, 0], out[take, 1], out[take, 2], out[take, 3] = ch, win[take], tone[take], offer[take]
                    sel &= ~take
                    pending &= ~take
        calls = pending & (role == Channel.CALL) & mask[:, Channel.CALL] & mask[rows, 7 + np.clip(step[:, 1], 0, 3)]
        out[calls, 0], out[calls, 1], out[calls, 2], out[calls, 3] = Channel.CALL, step[calls, 1], tone[calls], offer[calls]
        return out
