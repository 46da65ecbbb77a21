"""The debtor state, declared once, and the transitions that change it.

:class:`DebtorState` is the table of everything the world keeps per debtor slot: one column per
field, with its dtype, its initial value, its shape per debtor (``()`` for a number, ``(6,)`` per
contact channel) and, where a column is shown as it is in the observable view, the view field it
fills. Allocation (:meth:`DebtorState.allocate`), starting a new debtor in a slot
(:meth:`DebtorState.reset`), checkpoints (:meth:`DebtorState.snapshot`,
:meth:`DebtorState.restore`) and the views (:func:`views`) are derived from that table, so a new
piece of state is one line here.

The transitions (:func:`pay`, :func:`resolve`, :func:`promise`, :func:`plan`, :func:`settle`,
:func:`close_day`) change the state of a batch of slots given the day's draws; the formulas they
apply are the rulebook's (:mod:`sim.behaviour`). They return what happened (the slots, the
amounts) for the world to log and schedule; they never touch the clock or the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any

import numpy as np

from policies.schema import MONTH_DAYS, N_CONTACT_CHANNELS, NEVER_DAYS, LastOutcome, ViewBatch
from sim import behaviour as rules
from sim.config import Behaviour
from sim.population import Debtors

NC = N_CONTACT_CHANNELS


class Status(IntEnum):
    OPEN = 0
    PAID = 1
    SETTLED = 2
    PLAN_COMPLETED = 3
    SOLD = 4  # truncated at the horizon
    WAITING = 5  # not yet entered collections


REWARD_COMPONENTS = ("cash", "contact_cost", "complaint_penalty", "opt_out_penalty", "churn_penalty", "terminal_value")
RESOLVED_STATUSES = (Status.PAID, Status.SETTLED, Status.PLAN_COMPLETED)
CLEARED_BELOW_EUR = 0.005  # an outstanding below half a cent is cleared (sub-cent rounding)
_OPEN, _WAITING, _SOLD = int(Status.OPEN), int(Status.WAITING), int(Status.SOLD)
_PROMISE_OUTCOME = np.array([LastOutcome.PROMISED, LastOutcome.SETTLEMENT, LastOutcome.PROMISED], dtype=np.int8)  # by promise kind


@dataclass(frozen=True)
class Column:
    """How one field of the debtor state is stored."""

    dtype: type
    initial: float | int | bool
    shape: tuple[int, ...] = ()  # per debtor
    view: str | None = None  # the ViewBatch field it fills as it is
    reset: bool = True  # False: kept across the debtors of a slot (epochs and serials, which keep stale events stale)
    doc: str = ""


def _col(
    dtype: type, initial: float | int | bool, doc: str, shape: tuple[int, ...] = (), view: str | None = None, reset: bool = True
) -> dict[str, Column]:
    """A column's declaration, as the metadata of its dataclass field."""
    return {"column": Column(dtype, initial, shape, view, reset, doc)}


