"""The debtor world: a day of every debtor slot, on one SimPy clock.

One call of :meth:`World.step` is one day, and this file reads in its order. The day's decisions
for every open debtor arrive as one batch; compliance blocks what the profile forbids; the rest
is executed, and SimPy is the engine of time and capacity:

* ``messaging_gateway``  texts, e-mails, pushes and messenger messages go out at the start of
                         their window and are read (or not) there;
* ``postal_service``     letters travel ``channels.letter.delay_days`` before they can be read;
* ``call_centre``        agents on shifts work each window's queue of calls (``sim.callcentre``: its
                         own small event loop, one heap step per call); calls still queued at the
                         window's end are dropped and counted, and the window's outcome lands on the
                         SimPy clock when its last agent is done;
* ``promise_diary``      promises (and settlements, deferrals) fall due and are kept or broken;
* ``instalment_schedule`` plan instalments fall due and are paid or the plan breaks.

A contact that reaches the debtor goes down the funnel of the rulebook (:mod:`sim.behaviour`):
delivered, noticed, complaint or opt-out, engaged, an outcome. At the end of the day, unprompted
repayments arrive from a self-exciting intensity (Chehrazi & Weber): each engaged contact and
each payment raises it, and it decays back towards a baseline that falls with the age of the
debt; then :func:`sim.state.close_day` ages the debtors and sells those at their horizon.

What the world keeps per slot is :class:`sim.state.DebtorState` (declared once there, with the
transitions that change it); its columns read as attributes of the world too
(``world.outstanding`` is ``world.state.outstanding``). Every formula is the rulebook's.

Money is conserved per debtor: ``collected + forgiven + sold + outstanding == balance``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from policies import compliance
from policies.actions import validate
from policies.schema import MINUTES_PER_DAY, N_CONTACT_CHANNELS, WINDOW_HOURS, Channel, LastOutcome, Tone, ViewBatch, Window
from sim import behaviour as rules
from sim import state as transitions
from sim.callcentre import CallCentre
from sim.config import Scenario
from sim.ledger import Event, Ledger, PaymentKind
from sim.population import BlockCache, Debtors, sample
from sim.rng import Draw, Stream, stream_key, uniforms
from sim.state import REWARD_COMPONENTS, DebtorState, Status

__all__ = ["REWARD_COMPONENTS", "DayResult", "Outcome", "Status", "World", "on_duty_by_hour"]

_LETTER, _CALL = rules.LETTER, rules.CALL
_D_DELIVER, _D_NOTICE, _D_ENGAGE, _D_OUTCOME = int(Draw.DELIVER), int(Draw.NOTICE), int(Draw.ENGAGE), int(Draw.OUTCOME)
_D_AMOUNT, _D_COMPLAINT, _D_OPT_OUT, _D_DISCLOSE = int(Draw.AMOUNT), int(Draw.COMPLAINT), int(Draw.OPT_OUT), int(Draw.DISCLOSE)
_D_KEEP, _D_SPONTANEOUS, _D_SPONTANEOUS_AMOUNT = int(Draw.KEEP), int(Draw.SPONTANEOUS), int(Draw.SPONTANEOUS_AMOUNT)
_D_CHURN, _D_PROMISE_DAYS, _D_HANDLE = int(Draw.CHURN), int(Draw.PROMISE_DAYS), int(Draw.HANDLE)


class Outcome:
    """The outcomes of an engaged contact (indices of :func:`sim.behaviour.outcome_probabilities`)."""

    PAY_FULL, PAY_PART, PROMISE, PLAN, SETTLEMENT, DEFERRAL, NOTHING = (
        rules.PAY_FULL,
        rules.PAY_PART,
        rules.PROMISE,
        rules.PLAN,
        rules.SETTLEMENT,
        rules.DEFERRAL,
        rules.NOTHING,
    )


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
_FIRM, _LATE, _WAIT = int(Tone.FIRM), int(Window.LATE), int(Channel.WAIT)
_IGNORED, _COMPLAINED, _OPTED_OUT = int(LastOutcome.IGNORED), int(LastOutcome.COMPLAINED), int(LastOutcome.OPTED_OUT)


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
    ``population``: the portfolio's debtors as given (e.g. the accounts of a history, with latent
    traits drawn for them) instead of sampled from the scenario; debtor ``i`` has id ``i``.
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
        population: Debtors | None = None,
    ) -> None:
        if n_slots < 1:
            raise ValueError("n_slots must be >= 1")
        if mode not in ("portfolio", "episodic"):
            raise ValueError("mode must be 'portfolio' or 'episodic'")
        if population is not None and (mode != "portfolio" or len(population) != n_slots):
            raise ValueError("a given population is a portfolio: mode='portfolio' and one debtor per slot")
        self.sc = scenario
        self.b = scenario.behaviour
        self.n = n_slots
        self.seed = int(seed)
        self.mode = mode
        self.horizon = int(horizon_days or scenario.horizon_days)
        self.profile = compliance.get_profile(scenario.compliance_profile)
        self.ledger = Ledger(record_events)
        self.key = stream_key(self.seed, Stream.BEHAVIOUR)
        self.env = simpy.Environment()
        self.day = 0
        self.prm = rules.Params.of(scenario)
        self.letter_delay = scenario.channels.letter.delay_days
        self._delta = scenario.daily_discount
        self.state = DebtorState.allocate(n_slots)
        self._due: dict[tuple[float, Callable[[np.ndarray, np.ndarray], None]], list[tuple[np.ndarray, np.ndarray]]] = {}
        self._views: ViewBatch | None = None
        # portfolio-wide counters
        nc = N_CONTACT_CHANNELS
        self.funnel = {k: np.zeros(nc, dtype=np.int64) for k in ("sent", "delivered", "noticed", "engaged")}
        self.blocked_by_reason = np.zeros(len(compliance.Block), dtype=np.int64)
        self.calls_requested = 0
        self.debtor_days = 0
        self.recovery_by_day = np.zeros(self.horizon + 1)
        self.payers_by_day = np.zeros(self.horizon + 1, dtype=np.int64)
        # the call centre, scaled to the world
        self.on_duty_by_hour = np.array(on_duty_by_hour(scenario, n_slots), dtype=np.int64)
        self.agents_total = int(self.on_duty_by_hour.max())
        self.call_centre = CallCentre(self.on_duty_by_hour.tolist(), MINUTES_PER_DAY)
        # the first debtors
        self._blocks = BlockCache(scenario, self.seed)
        d = population if population is not None else sample(scenario, self.seed, 0, n_slots, self._blocks)
        self.traits: Debtors = d
        entry = d.entry_offset.astype(np.int32) if mode == "portfolio" else np.zeros(n_slots, dtype=np.int32)
        self._install(np.arange(n_slots), d, entry, np.arange(n_slots, dtype=np.uint64))
        self.next_debtor = n_slots
        self._enter_today()

    def __getattr__(self, name: str) -> np.ndarray:
        # the state's columns read as the world's attributes (only reached when normal lookup fails)
        state = self.__dict__.get("state")
        if state is not None and name in _STATE_NAMES:
            return getattr(state, name)  # type: ignore[no-any-return]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _install(self, slots: np.ndarray, d: Debtors, entry_day: np.ndarray, ids: np.ndarray) -> None:
        """Put freshly sampled debtors ``d`` with ids ``ids`` into ``slots``."""
        if d is not self.traits:
            for name in d.__dataclass_fields__:
                getattr(self.traits, name)[slots] = getattr(d, name)
        s = self.state
        s.reset(slots)
        s.debtor_id[slots] = ids
        s.entry_day[slots] = entry_day
        s.balance[slots] = d.balance_eur
        s.outstanding[slots] = d.balance_eur
        s.on_file[slots] = d.on_file

    # ------------------------------------------------------------------ views

    def views(self) -> ViewBatch:
        """The observable views of all slots (cached until the state next changes)."""
        if self._views is None:
            self._views = transitions.views(self.state, self.traits, self.day, self.horizon)
        return self._views

    def action_mask(self, views: ViewBatch | None = None) -> np.ndarray:
        return compliance.action_mask(views if views is not None else self.views(), self.profile)

    @property
    def open(self) -> np.ndarray:
        return self.state.status == _OPEN

    # -------------------------------------------------------------------- the day

    def step(self, actions: np.ndarray, views: ViewBatch | None = None) -> DayResult:
        """Execute one day's actions (one row per slot; rows of closed slots are ignored)."""
        a = validate(actions)
        if len(a) != self.n:
            raise ValueError(f"expected {self.n} actions (one per slot), got {len(a)}")
        s, d = self.state, self.day
        t0 = d * MINUTES_PER_DAY
        views = views if views is not None else self.views()
        self._views = None
        s.clear_today()
        is_open = self.open
        open_idx = np.flatnonzero(is_open)
        self.debtor_days += len(open_idx)
        status_before = s.status.copy()

        # the morning: compliance, then the contacts go out (calls join the call centre's queues)
        contact = is_open & (a[:, 0] != _WAIT)
        blocked = np.zeros(self.n, dtype=bool)
        if contact.any():
            reasons = compliance.check(a, views, self.profile)
            blocked = contact & (reasons != 0)
            if blocked.any():
                bidx = np.flatnonzero(blocked)
                self.blocked_by_reason += np.bincount(reasons[bidx], minlength=len(compliance.Block))
                s.blocked_count[bidx] += 1
                self.ledger.add(t0, s.debtor_id[bidx], Event.BLOCKED, a[bidx, 0], 0.0, reasons[bidx])
            self._execute(np.flatnonzero(contact & ~blocked), a)
        self._dial_today()

        # the day's events, in time order: messages read, letters in the post, calls, promises and
        # instalments due; then the end of the day
        self.env.run(until=t0 + MINUTES_PER_DAY - 1)
        self._close_day(open_idx)
        self.env.run(until=t0 + MINUTES_PER_DAY)
        self.day += 1
        self._enter_today()

        comps = s.reward_today()
        reward = sum(comps.values())
        assert isinstance(reward, np.ndarray)
        s.net_value += reward
        st = s.status
        changed = (status_before == _OPEN) & (st != _OPEN)
        return DayResult(reward, comps, changed & (st != _SOLD), changed & (st == _SOLD), blocked)

    def _enter_today(self) -> None:
        s = self.state
        entering = (s.status == _WAITING) & (s.entry_day <= self.day)
        if entering.any():
            idx = np.flatnonzero(entering)
            s.status[idx] = _OPEN
            s.days_in[idx] = self.day - s.entry_day[idx]
            s.intensity[idx] = self._baseline_intensity(idx)

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

    # ------------------------------------------------------------ contacts go out

    def _execute(self, idx: np.ndarray, a: np.ndarray) -> None:
        if len(idx) == 0:
            return
        s, t = self.state, self.traits
        d, t0 = self.day, self.day * MINUTES_PER_DAY
        ch = a[idx, 0] - 1
        win, tone, offer = a[idx, 1], a[idx, 2], a[idx, 3]
        ordinal = np.minimum(s.contacts_total[idx], MAX_ORDINAL).astype(np.uint64)
        luck = (s.debtor_id[idx] << _ORDINAL_BITS) | ordinal
        s.contacts_today[idx, ch] += 1
        s.contacts_by_channel[idx, ch] += 1
        s.contacts_total[idx] += 1
        s.last_contact[idx] = d
        s.firm_contacts[idx] += (tone == _FIRM).astype(np.int16)
        self.funnel["sent"] += np.bincount(ch, minlength=N_CONTACT_CHANNELS)
        not_call = ch != _CALL
        self._charge(idx[not_call], self.prm.cost_eur[ch[not_call]])
        if self.ledger.enabled:
            cost = np.where(not_call, self.prm.cost_eur[ch], 0.0)
            self.ledger.add(t0, s.debtor_id[idx], Event.CONTACT, ch + 1, cost, (win * 4 + tone) * 4 + offer, ordinal)
        epochs = s.epoch[idx]
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
            cidx, cluck, cw = idx[calls], luck[calls], win[calls]
            p_answer = rules.p_notice(t.attention[cidx, _CALL], t.window_fit[cidx, cw], self.prm.window_sensitivity[_CALL])
            reach = t.deliverability[cidx, _CALL] * p_answer
            rpc = uniforms(self.key, cluck, CONTACT_DAY, _D_NOTICE, _CALL + 1) < reach
            cc = self.sc.call_centre
            handle = -np.where(rpc, cc.handle_time_min, cc.no_answer_time_min) * np.log1p(-uniforms(self.key, cluck, CONTACT_DAY, _D_HANDLE))
            for w in range(len(Window)):
                sel = cw == w
                if sel.any():
                    start_h, end_h = WINDOW_HOURS[w]
                    payload = (w, cidx[sel], epochs[calls][sel], rpc[sel], tone[calls][sel], offer[calls][sel], cluck[sel])
                    self.call_centre.dial(t0 + start_h * 60, t0 + end_h * 60, handle[sel], payload)

    def _charge(self, idx: np.ndarray, cost: np.ndarray | float) -> None:
        s = self.state
        s.cost_eur[idx] += cost
        s.contact_cost[idx] -= np.asarray(cost) * s.disc[idx]

    # ------------------------------------------------------------ SimPy processes

    def messaging_gateway(
        self, window: int, slots: np.ndarray, epochs: np.ndarray, ch: np.ndarray, tone: np.ndarray, offer: np.ndarray, luck: np.ndarray
    ) -> Generator[simpy.Event, Any, None]:
        """Electronic messages go out at the start of their window and are read (or not) there."""
        start_h = WINDOW_HOURS[window][0]
        yield self.env.timeout(max(0.0, self.day * MINUTES_PER_DAY + start_h * 60 + MESSAGE_READ_AFTER_MIN - self.env.now))
        ok = self._current(slots, epochs)
        self._arrive(slots[ok], ch[ok], np.full(int(ok.sum()), window), tone[ok], offer[ok], luck[ok])

    def postal_service(
        self, slots: np.ndarray, epochs: np.ndarray, tone: np.ndarray, offer: np.ndarray, luck: np.ndarray
    ) -> Generator[simpy.Event, Any, None]:
        """Letters arrive ``delay_days`` later, in the morning post."""
        yield self.env.timeout((self.day + self.letter_delay) * MINUTES_PER_DAY + LETTER_MINUTE - self.env.now)
        ok = self._current(slots, epochs)
        n = int(ok.sum())
        self._arrive(slots[ok], np.full(n, _LETTER), np.full(n, Window.MORNING), tone[ok], offer[ok], luck[ok])

    def _current(self, slots: np.ndarray, epochs: np.ndarray) -> np.ndarray:
        """Which of ``slots`` still hold the open debtor an event was scheduled for."""
        s = self.state
        return (s.epoch[slots] == epochs) & (s.status[slots] == _OPEN)

    def _dial_today(self) -> None:
        """Run the call centre through today; each window's outcome lands on the clock when its
        last agent is done (one SimPy event per window, not one per call)."""
        for payload, made, at in self.call_centre.advance((self.day + 1) * MINUTES_PER_DAY):
            due = self.env.timeout(at - self.env.now)
            due.callbacks.append(functools.partial(self._dialled, payload, made))

    def _dialled(self, payload: tuple[Any, ...], made: int, _event: simpy.Event | None = None) -> None:
        """A window's calls are over: the first ``made`` were made (and answered or not), the rest
        dropped. ``payload`` is what ``_execute`` dialled: window, slots, epochs, rpc, tone, offer, luck."""
        s = self.state
        window, slots, epochs, rpc, tone, offer, luck = payload
        now = self.env.now
        was_made = np.zeros(len(slots), dtype=bool)
        was_made[:made] = True
        ok = s.epoch[slots] == epochs
        sel = was_made & ok & (s.status[slots] == _OPEN)
        idx, rpc, tone, offer, luck = slots[sel], rpc[sel], tone[sel], offer[sel], luck[sel]
        if len(idx):
            s.calls_made[idx] += 1
            self._charge(idx, self.prm.cost_eur[_CALL])
            self.ledger.add(now, s.debtor_id[idx], Event.DELIVERED, Channel.CALL, self.prm.cost_eur[_CALL], 0, luck & MAX_ORDINAL)
            self.funnel["delivered"][_CALL] += len(idx)
            s.fatigue[idx] += self.prm.fatigue_weight[_CALL]
            r = idx[rpc]
            s.rpc[r] += 1
            s.last_conversation[r] = self.day
            self._charge(r, self.sc.call_centre.conversation_cost_eur)
            s.last_outcome[idx[~rpc]] = _IGNORED
            n = len(r)
            self._respond(r, np.full(n, _CALL), np.full(n, window), tone[rpc], offer[rpc], luck[rpc])
        dropped = ~was_made & ok
        drop = slots[dropped]
        s.calls_dropped[drop] += 1
        self.ledger.add(now, s.debtor_id[drop], Event.CALL_DROPPED, Channel.CALL, 0.0, 0, payload[-1][dropped] & MAX_ORDINAL)

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

    def promise_diary(self, slots: np.ndarray, serials: np.ndarray) -> None:
        """Promises due now are kept or broken."""
        s, b, now = self.state, self.b, self.env.now
        ok = (s.promise_serial[slots] == serials) & (s.status[slots] == _OPEN) & s.promise_active[slots]
        idx = slots[ok]
        if len(idx) == 0:
            return
        z = rules.promise_keep_logit(b, self._ability(idx), self.traits.willingness[idx], s.promise_kind[idx])
        kept = uniforms(self.key, s.debtor_id[idx], self.day, _D_KEEP) < rules.sigmoid(z)
        s.promise_active[idx] = False
        k = idx[kept]
        self.ledger.add(now, s.debtor_id[k], Event.PROMISE_KEPT)
        settling = s.promise_kind[k] == rules.SETTLEMENT_KIND
        st = k[settling]
        if len(st):
            self.ledger.add(now, s.debtor_id[st], Event.FORGIVEN, 0, transitions.settle(s, st))
            self._pay(st, s.promise_amount[st], PaymentKind.SETTLEMENT, clear_status=Status.SETTLED)
        p = k[~settling]
        self._pay(p, s.promise_amount[p], PaymentKind.PROMISE)
        gone = idx[~kept]
        transitions.broken(s, gone, s.promises_broken)
        self.ledger.add(now, s.debtor_id[gone], Event.PROMISE_BROKEN)

    def instalment_schedule(self, slots: np.ndarray, serials: np.ndarray) -> None:
        """Instalments due now are paid, or the plan breaks."""
        s, b, now = self.state, self.b, self.env.now
        ok = (s.plan_serial[slots] == serials) & (s.status[slots] == _OPEN) & s.plan_active[slots]
        idx = slots[ok]
        if len(idx) == 0:
            return
        z = rules.instalment_keep_logit(b, self._ability(idx), self.traits.willingness[idx])
        paid = uniforms(self.key, s.debtor_id[idx], self.day, _D_KEEP) < rules.sigmoid(z)
        p = idx[paid]
        last = s.plan_paid[p] + 1 >= s.plan_total[p]
        amount = np.where(last, s.outstanding[p], np.minimum(s.plan_amount[p], s.outstanding[p]))
        s.plan_paid[p] += 1
        self.ledger.add(now, s.debtor_id[p], Event.INSTALMENT_PAID, 0, amount)
        self._pay(p, amount, PaymentKind.INSTALMENT, clear_status=Status.PLAN_COMPLETED)
        going = p[s.status[p] == _OPEN]
        if len(going):
            self._schedule_instalment(going)
        gone = idx[~paid]
        s.plan_active[gone] = False
        transitions.broken(s, gone, s.plans_broken)
        self.ledger.add(now, s.debtor_id[gone], Event.PLAN_BROKEN)

    # ------------------------------------------------------------ the funnel of a contact

    def _arrive(self, idx: np.ndarray, ch: np.ndarray, win: np.ndarray, tone: np.ndarray, offer: np.ndarray, luck: np.ndarray) -> None:
        """A non-call contact reaches the debtor's address: delivered? noticed? then the response."""
        if len(idx) == 0:
            return
        s, t = self.state, self.traits
        now = self.env.now
        ids = s.debtor_id[idx]
        delivered = uniforms(self.key, luck, CONTACT_DAY, _D_DELIVER, 0) < t.deliverability[idx, ch]
        self.funnel["delivered"] += np.bincount(ch[delivered], minlength=N_CONTACT_CHANNELS)
        self.ledger.add(now, ids[delivered], Event.DELIVERED, ch[delivered] + 1, 0.0, 0, luck[delivered] & MAX_ORDINAL)
        idx, ch, win, tone, offer, luck = idx[delivered], ch[delivered], win[delivered], tone[delivered], offer[delivered], luck[delivered]
        # fatigue counts the contact being received: a debtor judges the fifth message of the week
        # with five messages of annoyance (the calibration of complaints and opt-outs assumes this)
        s.fatigue[idx] += self.prm.fatigue_weight[ch]
        p = rules.p_notice(t.attention[idx, ch], t.window_fit[idx, win], self.prm.window_sensitivity[ch])
        noticed = uniforms(self.key, luck, CONTACT_DAY, _D_NOTICE, 0) < p
        s.last_outcome[idx[~noticed]] = _IGNORED
        self._respond(idx[noticed], ch[noticed], win[noticed], tone[noticed], offer[noticed], luck[noticed])

    def _respond(self, idx: np.ndarray, ch: np.ndarray, win: np.ndarray, tone: np.ndarray, offer: np.ndarray, luck: np.ndarray) -> None:
        """A noticed contact: complaint or opt-out, else engagement and an outcome."""
        if len(idx) == 0:
            return
        s, t, b, rw = self.state, self.traits, self.b, self.sc.reward
        now = self.env.now
        ids = s.debtor_id[idx]
        self.funnel["noticed"] += np.bincount(ch, minlength=N_CONTACT_CHANNELS)
        if self.ledger.enabled:
            conversation = np.where(ch == _CALL, self.sc.call_centre.conversation_cost_eur, 0.0)
            self.ledger.add(now, ids, Event.NOTICED, ch + 1, conversation, 0, luck & MAX_ORDINAL)
        fat, distressed = s.fatigue[idx], t.distressed[idx]

        z = rules.complaint_logit(b, t.complaint_logit[idx], fat, tone == _FIRM, distressed, win == _LATE)
        complain = uniforms(self.key, luck, CONTACT_DAY, _D_COMPLAINT) < rules.sigmoid(z)
        opt = ~complain & (ch != _LETTER) & (uniforms(self.key, luck, CONTACT_DAY, _D_OPT_OUT) < rules.sigmoid(rules.opt_out_logit(b, fat)))
        if complain.any():
            c = idx[complain]
            s.complaints[c] += 1
            s.vulnerable[c] |= distressed[complain]
            s.last_outcome[c] = _COMPLAINED
            s.complaint_penalty[c] -= rw.complaint_penalty_eur * s.disc[c]
            self.ledger.add(now, ids[complain], Event.COMPLAINT, ch[complain] + 1, 0.0, 0, luck[complain] & MAX_ORDINAL)
        if opt.any():
            o = idx[opt]
            s.opted_out[o, ch[opt]] = True
            s.opt_outs[o] += 1
            s.last_outcome[o] = _OPTED_OUT
            s.opt_out_penalty[o] -= rw.opt_out_penalty_eur * s.disc[o]
            self.ledger.add(now, ids[opt], Event.OPT_OUT, ch[opt] + 1, 0.0, 0, luck[opt] & MAX_ORDINAL)
        rest = ~(complain | opt)
        idx, ch, tone, offer, ids, fat, distressed, luck = (x[rest] for x in (idx, ch, tone, offer, ids, fat, distressed, luck))
        if len(idx) == 0:
            return
        will = t.willingness[idx]
        dpd = t.dpd_at_entry[idx] + s.days_in[idx]
        z = rules.engage_logit(b, self.prm.engage_logit[ch], will, t.tone_effect[idx, tone], t.offer_effect[idx, offer], tone, distressed, fat, dpd)
        engaged = uniforms(self.key, luck, CONTACT_DAY, _D_ENGAGE) < rules.sigmoid(z)
        s.last_outcome[idx[~engaged]] = _IGNORED
        idx, ch, offer, ids, will, distressed, luck = (x[engaged] for x in (idx, ch, offer, ids, will, distressed, luck))
        if len(idx) == 0:
            return
        self.funnel["engaged"] += np.bincount(ch, minlength=N_CONTACT_CHANNELS)
        s.responses[idx] += 1
        s.last_response[idx] = self.day
        s.intensity[idx] += rules.contact_jump(b, will)
        disclose = distressed & (uniforms(self.key, luck, CONTACT_DAY, _D_DISCLOSE) < b.vulnerability_disclosure_prob)
        s.vulnerable[idx[disclose]] = True

        p = rules.outcome_probabilities(self.prm.outcome_coef, self._ability(idx), will, s.outstanding[idx], offer, t.offer_effect[idx])
        outcome = rules.draw_outcome(p, uniforms(self.key, luck, CONTACT_DAY, _D_OUTCOME))
        self.ledger.add(now, ids, Event.ENGAGED, ch + 1, 0.0, outcome, luck & MAX_ORDINAL)
        self._outcomes(idx, outcome, ch, luck)

    def _outcomes(self, idx: np.ndarray, outcome: np.ndarray, ch: np.ndarray, luck: np.ndarray) -> None:
        """What the engaged debtors do: pay, promise, take a plan, a settlement or a deferral, or nothing."""
        s, b = self.state, self.b
        owed = s.outstanding[idx]
        contact = luck & MAX_ORDINAL
        sel = outcome == Outcome.PAY_FULL
        self._pay(idx[sel], owed[sel], PaymentKind.CONTACT, ch[sel] + 1, contact[sel])
        sel = outcome == Outcome.PAY_PART
        if sel.any():
            share = rules.part_payment_share(b, uniforms(self.key, luck[sel], CONTACT_DAY, _D_AMOUNT))
            self._pay(idx[sel], owed[sel] * share, PaymentKind.CONTACT, ch[sel] + 1, contact[sel])
        sel = outcome == Outcome.PROMISE
        if sel.any():
            days = rules.promise_days(b, uniforms(self.key, luck[sel], CONTACT_DAY, _D_PROMISE_DAYS))
            self._promise(idx[sel], owed[sel], days, rules.PROMISE_KIND, contact[sel])
        sel = outcome == Outcome.SETTLEMENT
        if sel.any():
            days = np.full(int(sel.sum()), b.settlement_pay_days)
            self._promise(idx[sel], rules.settlement_amount(b, owed[sel]), days, rules.SETTLEMENT_KIND, contact[sel])
        sel = outcome == Outcome.DEFERRAL
        if sel.any():
            self._promise(idx[sel], owed[sel], np.full(int(sel.sum()), b.deferral_days), rules.DEFERRAL_KIND, contact[sel])
        sel = outcome == Outcome.PLAN
        if sel.any():
            p = idx[sel]
            transitions.plan(s, b, p)
            self.ledger.add(self.env.now, s.debtor_id[p], Event.PLAN, 0, s.plan_amount[p], b.plan_instalments, contact[sel])
            self._schedule_instalment(p)
        s.last_outcome[idx[outcome == Outcome.NOTHING]] = _IGNORED

    # ------------------------------------------------------- money and commitments

    def _pay(
        self,
        idx: np.ndarray,
        amount: np.ndarray,
        kind: PaymentKind,
        ch: np.ndarray | int = 0,
        contact: np.ndarray | int = -1,
        clear_status: Status = Status.PAID,
    ) -> None:
        """Slots ``idx`` pay ``amount`` (``kind``: what the payment is for; ``ch`` and ``contact``: the
        contact it was made on, if any)."""
        if len(idx) == 0:
            return
        s = self.state
        paid = transitions.pay(s, self.b, idx, amount, self.day)
        h = self.horizon + 1
        self.payers_by_day += np.bincount(s.days_in[paid.first], minlength=h)[:h]
        self.recovery_by_day += np.bincount(s.days_in[idx], weights=paid.amount, minlength=h)[:h]
        self.ledger.add(self.env.now, s.debtor_id[idx], Event.PAYMENT, ch, paid.amount, int(kind), contact)
        if len(paid.cleared):
            self._resolve(paid.cleared, clear_status)

    def _resolve(self, idx: np.ndarray, status: Status) -> None:
        s = self.state
        self.ledger.add(self.env.now, s.debtor_id[idx], Event.RESOLVED, 0, 0.0, int(status))
        churn_u = uniforms(self.key, s.debtor_id[idx], self.day, _D_CHURN)
        churned = transitions.resolve(s, self.b, idx, status, self.traits, churn_u, self.sc.reward.retention_value_eur)
        self.ledger.add(self.env.now, s.debtor_id[churned], Event.CHURNED)

    def _promise(self, idx: np.ndarray, amount: np.ndarray, days: np.ndarray, kind: int, contact: np.ndarray | int = -1) -> None:
        s = self.state
        transitions.promise(s, idx, amount, days, kind, self.day)
        self.ledger.add(self.env.now, s.debtor_id[idx], Event.PROMISE, 0, amount, kind, contact)
        for due in np.unique(days):
            p = idx[days == due]
            self._at((self.day + int(due)) * MINUTES_PER_DAY + PROMISE_MINUTE, p, s.promise_serial[p].copy(), self.promise_diary)

    def _schedule_instalment(self, idx: np.ndarray) -> None:
        at = (self.day + self.b.plan_interval_days) * MINUTES_PER_DAY + INSTALMENT_MINUTE
        self._at(at, idx, self.state.plan_serial[idx].copy(), self.instalment_schedule)

    def _ability(self, idx: np.ndarray) -> np.ndarray:
        t = self.traits
        return rules.effective_ability(self.b, t.ability[idx], t.ability_growth[idx], self.state.days_in[idx], t.payday[idx], self.day)

    # ------------------------------------------------------------ end of day

    def _baseline_intensity(self, idx: np.ndarray) -> np.ndarray:
        t = self.traits
        return rules.baseline_intensity(self.b, t.self_cure[idx], t.dpd_at_entry[idx] + self.state.days_in[idx])

    def _close_day(self, was_open: np.ndarray) -> None:
        """Unprompted repayments, then the transition to tomorrow (:func:`sim.state.close_day`)."""
        s = self.state
        idx = was_open[s.status[was_open] == _OPEN]
        if len(idx):
            lam = rules.decayed_intensity(self.prm.intensity_decay, self._baseline_intensity(idx), s.intensity[idx])
            s.intensity[idx] = lam
            ids = s.debtor_id[idx]
            pays = uniforms(self.key, ids, self.day, _D_SPONTANEOUS) < rules.p_spontaneous(lam)
            if pays.any():
                p = idx[pays]
                u = uniforms(self.key, ids[pays], self.day, _D_SPONTANEOUS_AMOUNT)
                share = rules.spontaneous_share(self.b.spontaneous_payment, u, self._ability(p))
                self._pay(p, s.outstanding[p] * share, PaymentKind.UNPROMPTED)
        sold = transitions.close_day(s, self.day, self._delta, self.horizon, was_open, self.prm.fatigue_decay, self.sc.debt_sale_price)
        if len(sold):
            self.ledger.add(self.env.now, s.debtor_id[sold], Event.SOLD, 0, s.sold[sold])

    # ------------------------------------------------------------ invariants

    def money_gap(self) -> np.ndarray:
        """Per-slot ``collected + forgiven + sold + outstanding - balance`` (should be ~0)."""
        return self.state.money_gap()

    @property
    def finished(self) -> bool:
        """Portfolio mode: every debtor has entered and closed."""
        st = self.state.status
        return bool(np.all((st != _OPEN) & (st != _WAITING)))


_STATE_NAMES = frozenset(name for name, _ in DebtorState.columns())
