"""The debtor world: state of every debtor slot, the SimPy processes that move it, and the day.

One call of :meth:`World.step` is one day. The day's decisions for every open debtor arrive as one
batch; behaviour for a batch is drawn in numpy; SimPy is the engine of time and capacity:

* ``messaging_gateway``  texts, e-mails, pushes and messenger messages go out at the start of
                         their window and are answered (or not) there;
* ``postal_service``     letters travel ``channels.letter.delay_days`` before they can be read;
* ``call_centre``        agents on shifts work each window's queue of calls (``sim.callcentre``: its
                         own small event loop, one heap step per call); calls still queued at the
                         window's end are dropped and counted, and the window's outcome lands on the
                         SimPy clock when its last agent is done;
* ``promise_diary``      promises (and settlements, deferrals) fall due and are kept or broken;
* ``instalment_schedule`` plan instalments fall due and are paid or the plan breaks.

At the end of the day, unprompted repayments arrive from a self-exciting intensity (Chehrazi &
Weber): each engaged contact and each payment raises it, and it decays back towards a baseline
that falls with the age of the debt. Debtors still open at their horizon are sold.

Money is conserved per debtor: ``collected + forgiven + sold + outstanding == balance``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import simpy

from policies import compliance
from policies.actions import validate
from policies.schema import (
    MINUTES_PER_DAY,
    N_CONTACT_CHANNELS,
    NEVER_DAYS,
    WINDOW_HOURS,
    Channel,
    LastOutcome,
    Tone,
    ViewBatch,
    Window,
)
from sim import behaviour as bm
from sim.callcentre import CallCentre
from sim.config import Scenario
from sim.ledger import Event, Ledger
from sim.population import BlockCache, Debtors, sample
from sim.rng import Draw, Stream, stream_key, uniforms

_CH = {c: int(c) - 1 for c in Channel if c != Channel.WAIT}
_LETTER, _CALL = _CH[Channel.LETTER], _CH[Channel.CALL]
_D_DELIVER = int(Draw.DELIVER)
_D_NOTICE = int(Draw.NOTICE)
_D_ENGAGE = int(Draw.ENGAGE)
_D_OUTCOME = int(Draw.OUTCOME)
_D_AMOUNT = int(Draw.AMOUNT)
_D_COMPLAINT = int(Draw.COMPLAINT)
_D_OPT_OUT = int(Draw.OPT_OUT)
_D_DISCLOSE = int(Draw.DISCLOSE)
_D_KEEP = int(Draw.KEEP)
_D_SPONTANEOUS = int(Draw.SPONTANEOUS)
_D_SPONTANEOUS_AMOUNT = int(Draw.SPONTANEOUS_AMOUNT)
_D_CHURN = int(Draw.CHURN)
_D_PROMISE_DAYS = int(Draw.PROMISE_DAYS)
_D_HANDLE = int(Draw.HANDLE)


class Status(IntEnum):
    OPEN = 0
    PAID = 1
    SETTLED = 2
    PLAN_COMPLETED = 3
    SOLD = 4  # truncated at the horizon
    WAITING = 5  # not yet entered collections


class Outcome(IntEnum):
    PAY_FULL = 0
    PAY_PART = 1
    PROMISE = 2
    PLAN = 3
    SETTLEMENT = 4
    DEFERRAL = 5
    NOTHING = 6


# Contact-response luck is keyed by (debtor, contact ordinal), not by day: the k-th contact of a debtor
# draws the same luck under any policy, whatever day it happens on (stronger common random numbers).
CONTACT_DAY = 0xFFFF
ORDINAL_BITS = 12
MAX_ORDINAL = (1 << ORDINAL_BITS) - 1  # contacts beyond it share its luck
# when things happen within a day (minutes after midnight, local time)
MESSAGE_READ_AFTER_MIN = 15  # an electronic message is read this long after its window opens
LETTER_MINUTE = 10 * 60  # the morning post
INSTALMENT_MINUTE = 9 * 60
PROMISE_MINUTE = 18 * 60
_ORDINAL_BITS = np.uint64(ORDINAL_BITS)
_OPEN, _WAITING, _SOLD = int(Status.OPEN), int(Status.WAITING), int(Status.SOLD)
_FIRM, _EMPATHETIC, _LATE, _WAIT = int(Tone.FIRM), int(Tone.EMPATHETIC), int(Window.LATE), int(Channel.WAIT)
_IGNORED, _LO_PAID, _LO_COMPLAINED = int(LastOutcome.IGNORED), int(LastOutcome.PAID), int(LastOutcome.COMPLAINED)
_LO_OPTED_OUT, _LO_BROKE, _LO_PLAN = int(LastOutcome.OPTED_OUT), int(LastOutcome.BROKE_PROMISE), int(LastOutcome.PLAN)

REWARD_COMPONENTS = ("cash", "contact_cost", "complaint_penalty", "opt_out_penalty", "churn_penalty", "terminal_value")


@dataclass
class DayResult:
    """What one day did to each slot (arrays of length n_slots)."""

    reward: np.ndarray  # float64, net value earned today (discounted EUR)
    components: dict[str, np.ndarray]
    terminated: np.ndarray  # bool: resolved today (paid, settled, plan completed)
    truncated: np.ndarray  # bool: sold at the horizon today
    blocked: np.ndarray  # bool: today's action was blocked by compliance


def on_duty_by_hour(sc: Scenario, n_slots: int) -> list[int]:
    """Agents on shift in each hour of the day for a world of ``n_slots`` debtors: the scenario's
    call centre scaled from its population to the world's size (at least one agent, on the
    largest shift, when there are agents at all)."""
    cc = sc.call_centre
    total = cc.agents * n_slots / sc.population.size
    per_shift = [round(total * s.share) for s in cc.shifts]
    if sum(per_shift) == 0 and total > 0:
        per_shift[int(np.argmax([s.share for s in cc.shifts]))] = 1
    duty = [0] * 24
    for s, k in zip(cc.shifts, per_shift, strict=True):
        for h in range(s.start_hour, s.end_hour):
            duty[h] += k
    return duty


class World:
    """A population of debtor slots on one SimPy clock, sharing one call centre.

    ``mode="portfolio"``: slot ``i`` is debtor ``i``, entering on its cohort day; nothing is refilled.
    ``mode="episodic"``: every slot starts a debtor at once; :meth:`refill` puts the next debtor
    into a finished slot (used by the Gymnasium envs).
    """

    def __init__(
        self,
        scenario: Scenario,
        n_slots: int,
        seed: int = 0,
        *,
        mode: str = "portfolio",
        horizon_days: int | None = None,
        record_events: bool = False,
    ) -> None:
        if n_slots < 1:
            raise ValueError("n_slots must be >= 1")
        if mode not in ("portfolio", "episodic"):
            raise ValueError("mode must be 'portfolio' or 'episodic'")
        self.sc = scenario
        self.n = n_slots
        self.seed = int(seed)
        self.mode = mode
        self.horizon = int(horizon_days or scenario.horizon_days)
        self.profile = compliance.get_profile(scenario.compliance_profile)
        self.ledger = Ledger(record_events)
        self.key = stream_key(self.seed, Stream.BEHAVIOUR)
        self.env = simpy.Environment()
        self.day = 0
        self.next_debtor = 0
        self._delta = scenario.daily_discount
        self._prep_params()
        self._alloc()
        self._init_call_centre()
        self._blocks = BlockCache(scenario, self.seed)
        self._views: ViewBatch | None = None
        d = sample(scenario, self.seed, 0, n_slots, self._blocks)
        entry = d.entry_offset.astype(np.int32) if mode == "portfolio" else np.zeros(n_slots, dtype=np.int32)
        self._install(np.arange(n_slots), d, entry, np.arange(n_slots, dtype=np.uint64))
        self.next_debtor = n_slots
        self._enter_today()

    # ------------------------------------------------------------------ set-up

    def _prep_params(self) -> None:
        self.prm = bm.Params.of(self.sc)
        self.letter_delay = self.sc.channels.letter.delay_days

    def _alloc(self) -> None:
        n, nc = self.n, N_CONTACT_CHANNELS
        z = np.zeros
        self.debtor_id = z(n, dtype=np.uint64)
        self.epoch = z(n, dtype=np.int64)
        self.status = np.full(n, _WAITING, dtype=np.int8)
        self.entry_day = z(n, dtype=np.int32)
        self.days_in = z(n, dtype=np.int32)
        self.traits: Debtors | None = None
        # money (EUR)
        self.balance = z(n)
        self.outstanding = z(n)
        self.collected = z(n)
        self.forgiven = z(n)
        self.sold = z(n)
        self.disc = np.ones(n)
        # observable history
        self.on_file = z((n, nc), dtype=bool)
        self.opted_out = z((n, nc), dtype=bool)
        self.ring = z((n, 7, nc), dtype=np.int8)  # contacts per channel on each of the last 7 days
        self.contacts_7d = z((n, nc), dtype=np.int16)
        self.contacts_today = z((n, nc), dtype=np.int8)
        self.contacts_by_channel = z((n, nc), dtype=np.int16)
        self.contacts_total = z(n, dtype=np.int64)  # contacts_by_channel summed over channels, kept as it grows
        self.last_contact = np.full(n, -NEVER_DAYS, dtype=np.int32)
        self.last_response = np.full(n, -NEVER_DAYS, dtype=np.int32)
        self.last_conversation = np.full(n, -NEVER_DAYS, dtype=np.int32)
        self.responses = z(n, dtype=np.int16)
        self.promise_active = z(n, dtype=bool)
        self.promise_due = z(n, dtype=np.int32)
        self.promise_amount = z(n)
        self.promise_kind = z(n, dtype=np.int8)  # 0 promise, 1 settlement, 2 deferral
        self.promise_serial = z(n, dtype=np.int64)
        self.promises_broken = z(n, dtype=np.int16)
        self.plan_active = z(n, dtype=bool)
        self.plan_paid = z(n, dtype=np.int16)
        self.plan_total = z(n, dtype=np.int16)
        self.plan_amount = z(n)
        self.plan_serial = z(n, dtype=np.int64)
        self.plans_broken = z(n, dtype=np.int16)
        self.complaints = z(n, dtype=np.int16)
        self.vulnerable = z(n, dtype=bool)
        self.last_outcome = z(n, dtype=np.int8)
        self.firm_contacts = z(n, dtype=np.int16)
        # latent dynamics
        self.fatigue = z(n, dtype=np.float32)
        self.intensity = z(n)
        # per-slot accounting for KPIs (of the debtor now in the slot)
        self.cost_eur = z(n)
        self.net_value = z(n)
        self.first_payment_day = np.full(n, -1, dtype=np.int32)
        self.rpc = z(n, dtype=np.int16)
        self.calls_made = z(n, dtype=np.int16)
        self.calls_dropped = z(n, dtype=np.int16)
        self.blocked_count = z(n, dtype=np.int16)
        self.opt_outs = z(n, dtype=np.int16)
        self.churned = z(n, dtype=bool)
        self.resolved_day = np.full(n, -1, dtype=np.int32)
        # today's reward components
        self._today = {k: z(n) for k in REWARD_COMPONENTS}
        self._due: dict[tuple[float, Callable[[np.ndarray, np.ndarray], None]], list[tuple[np.ndarray, np.ndarray]]] = {}
        # portfolio-wide counters
        self.funnel = {k: z(nc, dtype=np.int64) for k in ("sent", "delivered", "noticed", "engaged")}
        self.blocked_by_reason = z(len(compliance.Block), dtype=np.int64)
        self.calls_requested = 0
        self.debtor_days = 0
        self.recovery_by_day = z(self.horizon + 1)
        self.payers_by_day = z(self.horizon + 1, dtype=np.int64)

    def _install(self, slots: np.ndarray, d: Debtors, entry_day: np.ndarray, ids: np.ndarray) -> None:
        """Put freshly sampled debtors ``d`` with ids ``ids`` into ``slots``."""
        if self.traits is None:
            assert len(slots) == self.n, "the first install fills every slot"
            self.traits = d
        else:
            for name in d.__dataclass_fields__:
                getattr(self.traits, name)[slots] = getattr(d, name)
        self.debtor_id[slots] = ids
        self.epoch[slots] += 1
        self.entry_day[slots] = entry_day
        self.status[slots] = _WAITING
        self.days_in[slots] = 0
        bal = d.balance_eur
        self.balance[slots] = bal
        self.outstanding[slots] = bal
        for arr in (self.collected, self.forgiven, self.sold, self.cost_eur, self.net_value, self.intensity):
            arr[slots] = 0.0
        self.disc[slots] = 1.0
        self.on_file[slots] = d.on_file
        for arr2 in (self.opted_out, self.contacts_7d, self.contacts_today, self.contacts_by_channel):
            arr2[slots] = 0
        self.contacts_total[slots] = 0
        self.ring[slots] = 0
        for arr3 in (self.last_contact, self.last_response, self.last_conversation):
            arr3[slots] = -NEVER_DAYS
        for arr4 in (
            self.responses,
            self.promise_active,
            self.promise_due,
            self.promise_amount,
            self.promise_kind,
            self.promises_broken,
            self.plan_active,
            self.plan_paid,
            self.plan_total,
            self.plan_amount,
            self.plans_broken,
            self.complaints,
            self.vulnerable,
            self.last_outcome,
            self.firm_contacts,
            self.fatigue,
            self.rpc,
            self.calls_made,
            self.calls_dropped,
            self.blocked_count,
            self.opt_outs,
            self.churned,
        ):
            arr4[slots] = 0
        self.first_payment_day[slots] = -1
        self.resolved_day[slots] = -1

    # -------------------------------------------------------------- call centre

    def _init_call_centre(self) -> None:
        self.on_duty_by_hour = np.array(on_duty_by_hour(self.sc, self.n), dtype=np.int64)
        self.agents_total = int(self.on_duty_by_hour.max())
        self.call_centre = CallCentre(self.on_duty_by_hour.tolist(), MINUTES_PER_DAY)

    def _dial_today(self) -> None:
        """Run the call centre through today; each window's outcome lands on the clock when its
        last agent is done (one SimPy event per window, not one per call)."""
        for payload, made, at in self.call_centre.advance((self.day + 1) * MINUTES_PER_DAY):
            due = self.env.timeout(at - self.env.now)
            due.callbacks.append(functools.partial(self._dialled, payload, made))

    def _dialled(self, payload: tuple[Any, ...], made: int, _event: simpy.Event | None = None) -> None:
        """A window's calls are over: the first ``made`` were made (and answered or not), the rest
        dropped. ``payload`` is what ``_execute`` dialled: window, slots, epochs, rpc, tone, offer, luck."""
        window, slots, epochs, rpc, tone, offer, luck = payload
        now = self.env.now
        was_made = np.zeros(len(slots), dtype=bool)
        was_made[:made] = True
        ok = self.epoch[slots] == epochs
        sel = was_made & ok
        self._call_outcomes(slots[sel], rpc[sel], tone[sel], offer[sel], luck[sel], window, now)
        drop = slots[~was_made & ok]
        self.calls_dropped[drop] += 1
        self.ledger.add(now, self.debtor_id[drop], Event.CALL_DROPPED, Channel.CALL)

    # ------------------------------------------------------------------ views

    def views(self) -> ViewBatch:
        """The observable views of all slots (cached until the state next changes)."""
        if self._views is None:
            self._views = self._build_views()
        return self._views

    def _build_views(self) -> ViewBatch:
        d = self.day
        since = lambda last: np.minimum(d - last, NEVER_DAYS).astype(np.int32)
        promise_due_in = np.where(self.promise_active, np.maximum(self.promise_due - d, 0), 0)
        assert self.traits is not None
        return ViewBatch(
            balance_eur=self.balance,
            outstanding_eur=self.outstanding,
            dpd=self.traits.dpd_at_entry + self.days_in,
            days_in_collections=self.days_in,
            days_left=self.horizon - self.days_in,
            product=self.traits.product,
            behaviour_score=self.traits.behaviour_score,
            app_user=self.traits.app_user,
            on_file=self.on_file,
            opted_out=self.opted_out,
            contacts_7d=self.contacts_7d,
            contacts_total=self.contacts_total.copy(),
            days_since_contact=since(self.last_contact),
            days_since_response=since(self.last_response),
            days_since_conversation=since(self.last_conversation),
            responses_total=self.responses,
            promise_active=self.promise_active,
            promise_due_in_days=promise_due_in,
            promises_broken=self.promises_broken,
            plan_active=self.plan_active,
            plan_instalments_paid=self.plan_paid,
            plan_instalments_total=self.plan_total,
            plans_broken=self.plans_broken,
            complaints=self.complaints,
            vulnerable=self.vulnerable,
            last_outcome=self.last_outcome,
            day_of_week=np.full(self.n, d % 7, dtype=np.int8),
            day_of_month=np.full(self.n, d % 28 + 1, dtype=np.int8),
        )

    def action_mask(self, views: ViewBatch | None = None) -> np.ndarray:
        return compliance.action_mask(views if views is not None else self.views(), self.profile)

    @property
    def open(self) -> np.ndarray:
        return self.status == _OPEN

    # -------------------------------------------------------------------- day

    def step(self, actions: np.ndarray, views: ViewBatch | None = None) -> DayResult:
        """Execute one day's actions (one row per slot; rows of closed slots are ignored)."""
        a = validate(actions)
        if len(a) != self.n:
            raise ValueError(f"expected {self.n} actions (one per slot), got {len(a)}")
        d = self.day
        t0 = d * MINUTES_PER_DAY
        views = views if views is not None else self.views()
        self._views = None
        for v in self._today.values():
            v.fill(0.0)
        is_open = self.open
        open_idx = np.flatnonzero(is_open)
        self.debtor_days += len(open_idx)
        status_before = self.status.copy()

        contact = is_open & (a[:, 0] != _WAIT)
        blocked = np.zeros(self.n, dtype=bool)
        if contact.any():
            reasons = compliance.check(a, views, self.profile)
            blocked = contact & (reasons != 0)
            if blocked.any():
                bidx = np.flatnonzero(blocked)
                self.blocked_by_reason += np.bincount(reasons[bidx], minlength=len(compliance.Block))
                self.blocked_count[bidx] += 1
                self.ledger.add(t0, self.debtor_id[bidx], Event.BLOCKED, a[bidx, 0], 0.0, reasons[bidx])
            self._execute(np.flatnonzero(contact & ~blocked), a)
        self._dial_today()

        self.env.run(until=t0 + MINUTES_PER_DAY - 1)
        self._close_day(open_idx)
        self.env.run(until=t0 + MINUTES_PER_DAY)
        self.day += 1
        self._enter_today()

        comps = {k: v.copy() for k, v in self._today.items()}
        reward = sum(comps.values())
        assert isinstance(reward, np.ndarray)
        self.net_value += reward
        st = self.status
        changed = (status_before == _OPEN) & (st != _OPEN)
        return DayResult(reward, comps, changed & (st != _SOLD), changed & (st == _SOLD), blocked)

    def _enter_today(self) -> None:
        entering = (self.status == _WAITING) & (self.entry_day <= self.day)
        if entering.any():
            idx = np.flatnonzero(entering)
            self.status[idx] = _OPEN
            self.days_in[idx] = self.day - self.entry_day[idx]
            t = self.traits
            assert t is not None
            self.intensity[idx] = self._baseline_intensity(idx)

    def refill(self, slots: np.ndarray) -> None:
        """Episodic mode: start the next debtors in ``slots`` today."""
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) == 0:
            return
        d = sample(self.sc, self.seed, self.next_debtor, len(slots), self._blocks)
        ids = np.arange(self.next_debtor, self.next_debtor + len(slots), dtype=np.uint64)
        self.next_debtor += len(slots)
        self._install(slots, d, np.full(len(slots), self.day, dtype=np.int32), ids)
        self._views = None
        self._enter_today()

    # ------------------------------------------------------------ contacts

    def _execute(self, idx: np.ndarray, a: np.ndarray) -> None:
        if len(idx) == 0:
            return
        d, t0 = self.day, self.day * MINUTES_PER_DAY
        ch = a[idx, 0] - 1
        win, tone, offer = a[idx, 1], a[idx, 2], a[idx, 3]
        ordinal = np.minimum(self.contacts_total[idx], MAX_ORDINAL).astype(np.uint64)
        luck = (self.debtor_id[idx] << _ORDINAL_BITS) | ordinal
        self.contacts_today[idx, ch] += 1
        self.contacts_by_channel[idx, ch] += 1
        self.contacts_total[idx] += 1
        self.last_contact[idx] = d
        self.firm_contacts[idx] += (tone == _FIRM).astype(np.int16)
        self.funnel["sent"] += np.bincount(ch, minlength=N_CONTACT_CHANNELS)
        self.ledger.add(t0, self.debtor_id[idx], Event.CONTACT, ch + 1, 0.0, tone * 4 + offer)
        not_call = ch != _CALL
        paid_now = idx[not_call]
        self._charge(paid_now, self.prm.cost_eur[ch[not_call]])
        epochs = self.epoch[idx]
        for w in range(len(Window)):
            sel = (win == w) & not_call & (ch != _LETTER)
            if sel.any():
                self.env.process(self.messaging_gateway(w, idx[sel], epochs[sel], ch[sel], tone[sel], offer[sel], luck[sel]))
        sel = ch == _LETTER
        if sel.any():
            self.env.process(self.postal_service(idx[sel], epochs[sel], tone[sel], offer[sel], luck[sel]))
        calls = np.flatnonzero(ch == _CALL)
        if len(calls):
            self.calls_requested += len(calls)
            cidx = idx[calls]
            cluck = luck[calls]
            t = self.traits
            assert t is not None
            cw = win[calls]
            reach = t.deliverability[cidx, _CALL] * bm.p_notice(t.attention[cidx, _CALL], t.window_fit[cidx, cw], self.prm.window_sensitivity[_CALL])
            rpc = uniforms(self.key, cluck, CONTACT_DAY, _D_NOTICE, _CALL + 1) < reach
            mean = np.where(rpc, self.sc.call_centre.handle_time_min, self.sc.call_centre.no_answer_time_min)
            handle = -mean * np.log1p(-uniforms(self.key, cluck, CONTACT_DAY, _D_HANDLE))
            for w in range(len(Window)):
                s = cw == w
                if s.any():
                    start_h, end_h = WINDOW_HOURS[w]
                    payload = (w, cidx[s], epochs[calls][s], rpc[s], tone[calls][s], offer[calls][s], cluck[s])
                    self.call_centre.dial(t0 + start_h * 60, t0 + end_h * 60, handle[s], payload)

    def _charge(self, idx: np.ndarray, cost: np.ndarray | float) -> None:
        self.cost_eur[idx] += cost
        self._today["contact_cost"][idx] -= np.asarray(cost) * self.disc[idx]

    def messaging_gateway(
        self, window: int, slots: np.ndarray, epochs: np.ndarray, ch: np.ndarray, tone: np.ndarray, offer: np.ndarray, luck: np.ndarray
    ) -> Generator[simpy.Event, Any, None]:
        """Electronic messages go out at the start of their window and are read (or not) there."""
        start_h = WINDOW_HOURS[window][0]
        yield self.env.timeout(max(0.0, self.day * MINUTES_PER_DAY + start_h * 60 + MESSAGE_READ_AFTER_MIN - self.env.now))
        ok = (self.epoch[slots] == epochs) & (self.status[slots] == _OPEN)
        self._arrive(slots[ok], ch[ok], np.full(int(ok.sum()), window), tone[ok], offer[ok], luck[ok])

    def postal_service(
        self, slots: np.ndarray, epochs: np.ndarray, tone: np.ndarray, offer: np.ndarray, luck: np.ndarray
    ) -> Generator[simpy.Event, Any, None]:
        """Letters arrive ``delay_days`` later, in the morning post."""
        yield self.env.timeout((self.day + self.letter_delay) * MINUTES_PER_DAY + LETTER_MINUTE - self.env.now)
        ok = (self.epoch[slots] == epochs) & (self.status[slots] == _OPEN)
        n = int(ok.sum())
        self._arrive(slots[ok], np.full(n, _LETTER), np.full(n, Window.MORNING), tone[ok], offer[ok], luck[ok])

    def _arrive(self, idx: np.ndarray, ch: np.ndarray, win: np.ndarray, tone: np.ndarray, offer: np.ndarray, luck: np.ndarray) -> None:
        """A non-call contact reaches the debtor's address: delivered? noticed? then the response."""
        if len(idx) == 0:
            return
        t = self.traits
        assert t is not None
        now = self.env.now
        ids = self.debtor_id[idx]
        delivered = uniforms(self.key, luck, CONTACT_DAY, _D_DELIVER, 0) < t.deliverability[idx, ch]
        self.funnel["delivered"] += np.bincount(ch[delivered], minlength=N_CONTACT_CHANNELS)
        self.ledger.add(now, ids[delivered], Event.DELIVERED, ch[delivered] + 1)
        idx, ch, win, tone, offer, luck = idx[delivered], ch[delivered], win[delivered], tone[delivered], offer[delivered], luck[delivered]
        # fatigue counts the contact being received: a debtor judges the fifth message of the week
        # with five messages of annoyance (the calibration of complaints and opt-outs assumes this)
        self.fatigue[idx] += self.prm.fatigue_weight[ch]
        p_notice = bm.p_notice(t.attention[idx, ch], t.window_fit[idx, win], self.prm.window_sensitivity[ch])
        noticed = uniforms(self.key, luck, CONTACT_DAY, _D_NOTICE, 0) < p_notice
        self._ignored(idx[~noticed])
        self._respond(idx[noticed], ch[noticed], win[noticed], tone[noticed], offer[noticed], luck[noticed])

    def _call_outcomes(
        self, idx: np.ndarray, rpc: np.ndarray, tone: np.ndarray, offer: np.ndarray, luck: np.ndarray, window: int, now: float
    ) -> None:
        if len(idx) == 0:
            return
        open_ = self.status[idx] == _OPEN
        idx, rpc, tone, offer, luck = idx[open_], rpc[open_], tone[open_], offer[open_], luck[open_]
        self.calls_made[idx] += 1
        self._charge(idx, self.prm.cost_eur[_CALL])
        self.funnel["delivered"][_CALL] += len(idx)
        self.fatigue[idx] += self.prm.fatigue_weight[_CALL]
        r = idx[rpc]
        self.rpc[r] += 1
        self.last_conversation[r] = self.day
        self._charge(r, self.sc.call_centre.conversation_cost_eur)
        self.ledger.add(now, self.debtor_id[idx], Event.DELIVERED, Channel.CALL)
        self._ignored(idx[~rpc])
        n = len(r)
        self._respond(r, np.full(n, _CALL), np.full(n, window), tone[rpc], offer[rpc], luck[rpc])

    def _ignored(self, idx: np.ndarray) -> None:
        self.last_outcome[idx] = _IGNORED

    def _ability(self, idx: np.ndarray) -> np.ndarray:
        t = self.traits
        assert t is not None
        return bm.effective_ability(self.sc, t.ability[idx], t.ability_growth[idx], self.days_in[idx], t.payday[idx], self.day)

    def _respond(self, idx: np.ndarray, ch: np.ndarray, win: np.ndarray, tone: np.ndarray, offer: np.ndarray, luck: np.ndarray) -> None:
        """A noticed contact: complaint or opt-out, else engagement and an outcome."""
        if len(idx) == 0:
            return
        b, t = self.sc.behaviour, self.traits
        assert t is not None
        d, now = self.day, self.env.now
        ids = self.debtor_id[idx]
        self.funnel["noticed"] += np.bincount(ch, minlength=N_CONTACT_CHANNELS)
        self.ledger.add(now, ids, Event.NOTICED, ch + 1)
        fat = self.fatigue[idx]
        distressed = t.distressed[idx]
        firm = tone == _FIRM

        z = bm.complaint_logit(self.sc, t.complaint_logit[idx], fat, firm, distressed, win == _LATE)
        complain = uniforms(self.key, luck, CONTACT_DAY, _D_COMPLAINT) < bm.sigmoid(z)
        opt = ~complain & (ch != _LETTER) & (uniforms(self.key, luck, CONTACT_DAY, _D_OPT_OUT) < bm.sigmoid(bm.opt_out_logit(self.sc, fat)))
        if complain.any():
            c = idx[complain]
            self.complaints[c] += 1
            self.vulnerable[c] |= distressed[complain]
            self.last_outcome[c] = _LO_COMPLAINED
            self._today["complaint_penalty"][c] -= self.sc.reward.complaint_penalty_eur * self.disc[c]
            self.ledger.add(now, ids[complain], Event.COMPLAINT, ch[complain] + 1)
        if opt.any():
            o = idx[opt]
            self.opted_out[o, ch[opt]] = True
            self.opt_outs[o] += 1
            self.last_outcome[o] = _LO_OPTED_OUT
            self._today["opt_out_penalty"][o] -= self.sc.reward.opt_out_penalty_eur * self.disc[o]
            self.ledger.add(now, ids[opt], Event.OPT_OUT, ch[opt] + 1)
        rest = ~(complain | opt)
        idx, ch, tone, offer, ids, fat, distressed, luck = (
            idx[rest],
            ch[rest],
            tone[rest],
            offer[rest],
            ids[rest],
            fat[rest],
            distressed[rest],
            luck[rest],
        )
        if len(idx) == 0:
            return
        will = t.willingness[idx]
        dpd = t.dpd_at_entry[idx] + self.days_in[idx]
        z = bm.engage_logit(self.sc, self.prm, ch, tone, will, t.tone_effect[idx, tone], t.offer_effect[idx, offer], distressed, fat, dpd)
        engaged = uniforms(self.key, luck, CONTACT_DAY, _D_ENGAGE) < bm.sigmoid(z)
        self._ignored(idx[~engaged])
        idx, ch, offer, ids, will, distressed, luck = (
            idx[engaged],
            ch[engaged],
            offer[engaged],
            ids[engaged],
            will[engaged],
            distressed[engaged],
            luck[engaged],
        )
        if len(idx) == 0:
            return
        self.funnel["engaged"] += np.bincount(ch, minlength=N_CONTACT_CHANNELS)
        self.ledger.add(now, ids, Event.ENGAGED, ch + 1)
        self.responses[idx] += 1
        self.last_response[idx] = d
        self.intensity[idx] += b.intensity_jump_contact * (0.5 + will)
        disclose = distressed & (uniforms(self.key, luck, CONTACT_DAY, _D_DISCLOSE) < b.vulnerability_disclosure_prob)
        self.vulnerable[idx[disclose]] = True

        p = bm.outcome_probabilities(self.prm, self._ability(idx), will, self.outstanding[idx], offer, t.offer_effect[idx])
        cdf = np.cumsum(p, axis=1)
        u = uniforms(self.key, luck, CONTACT_DAY, _D_OUTCOME) * cdf[:, -1]
        outcome = (u[:, None] > cdf).sum(axis=1)
        self._apply_outcomes(idx, outcome, ch, luck)

    def _apply_outcomes(self, idx: np.ndarray, outcome: np.ndarray, ch: np.ndarray, luck: np.ndarray) -> None:
        b = self.sc.behaviour
        out_amt = self.outstanding[idx]
        sel = outcome == Outcome.PAY_FULL
        self._pay(idx[sel], out_amt[sel], ch[sel])
        sel = outcome == Outcome.PAY_PART
        if sel.any():
            lo, hi = b.part_payment_share.min / 100.0, b.part_payment_share.max / 100.0
            share = lo + (hi - lo) * uniforms(self.key, luck[sel], CONTACT_DAY, _D_AMOUNT)
            self._pay(idx[sel], out_amt[sel] * share, ch[sel])
        sel = outcome == Outcome.PROMISE
        if sel.any():
            lo, hi = b.promise_days.min, b.promise_days.max
            days = lo + np.floor((hi - lo + 1) * uniforms(self.key, luck[sel], CONTACT_DAY, _D_PROMISE_DAYS)).astype(np.int32)
            self._promise(idx[sel], out_amt[sel], days, 0)
        sel = outcome == Outcome.SETTLEMENT
        if sel.any():
            self._promise(idx[sel], out_amt[sel] * (1 - b.settlement_discount), np.full(int(sel.sum()), b.settlement_pay_days), 1)
        sel = outcome == Outcome.DEFERRAL
        if sel.any():
            self._promise(idx[sel], out_amt[sel], np.full(int(sel.sum()), b.deferral_days), 2)
        sel = outcome == Outcome.PLAN
        if sel.any():
            self._plan(idx[sel])
        self.last_outcome[idx[outcome == Outcome.NOTHING]] = _IGNORED

    # ------------------------------------------------------- money and commitments

    def _pay(self, idx: np.ndarray, amount: np.ndarray, ch: np.ndarray | int = 0, clear_status: Status = Status.PAID) -> None:
        if len(idx) == 0:
            return
        amount = np.minimum(amount, self.outstanding[idx])
        self.collected[idx] += amount
        self.outstanding[idx] -= amount
        self._today["cash"][idx] += amount * self.disc[idx]
        first = self.first_payment_day[idx] < 0
        self.first_payment_day[idx[first]] = self.days_in[idx[first]]
        self.payers_by_day += np.bincount(self.days_in[idx[first]], minlength=self.horizon + 1)[: self.horizon + 1]
        self.recovery_by_day += np.bincount(self.days_in[idx], weights=amount, minlength=self.horizon + 1)[: self.horizon + 1]
        frac = amount / np.maximum(self.balance[idx], 1e-9)
        self.intensity[idx] += self.sc.behaviour.intensity_jump_payment * (1 + frac)
        self.last_outcome[idx] = _LO_PAID
        self.last_response[idx] = self.day
        self.ledger.add(self.env.now, self.debtor_id[idx], Event.PAYMENT, ch, amount)
        cleared = self.outstanding[idx] < 0.005
        if cleared.any():
            c = idx[cleared]
            self.collected[c] += self.outstanding[c]  # sub-cent rounding
            self.outstanding[c] = 0.0
            self._resolve(c, clear_status)

    def _resolve(self, idx: np.ndarray, status: Status) -> None:
        self.status[idx] = status
        self.resolved_day[idx] = self.days_in[idx]
        self.promise_active[idx] = False
        self.plan_active[idx] = False
        t = self.traits
        assert t is not None
        self.ledger.add(self.env.now, self.debtor_id[idx], Event.RESOLVED, 0, 0.0, int(status))
        z = bm.churn_logit(self.sc, t.churn_logit[idx], self.firm_contacts[idx], self.complaints[idx], self.contacts_total[idx])
        churn = uniforms(self.key, self.debtor_id[idx], self.day, _D_CHURN) < bm.sigmoid(z)
        ch = idx[churn]
        self.churned[ch] = True
        self._today["churn_penalty"][ch] -= self.sc.reward.retention_value_eur * self.disc[ch]
        self.ledger.add(self.env.now, self.debtor_id[ch], Event.CHURNED)

    def _promise(self, idx: np.ndarray, amount: np.ndarray, days: np.ndarray, kind: int) -> None:
        self.promise_active[idx] = True
        self.promise_due[idx] = self.day + days
        self.promise_amount[idx] = amount
        self.promise_kind[idx] = kind
        self.promise_serial[idx] += 1
        self.last_outcome[idx] = (LastOutcome.PROMISED, LastOutcome.SETTLEMENT, LastOutcome.PROMISED)[kind]
        self.ledger.add(self.env.now, self.debtor_id[idx], Event.PROMISE, 0, amount, kind)
        for due in np.unique(days):
            s = idx[days == due]
            self._at((self.day + int(due)) * MINUTES_PER_DAY + PROMISE_MINUTE, s, self.promise_serial[s].copy(), self.promise_diary)

    def _plan(self, idx: np.ndarray) -> None:
        b = self.sc.behaviour
        self.plan_active[idx] = True
        self.plan_paid[idx] = 0
        self.plan_total[idx] = b.plan_instalments
        self.plan_amount[idx] = self.outstanding[idx] / b.plan_instalments
        self.plan_serial[idx] += 1
        self.promise_active[idx] = False
        self.last_outcome[idx] = _LO_PLAN
        self.ledger.add(self.env.now, self.debtor_id[idx], Event.PLAN, 0, self.plan_amount[idx], b.plan_instalments)
        self._schedule_instalment(idx)

    def _schedule_instalment(self, idx: np.ndarray) -> None:
        at = (self.day + self.sc.behaviour.plan_interval_days) * MINUTES_PER_DAY + INSTALMENT_MINUTE
        self._at(at, idx, self.plan_serial[idx].copy(), self.instalment_schedule)

    def _at(self, at_min: float, slots: np.ndarray, serials: np.ndarray, handler: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """Call ``handler(slots, serials)`` at ``at_min``. Everything due to the same handler at the
        same minute (promises falling due at 18:00 on one day, made on many days) is handled in one
        call, on one SimPy timeout with a callback; the handlers work debtor by debtor, so this
        only saves the overhead of many small batches."""
        key = (at_min, handler)
        groups = self._due.get(key)
        if groups is None:
            groups = self._due[key] = []
            due = self.env.timeout(max(0.0, at_min - self.env.now))
            due.callbacks.append(functools.partial(self._fall_due, key))
        groups.append((slots, serials))

    def _fall_due(self, key: tuple[float, Callable[[np.ndarray, np.ndarray], None]], _event: simpy.Event | None = None) -> None:
        groups = self._due.pop(key)
        if len(groups) == 1:
            key[1](*groups[0])
        else:
            key[1](np.concatenate([g[0] for g in groups]), np.concatenate([g[1] for g in groups]))

    def _keep_logit(self, idx: np.ndarray, base: float) -> np.ndarray:
        t = self.traits
        assert t is not None
        return bm.keep_logit(base, self._ability(idx), t.willingness[idx])

    def promise_diary(self, slots: np.ndarray, serials: np.ndarray) -> None:
        """Promises due now are kept or broken."""
        ok = (self.promise_serial[slots] == serials) & (self.status[slots] == _OPEN) & self.promise_active[slots]
        idx = slots[ok]
        if len(idx) == 0:
            return
        kind = self.promise_kind[idx]
        z = self._keep_logit(idx, self.sc.behaviour.promise_keep_logit) + np.where(kind == 2, 0.5, 0.0)
        kept = uniforms(self.key, self.debtor_id[idx], self.day, _D_KEEP) < bm.sigmoid(z)
        self.promise_active[idx] = False
        k = idx[kept]
        self.ledger.add(self.env.now, self.debtor_id[k], Event.PROMISE_KEPT)
        settle = self.promise_kind[k] == 1
        s = k[settle]
        if len(s):
            forgive = self.outstanding[s] - np.minimum(self.promise_amount[s], self.outstanding[s])
            self.forgiven[s] += forgive
            self.outstanding[s] -= forgive
            self.ledger.add(self.env.now, self.debtor_id[s], Event.FORGIVEN, 0, forgive)
            self._pay(s, self.promise_amount[s], 0, Status.SETTLED)
        p = k[~settle]
        self._pay(p, self.promise_amount[p])
        broken = idx[~kept]
        self.promises_broken[broken] += 1
        self.last_outcome[broken] = _LO_BROKE
        self.ledger.add(self.env.now, self.debtor_id[broken], Event.PROMISE_BROKEN)

    def instalment_schedule(self, slots: np.ndarray, serials: np.ndarray) -> None:
        """Instalments due now are paid, or the plan breaks."""
        ok = (self.plan_serial[slots] == serials) & (self.status[slots] == _OPEN) & self.plan_active[slots]
        idx = slots[ok]
        if len(idx) == 0:
            return
        paid = uniforms(self.key, self.debtor_id[idx], self.day, _D_KEEP) < bm.sigmoid(self._keep_logit(idx, self.sc.behaviour.instalment_pay_logit))
        p = idx[paid]
        last = self.plan_paid[p] + 1 >= self.plan_total[p]
        amount = np.where(last, self.outstanding[p], np.minimum(self.plan_amount[p], self.outstanding[p]))
        self.plan_paid[p] += 1
        self.ledger.add(self.env.now, self.debtor_id[p], Event.INSTALMENT_PAID, 0, amount)
        self._pay(p, amount, 0, Status.PLAN_COMPLETED)
        going = p[self.status[p] == _OPEN]
        if len(going):
            self._schedule_instalment(going)
        broken = idx[~paid]
        self.plan_active[broken] = False
        self.plans_broken[broken] += 1
        self.last_outcome[broken] = _LO_BROKE
        self.ledger.add(self.env.now, self.debtor_id[broken], Event.PLAN_BROKEN)

    # ------------------------------------------------------------ end of day

    def _baseline_intensity(self, idx: np.ndarray) -> np.ndarray:
        t = self.traits
        assert t is not None
        return bm.baseline_intensity(self.sc, t.self_cure[idx], t.dpd_at_entry[idx] + self.days_in[idx])

    def _close_day(self, was_open: np.ndarray) -> None:
        """Unprompted repayments, decay, the 7-day contact window, the horizon."""
        idx = was_open[self.status[was_open] == _OPEN]
        if len(idx):
            base = self._baseline_intensity(idx)
            lam = base + (self.intensity[idx] - base) * self.prm.intensity_decay
            self.intensity[idx] = lam
            ids = self.debtor_id[idx]
            pays = uniforms(self.key, ids, self.day, _D_SPONTANEOUS) < -np.expm1(-lam)
            if pays.any():
                p = idx[pays]
                u = uniforms(self.key, ids[pays], self.day, _D_SPONTANEOUS_AMOUNT)
                sp = self.sc.behaviour.spontaneous_payment
                frac = np.minimum(1.0, (sp.min_share + (1.0 - sp.min_share) * u) * (sp.ability_offset + self._ability(p)))
                self._pay(p, np.where(frac >= sp.full_at, self.outstanding[p], self.outstanding[p] * frac))
        self.fatigue *= self.prm.fatigue_decay
        slot = self.day % 7
        self.contacts_7d += self.contacts_today - self.ring[:, slot, :]
        self.ring[:, slot, :] = self.contacts_today
        self.contacts_today.fill(0)
        # age the open debtors; sell what reaches the horizon
        still = was_open[self.status[was_open] == _OPEN]
        self.days_in[still] += 1
        self.disc[still] *= self._delta
        due = still[self.days_in[still] >= self.horizon]
        if len(due):
            face = self.outstanding[due].copy()
            self._today["terminal_value"][due] += face * self.sc.debt_sale_price * self.disc[due]
            self.sold[due] += face
            self.outstanding[due] = 0.0
            self.status[due] = _SOLD
            self.resolved_day[due] = self.days_in[due]
            self.ledger.add(self.env.now, self.debtor_id[due], Event.SOLD, 0, face)

    # ------------------------------------------------------------ invariants

    def money_gap(self) -> np.ndarray:
        """Per-slot ``collected + forgiven + sold + outstanding - balance`` (should be ~0)."""
        return self.collected + self.forgiven + self.sold + self.outstanding - self.balance

    @property
    def finished(self) -> bool:
        """Portfolio mode: every debtor has entered and closed."""
        return bool(np.all((self.status != _OPEN) & (self.status != _WAITING)))
