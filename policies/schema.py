"""The decision contract: channels, windows, tones, offers and the observable debtor view.

Everything a production service and the simulator must agree on lives here, once.
Time unit: the simulator clock counts minutes; days are ``MINUTES_PER_DAY`` minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

import numpy as np

MINUTES_PER_DAY = 1440
NEVER_DAYS = 9999  # "days since" value for something that never happened
MONTH_DAYS = 28  # the simulated calendar's months: day_of_month runs 1..28, paydays fall on one of them


class Channel(IntEnum):
    """Contact channel; ``WAIT`` means no contact today."""

    WAIT = 0
    SMS = 1
    EMAIL = 2
    PUSH = 3
    MESSENGER = 4
    LETTER = 5
    CALL = 6


# Per-channel arrays (reachability, opt-outs, counts) index contact channels 0..5 = Channel - 1.
CONTACT_CHANNELS: tuple[Channel, ...] = tuple(c for c in Channel if c != Channel.WAIT)
N_CONTACT_CHANNELS = len(CONTACT_CHANNELS)
CHANNEL_NAMES: tuple[str, ...] = tuple(c.name.lower() for c in Channel)
CONTACT_CHANNEL_NAMES: tuple[str, ...] = CHANNEL_NAMES[1:]
ELECTRONIC_CHANNELS = (Channel.SMS, Channel.EMAIL, Channel.PUSH, Channel.MESSENGER)


class Window(IntEnum):
    """Local send window. ``LATE`` (21:00-23:00) is outside the hours most regulators allow."""

    MORNING = 0
    AFTERNOON = 1
    EVENING = 2
    LATE = 3


WINDOW_NAMES: tuple[str, ...] = tuple(w.name.lower() for w in Window)
# Local start and end hour of each window.
WINDOW_HOURS: tuple[tuple[int, int], ...] = ((8, 12), (12, 17), (17, 21), (21, 23))


class Tone(IntEnum):
    FRIENDLY = 0  # friendly reminder
    EMPATHETIC = 1  # empathetic / helpful
    SOCIAL_NORM = 2  # "most people in your situation pay on time"
    FIRM = 3  # firm / urgent


TONE_NAMES: tuple[str, ...] = tuple(t.name.lower() for t in Tone)


class Offer(IntEnum):
    NONE = 0
    PLAN = 1  # instalment plan
    SETTLEMENT = 2  # settlement discount
    DEFERRAL = 3  # short payment deferral


OFFER_NAMES: tuple[str, ...] = tuple(o.name.lower() for o in Offer)

ACTION_DIMS: tuple[int, int, int, int] = (len(Channel), len(Window), len(Tone), len(Offer))

PRODUCT_NAMES: tuple[str, ...] = ("credit_card", "personal_loan", "bnpl", "telecom", "utility")


class LastOutcome(IntEnum):
    """The most recent observed response of the debtor."""

    NONE = 0
    IGNORED = 1
    PAID = 2
    PROMISED = 3
    PLAN = 4
    SETTLEMENT = 5
    COMPLAINED = 6
    OPTED_OUT = 7
    BROKE_PROMISE = 8


@dataclass(frozen=True)
class ViewBatch:
    """Observable state of N accounts, one array per field (length N, or N x 6 per contact channel).

    These are the fields a production system really knows about an account; nothing latent.
    ``contacts_7d``, ``on_file`` and ``opted_out`` are indexed by contact channel (``Channel - 1``).
    """

    balance_eur: np.ndarray  # float, balance at entry to collections
    outstanding_eur: np.ndarray  # float, still owed
    dpd: np.ndarray  # int, days past due today
    days_in_collections: np.ndarray  # int
    days_left: np.ndarray  # int, days until the debt is sold / written off
    product: np.ndarray  # int, index into PRODUCT_NAMES
    behaviour_score: np.ndarray  # float in [0, 1], noisy bureau/behaviour score (1 = good)
    app_user: np.ndarray  # bool
    on_file: np.ndarray  # bool (N, 6), a usable address for the channel is on file
    opted_out: np.ndarray  # bool (N, 6)
    contacts_7d: np.ndarray  # int (N, 6), contact attempts in the last 7 days (today excluded)
    contacts_total: np.ndarray  # int
    days_since_contact: np.ndarray  # int, NEVER_DAYS if never
    days_since_response: np.ndarray  # int, NEVER_DAYS if never
    days_since_conversation: np.ndarray  # int, last right-party telephone conversation
    responses_total: np.ndarray  # int
    promise_active: np.ndarray  # bool
    promise_due_in_days: np.ndarray  # int, 0 when no promise
    promises_broken: np.ndarray  # int
    plan_active: np.ndarray  # bool
    plan_instalments_paid: np.ndarray  # int
    plan_instalments_total: np.ndarray  # int
    plans_broken: np.ndarray  # int
    complaints: np.ndarray  # int
    vulnerable: np.ndarray  # bool, vulnerability disclosed or flagged
    last_outcome: np.ndarray  # int, LastOutcome
    day_of_week: np.ndarray  # int 0..6
    day_of_month: np.ndarray  # int 1..28

    def __len__(self) -> int:
        return int(self.balance_eur.shape[0])

    def take(self, idx: np.ndarray) -> ViewBatch:
        """The views of the accounts at ``idx`` (copies)."""
        return ViewBatch(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def rows(self, start: int, stop: int) -> ViewBatch:
        """Accounts ``start:stop`` (views of these arrays, not copies)."""
        return ViewBatch(**{f.name: getattr(self, f.name)[start:stop] for f in fields(self)})

    def row(self, i: int) -> dict[str, Any]:
        """Account ``i`` as plain Python values keyed by field (per-channel fields as lists of 6):
        the form the runtime's one-account path works on."""
        return {f.name: getattr(self, f.name)[i].tolist() for f in fields(self)}

    def to_rows(self) -> list[dict[str, Any]]:
        """Every account as :meth:`row` gives it, column by column (one ``tolist`` per field)."""
        names = self.field_names()
        columns = [getattr(self, name).tolist() for name in names]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]

    @staticmethod
    def field_names() -> tuple[str, ...]:
        return tuple(f.name for f in fields(ViewBatch))