@dataclass
class DebtorState:
    """Everything the world keeps per debtor slot, one array per field (length n_slots first)."""

    # who is in the slot
    debtor_id: np.ndarray = field(metadata=_col(np.uint64, 0, "the debtor's id in the seeded population"))
    epoch: np.ndarray = field(metadata=_col(np.int64, 0, "debtors the slot has held: events of an earlier debtor are stale", reset=False))
    status: np.ndarray = field(metadata=_col(np.int8, _WAITING, "Status"))
    entry_day: np.ndarray = field(metadata=_col(np.int32, 0, "world day the debtor enters collections"))
    days_in: np.ndarray = field(metadata=_col(np.int32, 0, "days in collections", view="days_in_collections"))
    # money (EUR)
    balance: np.ndarray = field(metadata=_col(np.float64, 0.0, "balance at entry", view="balance_eur"))
    outstanding: np.ndarray = field(metadata=_col(np.float64, 0.0, "still owed", view="outstanding_eur"))
    collected: np.ndarray = field(metadata=_col(np.float64, 0.0, "paid so far"))
    forgiven: np.ndarray = field(metadata=_col(np.float64, 0.0, "settlement discounts granted"))
    sold: np.ndarray = field(metadata=_col(np.float64, 0.0, "face value sold at the horizon"))
    disc: np.ndarray = field(metadata=_col(np.float64, 1.0, "discount factor of today's money, relative to entry"))
    # observable history
    on_file: np.ndarray = field(metadata=_col(bool, False, "a usable address per channel", shape=(NC,), view="on_file"))
    opted_out: np.ndarray = field(metadata=_col(bool, False, "opted out per channel", shape=(NC,), view="opted_out"))
    ring: np.ndarray = field(metadata=_col(np.int8, 0, "contacts per channel on each of the last 7 days", shape=(7, NC)))
    contacts_7d: np.ndarray = field(
        metadata=_col(np.int16, 0, "contacts per channel in the last 7 days (not today)", shape=(NC,), view="contacts_7d")
    )
    contacts_today: np.ndarray = field(metadata=_col(np.int8, 0, "contacts per channel today", shape=(NC,)))
    contacts_by_channel: np.ndarray = field(metadata=_col(np.int16, 0, "contacts per channel since entry", shape=(NC,)))
    contacts_total: np.ndarray = field(metadata=_col(np.int64, 0, "contacts since entry"))
    last_contact: np.ndarray = field(metadata=_col(np.int32, -NEVER_DAYS, "day of the last contact"))
    last_response: np.ndarray = field(metadata=_col(np.int32, -NEVER_DAYS, "day of the last response or payment"))
    last_conversation: np.ndarray = field(metadata=_col(np.int32, -NEVER_DAYS, "day of the last right-party call"))
    responses: np.ndarray = field(metadata=_col(np.int16, 0, "engaged contacts", view="responses_total"))
    promise_active: np.ndarray = field(metadata=_col(bool, False, "a promise (or settlement, deferral) is open", view="promise_active"))
    promise_due: np.ndarray = field(metadata=_col(np.int32, 0, "day the open promise falls due"))
    promise_amount: np.ndarray = field(metadata=_col(np.float64, 0.0, "amount promised"))
    promise_kind: np.ndarray = field(metadata=_col(np.int8, 0, "0 promise, 1 settlement, 2 deferral"))
    promise_serial: np.ndarray = field(metadata=_col(np.int64, 0, "promises made in the slot: a replaced promise's event is stale", reset=False))
    promises_broken: np.ndarray = field(metadata=_col(np.int16, 0, "promises broken", view="promises_broken"))
    plan_active: np.ndarray = field(metadata=_col(bool, False, "an instalment plan is running", view="plan_active"))
    plan_paid: np.ndarray = field(metadata=_col(np.int16, 0, "instalments paid", view="plan_instalments_paid"))
    plan_total: np.ndarray = field(metadata=_col(np.int16, 0, "instalments agreed", view="plan_instalments_total"))
    plan_amount: np.ndarray = field(metadata=_col(np.float64, 0.0, "amount of each instalment"))
    plan_serial: np.ndarray = field(metadata=_col(np.int64, 0, "plans made in the slot", reset=False))
    plans_broken: np.ndarray = field(metadata=_col(np.int16, 0, "plans broken", view="plans_broken"))
    complaints: np.ndarray = field(metadata=_col(np.int16, 0, "complaints", view="complaints"))
    vulnerable: np.ndarray = field(metadata=_col(bool, False, "vulnerability disclosed", view="vulnerable"))
    last_outcome: np.ndarray = field(metadata=_col(np.int8, 0, "LastOutcome", view="last_outcome"))
    firm_contacts: np.ndarray = field(metadata=_col(np.int16, 0, "contacts in a firm tone"))
    # latent dynamics
    fatigue: np.ndarray = field(metadata=_col(np.float64, 0.0, "annoyance from recent contacts"))
    intensity: np.ndarray = field(metadata=_col(np.float64, 0.0, "daily intensity of unprompted repayment"))
    # accounting of the debtor in the slot (KPIs)
    cost_eur: np.ndarray = field(metadata=_col(np.float64, 0.0, "contact costs, undiscounted"))
    net_value: np.ndarray = field(metadata=_col(np.float64, 0.0, "net value so far, discounted"))
    first_payment_day: np.ndarray = field(metadata=_col(np.int32, -1, "days in collections at the first payment (-1: none)"))
    rpc: np.ndarray = field(metadata=_col(np.int16, 0, "right-party contacts by call"))
    calls_made: np.ndarray = field(metadata=_col(np.int16, 0, "calls made"))
    calls_dropped: np.ndarray = field(metadata=_col(np.int16, 0, "calls not made for want of an agent"))
    blocked_count: np.ndarray = field(metadata=_col(np.int16, 0, "actions blocked by compliance"))
    opt_outs: np.ndarray = field(metadata=_col(np.int16, 0, "opt-outs"))
    churned: np.ndarray = field(metadata=_col(bool, False, "left as a customer on resolution"))
    resolved_day: np.ndarray = field(metadata=_col(np.int32, -1, "days in collections at resolution or sale (-1: open)"))
    # today's reward, by component (discounted EUR), cleared every morning
    cash: np.ndarray = field(metadata=_col(np.float64, 0.0, "today's reward: cash"))
    contact_cost: np.ndarray = field(metadata=_col(np.float64, 0.0, "today's reward: contact costs (negative)"))
    complaint_penalty: np.ndarray = field(metadata=_col(np.float64, 0.0, "today's reward: complaint penalties (negative)"))
    opt_out_penalty: np.ndarray = field(metadata=_col(np.float64, 0.0, "today's reward: opt-out penalties (negative)"))
    churn_penalty: np.ndarray = field(metadata=_col(np.float64, 0.0, "today's reward: lost retention value (negative)"))
    terminal_value: np.ndarray = field(metadata=_col(np.float64, 0.0, "today's reward: debt-sale proceeds"))

    @staticmethod
    def columns() -> tuple[tuple[str, Column], ...]:
        """The declaration: (name, column) in order."""
        return _COLUMNS

    @classmethod
    def allocate(cls, n: int) -> DebtorState:
        """State for ``n`` slots, every column at its initial value."""
        return cls(**{name: np.full((n, *c.shape), c.initial, dtype=c.dtype) for name, c in _COLUMNS})

    def reset(self, slots: np.ndarray) -> None:
        """Start new debtors in ``slots``: every column back to its initial value, but the epoch
        (incremented) and the serials (kept, so events scheduled for the slot's earlier debtor stay stale)."""
        for name, c in _COLUMNS:
            if c.reset:
                getattr(self, name)[slots] = c.initial
        self.epoch[slots] += 1

    def snapshot(self) -> dict[str, np.ndarray]:
        """Every column, copied: a checkpoint of the debtor state."""
        return {name: getattr(self, name).copy() for name, _ in _COLUMNS}

    @classmethod
    def restore(cls, snapshot: dict[str, np.ndarray]) -> DebtorState:
        """The state a :meth:`snapshot` was taken of; refuses one with missing, unknown or misshapen columns."""
        names = {name for name, _ in _COLUMNS}
        missing, unknown = names - set(snapshot), set(snapshot) - names
        if missing or unknown:
            raise ValueError(f"not a debtor-state checkpoint: missing columns {sorted(missing)}, unknown columns {sorted(unknown)}")
        n = len(snapshot["status"])
        out = {}
        for name, c in _COLUMNS:
            a = np.asarray(snapshot[name])
            if a.shape != (n, *c.shape) or a.dtype != np.dtype(c.dtype):
                raise ValueError(f"checkpoint column {name}: expected shape {(n, *c.shape)} and dtype {np.dtype(c.dtype)}, got {a.shape} {a.dtype}")
            out[name] = a.copy()
        return cls(**out)

    def clear_today(self) -> None:
        for name in REWARD_COMPONENTS:
            getattr(self, name).fill(0.0)

    def reward_today(self) -> dict[str, np.ndarray]:
        """Today's reward components (copies), in the order of ``REWARD_COMPONENTS``."""
        return {name: getattr(self, name).copy() for name in REWARD_COMPONENTS}

    def money_gap(self) -> np.ndarray:
        """Per-slot ``collected + forgiven + sold + outstanding - balance`` (should be ~0)."""
        return self.collected + self.forgiven + self.sold + self.outstanding - self.balance


