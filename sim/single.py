"""One debtor in plain Python: the engine behind ``collectrl/Debtor-v1``.

:class:`sim.world.World` is built for batches: a day costs ~100 numpy calls and a SimPy run
whatever the number of debtors, so a world of one debtor spends ~0.5 ms a day on overhead. This
engine runs the world for one debtor with Python numbers and a small heap of the day's events
(a message read at its window, a letter in the morning post, a call's outcome, a promise or an
instalment falling due), which costs tens of microseconds a day.

The two engines differ in how they schedule, never in a rule: every formula is a call of the
rulebook (:mod:`sim.behaviour`), the same function the world calls on its arrays, here on Python
floats; the debtor's state has the columns of :class:`sim.state.DebtorState`, reset from the same
declaration (only the 7-day contact ring is kept here as the channel contacted on each day).
``tests/test_single.py`` runs both engines on the same seeds and random actions and requires the
same views, masks, rewards, episode ends and every column of the state, day by day (they agree to
the last bit on the machines we run; the test allows 1e-12 for an ulp of ``exp`` on other CPUs).

The call centre of a one-debtor world gets one call a day at most, so its queueing rules reduce to
"the call starts at the first moment of its window at which an agent is on shift and not still on
an earlier call" (:func:`sim.callcentre.lone_call_start`). Scaled to one debtor, the presets' call
centre is one agent on the largest shift, so calls in windows outside it are not made (they are
counted as dropped, as in the world).
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np

from policies import compliance
from policies.actions import ACTION_COLUMNS
from policies.hashing import GOLDEN, MASK64, mix, to_unit
from policies.hashing import unit_scalar as _unit
from policies.schema import ACTION_DIMS, MINUTES_PER_DAY, MONTH_DAYS, NEVER_DAYS, WINDOW_HOURS, Channel, LastOutcome, Tone, Window
from sim import behaviour as rules
from sim.callcentre import lone_call_start
from sim.config import Scenario
from sim.population import BLOCK, BlockCache
from sim.rng import Draw, Stream, draw_keys, stream_key
from sim.state import CLEARED_BELOW_EUR, REWARD_COMPONENTS, DebtorState, Status
from sim.world import (
    CONTACT_DAY,
    INSTALMENT_MINUTE,
    LETTER_MINUTE,
    MAX_ORDINAL,
    MESSAGE_READ_AFTER_MIN,
    ORDINAL_BITS,
    PROMISE_MINUTE,
    on_duty_by_hour,
)

__all__ = ["OneDebtor", "StepResult"]

_GOLDEN = int(GOLDEN)
_DAY_CHUNK = 1024  # days whose draw keys are made at once (for all debtors)
_D_SPONTANEOUS = int(Draw.SPONTANEOUS)
# the draws nearly every day or contact makes are made per debtor at once, with numpy: these
# contact draws for the first _ORDINALS contacts (more when needed), the spontaneous-payment
# draw for every day up to the horizon
_CONTACT_DRAWS = (Draw.DELIVER, Draw.NOTICE, Draw.COMPLAINT, Draw.OPT_OUT, Draw.ENGAGE)
_DELIVER, _NOTICE, _COMPLAINT, _OPT_OUT, _ENGAGE = range(len(_CONTACT_DRAWS))
_ORDINALS = 64

_LETTER, _CALL = rules.LETTER, rules.CALL
_WAIT, _FIRM, _LATE = int(Channel.WAIT), int(Tone.FIRM), int(Window.LATE)
_OPEN, _SOLD = int(Status.OPEN), int(Status.SOLD)
_PAID, _SETTLED, _PLAN_COMPLETED = int(Status.PAID), int(Status.SETTLED), int(Status.PLAN_COMPLETED)
_LO_IGNORED, _LO_PAID, _LO_PROMISED, _LO_PLAN = int(LastOutcome.IGNORED), int(LastOutcome.PAID), int(LastOutcome.PROMISED), int(LastOutcome.PLAN)
_LO_SETTLEMENT, _LO_COMPLAINED, _LO_OPTED_OUT, _LO_BROKE = (
    int(LastOutcome.SETTLEMENT),
    int(LastOutcome.COMPLAINED),
    int(LastOutcome.OPTED_OUT),
    int(LastOutcome.BROKE_PROMISE),
)
_PROMISE_OUTCOME = (_LO_PROMISED, _LO_SETTLEMENT, _LO_PROMISED)  # by kind: promise, settlement, deferral
# the day's events, in the heap as (minute, sequence, kind, payload)
_ARRIVE, _CALL_DONE, _PROMISE_DUE, _INSTALMENT_DUE = 0, 1, 2, 3
# the state's columns, reset from their declaration when a debtor starts: (name, initial value,
# per-channel); the ring of the last 7 days is kept in this engine's own form (the channel
# contacted on each day), and the epoch and serials are never reset
_RESET = tuple((name, c.initial, c.shape == (6,)) for name, c in DebtorState.columns() if c.reset and len(c.shape) <= 1)
_KEPT = tuple(name for name, c in DebtorState.columns() if not c.reset)


class StepResult:
    """One day of the debtor: the reward, its components (EUR, discounted) and how the day ended."""

    __slots__ = ("blocked", "components", "reward", "terminated", "truncated")

    def __init__(self, reward: float, components: dict[str, float], terminated: bool, truncated: bool, blocked: bool) -> None:
        self.reward, self.components = reward, components
        self.terminated, self.truncated, self.blocked = terminated, truncated, blocked


class OneDebtor:
    """A stream of debtors, one at a time, on the clock of an episodic ``World`` of one slot.

    ``OneDebtor(sc, seed)`` starts debtor 0 on day 0, as ``World(sc, 1, seed, mode="episodic")``
    does; :meth:`step` runs one day; :meth:`next_debtor` starts the next debtor today (the world's
    ``refill``). :meth:`row` is the debtor's observable view as plain values (``ViewBatch.row``),
    :meth:`snapshot` its state as the world's columns.
    """

    # the state's columns (sim.state.DebtorState, set from its declaration in next_debtor), as
    # Python numbers and lists of 6 per channel; typed here for the type checker
    debtor_id: int
    epoch: int
    status: int
    entry_day: int
    days_in: int
    balance: float
    outstanding: float
    collected: float
    forgiven: float
    sold: float
    disc: float
    on_file: list[bool]
    opted_out: list[bool]
    contacts_7d: list[int]
    contacts_by_channel: list[int]
    contacts_total: int
    last_contact: int
    last_response: int
    last_conversation: int
    responses: int
    promise_active: bool
    promise_due: int
    promise_amount: float
    promise_kind: int
    promise_serial: int
    promises_broken: int
    plan_active: bool
    plan_paid: int
    plan_total: int
    plan_amount: float
    plan_serial: int
    plans_broken: int
    complaints: int
    vulnerable: bool
    last_outcome: int
    firm_contacts: int
    fatigue: float
    intensity: float
    cost_eur: float
    net_value: float
    first_payment_day: int
    rpc: int
    calls_made: int
    calls_dropped: int
    blocked_count: int
    opt_outs: int
    churned: bool
    resolved_day: int
    cash: float
    contact_cost: float
    complaint_penalty: float
    opt_out_penalty: float
    churn_penalty: float
    terminal_value: float

    def __init__(self, scenario: Scenario, seed: int = 0, horizon_days: int | None = None) -> None:
        sc = scenario
        self.sc, self.b, self.seed = sc, sc.behaviour, int(seed)
        self.horizon = int(horizon_days or sc.horizon_days)
        self.profile = compliance.get_profile(sc.compliance_profile)
        self.key = stream_key(self.seed, Stream.BEHAVIOUR)
        self._blocks = BlockCache(sc, self.seed)
        self._constants()
        self.day = 0
        self.now = 0.0
        self._next_id = 0
        self._events: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._calls_going: list[float] = []  # ends of the calls made that may still be going on
        for name in _KEPT:  # never reset: events of an earlier debtor's promises stay stale
            setattr(self, name, 0)
        self._row: dict[str, Any] | None = None
        self._mask: list[bool] | None = None
        self.next_debtor()

    def _constants(self) -> None:
        sc = self.sc
        prm = rules.Params.of(sc)
        self.cost = prm.cost_eur.tolist()
        self.engage_base = prm.engage_logit.tolist()
        self.fatigue_weight = prm.fatigue_weight.tolist()
        self.window_sensitivity = prm.window_sensitivity.tolist()
        self.outcome_coef = prm.outcome_coef.tolist()
        self.fatigue_decay = prm.fatigue_decay
        self.intensity_decay = prm.intensity_decay
        self.delta = sc.daily_discount
        self.letter_delay = sc.channels.letter.delay_days
        duty = on_duty_by_hour(sc, 1)
        self._on_duty = duty
        self._call_start = [lone_call_start(duty, s * 60, e * 60) for s, e in WINDOW_HOURS]  # when no call is still going
        # the keys of the contact draws (keyed by contact, not day) and of the day-keyed draws
        ck = lambda purpose, channel=0: int(draw_keys(self.key, np.array([CONTACT_DAY]), purpose, channel)[0])
        self._k_rpc = ck(Draw.NOTICE, _CALL + 1)
        self._k_handle, self._k_disclose, self._k_outcome = ck(Draw.HANDLE), ck(Draw.DISCLOSE), ck(Draw.OUTCOME)
        self._k_amount, self._k_promise_days = ck(Draw.AMOUNT), ck(Draw.PROMISE_DAYS)
        self._day_keys: dict[int, list[int]] = {}
        self._day_keys_from = 0
        self._contact_keys = np.array([ck(p) for p in _CONTACT_DRAWS], dtype=np.uint64)[:, None]
        self._cd: list[list[float]] = []  # the debtor's contact draws, [_DELIVER..][ordinal]
        self._cd_n = 0
        self._spont: list[float] = []  # the debtor's spontaneous draws, from day _spont_from on
        self._spont_from = 0

    # ------------------------------------------------------------ randomness

    def _u_day(self, purpose: int) -> float:
        """The debtor's uniform for ``purpose`` today (``sim.rng.uniforms`` of one id); the keys of
        the day-keyed purposes are made for ``_DAY_CHUNK`` days at a time."""
        i = self.day - self._day_keys_from
        if not 0 <= i < _DAY_CHUNK:
            self._day_keys.clear()
            self._day_keys_from, i = self.day, 0
        keys = self._day_keys.get(purpose)
        if keys is None:
            days = np.arange(self._day_keys_from, self._day_keys_from + _DAY_CHUNK)
            keys = self._day_keys[purpose] = draw_keys(self.key, days, purpose).tolist()
        return _unit(self.debtor_id * _GOLDEN + keys[i])

    def _contact_draws(self, ordinal: int) -> list[list[float]]:
        """The debtor's contact draws for ordinals up to at least ``ordinal`` (``sim.rng.uniforms``
        keyed by (debtor, ordinal), as the world draws them)."""
        n = min(max(_ORDINALS, 2 * self._cd_n, ordinal + 1), MAX_ORDINAL + 1)
        lucks = np.arange(n, dtype=np.uint64) | np.uint64(self.debtor_id << ORDINAL_BITS)
        self._cd = to_unit(mix(lucks[None, :] * GOLDEN + self._contact_keys)).tolist()
        self._cd_n = n
        return self._cd

    def _spontaneous_draws(self) -> list[float]:
        """The debtor's spontaneous-payment draw of each day from today to its horizon."""
        day = self.day
        keys = draw_keys(self.key, np.arange(day, day + self.horizon), _D_SPONTANEOUS)
        self._spont_from = day
        self._spont = to_unit(mix(keys + np.uint64((self.debtor_id * _GOLDEN) & MASK64))).tolist()
        return self._spont

    # ------------------------------------------------------------ debtors

    def next_debtor(self) -> None:
        """Start the next debtor of the seeded population today."""
        i = self._next_id
        self._next_id += 1
        blk = self._blocks.get(i // BLOCK)
        j = i % BLOCK
        self._cd, self._cd_n, self._spont = [], 0, []
        # latent traits
        self.ability = float(blk.ability[j])
        self.willingness = float(blk.willingness[j])
        self.distressed = bool(blk.distressed[j])
        self.deliverability = blk.deliverability[j].tolist()
        self.attention = blk.attention[j].tolist()
        self.window_fit = blk.window_fit[j].tolist()
        self.tone_effect = blk.tone_effect[j].tolist()
        self.offer_effect = blk.offer_effect[j].tolist()
        self.self_cure = float(blk.self_cure[j])
        self.ability_growth = float(blk.ability_growth[j])
        self.complaint_base = float(blk.complaint_logit[j])
        self.churn_base = float(blk.churn_logit[j])
        self.payday = int(blk.payday[j])
        self.dpd_at_entry = int(blk.dpd_at_entry[j])
        self.product = int(blk.product[j])
        self.behaviour_score = float(blk.behaviour_score[j])
        self.app_user = bool(blk.app_user[j])
        # the state, from its declaration
        for name, initial, per_channel in _RESET:
            setattr(self, name, [initial] * 6 if per_channel else initial)
        self.epoch += 1
        self.debtor_id = i
        self.status = _OPEN
        self.entry_day = self.day
        self.balance = self.outstanding = float(blk.balance_eur[j])
        self.on_file = blk.on_file[j].tolist()
        self.ring = [-1] * 7  # the channel contacted on each of the last 7 days (-1: none)
        self.today_channel = -1
        self.intensity = self._baseline_intensity()
        self._row = self._mask = None
        # the debtor's rules that depend on nothing else: the chance to notice each channel in
        # each window, to answer a call, and the intensity an engaged contact adds
        b = self.b
        habits = zip(self.attention, self.window_sensitivity, strict=True)
        self.p_notice = [[rules.p_notice(att, fit, ws) for fit in self.window_fit] for att, ws in habits]
        self.call_reach = [self.deliverability[_CALL] * p for p in self.p_notice[_CALL]]
        self.jump_engaged = rules.contact_jump(b, self.willingness)

    def snapshot(self) -> dict[str, Any]:
        """The debtor's state as the world's columns (``DebtorState.snapshot`` of one slot): numbers,
        lists of 6 per channel, the ring as 7 lists of 6 contact counts."""
        out = {name: getattr(self, name) for name, _ in DebtorState.columns() if name not in ("ring", "contacts_today")}
        out["ring"] = [[int(ch == c) for c in range(6)] for ch in self.ring]
        out["contacts_today"] = [int(self.today_channel == c) for c in range(6)]
        return out

    # ------------------------------------------------------------ the view

    def mask(self) -> list[bool]:
        """Today's 19 action-mask booleans (``policies.compliance.action_mask_row`` of :meth:`row`);
        kept for the day, so read it, do not change it."""
        m = self._mask
        if m is None:
            m = self._mask = compliance.action_mask_row(self.row(), self.profile)
        return m

    def row(self) -> dict[str, Any]:
        """The debtor's observable view today, keyed by ``ViewBatch`` field (plain values, per-channel
        fields as lists of 6, like ``ViewBatch.row``; ``sim.state.views`` for the world). Kept for
        the day: today's action is checked against it, so read it, do not change it (its lists are
        copies of the engine's state)."""
        r = self._row
        if r is None:
            d = self.day
            since_contact, since_response, since_conversation = d - self.last_contact, d - self.last_response, d - self.last_conversation
            r = self._row = {
                "balance_eur": self.balance,
                "outstanding_eur": self.outstanding,
                "dpd": self.dpd_at_entry + self.days_in,
                "days_in_collections": self.days_in,
                "days_left": self.horizon - self.days_in,
                "product": self.product,
                "behaviour_score": self.behaviour_score,
                "app_user": self.app_user,
                "on_file": self.on_file.copy(),
                "opted_out": self.opted_out.copy(),
                "contacts_7d": self.contacts_7d.copy(),
                "contacts_total": self.contacts_total,
                "days_since_contact": since_contact if since_contact < NEVER_DAYS else NEVER_DAYS,
                "days_since_response": since_response if since_response < NEVER_DAYS else NEVER_DAYS,
                "days_since_conversation": since_conversation if since_conversation < NEVER_DAYS else NEVER_DAYS,
                "responses_total": self.responses,
                "promise_active": self.promise_active,
                "promise_due_in_days": (self.promise_due - d if self.promise_due > d else 0) if self.promise_active else 0,
                "promises_broken": self.promises_broken,
                "plan_active": self.plan_active,
                "plan_instalments_paid": self.plan_paid,
                "plan_instalments_total": self.plan_total,
                "plans_broken": self.plans_broken,
                "complaints": self.complaints,
                "vulnerable": self.vulnerable,
                "last_outcome": self.last_outcome,
                "day_of_week": d % 7,
                "day_of_month": d % MONTH_DAYS + 1,
            }
        return r

    # ------------------------------------------------------------ the day

    def step(self, action: Any) -> StepResult:
        """One day: today's action (channel, window, tone, offer), then the day's events."""
        if self.status != _OPEN:
            raise RuntimeError("this debtor's episode is over; start the next debtor first")
        a = _validate(action)
        day = self.day
        t0 = day * MINUTES_PER_DAY
        self.now = t0
        self.cash = self.contact_cost = self.complaint_penalty = self.opt_out_penalty = self.churn_penalty = self.terminal_value = 0.0
        blocked = False
        if a[0] != _WAIT:
            # checked against the view the action was chosen on
            if compliance.check_row(a, self._row or self.row(), self.profile):
                blocked = True
                self.blocked_count += 1
            else:
                self._execute(a, t0)
        self._row = self._mask = None
        ev = self._events
        if ev and ev[0][0] < t0 + MINUTES_PER_DAY - 1:
            self._run(t0 + MINUTES_PER_DAY - 1)
        self._close_day()
        if ev and ev[0][0] < t0 + MINUTES_PER_DAY:
            self._run(t0 + MINUTES_PER_DAY)
        self.day = day + 1
        cash, cost, complaint, opt_out, churn, terminal = (
            self.cash,
            self.contact_cost,
            self.complaint_penalty,
            self.opt_out_penalty,
            self.churn_penalty,
            self.terminal_value,
        )
        reward = cash + cost + complaint + opt_out + churn + terminal  # the world's sum() over REWARD_COMPONENTS, in this order
        self.net_value += reward
        st = self.status
        return StepResult(
            reward,
            {
                "cash": cash,
                "contact_cost": cost,
                "complaint_penalty": complaint,
                "opt_out_penalty": opt_out,
                "churn_penalty": churn,
                "terminal_value": terminal,
            },
            st != _OPEN and st != _SOLD,
            st == _SOLD,
            blocked,
        )

    def _push(self, at: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (max(at, self.now), self._seq, kind, payload))

    def _run(self, until: float) -> None:
        ev = self._events
        while ev and ev[0][0] < until:
            at, _, kind, p = heapq.heappop(ev)
            self.now = at
            if kind == _ARRIVE:
                if p[0] == self.epoch and self.status == _OPEN:
                    self._arrive(p)
            elif kind == _CALL_DONE:
                if p[0] == self.epoch:
                    self._call_outcome(p)
            elif kind == _PROMISE_DUE:
                if p == self.promise_serial and self.status == _OPEN and self.promise_active:
                    self._promise_due()
            elif p == self.plan_serial and self.status == _OPEN and self.plan_active:
                self._instalment_due()

    def _execute(self, a: tuple[int, int, int, int], t0: int) -> None:
        ch, win, tone, offer = a[0] - 1, a[1], a[2], a[3]
        n = self.contacts_total
        luck = (self.debtor_id << ORDINAL_BITS) | (n if n < MAX_ORDINAL else MAX_ORDINAL)
        self.today_channel = ch
        self.contacts_by_channel[ch] += 1
        self.contacts_total += 1
        self.last_contact = self.day
        if tone == _FIRM:
            self.firm_contacts += 1
        if ch == _CALL:
            self._dial(win, tone, offer, luck, t0)
            return
        self._charge(self.cost[ch])
        if ch == _LETTER:
            self._push((self.day + self.letter_delay) * MINUTES_PER_DAY + LETTER_MINUTE, _ARRIVE, (self.epoch, ch, 0, tone, offer, luck))
            return
        at = t0 + WINDOW_HOURS[win][0] * 60 + MESSAGE_READ_AFTER_MIN
        ev = self._events
        if ev and ev[0][0] <= at:
            self._push(at, _ARRIVE, (self.epoch, ch, win, tone, offer, luck))
        else:  # the next event of the day whatever else happens: handled now, as the heap would
            self.now = at
            self._arrive((self.epoch, ch, win, tone, offer, luck))

    def _dial(self, win: int, tone: int, offer: int, luck: int, t0: int) -> None:
        rpc = _unit(luck * _GOLDEN + self._k_rpc) < self.call_reach[win]
        cc = self.sc.call_centre
        mean = cc.handle_time_min if rpc else cc.no_answer_time_min
        handle = -mean * math.log1p(-_unit(luck * _GOLDEN + self._k_handle))
        s, e = WINDOW_HOURS[win]
        going = self._calls_going
        if going:
            going = self._calls_going = [end for end in going if end > t0 + s * 60]
        if going:  # earlier calls may still hold agents
            start = lone_call_start(self._on_duty, t0 + s * 60, t0 + e * 60, going)
        else:
            start = self._call_start[win]
            start = None if start is None else t0 + start
        if start is None:
            self.calls_dropped += 1  # no agent on shift and free in the window: the call is not made
            return
        end = start + handle
        going.append(end)
        self._push(end, _CALL_DONE, (self.epoch, rpc, win, tone, offer, luck))

    def _charge(self, cost: float) -> None:
        self.cost_eur += cost
        self.contact_cost -= cost * self.disc

    def _arrive(self, p: tuple[int, int, int, int, int, int]) -> None:
        """A message or letter reaches the debtor's address: delivered? noticed? then the response."""
        _, ch, win, tone, offer, luck = p
        o = luck & MAX_ORDINAL
        cd = self._cd if o < self._cd_n else self._contact_draws(o)
        if not cd[_DELIVER][o] < self.deliverability[ch]:
            return
        self.fatigue += self.fatigue_weight[ch]
        if cd[_NOTICE][o] < self.p_notice[ch][win]:
            self._respond(ch, win, tone, offer, luck)
        else:
            self.last_outcome = _LO_IGNORED

    def _call_outcome(self, p: tuple[int, bool, int, int, int, int]) -> None:
        _, rpc, win, tone, offer, luck = p
        if self.status != _OPEN:  # the debtor resolved while the call was queued: not made, not dropped
            return
        self.calls_made += 1
        self._charge(self.cost[_CALL])
        self.fatigue += self.fatigue_weight[_CALL]
        if rpc:
            self.rpc += 1
            self.last_conversation = self.day
            self._charge(self.sc.call_centre.conversation_cost_eur)
            self._respond(_CALL, win, tone, offer, luck)
        else:
            self.last_outcome = _LO_IGNORED

    def _respond(self, ch: int, win: int, tone: int, offer: int, luck: int) -> None:
        """A noticed contact: complaint or opt-out, else engagement and an outcome."""
        b, rw = self.b, self.sc.reward
        fat, distressed = self.fatigue, self.distressed
        o = luck & MAX_ORDINAL
        cd = self._cd if o < self._cd_n else self._contact_draws(o)
        if cd[_COMPLAINT][o] < rules.sigmoid(rules.complaint_logit(b, self.complaint_base, fat, tone == _FIRM, distressed, win == _LATE)):
            self.complaints += 1
            self.vulnerable = self.vulnerable or distressed
            self.last_outcome = _LO_COMPLAINED
            self.complaint_penalty -= rw.complaint_penalty_eur * self.disc
            return
        if ch != _LETTER and cd[_OPT_OUT][o] < rules.sigmoid(rules.opt_out_logit(b, fat)):
            self.opted_out[ch] = True
            self.opt_outs += 1
            self.last_outcome = _LO_OPTED_OUT
            self.opt_out_penalty -= rw.opt_out_penalty_eur * self.disc
            return
        dpd = self.dpd_at_entry + self.days_in
        z = rules.engage_logit(
            b, self.engage_base[ch], self.willingness, self.tone_effect[tone], self.offer_effect[offer], tone, distressed, fat, dpd
        )
        if not cd[_ENGAGE][o] < rules.sigmoid(z):
            self.last_outcome = _LO_IGNORED
            return
        self.responses += 1
        self.last_response = self.day
        self.intensity += self.jump_engaged
        if distressed and _unit(luck * _GOLDEN + self._k_disclose) < b.vulnerability_disclosure_prob:
            self.vulnerable = True
        p = rules.outcome_probabilities(self.outcome_coef, self._ability(), self.willingness, self.outstanding, offer, self.offer_effect)
        self._outcome(rules.draw_outcome(p, _unit(luck * _GOLDEN + self._k_outcome)), luck)

    def _outcome(self, outcome: int, luck: int) -> None:
        b = self.b
        owed = self.outstanding
        if outcome == rules.PAY_FULL:
            self._pay(owed)
        elif outcome == rules.PAY_PART:
            self._pay(owed * rules.part_payment_share(b, _unit(luck * _GOLDEN + self._k_amount)))
        elif outcome == rules.PROMISE:
            self._promise(owed, rules.promise_days(b, _unit(luck * _GOLDEN + self._k_promise_days)), rules.PROMISE_KIND)
        elif outcome == rules.PLAN:
            self._plan()
        elif outcome == rules.SETTLEMENT:
            self._promise(rules.settlement_amount(b, owed), b.settlement_pay_days, rules.SETTLEMENT_KIND)
        elif outcome == rules.DEFERRAL:
            self._promise(owed, b.deferral_days, rules.DEFERRAL_KIND)
        else:
            self.last_outcome = _LO_IGNORED

    # ------------------------------------------------------------ money and commitments (sim.state's transitions)

    def _pay(self, amount: float, clear_status: int = _PAID) -> None:
        amount = min(amount, self.outstanding)
        self.collected += amount
        self.outstanding -= amount
        self.cash += amount * self.disc
        if self.first_payment_day < 0:
            self.first_payment_day = self.days_in
        self.intensity += rules.payment_jump(self.b, amount, self.balance)
        self.last_outcome = _LO_PAID
        self.last_response = self.day
        if self.outstanding < CLEARED_BELOW_EUR:
            self.collected += self.outstanding  # sub-cent rounding
            self.outstanding = 0.0
            self._resolve(clear_status)

    def _resolve(self, status: int) -> None:
        self.status = status
        self.resolved_day = self.days_in
        self.promise_active = self.plan_active = False
        z = rules.churn_logit(self.b, self.churn_base, self.firm_contacts, self.complaints, self.contacts_total)
        if self._u_day(Draw.CHURN) < rules.sigmoid(z):
            self.churned = True
            self.churn_penalty -= self.sc.reward.retention_value_eur * self.disc

    def _promise(self, amount: float, days: int, kind: int) -> None:
        self.promise_active = True
        self.promise_due = self.day + days
        self.promise_amount = amount
        self.promise_kind = kind
        self.promise_serial += 1
        self.last_outcome = _PROMISE_OUTCOME[kind]
        self._push((self.day + days) * MINUTES_PER_DAY + PROMISE_MINUTE, _PROMISE_DUE, self.promise_serial)

    def _plan(self) -> None:
        b = self.b
        self.plan_active = True
        self.plan_paid = 0
        self.plan_total = b.plan_instalments
        self.plan_amount = rules.plan_instalment(b, self.outstanding)
        self.plan_serial += 1
        self.promise_active = False
        self.last_outcome = _LO_PLAN
        self._schedule_instalment()

    def _schedule_instalment(self) -> None:
        at = (self.day + self.b.plan_interval_days) * MINUTES_PER_DAY + INSTALMENT_MINUTE
        self._push(at, _INSTALMENT_DUE, self.plan_serial)

    def _promise_due(self) -> None:
        kind = self.promise_kind
        kept = self._u_day(Draw.KEEP) < rules.sigmoid(rules.promise_keep_logit(self.b, self._ability(), self.willingness, kind))
        self.promise_active = False
        if not kept:
            self.promises_broken += 1
            self.last_outcome = _LO_BROKE
        elif kind == rules.SETTLEMENT_KIND:  # the discount is forgiven, the rest paid
            forgive = self.outstanding - min(self.promise_amount, self.outstanding)
            self.forgiven += forgive
            self.outstanding -= forgive
            self._pay(self.promise_amount, _SETTLED)
        else:
            self._pay(self.promise_amount)

    def _instalment_due(self) -> None:
        if self._u_day(Draw.KEEP) < rules.sigmoid(rules.instalment_keep_logit(self.b, self._ability(), self.willingness)):
            last = self.plan_paid + 1 >= self.plan_total
            amount = self.outstanding if last else min(self.plan_amount, self.outstanding)
            self.plan_paid += 1
            self._pay(amount, _PLAN_COMPLETED)
            if self.status == _OPEN:
                self._schedule_instalment()
        else:
            self.plan_active = False
            self.plans_broken += 1
            self.last_outcome = _LO_BROKE

    # ------------------------------------------------------------ end of day

    def _ability(self) -> float:
        return rules.effective_ability(self.b, self.ability, self.ability_growth, self.days_in, self.payday, self.day)  # type: ignore[no-any-return]

    def _baseline_intensity(self) -> float:
        return rules.baseline_intensity(self.b, self.self_cure, self.dpd_at_entry + self.days_in)  # type: ignore[no-any-return]

    def _close_day(self) -> None:
        """Unprompted repayment, decay, the 7-day contact window, the horizon (``World._close_day``)."""
        if self.status == _OPEN:
            lam = self.intensity = rules.decayed_intensity(self.intensity_decay, self._baseline_intensity(), self.intensity)
            i = self.day - self._spont_from
            u = self._spont[i] if 0 <= i < len(self._spont) else self._spontaneous_draws()[0]
            if u < rules.p_spontaneous(lam):
                share = rules.spontaneous_share(self.b.spontaneous_payment, self._u_day(Draw.SPONTANEOUS_AMOUNT), self._ability())
                self._pay(self.outstanding * share)
        self.fatigue = rules.decayed_fatigue(self.fatigue_decay, self.fatigue)
        slot = self.day % 7
        old, new = self.ring[slot], self.today_channel
        if old >= 0:
            self.contacts_7d[old] -= 1
        if new >= 0:
            self.contacts_7d[new] += 1
        self.ring[slot] = new
        self.today_channel = -1
        if self.status == _OPEN:
            self.days_in += 1
            self.disc *= self.delta
            if self.days_in >= self.horizon:
                face = self.outstanding
                self.terminal_value += face * self.sc.debt_sale_price * self.disc
                self.sold += face
                self.outstanding = 0.0
                self.status = _SOLD
                self.resolved_day = self.days_in

    def money_gap(self) -> float:
        """``collected + forgiven + sold + outstanding - balance`` (should be ~0)."""
        return self.collected + self.forgiven + self.sold + self.outstanding - self.balance


def _validate(action: Any) -> tuple[int, int, int, int]:
    """One action as four ints in range, or the ValueError ``policies.actions.validate`` gives."""
    if type(action) is list and len(action) == 4:
        ch, w, t, o = action
        if type(ch) is int and type(w) is int and type(t) is int and type(o) is int and 0 <= ch < 7 and 0 <= w < 4 and 0 <= t < 4 and 0 <= o < 4:
            return ch, w, t, o
    a = action if type(action) is np.ndarray else np.asarray(action)
    if a.shape != (4,) and a.shape != (1, 4):
        raise ValueError(f"an action is 4 entries [channel, window, tone, offer] (shape (4,) or (1, 4)), got shape {a.shape}")
    if a.dtype.kind == "i":
        ch, w, t, o = a.reshape(4).tolist()
    else:
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise ValueError("actions must be whole numbers [channel, window, tone, offer]")
        elif a.dtype.kind not in "iub":
            raise ValueError(f"actions must be integers, got dtype {a.dtype}")
        ch, w, t, o = (int(v) for v in a.reshape(4).tolist())
    for k, (v, n) in enumerate(zip((ch, w, t, o), ACTION_DIMS, strict=True)):
        if not 0 <= v < n:
            raise ValueError(f"action column {k} ({ACTION_COLUMNS[k]}) must be in 0..{n - 1}")
    return ch, w, t, o


assert REWARD_COMPONENTS == ("cash", "contact_cost", "complaint_penalty", "opt_out_penalty", "churn_penalty", "terminal_value")
