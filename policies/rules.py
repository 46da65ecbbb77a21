"""Rule-based policies: the baselines a learned strategy must beat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.base import register
from policies.schema import ACTION_DIMS, Channel, Offer, Tone, ViewBatch, Window


class NoContact:
    """Never contacts anyone: the floor, and the control arm of the reminder calibration."""

    policy_id = "no_contact"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        return np.zeros((len(views), 4), dtype=np.int64)


class RandomPolicy:
    """Uniform over the allowed values of each action dimension (so always compliant)."""

    policy_id = "random"

    def __init__(self) -> None:
        self.rng_ = np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        self.rng_ = np.random.default_rng(seed)

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        n = len(views)
        out = np.empty((n, 4), dtype=np.int64)
        start = 0
        for k, size in enumerate(ACTION_DIMS):
            m = mask[:, start : start + size]
            start += size
            # Gumbel-free masked uniform choice: random keys, -1 where not allowed, take the argmax.
            keys = self.rng_.random((n, size))
            keys[~m] = -1.0
            out[:, k] = keys.argmax(axis=1)
        return out


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


class StaticLadder:
    """The industry default: the same fixed sequence for everyone, paused while a promise or a
    plan is open (as dunning systems do). A step that cannot be sent on its day is skipped."""

    policy_id = "static_ladder"

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        n = len(views)
        out = np.zeros((n, 4), dtype=np.int64)
        d = views.days_in_collections
        paused = views.promise_active | views.plan_active
        steps = list(LADDER)
        todo: list[tuple[np.ndarray, LadderStep]] = [(d == s.day, s) for s in steps]
        rc = (d >= REPEAT_CALL_FROM_DAY) & ((d - REPEAT_CALL_FROM_DAY) % REPEAT_CALL_EVERY == 0)
        todo.append((rc, LadderStep(-1, Channel.CALL, Window.EVENING, Tone.FIRM, "repeat call")))
        rs = (d >= REPEAT_SMS_FROM_DAY) & ((d - REPEAT_SMS_FROM_DAY) % REPEAT_SMS_EVERY == 0)
        todo.append((rs, LadderStep(-1, Channel.SMS, Window.MORNING, Tone.FIRM, "repeat reminder")))
        for due, step in todo:
            pending = due & ~paused & (out[:, 0] == Channel.WAIT)
            if not pending.any():
                continue
            win_ok = mask[:, 7 + step.window]
            # where the profile forbids the step's tone (firm, to a vulnerable debtor), say it with empathy
            tone = np.where(mask[:, 11 + step.tone], step.tone, Tone.EMPATHETIC)
            for ch in FALLBACK[step.channel]:
                take = pending & mask[:, ch] & (win_ok | (ch == Channel.LETTER))
                out[take, 0], out[take, 1], out[take, 2], out[take, 3] = ch, step.window, tone[take], Offer.NONE
                pending &= ~take
        return out


register("no_contact", NoContact)
register("random", RandomPolicy)
register("static_ladder", StaticLadder)