_COLUMNS: tuple[tuple[str, Column], ...] = tuple((f.name, f.metadata["column"]) for f in fields(DebtorState))
VIEW_COLUMNS: tuple[tuple[str, str], ...] = tuple((name, c.view) for name, c in _COLUMNS if c.view is not None)  # (column, view field)


def days_since(day: Any, last: Any) -> Any:
    """Days since ``last`` (a day, or ``-NEVER_DAYS`` for never), capped at ``NEVER_DAYS``; arrays or numbers."""
    if type(last) is np.ndarray:
        return np.minimum(day - last, NEVER_DAYS).astype(np.int32)
    return min(day - last, NEVER_DAYS)


def views(s: DebtorState, traits: Debtors, day: int, horizon: int) -> ViewBatch:
    """The observable views of every slot: the view columns as they are (the arrays themselves,
    not copies: the world rebuilds its views after each day), plus what is derived from the state."""
    n = len(s.status)
    direct = {view: getattr(s, name) for name, view in VIEW_COLUMNS}
    return ViewBatch(
        **direct,
        dpd=traits.dpd_at_entry + s.days_in,
        days_left=horizon - s.days_in,
        product=traits.product,
        behaviour_score=traits.behaviour_score,
        app_user=traits.app_user,
        contacts_total=s.contacts_total.copy(),
        days_since_contact=days_since(day, s.last_contact),
        days_since_response=days_since(day, s.last_response),
        days_since_conversation=days_since(day, s.last_conversation),
        promise_due_in_days=np.where(s.promise_active, np.maximum(s.promise_due - day, 0), 0),
        day_of_week=np.full(n, day % 7, dtype=np.int8),
        day_of_month=np.full(n, day % MONTH_DAYS + 1, dtype=np.int8),
    )


