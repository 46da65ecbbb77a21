"""Compliance profiles: which actions are allowed for an account now.

One check serves everyone: the simulator blocks (and counts) what it forbids, policies mask with
it, and the production runtime applies it as a guardrail. :func:`action_mask` and :func:`check`
are the definitions; ``*_row`` are the same rules for one account held as plain Python values
(the runtime's single-decision path), tested to agree with them on random views and actions.

Profiles
--------
``us_reg_f``  US Regulation F (12 CFR 1006): at most 7 call attempts in 7 days, no call within 7
              days after a telephone conversation (1006.14(b)(2)); no contact before 08:00 or after
              21:00 local time (1006.6(b)(1)); opt-outs honoured (1006.6(e)).
``uk_fca``    UK FCA CONC 7 read operationally: 08:00-21:00 only; at most 3 call attempts in 7 days
              and none within 2 days after a conversation (no pressure through excessive calls);
              no firm tone to an account with disclosed vulnerability (forbearance).
``none``      no contact limits and no hours. Opt-outs are still honoured: no profile contacts a
              person on a channel they asked us to stop using.

Under every profile an action on a channel with no address on file, or a push message to a
debtor without the app, is impossible and is blocked as ``not_on_file``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from policies.schema import ACTION_DIMS, N_CONTACT_CHANNELS, Channel, Tone, ViewBatch, Window


class Block(IntEnum):
    """Why an action was blocked (0 = allowed)."""

    OK = 0
    NOT_ON_FILE = 1
    OPTED_OUT = 2
    OUTSIDE_HOURS = 3
    CALL_LIMIT_7D = 4
    CALL_AFTER_CONVERSATION = 5
    FIRM_TONE_VULNERABLE = 6


BLOCK_NAMES: tuple[str, ...] = tuple(b.name.lower() for b in Block)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    allowed_windows: tuple[Window, ...]
    max_calls_7d: int | None  # call attempts in the 7 days before today
    call_cooloff_days: int  # no call within this many days after a conversation (0 = none)
    no_firm_tone_if_vulnerable: bool
    window_ok: tuple[bool, ...] = field(init=False, repr=False, compare=False)  # allowed_windows as 4 booleans

    def __post_init__(self) -> None:
        object.__setattr__(self, "window_ok", tuple(w in self.allowed_windows for w in Window))


PROFILES: dict[str, Profile] = {
    "us_reg_f": Profile(
        "us_reg_f",
        "US Regulation F: <=7 call attempts / 7 days, no call within 7 days of a conversation, 08:00-21:00, opt-outs honoured",
        (Window.MORNING, Window.AFTERNOON, Window.EVENING),
        7,
        7,
        False,
    ),
    "uk_fca": Profile(
        "uk_fca",
        "UK FCA CONC 7: 08:00-21:00, <=3 call attempts / 7 days, 2-day call cool-off, no firm tone when vulnerable",
        (Window.MORNING, Window.AFTERNOON, Window.EVENING),
        3,
        2,
        True,
    ),
    "none": Profile("none", "no contact limits or hours (opt-outs still honoured)", tuple(Window), None, 0, False),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown compliance profile {name!r}; choose one of {sorted(PROFILES)}") from None


def channel_available(v: ViewBatch, p: Profile) -> np.ndarray:
    """(N, 6) bool: contact channel usable today (before time-of-day and tone rules)."""
    ok = v.on_file & ~v.opted_out
    push = Channel.PUSH - 1
    ok[:, push] &= v.app_user
    call = Channel.CALL - 1
    if p.max_calls_7d is not None:
        ok[:, call] &= v.contacts_7d[:, call] < p.max_calls_7d
    if p.call_cooloff_days > 0:
        ok[:, call] &= v.days_since_conversation >= p.call_cooloff_days
    return ok


def action_mask(v: ViewBatch, p: Profile) -> np.ndarray:
    """(N, 19) bool masks per action dimension, concatenated as sb3-contrib's MaskablePPO expects
    for a MultiDiscrete space: 7 channels (wait first), 4 windows, 4 tones, 4 offers.

    Any action drawn from the allowed entries of every dimension passes :func:`check`.
    """
    n = len(v)
    m = np.ones((n, sum(ACTION_DIMS)), dtype=bool)
    m[:, 1:7] = channel_available(v, p)
    allowed_w = np.zeros(len(Window), dtype=bool)
    allowed_w[list(p.allowed_windows)] = True
    m[:, 7:11] = allowed_w
    if p.no_firm_tone_if_vulnerable:
        m[:, 11 + Tone.FIRM] = ~v.vulnerable
    return m


def check(actions: np.ndarray, v: ViewBatch, p: Profile) -> np.ndarray:
    """(N,) int8 reason codes (:class:`Block`); 0 where the action is allowed. Waiting is always allowed."""
    a = np.asarray(actions)
    ch = a[:, 0]
    contact = ch != Channel.WAIT
    reason = np.zeros(len(ch), dtype=np.int8)
    if not contact.any():
        return reason
    idx = np.flatnonzero(contact)
    c = ch[idx] - 1
    usable = v.on_file[idx, c].copy()
    usable[c == Channel.PUSH - 1] &= v.app_user[idx][c == Channel.PUSH - 1]
    r = np.zeros(len(idx), dtype=np.int8)
    is_call = c == Channel.CALL - 1
    if p.no_firm_tone_if_vulnerable:
        r[(a[idx, 2] == Tone.FIRM) & v.vulnerable[idx]] = Block.FIRM_TONE_VULNERABLE
    if p.call_cooloff_days > 0:
        r[is_call & (v.days_since_conversation[idx] < p.call_cooloff_days)] = Block.CALL_AFTER_CONVERSATION
    if p.max_calls_7d is not None:
        r[is_call & (v.contacts_7d[idx, N_CONTACT_CHANNELS - 1] >= p.max_calls_7d)] = Block.CALL_LIMIT_7D
    timed = c != Channel.LETTER - 1  # a letter's window is irrelevant: it arrives by post
    allowed_w = np.zeros(len(Window), dtype=bool)
    allowed_w[list(p.allowed_windows)] = True
    r[timed & ~allowed_w[a[idx, 1]]] = Block.OUTSIDE_HOURS
    r[v.opted_out[idx, c]] = Block.OPTED_OUT
    r[~usable] = Block.NOT_ON_FILE
    reason[idx] = r
    return reason


_CALL, _PUSH, _LETTER = Channel.CALL - 1, Channel.PUSH - 1, Channel.LETTER - 1
assert (_PUSH, _CALL, N_CONTACT_CHANNELS) == (2, 5, 6), "_channel_available_row spells out this channel order"


def _channel_available_row(r: Mapping[str, Any], p: Profile) -> list[bool]:
    on, out = r["on_file"], r["opted_out"]  # written out channel by channel: this runs once per decision
    call = on[5] and not out[5]
    if call and p.max_calls_7d is not None and r["contacts_7d"][_CALL] >= p.max_calls_7d:
        call = False
    if call and p.call_cooloff_days > 0 and r["days_since_conversation"] < p.call_cooloff_days:
        call = False
    return [
        on[0] and not out[0],
        on[1] and not out[1],
        on[2] and not out[2] and r["app_user"],
        on[3] and not out[3],
        on[4] and not out[4],
        call,
    ]


def action_mask_row(r: Mapping[str, Any], p: Profile) -> list[bool]:
    """:func:`action_mask` for one account: 19 booleans."""
    return [
        True,
        *_channel_available_row(r, p),
        *p.window_ok,
        True,
        True,
        True,
        not (p.no_firm_tone_if_vulnerable and r["vulnerable"]),
        True,
        True,
        True,
        True,
    ]


def check_row(action: Sequence[int], r: Mapping[str, Any], p: Profile) -> int:
    """:func:`check` for one action of one account: the :class:`Block` code, 0 if allowed."""
    ch, w, t = action[0], action[1], action[2]
    if ch == Channel.WAIT:
        return Block.OK
    c = ch - 1
    if not r["on_file"][c] or (c == _PUSH and not r["app_user"]):
        return Block.NOT_ON_FILE
    if r["opted_out"][c]:
        return Block.OPTED_OUT
    if c != _LETTER and w not in p.allowed_windows:
        return Block.OUTSIDE_HOURS
    if c == _CALL:
        if p.max_calls_7d is not None and r["contacts_7d"][_CALL] >= p.max_calls_7d:
            return Block.CALL_LIMIT_7D
        if p.call_cooloff_days > 0 and r["days_since_conversation"] < p.call_cooloff_days:
            return Block.CALL_AFTER_CONVERSATION
    if p.no_firm_tone_if_vulnerable and t == Tone.FIRM and r["vulnerable"]:
        return Block.FIRM_TONE_VULNERABLE
    return Block.OK