# ------------------------------------------------------------------ transitions


@dataclass
class Paid:
    """What :func:`pay` did: the amounts actually paid (capped at the outstanding), the slots
    paying for the first time, and the slots whose debt it cleared."""

    amount: np.ndarray
    first: np.ndarray
    cleared: np.ndarray


def pay(s: DebtorState, b: Behaviour, idx: np.ndarray, amount: np.ndarray, day: int) -> Paid:
    """Slots ``idx`` pay ``amount`` (at most what they owe): money, today's cash, the repayment
    intensity's jump, the first-payment day. A debt cleared by it is not yet resolved: the caller
    resolves it (:func:`resolve`) with the status the payment earns."""
    amount = np.minimum(amount, s.outstanding[idx])
    s.collected[idx] += amount
    s.outstanding[idx] -= amount
    s.cash[idx] += amount * s.disc[idx]
    first = idx[s.first_payment_day[idx] < 0]
    s.first_payment_day[first] = s.days_in[first]
    s.intensity[idx] += rules.payment_jump(b, amount, s.balance[idx])
    s.last_outcome[idx] = LastOutcome.PAID
    s.last_response[idx] = day
    cleared = idx[s.outstanding[idx] < CLEARED_BELOW_EUR]
    s.collected[cleared] += s.outstanding[cleared]  # sub-cent rounding
    s.outstanding[cleared] = 0.0
    return Paid(amount, first, cleared)


def resolve(
    s: DebtorState, b: Behaviour, idx: np.ndarray, status: Status, traits: Debtors, churn_u: np.ndarray, retention_value_eur: float
) -> np.ndarray:
    """Slots ``idx`` are resolved with ``status``; a customer may churn (``churn_u``: a uniform per
    slot), which costs the retention value. Returns the slots that churned."""
    s.status[idx] = status
    s.resolved_day[idx] = s.days_in[idx]
    s.promise_active[idx] = False
    s.plan_active[idx] = False
    z = rules.churn_logit(b, traits.churn_logit[idx], s.firm_contacts[idx], s.complaints[idx], s.contacts_total[idx])
    churn = idx[churn_u < rules.sigmoid(z)]
    s.churned[churn] = True
    s.churn_penalty[churn] -= retention_value_eur * s.disc[churn]
    return churn


def promise(s: DebtorState, idx: np.ndarray, amount: np.ndarray, days: np.ndarray, kind: int, day: int) -> None:
    """Slots ``idx`` promise ``amount`` in ``days`` days (``kind``: promise, settlement or deferral);
    a new promise replaces an open one."""
    s.promise_active[idx] = True
    s.promise_due[idx] = day + days
    s.promise_amount[idx] = amount
    s.promise_kind[idx] = kind
    s.promise_serial[idx] += 1
    s.last_outcome[idx] = _PROMISE_OUTCOME[kind]


def plan(s: DebtorState, b: Behaviour, idx: np.ndarray) -> None:
    """Slots ``idx`` agree an instalment plan on what they owe; it replaces an open promise."""
    s.plan_active[idx] = True
    s.plan_paid[idx] = 0
    s.plan_total[idx] = b.plan_instalments
    s.plan_amount[idx] = rules.plan_instalment(b, s.outstanding[idx])
    s.plan_serial[idx] += 1
    s.promise_active[idx] = False
    s.last_outcome[idx] = LastOutcome.PLAN


def settle(s: DebtorState, idx: np.ndarray) -> np.ndarray:
    """A settlement kept by slots ``idx``: what they owe beyond the settled amount is forgiven
    (the caller then makes them pay the settled amount). Returns the amounts forgiven."""
    forgive = s.outstanding[idx] - np.minimum(s.promise_amount[idx], s.outstanding[idx])
    s.forgiven[idx] += forgive
    s.outstanding[idx] -= forgive
    return forgive


def broken(s: DebtorState, idx: np.ndarray, counter: np.ndarray) -> None:
    """A promise or a plan of slots ``idx`` is broken (``counter``: ``promises_broken`` or ``plans_broken``)."""
    counter[idx] += 1
    s.last_outcome[idx] = LastOutcome.BROKE_PROMISE


def close_day(s: DebtorState, day: int, delta: float, horizon: int, was_open: np.ndarray, fatigue_decay: float, debt_sale_price: float) -> np.ndarray:
    """The end of a day, after its unprompted payments: fatigue fades, the 7-day contact window
    moves on, open debtors age a day (their money is discounted a day further), and those
    reaching the horizon are sold. Returns the slots sold."""
    s.fatigue[:] = rules.decayed_fatigue(fatigue_decay, s.fatigue)
    slot = day % 7
    s.contacts_7d += s.contacts_today - s.ring[:, slot, :]
    s.ring[:, slot, :] = s.contacts_today
    s.contacts_today.fill(0)
    still = was_open[s.status[was_open] == _OPEN]
    s.days_in[still] += 1
    s.disc[still] *= delta
    due = still[s.days_in[still] >= horizon]
    if len(due):
        face = s.outstanding[due].copy()
        s.terminal_value[due] += face * debt_sale_price * s.disc[due]
        s.sold[due] += face
        s.outstanding[due] = 0.0
        s.status[due] = _SOLD
        s.resolved_day[due] = s.days_in[due]
    return due
