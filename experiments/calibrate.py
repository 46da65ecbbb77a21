"""Calibrating a world to a portfolio's history: ``collectrl calibrate fit`` and ``calibrate check``.

The fit turns a history folder (``sim.history``) into a scenario that ``extends`` a base preset.

**Population** keys are read off the accounts table directly: the balance's median and log-spread
(robust, from the interquartile range), the range of days past due at entry, the product mix, the
channels on file, app use and the entry spread. Intervals are bootstrap percentiles (medians and
spreads) or normal intervals of a share.

**Behaviour** keys are fitted by the method of simulated moments on the history's own decisions:
each fitted key (a *knob*) is paired with one statistic of the history that it moves most (the
delivery rate of a channel with its delivered share, the attention to a channel with its opened
share, a channel's engagement logit with its engaged share, ...). The world simulates the
history's accounts (their observable fields as recorded, latent traits drawn from the candidate
scenario) under the history's decisions: the logging policy when it is known (closed loop), else
a *replay* of the logged contacts on the same days (:class:`ReplayPolicy`, open loop; the
statistics then count each account's contacts up to its first reaction only, see
:func:`statistics`).
A replay at the base values and one per stage of the funnel with that stage's knobs moved by
:data:`STEP` give each knob's slope (common random numbers: the same seed, so the difference is
the knob's effect, not luck; stage by stage, so that it is not the earlier stages' effect either;
the outcome knobs one by one, as their statistics move with each other's knobs);
Newton steps ``knob += (g(observed) - g(simulated)) / slope`` (``g`` = logit of a share, log
of a rate) then bring every simulated statistic onto the observed one. A knob's interval is
``+-1.96 x`` the standard error of the statistic's gap (the history's sampling error and the
replay's simulation error, both clustered by account) divided by the slope, widened by the gap
left at the last step and by the other stages' errors carried through their measured effect on the
statistic (:func:`propagated_half_widths`). A knob whose statistic rests on too few observations in this history, or
does not move with it, is reported as not identifiable and keeps the base value, as does every
key no statistic reaches (archetype shares and traits, fatigue, tone effects, ...: :data:`NOT_FITTED`).

``calibrate rank`` values policies on a fitted world and on worlds drawn from its intervals, and says
which of their differences the history can back (:func:`rank_under_fit`). ``calibrate check``
measures all this on worlds whose truth is known (:func:`check`).
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import yaml

from experiments import stats
from experiments.errors import UsageError
from experiments.io import write_json
from experiments.resolve import resolve_policy
from policies.fileio import atomic_write
from policies.rules import RandomPolicy, StaticLadder
from policies.schema import CONTACT_CHANNEL_NAMES, PRODUCT_NAMES, ViewBatch
from sim import history as fmt
from sim.config import ARCHETYPES, Balance, ConfigError, Scenario, load_raw
from sim.population import Debtors, sample
from sim.runner import ProgressFn, run_portfolio
from sim.world import World

if TYPE_CHECKING:
    from policies.base import Policy

Z95 = 1.959963984540054
STEP = 0.2  # how far each knob moves (in its own unit) for the slope replay
MIN_TRIALS = 200  # a share resting on fewer observations (contacts, promises, ...) is not fitted
MIN_EVENTS = 20  # ... nor one with fewer successes or failures than this
NEWTON_STEPS = 4
_INTEGER_KEYS = ("population.dpd_at_entry.min", "population.dpd_at_entry.max", "population.entry_spread_days")
_CH = {name: i for i, name in enumerate(CONTACT_CHANNEL_NAMES)}
_OUT = {name: i for i, name in enumerate(fmt.CONTACT_OUTCOMES)}
_EV = {name: i for i, name in enumerate(fmt.EVENT_KINDS)}
_PAY_UNPROMPTED = 1  # sim.ledger.PaymentKind.UNPROMPTED

# keys of the base scenario that no statistic of a history reaches, kept at the base value
NOT_FITTED: tuple[tuple[str, str], ...] = (
    ("population.archetypes.*.share, ability, willingness, distressed_prob", "latent mixture: only their joint effect on the fitted rates is seen"),
    (
        "population.archetypes.*.window_habit, channels.*.window_sensitivity",
        "time-of-day habits: confounded with attention unless windows are randomised",
    ),
    (
        "population.archetypes.*.tone_effect, offer_effect; population.*_sd",
        "tone and offer reactions vary by latent type; not separated from the outcome bases",
    ),
    ("population.archetypes.*.deliverability", "only its product with channels.*.delivery_rate is seen"),
    ("channels.call.delivery_rate", "a call that does not ring and one not answered both look like 'no right-party contact'"),
    ("population.digital_only_share, digital_only_attention", "latent; folded into the attention fit"),
    ("population.on_file.call", "the model gives every account with an SMS number a phone (on_file.call follows on_file.sms)"),
    (
        "behaviour.fatigue_*, willingness_engage, age_engage_per_30d, firm_/empathetic_distressed_*",
        "need varied contact intensity and tone by segment",
    ),
    ("behaviour.outcomes.*.ability, willingness, log_balance", "slopes on latent traits"),
    ("behaviour.intensity_*", "the excitation of unprompted payments is folded into the self-cure scale"),
    ("behaviour.keep_ability, keep_willingness, deferral_keep_bonus", "slopes on latent traits"),
    ("behaviour.churn_*, archetypes.*.churn_logit, reward.*", "churn and penalties are not in the history format"),
    ("call_centre.*, channels.*.cost_eur", "capacity and prices are the user's to set"),
)


class CalibrationError(UsageError):
    """A history or request the fit cannot use; the message says what and why."""


# ------------------------------------------------------------------ statistics of a history


@dataclass
class Statistic:
    """A share or rate of the history, clustered by account: ``success[i]`` of ``trials[i]`` for account i.

    Accounts with neither are dropped (they add nothing to any sum here), so a statistic of a few
    accounts stays small however many the history has: a replay's statistics travel back from a
    worker process or a Ray task, and the pooled replicates are concatenated."""

    success: np.ndarray
    trials: np.ndarray
    # share: g = logit; fraction: a share on the log scale (g = log); rate: successes per unit of exposure;
    # ratio: successes per reference event (odds against it)
    kind: Literal["share", "fraction", "rate", "ratio"] = "share"

    def __post_init__(self) -> None:
        some = (self.success != 0) | (self.trials != 0)
        if not some.all():
            self.success, self.trials = self.success[some], self.trials[some]

    @property
    def n(self) -> float:
        return float(self.trials.sum())

    @property
    def k(self) -> float:
        return float(self.success.sum())

    @property
    def value(self) -> float:
        return self.k / self.n if self.n > 0 else float("nan")

    @property
    def se(self) -> float:
        """Standard error of :attr:`value`, clustered by account (a ratio estimator)."""
        if self.n <= 0:
            return float("nan")
        resid = self.success - self.value * self.trials
        return float(math.sqrt(float((resid * resid).sum())) / self.n)

    def g(self) -> float:
        """The statistic on the scale the knobs move it linearly: logit of a share, else the log."""
        v = min(max(self.value, 1e-9), 1 - 1e-9) if self.kind == "share" else max(self.value, 1e-12)
        return math.log(v / (1 - v)) if self.kind == "share" else math.log(v)

    def g_se(self) -> float:
        v = min(max(self.value, 1e-9), 1 - 1e-9)
        return self.se / (v * (1 - v)) if self.kind == "share" else self.se / max(self.value, 1e-12)

    def enough(self) -> bool:
        if self.kind == "rate":
            return self.k >= MIN_EVENTS
        if self.kind == "ratio":
            return self.k >= MIN_EVENTS and self.n >= MIN_EVENTS
        return self.n >= MIN_TRIALS and self.k >= MIN_EVENTS and self.n - self.k >= MIN_EVENTS


def _per_account(n: int, account: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(account, weights=None if weight is None else weight.astype(np.float64), minlength=n).astype(np.float64)


def open_until(h: fmt.History) -> np.ndarray:
    """The day after each account's resolution or sale, else the history's end."""
    end = np.full(h.n_accounts, h.days, dtype=np.int64)
    e = h.events
    if e is not None and len(e["account"]):
        ev = e["event"].astype(np.int64)
        closing = (ev == _EV["resolved"]) | (ev == _EV["sold"])
        np.minimum.at(end, e["account"].astype(np.int64)[closing], e["day"].astype(np.int64)[closing] + 1)
    return end


def first_reaction(h: fmt.History) -> np.ndarray:
    """Each account's first day of a reaction to a contact (complaint, opt-out, engagement) or of a payment;
    ``h.days`` if there was none."""
    c = h.contacts
    out = c["outcome"].astype(np.int64)
    reacted = (out == _OUT["complaint"]) | (out == _OUT["opt_out"]) | (out >= _OUT["engaged"])
    cutoff = np.full(h.n_accounts, h.days, dtype=np.int64)
    np.minimum.at(cutoff, c["account"].astype(np.int64)[reacted], c["day"].astype(np.int64)[reacted])
    np.minimum.at(cutoff, h.payments["account"].astype(np.int64), h.payments["day"].astype(np.int64))
    return cutoff


def statistics(h: fmt.History, early_only: bool = True, limit: np.ndarray | None = None) -> dict[str, Statistic]:
    """The statistics the fit matches (name -> :class:`Statistic`), from the contacts, payments and events.
    ``early_only``: count contacts and unprompted payments up to each account's first reaction only (for a
    fit by replay, see below); ``limit``: the history's :func:`first_reaction`, when ``h`` is a replay of it."""
    n = h.n_accounts
    c = h.contacts
    acc, ch, out = c["account"].astype(np.int64), c["channel"].astype(np.int64), c["outcome"].astype(np.int64)
    offer = c["offer"].astype(np.int64)
    delivered, opened = c["delivered"].astype(bool), c["opened"].astype(bool)
    made = out != _OUT["dropped"]
    complaint, opt_out = out == _OUT["complaint"], out == _OUT["opt_out"]
    engaged = out >= _OUT["engaged"]
    answered = opened & ~complaint & ~opt_out
    # The funnel counts each account's contacts up to its first reaction (a complaint, an opt-out, an
    # engagement) or first payment, whichever comes first. Until then a rule policy's decisions depend
    # on the account's observable fields and the calendar only, which the replay shares; after it they
    # depend on how this debtor reacted, so the later contacts of a history fall on debtors selected by
    # their latent traits (many reminders go to those who never answer), which a replay's debtors,
    # drawn afresh, are not.
    # A replay counts up to the earlier of its own debtor's first reaction and the history's
    # (``limit``): past the history's, the logged contacts follow a reaction the replay may not have had.
    if early_only:
        cutoff = first_reaction(h) if limit is None else np.minimum(first_reaction(h), limit)
    else:
        cutoff = np.full(n, h.days, dtype=np.int64)
    early = c["day"].astype(np.int64) <= cutoff[acc]
    stats: dict[str, Statistic] = {}

    def share(name: str, success: np.ndarray, among: np.ndarray, kind: Literal["share", "fraction"] = "share") -> None:
        stats[name] = Statistic(_per_account(n, acc[among & success]), _per_account(n, acc[among]), kind)

    for name, k in _CH.items():
        on = (ch == k) & early
        share(f"delivered_share.{name}", delivered, on & made, "fraction")
        share(f"opened_share.{name}", opened, on & delivered)
        share(f"engaged_share.{name}", engaged, on & answered)
    share("complaint_share", complaint, opened & early)
    share("opt_out_share", opt_out, opened & ~complaint & (ch != _CH["letter"]) & early)
    # an outcome's odds against "nothing" (engaged, no payment or commitment), among contacts where it
    # was possible: in a multinomial logit these move one for one with the outcome's base logit alone
    nothing = out == _OUT["engaged"]
    for name, off in (("paid_full", -1), ("paid_part", -1), ("promise", -1), ("plan", 1), ("settlement", 2), ("deferral", 3)):
        among = engaged & early if off < 0 else engaged & early & (offer == off)
        stats[f"outcome_odds.{name}"] = Statistic(
            _per_account(n, acc[among & (out == _OUT[name])]), _per_account(n, acc[among & nothing]), kind="ratio"
        )
    e = h.events
    if e is not None and len(e["account"]):
        eacc, ev = e["account"].astype(np.int64), e["event"].astype(np.int64)
        kept, broken = ev == _EV["promise_kept"], ev == _EV["promise_broken"]
        stats["promise_kept_share"] = Statistic(_per_account(n, eacc[kept]), _per_account(n, eacc[kept | broken]))
        plans, plan_broken = ev == _EV["plan"], ev == _EV["plan_broken"]
        stats["plan_kept_share"] = Statistic(_per_account(n, eacc[plans]) - _per_account(n, eacc[plan_broken]), _per_account(n, eacc[plans]))
    # Unprompted payments before any reaction or payment: the intensity is then its baseline alone (no
    # engaged contact or payment has excited it yet), the self-cure rate of the archetypes
    p = h.payments
    pacc = p["account"].astype(np.int64)
    first = (p["kind"].astype(np.int64) == _PAY_UNPROMPTED) & (p["day"].astype(np.int64) <= cutoff[pacc])
    end = np.minimum(open_until(h), cutoff + 1)
    exposure = np.maximum(end - h.accounts["entry_day"].astype(np.int64), 0).astype(np.float64)
    stats["unprompted_per_open_day"] = Statistic(_per_account(n, pacc[first]), exposure, kind="rate")
    return stats


# ------------------------------------------------------------------ knobs: fitted keys and their statistics


@dataclass(frozen=True)
class Knob:
    """A fitted behaviour key (or a family of archetype keys moved together) and the statistic that identifies it.

    ``unit`` says how the knob's value ``theta`` maps onto the scenario: ``rate`` theta = ln(key) (a probability
    at most 1), ``logit`` theta = key, ``odds`` theta = a shift of the logit of every archetype's key,
    ``scale`` theta = ln(multiplier) of every archetype's key. Reported values are in natural units (the
    key, or the odds / scale multiplier)."""

    name: str
    path: tuple[str, ...]  # the key's path; for archetype families the path under each archetype
    unit: Literal["rate", "logit", "odds", "scale"]
    statistic: str
    doc: str
    upper: float = math.inf  # the key's bound in the scenario schema, where a family's multiplier could pass it

    @property
    def per_archetype(self) -> bool:
        return self.unit in ("odds", "scale")

    def theta(self, raw: dict[str, Any]) -> float:
        """The knob's value in ``raw`` relative to ... itself: families are measured against ``raw`` = 0."""
        if self.per_archetype:
            return 0.0
        v = float(_get(raw, self.path))
        return math.log(max(v, 1e-12)) if self.unit == "rate" else v

    def apply(self, raw: dict[str, Any], theta: float, base: dict[str, Any]) -> None:
        """Set the knob to ``theta`` in ``raw`` (families: relative to their values in ``base``)."""
        if self.unit == "rate":
            _set(raw, self.path, min(math.exp(theta), 1.0))
        elif self.unit == "logit":
            _set(raw, self.path, theta)
        else:
            for a in ARCHETYPES:
                path = ("population", "archetypes", a, *self.path)
                b = float(_get(base, path))
                if self.unit == "odds":
                    bb = min(max(b, 1e-4), 1 - 1e-4)
                    _set(raw, path, 1.0 / (1.0 + math.exp(-(math.log(bb / (1 - bb)) + theta))))
                else:
                    _set(raw, path, min(b * math.exp(theta), self.upper))

    def prior_slope(self, raw: dict[str, Any]) -> float:
        """How much the statistic's g moves per unit of theta in a homogeneous population: 1, or for a
        scale on the archetypes' logits their mean (weighted by share)."""
        if self.unit != "scale" or not self.path[-1].endswith("logit"):
            return 1.0
        arche = raw["population"]["archetypes"]
        return float(sum(arche[a]["share"] * arche[a][self.path[-1]] for a in ARCHETYPES))

    def natural(self, theta: float) -> float:
        if self.unit == "rate":
            return min(math.exp(theta), 1.0)
        if self.unit == "logit":
            return theta
        return math.exp(theta)

    def label(self) -> str:
        if self.unit == "odds":
            return f"population.archetypes.*.{'.'.join(self.path)} (odds multiplier)"
        if self.unit == "scale":
            return f"population.archetypes.*.{'.'.join(self.path)} (multiplier)"
        return ".".join(self.path)


def _knobs() -> tuple[Knob, ...]:
    out: list[Knob] = []
    for ch in CONTACT_CHANNEL_NAMES:
        if ch != "call":  # a call's ring and its answer are one observation (see NOT_FITTED)
            out.append(
                Knob(f"delivery.{ch}", ("channels", ch, "delivery_rate"), "rate", f"delivered_share.{ch}", f"share of {ch} attempts delivered")
            )
        out.append(Knob(f"attention.{ch}", ("attention", ch), "odds", f"opened_share.{ch}", f"share of delivered {ch} contacts opened / answered"))
        out.append(Knob(f"engage.{ch}", ("channels", ch, "engage_logit"), "logit", f"engaged_share.{ch}", f"share of answered {ch} contacts engaged"))
    out.append(Knob("complaint", ("complaint_logit",), "scale", "complaint_share", "complaints per opened contact"))
    out.append(Knob("opt_out", ("behaviour", "opt_out_logit"), "logit", "opt_out_share", "opt-outs per opened message"))
    for name, key in (
        ("paid_full", "pay_full"),
        ("paid_part", "pay_part"),
        ("promise", "promise"),
        ("plan", "plan"),
        ("settlement", "settlement"),
        ("deferral", "deferral"),
    ):
        out.append(
            Knob(
                f"outcome.{key}",
                ("behaviour", "outcomes", key, "base"),
                "logit",
                f"outcome_odds.{name}",
                f"odds of {name} against no result, engaged contacts",
            )
        )
    out.append(Knob("promise_keep", ("behaviour", "promise_keep_logit"), "logit", "promise_kept_share", "share of promises kept"))
    out.append(Knob("instalment_keep", ("behaviour", "instalment_pay_logit"), "logit", "plan_kept_share", "share of plans never broken"))
    out.append(Knob("self_cure", ("self_cure_per_day",), "scale", "unprompted_per_open_day", "unprompted payments per open account-day", upper=1.0))
    return tuple(out)


KNOBS = _knobs()
KNOB_BY_LABEL = {k.label(): k for k in KNOBS}  # an estimate's key -> its knob
# the stages of the funnel, each with its own slope replay (fit_behaviour): knobs are grouped by name
SLOPE_FAMILIES = {"delivery": "delivery", "attention": "attention", "engage": "engagement", "outcome": "outcome"}
# stages whose knobs each get a slope replay of their own: one outcome's odds move with the others'
# knobs (on world 8 of the check, plan's odds moved 0.75-0.95 per unit of its own knob and 0.89-1.24
# with all six outcome knobs moved; read as plan's own slope, the sum made its interval 1.3x too narrow)
ONE_BY_ONE = frozenset({"outcome"})


def _slope_family(k: Knob) -> str:
    """The slope replay of a knob: its funnel stage, or "reaction" for complaints, opt-outs, keeping and
    self-cure; for the stages in :data:`ONE_BY_ONE`, the knob alone (its name)."""
    stage = SLOPE_FAMILIES.get(k.name.split(".")[0], "reaction")
    return k.name if stage in ONE_BY_ONE else stage


def slope_replays(knobs: list[Knob] | tuple[Knob, ...] = KNOBS) -> int:
    """How many slope replays a fit of ``knobs`` runs."""
    return len({_slope_family(k) for k in knobs})


def _get(raw: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = raw
    for p in path:
        node = node[p]
    return node


def _set(raw: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = raw
    for p in path[:-1]:
        node = node.setdefault(p, {})
    node[path[-1]] = value


# ------------------------------------------------------------------ replaying a history


class ReplayPolicy:
    """The history's own contacts: on each day, each account gets the contact logged for it (or waits).

    Accounts are the world's slots in the history's order (:func:`replay_population`). A history may
    log several contacts of one account on one day; the world makes one a day, so only the last one
    logged is replayed (:attr:`skipped_` counts the others). A logged contact the compliance profile
    forbids in the replayed world (an opt-out that came earlier there) is blocked and counted as such."""

    policy_id = "replay"
    version = 1

    def __init__(self, history: fmt.History) -> None:
        self.history = history
        c = history.contacts
        day = c["day"].astype(np.int64)
        order = np.argsort(day, kind="stable")
        self._day = day[order]
        self._account = c["account"].astype(np.int64)[order]
        self._action = np.stack([c["channel"].astype(np.int64) + 1, c["window"], c["tone"], c["offer"]], axis=1)[order].astype(np.int64)
        self._starts = np.searchsorted(self._day, np.arange(history.days + 2))

    @functools.cached_property
    def skipped_(self) -> int:
        """Logged contacts not replayed: the others of an account's several contacts on one day (counted when
        asked: a fit replays the history many times and never asks)."""
        c = self.history.contacts
        pairs = c["day"].astype(np.int64) * self.history.n_accounts + c["account"].astype(np.int64)
        return int(len(pairs) - len(np.unique(pairs)))

    def reset(self, seed: int | None = None) -> None:
        pass

    def actions_on(self, day: int, n: int) -> np.ndarray:
        out = np.zeros((n, 4), dtype=np.int64)
        if 0 <= day < len(self._starts) - 1:
            lo, hi = self._starts[day], self._starts[day + 1]
            out[self._account[lo:hi]] = self._action[lo:hi]
        return out

    def act_with_world(self, world: World, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        return self.actions_on(world.day, len(views))

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:  # only reachable through a world
        raise TypeError("the replay policy needs the world's day: run it with sim.runner.run_portfolio")


def replay_population(sc: Scenario, h: fmt.History, seed: int) -> Debtors:
    """The history's accounts as debtors: observable fields as recorded, latent traits drawn from ``sc``."""
    n = h.n_accounts
    d = sample(sc, seed, 0, n)
    a = h.accounts
    d.balance_eur = a["balance_eur"].astype(np.float64).copy()
    d.dpd_at_entry = a["dpd_at_entry"].astype(np.int16)
    d.product = a["product"].astype(np.int8)
    d.app_user = a["app_user"].astype(bool)
    d.on_file = a["channels_on_file"].astype(bool).copy()
    d.entry_offset = a["entry_day"].astype(np.int16)
    if "behaviour_score" in a:
        score = a["behaviour_score"].astype(np.float64)
        d.behaviour_score = np.where(np.isnan(score), d.behaviour_score, score).astype(np.float32)
    return d


def replay(sc: Scenario, h: fmt.History, seed: int = 0, *, progress: ProgressFn | None = None, record_events: bool = True) -> World:
    """A world of the history's accounts under the history's logged contacts, over the history's days."""
    return run_portfolio(
        sc,
        ReplayPolicy(h),  # type: ignore[arg-type]
        h.n_accounts,
        seed,
        record_events=record_events,
        progress=progress,
        max_days=h.days,
        population=replay_population(sc, h, seed),
    )


def world_history(world: World) -> fmt.History:
    """The history a finished world with a ledger would export (in memory)."""
    s = world.state
    accounts = fmt.accounts_table(s.debtor_id, s.entry_day, s.balance, world.traits)
    return fmt.from_ledger(world.ledger.columns(), accounts, {"days": world.day})


def load_history(folder: str | Path) -> fmt.History:
    """A validated history, or :class:`CalibrationError` with the validation report."""
    try:
        return fmt.read_history(folder)
    except fmt.HistoryError as e:
        raise CalibrationError(str(e)) from None


def open_replay(spec: str) -> tuple[fmt.History, str]:
    """``replay:HISTORY_DIR`` -> (the history, its folder)."""
    folder = spec.split(":", 1)[1]
    if not folder:
        raise CalibrationError("replay needs a history folder: --policy replay:HISTORY_DIR")
    return load_history(folder), folder


# ------------------------------------------------------------------ the population


@dataclass
class Estimate:
    """A fitted value, its 95 % interval, and how it was obtained."""

    key: str
    value: float
    low: float
    high: float
    base: float
    method: str
    statistic: str = ""
    observed: float = float("nan")
    simulated: float = float("nan")

    def covers(self, truth: float) -> bool:
        return self.low - 1e-12 <= truth <= self.high + 1e-12


def _share_interval(k: float, n: float) -> tuple[float, float]:
    """95 % interval of a share seen in ``n`` accounts (the project's Wilson interval)."""
    return stats.wilson(k / n, n, Z95)


def bootstrap_quantiles(x_sorted: np.ndarray, qs: tuple[float, ...], draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` bootstrap replicates of the quantiles ``qs`` of the sorted sample ``x_sorted`` (as
    ``np.quantile`` computes them, interpolating linearly), shape (draws, len(qs)), without resampling.

    A resample's indices are ``floor(n U)`` for n uniforms U, so its r-th smallest value is ``x_sorted[floor(n
    U_(r))]``, and the order statistics of n uniforms needed (the two each quantile interpolates between)
    are drawn jointly as ratios of sums of exponential spacings (gamma draws). The same distribution as
    resampling the n values ``draws`` times, at a cost independent of n (a 100,000-account history's 200
    resamples took 1.6 s and 320 MB)."""
    n = len(x_sorted)
    pos = [(n - 1) * q for q in qs]
    lows = [min(math.floor(p), n - 1) for p in pos]
    ranks = sorted({r for k in lows for r in (k + 1, min(k + 2, n))})  # 1-based ranks of the order statistics used
    shapes = np.diff(np.array([0, *ranks, n + 1], dtype=np.float64))
    spacings = rng.standard_gamma(shapes, size=(draws, len(shapes)))
    u = np.cumsum(spacings, axis=1)[:, :-1] / spacings.sum(axis=1, keepdims=True)
    vals = x_sorted[np.minimum((n * u).astype(np.int64), n - 1)]
    col = {r: j for j, r in enumerate(ranks)}
    out = np.empty((draws, len(qs)))
    for i, (p, k) in enumerate(zip(pos, lows, strict=True)):
        lo, hi = vals[:, col[k + 1]], vals[:, col[min(k + 2, n)]]
        out[:, i] = lo + (p - k) * (hi - lo)
    return out


def fit_population(h: fmt.History, base: dict[str, Any], seed: int = 0, bootstrap: int = 200) -> list[Estimate]:
    """Population keys read off the accounts table (see the module docstring)."""
    a = h.accounts
    n = h.n_accounts
    pop = base["population"]
    out: list[Estimate] = []
    rng = np.random.default_rng(seed)
    logb = np.log(a["balance_eur"].astype(np.float64))

    def robust(q25: Any, q50: Any, q75: Any) -> tuple[Any, Any]:
        """Median and log-spread of the balance from the log balance's quartiles."""
        return np.exp(q50), (q75 - q25) / 1.3489795003921634

    quartiles = (0.25, 0.5, 0.75)
    med, sig = robust(*np.quantile(logb, quartiles))
    bm, bs = robust(*bootstrap_quantiles(np.sort(logb), quartiles, bootstrap, rng).T)
    m_lo, m_hi = (float(x) for x in np.quantile(bm, [0.025, 0.975]))
    s_lo, s_hi = (float(x) for x in np.quantile(bs, [0.025, 0.975]))
    out.append(Estimate("population.balance.median_eur", float(med), m_lo, m_hi, pop["balance"]["median_eur"], "median"))
    out.append(Estimate("population.balance.sigma", float(sig), s_lo, s_hi, pop["balance"]["sigma"], "IQR of log balance / 1.349"))
    bal = a["balance_eur"]
    lo_b, hi_b = min(float(bal.min()), pop["balance"]["min_eur"]), max(float(bal.max()), pop["balance"]["max_eur"])
    out.append(
        Estimate(
            "population.balance.min_eur", lo_b, lo_b, pop["balance"]["min_eur"], pop["balance"]["min_eur"], "base, widened to the smallest balance"
        )
    )
    out.append(
        Estimate(
            "population.balance.max_eur", hi_b, pop["balance"]["max_eur"], hi_b, pop["balance"]["max_eur"], "base, widened to the largest balance"
        )
    )
    dpd = a["dpd_at_entry"]
    for end, v in (("min", int(dpd.min())), ("max", int(dpd.max()))):
        out.append(Estimate(f"population.dpd_at_entry.{end}", v, v, v, pop["dpd_at_entry"][end], f"{end} observed"))
    entry = a["entry_day"]
    spread = int(entry.max() - entry.min())
    out.append(Estimate("population.entry_spread_days", spread, spread, spread, pop["entry_spread_days"], "range of entry days"))
    counts = np.bincount(a["product"].astype(np.int64), minlength=len(PRODUCT_NAMES))
    for i, name in enumerate(PRODUCT_NAMES):
        if counts[i] or name in pop["products"]:
            lo, hi = _share_interval(float(counts[i]), n)
            out.append(Estimate(f"population.products.{name}", counts[i] / n, lo, hi, pop["products"].get(name, 0.0), "share of accounts"))
    app = a["app_user"].astype(bool)
    out.append(
        Estimate("population.app_user_share", float(app.mean()), *_share_interval(float(app.sum()), n), pop["app_user_share"], "share of accounts")
    )
    on = a["channels_on_file"].astype(bool)
    among = {"sms": np.ones(n, bool), "email": np.ones(n, bool), "letter": np.ones(n, bool), "push": app, "messenger": on[:, _CH["sms"]]}
    for ch, sel in among.items():
        m = int(sel.sum())
        if m:
            k = float(on[sel, _CH[ch]].sum())
            why = {"push": "share of app users", "messenger": "share of accounts with an SMS number"}.get(ch, "share of accounts")
            out.append(Estimate(f"population.on_file.{ch}", k / m, *_share_interval(k, m), pop["on_file"][ch], why))
    return out


# ------------------------------------------------------------------ behaviour: simulated moments


@dataclass
class Fit:
    """What :func:`fit` found."""

    base: str
    history: str
    accounts: int
    days: int
    population: list[Estimate]
    behaviour: list[Estimate]
    not_identified: list[tuple[str, str]]  # (key, why)
    raw: dict[str, Any]  # the fitted scenario (merged, as a mapping)
    overrides: dict[str, Any]  # what the output file sets on top of the base
    observed: dict[str, Statistic] = field(default_factory=dict)
    simulated: dict[str, Statistic] = field(default_factory=dict)
    seconds: float = 0.0
    replays: int = 0

    def estimates(self) -> list[Estimate]:
        return self.population + self.behaviour


def _scenario(raw: dict[str, Any]) -> Scenario:
    try:
        return Scenario.model_validate(raw)
    except Exception as e:  # pydantic's ValidationError: a fitted value outside its allowed range
        raise CalibrationError(f"the fitted scenario does not validate: {e}") from None


def _simulate_one(raw: dict[str, Any], h: fmt.History, seed: int, logging: Policy | None) -> dict[str, Statistic]:
    """The statistics of one simulation of the history's accounts: a replay of its contacts, or a run of its
    ``logging`` policy when that is known."""
    sc = _scenario(raw)
    if logging is None:
        return statistics(world_history(replay(sc, h, seed)), True, first_reaction(h))
    world = run_portfolio(sc, logging, h.n_accounts, seed, record_events=True, max_days=h.days, population=replay_population(sc, h, seed))
    return statistics(world_history(world), False)


_WORKER: dict[str, Any] = {}  # a worker process's history and logging policy, sent once when it starts


def _init_worker(h: fmt.History, logging: Policy | None) -> None:
    _WORKER.update(history=h, logging=logging)


def _simulate_in_worker(raw: dict[str, Any], seed: int) -> dict[str, Statistic]:
    return _simulate_one(raw, _WORKER["history"], seed, _WORKER["logging"])


class RayPool:
    """The replicates of each step as Ray tasks (the experiments' other backend): the history goes into
    Ray's object store once, and ``map`` runs one task per replicate. Joins ``address`` or starts a
    local Ray with ``workers`` CPUs (and stops it on ``shutdown``)."""

    def __init__(self, workers: int, h: fmt.History, logging: Policy | None, address: str | None = None) -> None:
        import ray

        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
                self._started = True
        self._task = ray.remote(_simulate_one)
        self._history = ray.put(h)
        self._logging = logging

    def map(self, _fn: Any, raws: list[dict[str, Any]], seeds: list[int]) -> Iterator[dict[str, Statistic]]:
        """The tasks' results in order, each as soon as it and those before it are done."""
        refs = [self._task.remote(raw, self._history, seed, self._logging) for raw, seed in zip(raws, seeds, strict=True)]
        for ref in refs:
            yield self._ray.get(ref)

    def shutdown(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


Pool = ProcessPoolExecutor | RayPool


def worker_pool(workers: int, h: fmt.History, logging: Policy | None, backend: str = "local", address: str | None = None) -> Pool | None:
    """Where the replicates of each step run: local worker processes, or Ray (None: in this process,
    for one local worker)."""
    if backend == "ray":
        return RayPool(workers, h, logging, address)
    if backend != "local":
        raise CalibrationError(f"unknown backend {backend!r}; choose local or ray")
    if workers <= 1:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(h, logging))


def _simulated(
    raws: list[dict[str, Any]],
    h: fmt.History,
    seed: int,
    replicates: int,
    logging: Policy | None,
    pool: Pool | None = None,
    done: Callable[[], None] | None = None,
) -> list[dict[str, Statistic]]:
    """For each scenario of ``raws``, the statistics of ``replicates`` simulations (seeds ``seed, seed+1,
    ...``), pooled; on ``pool``'s workers if given, all of them handed out at once (so that no worker
    waits for the slowest simulation of one scenario before starting on the next). ``done()`` after
    each simulation."""
    jobs = [(raw, seed + r) for raw in raws for r in range(replicates)]
    if pool is None:
        results: Any = (_simulate_one(raw, h, s, logging) for raw, s in jobs)
    else:
        results = pool.map(_simulate_in_worker, [raw for raw, _ in jobs], [s for _, s in jobs])
    parts = []
    for st in results:
        parts.append(st)
        if done is not None:
            done()
    out = []
    for i in range(len(raws)):
        pooled: dict[str, Statistic] = {}
        for st in parts[i * replicates : (i + 1) * replicates]:
            for k, v in st.items():
                if k in pooled:
                    p = pooled[k]
                    pooled[k] = Statistic(np.concatenate([p.success, v.success]), np.concatenate([p.trials, v.trials]), v.kind)
                else:
                    pooled[k] = v
        out.append(pooled)
    return out


def _with(raw0: dict[str, Any], knobs: list[Knob], theta: np.ndarray) -> dict[str, Any]:
    raw = copy.deepcopy(raw0)
    for k, t in zip(knobs, theta, strict=True):
        k.apply(raw, float(t), raw0)
    return raw


def fit_behaviour(
    h: fmt.History,
    raw0: dict[str, Any],
    seed: int = 0,
    replicates: int = 2,
    steps: int = NEWTON_STEPS,
    progress: Callable[[str], None] | None = None,
    logging: Policy | None = None,
    pool: Pool | None = None,
) -> tuple[list[Estimate], list[tuple[str, str]], dict[str, Any], dict[str, Statistic], dict[str, Statistic], int]:
    """Fit the behaviour knobs (module docstring). Returns (estimates, not identified, fitted raw, observed, simulated, replays).
    ``progress(what)`` is called after each simulation."""
    say = progress or (lambda _msg: None)
    observed = statistics(h, early_only=logging is None)
    knobs: list[Knob] = []
    skipped: list[tuple[str, str]] = []
    for k in KNOBS:
        st = observed.get(k.statistic)
        if st is None:
            skipped.append((k.label(), f"the history has no {k.statistic.split('.')[0]} (no events table)"))
        elif not st.enough():
            skipped.append((k.label(), f"{k.doc}: {st.k:.0f} of {st.n:.0f}, too few to fit"))
        else:
            knobs.append(k)
    theta0 = np.array([k.theta(raw0) for k in knobs])
    target = np.array([observed[k.statistic].g() for k in knobs])
    replays = 0

    def simulate(*thetas: np.ndarray, what: str) -> list[dict[str, Statistic]]:
        nonlocal replays
        replays += replicates * len(thetas)
        return _simulated([_with(raw0, knobs, theta) for theta in thetas], h, seed, replicates, logging, pool, lambda: say(what))

    # the slope replays move each knob away from its bound: delivery rates down (they cap at 1)
    step = np.array([-STEP if k.unit == "rate" else STEP for k in knobs])
    # One slope replay per stage of the funnel (SLOPE_FAMILIES): the knobs of one stage move together (their
    # statistics are apart: one channel each), the other stages stay; the outcome knobs one at a time
    # (ONE_BY_ONE: their statistics are not apart, each outcome's odds move with the others). Moved all at
    # once, a knob's statistic also moved with the earlier stages' knobs: the engagement of email read
    # a slope of 1.39 where its own is 0.87, and intervals divided by it came out 1.6 times too narrow.
    measured = np.zeros(len(knobs))
    family = np.array([_slope_family(k) for k in knobs])
    families = sorted(set(family.tolist()))
    # and each statistic's response to the other stages (their knobs moved together): how far an error in
    # an earlier stage's fit carries into this knob's (propagated_half_widths)
    cross = np.zeros((len(knobs), len(families)))
    # the base replay and the slope replays do not depend on each other: they run as one batch
    sim0, *moved_sims = simulate(theta0, *(theta0 + step * (family == f) for f in families), what="replays at the base values and for the slopes")
    g0 = np.array([sim0[k.statistic].g() for k in knobs])
    for fi, (f, sim1) in enumerate(zip(families, moved_sims, strict=True)):
        moved = family == f
        g1 = np.array([sim1[k.statistic].g() for k in knobs])
        measured[moved] = ((g1 - g0) / step)[moved]
        cross[~moved, fi] = (g1 - g0)[~moved] / float(step[moved][0])
    # each knob moves its statistic about one for one on the g scale (a scale on logits: by the mean logit);
    # the measured slope, noisy where the data are thin, is kept within a factor 2 of that
    prior = np.array([k.prior_slope(raw0) for k in knobs])
    slope = prior * np.clip(measured / prior, 0.5, 1.5)
    theta, g = theta0, g0
    sim = sim0
    for i in range(steps):
        theta = theta + np.clip((target - g) / slope, -2.0, 2.0)
        theta = np.array([min(t, 0.0) if k.unit == "rate" else t for k, t in zip(knobs, theta, strict=True)])
        (sim,) = simulate(theta, what=f"replay, Newton step {i + 1} of {steps}")
        g = np.array([sim[k.statistic].g() for k in knobs])
    raw = _with(raw0, knobs, theta)
    own = np.array(
        [
            (Z95 * math.hypot(observed[k.statistic].g_se(), sim[k.statistic].g_se()) + abs(observed[k.statistic].g() - gi)) / abs(s)
            for k, s, gi in zip(knobs, slope, g, strict=True)
        ]
    )
    halves = propagated_half_widths(own, slope, cross, np.array([families.index(f) for f in family]))
    estimates: list[Estimate] = []
    for k, t, half, own_half in zip(knobs, theta, halves, own, strict=True):
        lo, hi = sorted((k.natural(t - half), k.natural(t + half)))
        method = f"simulated moments: {k.doc}"
        if half > 1.005 * own_half:
            method += f"; the other stages' errors widen the interval {half / own_half:.2f}x"
        ob, si = observed[k.statistic], sim[k.statistic]
        estimates.append(Estimate(k.label(), k.natural(t), lo, hi, k.natural(k.theta(raw0)), method, k.statistic, ob.value, si.value))
    return estimates, skipped, raw, observed, sim, replays


# ------------------------------------------------------------------ the fit and its output


def propagated_half_widths(own: np.ndarray, slope: np.ndarray, cross: np.ndarray, family: np.ndarray) -> np.ndarray:
    """Interval half-widths (theta units) with the other stages' fitting errors carried in.

    ``own[k]``: knob k's half-width from its own statistic alone; ``slope[k]``: its statistic's slope
    in its own knob; ``cross[k, f]``: the slope of k's statistic when stage f's knobs all move together
    (0 for k's own stage ``family[k]``). All knobs are fitted at once, so a stage fitted a little off
    moves the statistics of the others (a channel's engagement, too high, sends more engaged contacts
    of the wrong debtors to the outcome statistics), and the knob that matches its statistic absorbs
    that: to first order its error is its own plus ``-cross[k, f] / slope[k]`` times stage f's error.
    A stage's knobs are moved together in the slope replays, so their separate effects on k are not
    known; the stage is taken to err as one knob with its knobs' typical (root mean square) error.
    (A stage whose knobs have slope replays of their own, :data:`ONE_BY_ONE`, is a family per knob:
    each carries its own error.) The terms add in quadrature with ``own``."""
    n_f = cross.shape[1]
    typical = np.array([math.sqrt(float(np.mean(own[family == f] ** 2))) if np.any(family == f) else 0.0 for f in range(n_f)])
    carried = cross / slope[:, None] * typical[None, :]
    carried[np.arange(len(own)), family] = 0.0
    return np.sqrt(own**2 + (carried**2).sum(axis=1))  # type: ignore[no-any-return]


def _base_raw(base: str) -> dict[str, Any]:
    try:
        raw = load_raw(base)
        Scenario.model_validate(raw)
    except ConfigError as e:
        raise CalibrationError(f"base scenario: {e}") from None
    return raw


def fit(
    history: str | Path,
    base: str = "default",
    seed: int = 0,
    replicates: int = 2,
    progress: Callable[[str], None] | None = None,
    logging_policy: str | None = None,
    workers: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
) -> Fit:
    """Fit a scenario extending ``base`` to the history in ``history`` (see the module docstring); the
    replicates of each step fan out over ``workers`` local processes or Ray tasks (``backend``)."""
    start = time.perf_counter()
    raw0 = _base_raw(base)
    h = load_history(history)
    logging = make_policy(logging_policy) if logging_policy else None
    pool = worker_pool(min(workers, replicates), h, logging, backend, ray_address)
    try:
        f = fit_history(h, raw0, base, str(history), seed, replicates, progress, logging, pool)
    finally:
        if pool is not None:
            pool.shutdown()
    f.seconds = time.perf_counter() - start
    return f


def fit_history(
    h: fmt.History,
    raw0: dict[str, Any],
    base: str,
    source: str,
    seed: int = 0,
    replicates: int = 2,
    progress: Callable[[str], None] | None = None,
    logging: Policy | None = None,
    pool: Pool | None = None,
) -> Fit:
    """:func:`fit` on a history in memory and a base scenario's mapping ``raw0`` (named ``base``)."""
    start = time.perf_counter()
    history = source
    if h.contacts["account"].size == 0:
        raise CalibrationError(f"history {history}: the contacts table is empty; there is nothing to fit behaviour to")
    population = fit_population(h, raw0, seed)
    raw = copy.deepcopy(raw0)
    overrides: dict[str, Any] = {}
    for e in population:
        path = tuple(e.key.split("."))
        value: Any = int(e.value) if e.key in _INTEGER_KEYS else float(e.value)
        _set(raw, path, value)
        _set(overrides, path, value)
    for name in list(raw0["population"]["products"]):
        if not any(e.key == f"population.products.{name}" and e.value > 0 for e in population):
            del raw["population"]["products"][name]
            _set(overrides, ("population", "products", name), None)
    _scenario(raw)
    behaviour, skipped, raw, observed, simulated, replays = fit_behaviour(h, raw, seed, replicates, progress=progress, logging=logging, pool=pool)
    for e in behaviour:
        k = KNOB_BY_LABEL[e.key]
        if k.per_archetype:
            for a in ARCHETYPES:
                path = ("population", "archetypes", a, *k.path)
                _set(overrides, path, _get(raw, path))
        else:
            _set(overrides, k.path, _get(raw, k.path))
    return Fit(
        base=base,
        history=str(history),
        accounts=h.n_accounts,
        days=h.days,
        population=population,
        behaviour=behaviour,
        not_identified=skipped + list(NOT_FITTED),
        raw=raw,
        overrides=overrides,
        observed=observed,
        simulated=simulated,
        seconds=time.perf_counter() - start,
        replays=replays,
    )


def _has(raw: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = raw
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return False
        node = node[p]
    return True


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else format(v, ".6g")


def scenario_yaml(f: Fit, name: str) -> str:
    """The fitted scenario file: ``extends`` the base, sets what was fitted, each value with its interval."""
    comments: dict[tuple[str, ...], str] = {}
    for e in f.population:
        comments[tuple(e.key.split("."))] = f"95 % [{_num(e.low)}, {_num(e.high)}]; {e.method}; base {_num(e.base)}"
    for e in f.behaviour:
        k = KNOB_BY_LABEL[e.key]
        what = f"{k.doc}: history {e.observed:.4g}, replay {e.simulated:.4g}"
        if k.per_archetype:
            unit = "odds x" if k.unit == "odds" else "x"
            for a in ARCHETYPES:
                comments[("population", "archetypes", a, *k.path)] = (
                    f"{unit}{e.value:.4g}, 95 % [{e.low:.4g}, {e.high:.4g}] on every archetype; {what}"
                )
        else:
            comments[k.path] = f"95 % [{_num(e.low)}, {_num(e.high)}]; base {_num(e.base)}; {what}"
    lines = [
        f"# Fitted by `collectrl calibrate fit` to the history {f.history} ({f.accounts:,} accounts, {f.days} days).",
        "# Population: read off the accounts table. Behaviour: simulated moments on a replay of the history's own",
        "# contacts (see the README, 'Calibrating to your portfolio'). Each fitted value carries its 95 % interval.",
        "# Not identifiable from this history, kept at the base value:",
        *(f"#   {key}: {why}" for key, why in f.not_identified),
        f"extends: {f.base}",
        f"name: {name}",
        f"description: {f.base} fitted to the history {Path(f.history).name} ({f.accounts:,} accounts)",
    ]

    def emit(node: dict[str, Any], path: tuple[str, ...], indent: int) -> None:
        for key, v in node.items():
            p = (*path, key)
            pad = "  " * indent
            if isinstance(v, dict):
                lines.append(f"{pad}{key}:")
                emit(v, p, indent + 1)
            else:
                text = "null" if v is None else yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...").strip()
                if isinstance(v, float):
                    text = format(v, ".6g")
                    if all(c not in text for c in ".e") and "inf" not in text:
                        text += ".0"
                note = comments.get(p)
                lines.append(f"{pad}{key}: {text}" + (f"  # {note}" if note else ""))

    emit(f.overrides, (), 0)
    return "\n".join(lines) + "\n"


def write_scenario(f: Fit, out: str | Path) -> Path:
    out = Path(out)
    if out.suffix not in (".yaml", ".yml"):
        raise CalibrationError(f"--out {out}: the fitted scenario is a .yaml file")
    text = scenario_yaml(f, out.stem)
    return atomic_write(out, lambda p: p.write_text(text))


# ------------------------------------------------------------------ a logging policy with exploration


def make_policy(name: str) -> Policy:
    """A policy by name, with ``exploring_ladder:SHARE`` for :class:`ExploringLadder` (``calibrate check``'s logging policy)."""
    if name.startswith("exploring_ladder"):
        share = name.partition(":")[2]
        try:
            return ExploringLadder(float(share) if share else 0.05)  # type: ignore[return-value]
        except ValueError:
            raise CalibrationError(f"{name}: give the random share as exploring_ladder:0.05") from None
    return resolve_policy(name)


class ExploringLadder:
    """The static ladder, with a share of debtor-days on a uniformly random allowed action instead
    (the logging policy of ``calibrate check``: the randomised share is what lets tones, offers and
    channels the ladder never uses be seen at all)."""

    policy_id = "exploring_ladder"
    version = 1

    def __init__(self, explore_share: float = 0.05) -> None:
        self.explore_share = explore_share
        self.ladder_ = StaticLadder()
        self.random_ = RandomPolicy()
        self.rng_ = np.random.default_rng(0)

    def reset(self, seed: int | None = None) -> None:
        self.ladder_.reset(seed)
        self.random_.reset(seed)
        self.rng_ = np.random.default_rng([0x45584C, 0 if seed is None else int(seed)])

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        out = self.ladder_.act(views, mask)
        explore = self.rng_.random(len(views)) < self.explore_share
        if explore.any():
            out[explore] = self.random_.act(views, mask)[explore]
        return out


__all__ = [
    "KNOBS",
    "NOT_FITTED",
    "CalibrationError",
    "Estimate",
    "ExploringLadder",
    "Fit",
    "ReplayPolicy",
    "fit",
    "replay",
    "statistics",
    "write_scenario",
]


# ------------------------------------------------------------------ known-truth recovery


RULE_POLICIES = ("static_ladder", "segment_journeys", "digital_first", "random", "no_contact")
PERTURBATION = 0.3  # each fitted key moves by up to +-30 %


def perturb(raw0: dict[str, Any], rng: np.random.Generator, share: float = PERTURBATION) -> tuple[dict[str, Any], dict[str, float]]:
    """A copy of ``raw0`` with every knob moved by a uniform factor in ``1 +- share`` (a key's value, or the
    multiplier of an archetype family; a delivery rate stays at most 1), and the knobs' true natural values."""
    raw = copy.deepcopy(raw0)
    truth: dict[str, float] = {}
    for k in KNOBS:
        u = float(rng.uniform(-share, share))
        if k.unit == "rate":
            theta = math.log(min(k.natural(k.theta(raw0)) * (1 + u), 1.0))
        elif k.unit == "logit":
            theta = k.theta(raw0) * (1 + u)
        else:
            theta = math.log(1 + u)
        k.apply(raw, theta, raw0)
        truth[k.label()] = k.natural(theta)
    return raw, truth


def learner_label(name: str) -> str:
    """How a learner (a training run or an artifact directory) is named in check's tables."""
    return f"learner:{Path(name).name}"


def _values(sc: Scenario, debtors: int, seed: int, learners: tuple[str, ...] = ()) -> dict[str, float]:
    """Net value per debtor of each rule policy and each learner on ``sc`` (the same debtors and luck)."""
    return _values_and_margins(sc, debtors, seed, learners)[0]


def _named(learners: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(label, name) of the rule policies and of each learner, as check's tables name them."""
    return policy_labels([*RULE_POLICIES, *learners], learners=set(learners))


def policy_labels(names: list[str], learners: set[str] | None = None) -> list[tuple[str, str]]:
    """(label, name) of each policy: a registered name as it is, a learner (``learners``, or by default a
    name with a path separator or an existing path) as :func:`learner_label`, or, where two learners'
    folders share their last name, by the path given. The same policy given twice is refused."""

    def is_learner(n: str) -> bool:
        return n in learners if learners is not None else ("/" in n or Path(n).exists())

    seen: dict[str, str] = {}
    for n in names:
        same = str(Path(n).resolve()) if is_learner(n) else n
        if same in seen:
            raise CalibrationError(f"policies: {n} and {seen[same]} are the same policy; give each once")
        seen[same] = n
    short = [learner_label(n) if is_learner(n) else n for n in names]
    return [(f"learner:{n.rstrip('/')}" if is_learner(n) and short.count(lab) > 1 else lab, n) for lab, n in zip(short, names, strict=True)]


def _evaluate(sc: Scenario, named: list[tuple[str, str]], debtors: int, seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Net value per debtor of each (label, policy name) on ``sc`` (the same debtors and luck), and each
    policy's per-debtor net values (NaN for a debtor whose account did not close)."""
    values: dict[str, float] = {}
    per_debtor: dict[str, np.ndarray] = {}
    for label, name in named:
        world = run_portfolio(sc, resolve_policy(name), debtors, seed)
        closed = world.status != 0
        values[label] = float(world.net_value[closed].mean())
        per_debtor[label] = np.where(closed, world.net_value, np.nan)
    return values, per_debtor


def _values_and_margins(sc: Scenario, debtors: int, seed: int, learners: tuple[str, ...] = ()) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`_values`, and for each pair of policies ("a|b", names sorted) two standard errors of the
    difference of their values: the debtors and their luck are common to every policy, so it is the
    standard error of the per-debtor differences. A pair of policies whose values are closer than
    that has no order this evaluation can tell."""
    values, per_debtor = _evaluate(sc, _named(learners), debtors, seed)
    return values, _pair_margins(per_debtor)


def _pair_margins(per_debtor: dict[str, np.ndarray]) -> dict[str, float]:
    """Two standard errors of each pair's difference ("a|b", names sorted) from the per-debtor values."""
    margins = {}
    for a, b in itertools.combinations(sorted(per_debtor), 2):
        d = per_debtor[a] - per_debtor[b]
        d = d[np.isfinite(d)]
        margins[f"{a}|{b}"] = float(2.0 * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")
    return margins


# ------------------------------------------------------------------ ranking under the fit's uncertainty

DRAWS = 10  # worlds drawn from a fit's intervals to rank policies under its uncertainty
MIN_DRAWS = 3


def _drawn_key(e: Estimate) -> tuple[Knob | None, str] | None:
    """How a fitted estimate is drawn (:func:`draw_scenarios`): (its knob, "theta") for a behaviour knob,
    (None, "log" | "linear" | "share") for a population key with an interval, None for the rest."""
    knob = KNOB_BY_LABEL.get(e.key)
    if knob is not None:
        return knob, "theta"
    if not e.low < e.high:
        return None
    if e.key == "population.balance.median_eur":
        return None, "log"
    if e.key == "population.balance.sigma":
        return None, "linear"
    if e.key == "population.app_user_share" or e.key.startswith("population.on_file."):
        return None, "share"
    return None  # the product mix (its shares must sum to one) and the fixed ranges stay as fitted


def _theta_half(k: Knob, e: Estimate) -> float:
    """The half-width of a knob's interval in its own theta units (fit_behaviour's ``half``)."""
    if k.unit == "logit":
        return (e.high - e.low) / 2.0
    return math.log(max(e.value, 1e-300)) - math.log(max(e.low, 1e-300))  # rate, odds, scale: theta = ln(value)


def draw_scenarios(raw: dict[str, Any], estimates: list[Estimate], draws: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``draws`` scenarios drawn from a fit's 95 % intervals around the fitted scenario ``raw``.

    Each behaviour knob is drawn normal on its own fitted scale (theta, where its interval is
    ``theta +- half``) with standard deviation ``half / 1.96``; the balance's median (on the log scale),
    its spread and the shares of channels on file and of app users from a normal on each side of the
    value with that side's half-width / 1.96, shares clipped to [0, 1]. Keys are drawn independently:
    the intervals already carry the other stages' errors (:func:`propagated_half_widths`), so the spread
    of a drawn world is, if anything, wider than the fit's. The product mix and the keys that were not
    fitted stay as they are."""
    out = []
    drawn = [(e, spec) for e in estimates if (spec := _drawn_key(e)) is not None]
    for _ in range(draws):
        new = copy.deepcopy(raw)
        for e, (knob, how) in drawn:
            z = float(rng.standard_normal()) / Z95
            if knob is not None:
                half = _theta_half(knob, e)
                if knob.per_archetype:
                    knob.apply(new, half * z, raw)  # families move relative to their values in ``raw``
                else:
                    knob.apply(new, knob.theta(raw) + half * z, raw)
                continue
            path = tuple(e.key.split("."))
            v = float(_get(raw, path))
            if how == "log":
                side = math.log(e.high / v) if z > 0 else math.log(v / e.low)
                _set(new, path, v * math.exp(side * z))
            else:
                side = (e.high - v) if z > 0 else (v - e.low)
                x = v + side * z
                _set(new, path, min(max(x, 0.0), 1.0) if how == "share" else min(max(x, 1e-6), _SIGMA_MAX))
        out.append(new)
    return out


_SIGMA_MAX = next(m.le for m in Balance.model_fields["sigma"].metadata if hasattr(m, "le"))  # the schema's bound


def _spread(x: np.ndarray, centre: float) -> float:
    """The root mean square deviation of drawn values from the fitted world's (the draws are centred on the
    fitted values by construction, so every draw is a degree of freedom)."""
    return float(np.sqrt(np.mean((x - centre) ** 2))) if len(x) else float("nan")


@dataclass
class Ranking:
    """Policies valued on a fitted world and on worlds drawn from its intervals (:func:`rank_under_fit`)."""

    values: dict[str, float]  # on the fitted world
    drawn: dict[str, list[float]]  # on each drawn world (the same debtors and luck)
    margins: dict[str, float]  # two standard errors of each pair's difference on the fitted world (its debtors)
    debtors: int
    seed: int

    def half_width(self, label: str) -> float:
        """The 95 % half-width of a policy's value from the fit's uncertainty: Student's t with one degree of
        freedom per drawn world times their root mean square deviation from the fitted world's value."""
        d = np.asarray(self.drawn[label])
        return stats.t_quantile(len(d)) * _spread(d, self.values[label])

    def pairs(self) -> list[dict[str, Any]]:
        """Every pair (a ahead of b on the fitted world): the difference, its 95 % half-width (the fit's
        uncertainty, t times the difference's root mean square deviation over the drawn worlds from the
        fitted one, and the evaluation's, 1.96 per-debtor standard errors, in quadrature), in how many
        drawn worlds a stays ahead, and whether the fitted world orders the pair (the difference beyond
        its half-width)."""
        out = []
        for p, q in itertools.combinations(sorted(self.values), 2):
            a, b = (p, q) if self.values[p] >= self.values[q] else (q, p)
            diff = self.values[a] - self.values[b]
            d = np.asarray(self.drawn[a]) - np.asarray(self.drawn[b])
            fit_sd = _spread(d, diff)
            eval_se = self.margins[f"{p}|{q}"] / 2.0
            half = math.hypot(stats.t_quantile(len(d)) * fit_sd, Z95 * eval_se)
            out.append(
                {
                    "ahead": a,
                    "behind": b,
                    "difference": diff,
                    "half_width": half,
                    "fit_sd": fit_sd,
                    "evaluation_se": eval_se,
                    "ahead_in_draws": int((d > 0).sum()),
                    "draws": len(d),
                    "ordered": bool(diff > half),
                }
            )
        return out


def rank_under_fit(
    raw: dict[str, Any],
    estimates: list[Estimate],
    named: list[tuple[str, str]],
    debtors: int = 20_000,
    seed: int = 0,
    draws: int = DRAWS,
    progress: Callable[[int, int], None] | None = None,
) -> Ranking:
    """Value each (label, policy) on the fitted world ``raw`` and on ``draws`` worlds drawn from the fit's
    intervals (:func:`draw_scenarios`, drawn with ``seed``), all with the same ``debtors`` and luck, so that
    a difference between worlds is the parameters' and not chance's. The pairs the fitted world can order
    are those whose difference exceeds both uncertainties together (:meth:`Ranking.pairs`)."""
    if draws < MIN_DRAWS:
        raise CalibrationError(f"draws {draws}: ranking under a fit's uncertainty needs at least {MIN_DRAWS} drawn worlds")
    if not any(_drawn_key(e) for e in estimates):
        raise CalibrationError("the fit has no estimate with an interval to draw from; fit the scenario again with `collectrl calibrate fit`")
    scenarios = [_scenario(raw)]
    for i, r in enumerate(draw_scenarios(raw, estimates, draws, np.random.default_rng([0x52414E4B, seed]))):
        try:
            scenarios.append(Scenario.model_validate(r))
        except Exception as e:  # pydantic's ValidationError
            raise CalibrationError(f"world {i + 1} of {draws} drawn from the fit's intervals does not validate: {e}") from None
    values, per_debtor = _evaluate(scenarios[0], named, debtors, seed)
    if progress is not None:
        progress(1, len(scenarios))
    drawn: dict[str, list[float]] = {label: [] for label, _ in named}
    for i, sc in enumerate(scenarios[1:]):
        v, _ = _evaluate(sc, named, debtors, seed)
        for label in drawn:
            drawn[label].append(v[label])
        if progress is not None:
            progress(i + 2, len(scenarios))
    return Ranking(values, drawn, _pair_margins(per_debtor), debtors, seed)


def check(
    base: str = "default",
    perturbations: int = 20,
    accounts: int = 50_000,
    explore_share: float = 0.05,
    debtors: int = 20_000,
    seed: int = 0,
    replicates: int = 1,
    progress: Callable[[int, int], None] | None = None,
    out: str | Path | None = None,
    learners: tuple[str, ...] = (),
    draws: int = DRAWS,
) -> dict[str, Any]:
    """Known-truth recovery: for each of ``perturbations`` worlds (the base with every fitted key perturbed
    by up to +-30 %), simulate a history of ``accounts`` under the ladder with ``explore_share`` random
    allowed actions, fit it (the logging policy known), and compare: does each interval cover the truth,
    and is the net value of each rule policy and each of ``learners`` (trained policies: run or artifact
    directories; ``debtors`` debtors, same seed) on the fitted world within 5 % of its value on the true
    world, in the same order? With ``draws``, each fitted world is also ranked under its own uncertainty
    (:func:`rank_under_fit`): are the pairs it says it can order ordered as in the true world?"""
    if 0 < draws < MIN_DRAWS:
        raise CalibrationError(f"draws {draws}: ranking under a fit's uncertainty needs at least {MIN_DRAWS} drawn worlds (0 leaves it out)")
    for name in learners:
        resolve_policy(name)  # a wrong path fails now, not after the first world's fit
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for j, raw0, raw_true, truth in _worlds(base, seed, perturbations):
        sc_true = _scenario(raw_true)
        logging = ExploringLadder(explore_share)
        world = run_portfolio(sc_true, logging, accounts, seed * 1000 + 3 * j, record_events=True)  # type: ignore[arg-type]
        h = world_history(world)
        f = fit_history(h, raw0, base, f"perturbation {j}", seed * 1000 + 3 * j + 1, replicates, None, ExploringLadder(explore_share))  # type: ignore[arg-type]
        covered = {e.key: e.covers(truth[e.key]) for e in f.behaviour}
        pop_truth = _population_truth(raw_true)
        for e in f.population:
            if e.low < e.high and e.key in pop_truth:
                covered[e.key] = e.covers(pop_truth[e.key])
        v_true, margins = _values_and_margins(sc_true, debtors, seed * 1000 + 3 * j + 2, learners)
        extra: dict[str, Any] = {}
        if draws:
            ranking = rank_under_fit(f.raw, f.estimates(), _named(learners), debtors, seed * 1000 + 3 * j + 2, draws)
            v_fit = ranking.values
            extra = {"fit_pairs": ranking.pairs(), "fit_half_widths": {p: ranking.half_width(p) for p in v_fit}, "drawn": ranking.drawn}
        else:
            v_fit = _values(_scenario(f.raw), debtors, seed * 1000 + 3 * j + 2, learners)
        errors = {p: (v_fit[p] - v_true[p]) / abs(v_true[p]) for p in v_true}
        rows.append(
            {
                "perturbation": j,
                "covered": covered,
                "estimates": {e.key: [e.value, e.low, e.high, truth.get(e.key)] for e in f.behaviour},
                "value_true": v_true,
                "value_fitted": v_fit,
                "value_error": errors,
                "same_ranking": sorted(v_true, key=v_true.__getitem__) == sorted(v_fit, key=v_fit.__getitem__),
                "true_margins": margins,
                "fit_seconds": f.seconds,
            }
            | extra
        )
        if out is not None:  # after every world, so that a long check stopped early keeps what it measured
            write_json(Path(out) / "check.json", summarise_check(rows, base, accounts, explore_share, debtors, time.perf_counter() - start, draws))
        if progress is not None:
            progress(j + 1, perturbations)
    return summarise_check(rows, base, accounts, explore_share, debtors, time.perf_counter() - start, draws)


def _worlds(base: str, seed: int, perturbations: int) -> Any:
    """The known-truth worlds of ``check`` and ``transfer``, in order: (index, true raw, true knob values);
    the same ``seed`` gives both commands the same worlds."""
    raw0 = _base_raw(base)
    rng = np.random.default_rng([0x43484B, seed])
    for j in range(perturbations):
        raw_true, truth = perturb(raw0, rng)
        yield j, raw0, raw_true, truth


def _write_full_scenario(raw: dict[str, Any], name: str, path: Path) -> Path:
    """A whole scenario mapping as a YAML file (a training run takes a scenario by name or path)."""
    data = copy.deepcopy(raw)
    data.pop("extends", None)
    data["name"] = name
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda p: p.write_text(yaml.safe_dump(data, sort_keys=False)))


def transfer(
    base: str = "default",
    perturbations: int = 2,
    accounts: int = 50_000,
    explore_share: float = 0.05,
    debtors: int = 20_000,
    seed: int = 0,
    out: str | Path = "transfer",
    timesteps: int | None = None,
    train_overrides: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The step a team takes after a fit: train a learner on the fitted world and one on the true world
    (the shipped config, training seed 0), value both on the true world against the static ladder
    (``debtors`` debtors, the same debtors and luck), and report how much of the true-world learner's
    lift over the ladder the fitted-world learner keeps. The worlds are ``check``'s for the same seed."""
    from agents.train import train

    out = Path(out)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for j, raw0, raw_true, _truth in _worlds(base, seed, perturbations):
        world_dir = out / f"world_{j}"
        sc_true = _scenario(raw_true)
        if progress:
            progress(f"world {j}: history of {accounts:,} accounts and fit")
        world = run_portfolio(sc_true, ExploringLadder(explore_share), accounts, seed * 1000 + 3 * j, record_events=True)  # type: ignore[arg-type]
        h = world_history(world)
        del world
        f = fit_history(h, raw0, base, f"perturbation {j}", seed * 1000 + 3 * j + 1, 1, None, ExploringLadder(explore_share))  # type: ignore[arg-type]
        paths = {
            "true": _write_full_scenario(raw_true, f"{base}_perturbed_{j}", world_dir / "true.yaml"),
            "fitted": _write_full_scenario(f.raw, f"{base}_perturbed_{j}_fitted", world_dir / "fitted.yaml"),
        }
        runs: dict[str, dict[str, Any]] = {}
        for which, path in paths.items():
            if progress:
                progress(f"world {j}: training on the {which} world")
            t0 = time.perf_counter()
            run = train(str(path), timesteps=timesteps, seed=0, out=world_dir / "runs", train_overrides=train_overrides)
            runs[which] = {"run": str(run.root), "train_seconds": time.perf_counter() - t0}
        if progress:
            progress(f"world {j}: both learners on the true world")
        v = _values(sc_true, debtors, seed * 1000 + 3 * j + 2, (runs["true"]["run"], runs["fitted"]["run"]))
        ladder = v["static_ladder"]
        lift = {which: v[learner_label(r["run"])] - ladder for which, r in runs.items()}
        rows.append(
            {
                "perturbation": j,
                "static_ladder": ladder,
                "trained_on_true": v[learner_label(runs["true"]["run"])],
                "trained_on_fitted": v[learner_label(runs["fitted"]["run"])],
                "lift_true": lift["true"],
                "lift_fitted": lift["fitted"],
                "kept": lift["fitted"] / lift["true"] if lift["true"] > 0 else float("nan"),
                "runs": runs,
                "values": v,
            }
        )
        write_json(out / "transfer.json", summarise_transfer(rows, base, accounts, debtors, time.perf_counter() - start))
    return summarise_transfer(rows, base, accounts, debtors, time.perf_counter() - start)


def summarise_transfer(rows: list[dict[str, Any]], base: str, accounts: int, debtors: int, seconds: float) -> dict[str, Any]:
    kept = [r["kept"] for r in rows if not math.isnan(r["kept"])]
    return {
        "base": base,
        "perturbations": len(rows),
        "accounts": accounts,
        "evaluation_debtors": debtors,
        "seconds": seconds,
        "kept_min": min(kept) if kept else float("nan"),
        "kept_mean": float(np.mean(kept)) if kept else float("nan"),
        "at_least_90pct": sum(k >= 0.9 for k in kept),
        "worlds": rows,
    }


def format_transfer(t: dict[str, Any]) -> str:
    lines = [
        f"calibrate transfer: base {t['base']}, {t['perturbations']} perturbed worlds, histories of {t['accounts']:,} accounts; "
        f"learners valued on the true world ({t['evaluation_debtors']:,} debtors), {t['seconds'] / 60:.1f} min",
        "",
        "| world | static ladder | learner trained on the true world | learner trained on the fitted world | lift kept |",
        "|---|---|---|---|---|",
    ]
    for r in t["worlds"]:
        lines.append(
            f"| {r['perturbation']} | {r['static_ladder']:.2f} | {r['trained_on_true']:.2f} (lift {r['lift_true']:+.2f}) | "
            f"{r['trained_on_fitted']:.2f} (lift {r['lift_fitted']:+.2f}) | {r['kept']:.1%} |"
        )
    lines += ["", f"lift kept >= 90 %: {t['at_least_90pct']} of {t['perturbations']} worlds (min {t['kept_min']:.1%}, mean {t['kept_mean']:.1%})"]
    return "\n".join(lines)


def _population_truth(raw: dict[str, Any]) -> dict[str, float]:
    """The true values of the population estimates with an interval, in a simulated world's scenario."""
    pop = raw["population"]
    out = {
        "population.balance.median_eur": pop["balance"]["median_eur"],
        "population.balance.sigma": pop["balance"]["sigma"],
        "population.app_user_share": pop["app_user_share"],
    }
    out |= {f"population.products.{p}": pop["products"].get(p, 0.0) for p in PRODUCT_NAMES}
    out |= {f"population.on_file.{c}": pop["on_file"][c] for c in ("sms", "email", "letter", "push", "messenger")}
    return {k: float(v) for k, v in out.items()}


def summarise_check(
    rows: list[dict[str, Any]], base: str, accounts: int, explore_share: float, debtors: int, seconds: float, draws: int = 0
) -> dict[str, Any]:
    keys = sorted({k for r in rows for k in r["covered"]})
    coverage = {}
    for k in keys:
        hits = [r["covered"][k] for r in rows if k in r["covered"]]
        coverage[k] = {"covered": int(sum(hits)), "fits": len(hits), "share": sum(hits) / len(hits)}
    evaluated = list(rows[0]["value_error"]) if rows else list(RULE_POLICIES)
    errors = {p: [r["value_error"][p] for r in rows] for p in evaluated}
    return {
        "base": base,
        "perturbations": len(rows),
        "accounts": accounts,
        "explore_share": explore_share,
        "evaluation_debtors": debtors,
        "draws": draws,
        "seconds": seconds,
        "coverage": coverage,
        "parameters_at_least_85pct": sum(c["share"] >= 0.85 for c in coverage.values()),
        "parameters": len(coverage),
        "value_error_max_abs": {p: max(abs(e) for e in v) for p, v in errors.items()},
        "value_error_mean": {p: float(np.mean(v)) for p, v in errors.items()},
        "policies": evaluated,
        "within_5pct": sum(all(abs(r["value_error"][p]) <= 0.05 for p in evaluated) for r in rows),
        "same_ranking": sum(r["same_ranking"] for r in rows),
        **pairs_ordered(rows),
        "runs": rows,
    }


CLOSE = 0.01  # policies whose true values differ by less than this share are a near tie


def _known_order(r: dict[str, Any]) -> set[tuple[str, str]]:
    """The pairs of a check row whose true order is known (none without ``true_margins``)."""
    margins = r.get("true_margins")
    return set() if margins is None else set(stats.known_pairs(r["value_true"], lambda a, b: margins[f"{a}|{b}"]))


def pairs_ordered(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pairwise view of the ranking check: of every pair of policies in every world, the share the fitted
    world orders as the true one does, over all pairs, over the pairs apart by more than :data:`CLOSE`
    of their value, and over the pairs whose true order is known (rows with ``true_margins``: true
    values further apart than two standard errors of their difference, :func:`_values_and_margins`);
    the worlds whose fitted values order every known pair as the true ones do; and, for each world that
    swapped a pair, the widest true gap (share of value) among its swapped pairs."""
    alike = apart = apart_alike = total = known = known_alike = 0
    worlds_known_alike = 0
    swapped: list[float] = []
    unknown_swaps: list[str] = []
    for r in rows:
        vt, vf, margins = r["value_true"], r["value_fitted"], r.get("true_margins")
        known_order = _known_order(r)
        gaps = []
        world_alike = True
        for p, q in itertools.combinations(sorted(vt), 2):
            gap = abs(vt[p] - vt[q]) / max(abs(vt[p]), abs(vt[q]), 1e-9)
            same = (vt[p] - vt[q]) * (vf[p] - vf[q]) > 0
            total += 1
            alike += same
            if gap > CLOSE:
                apart += 1
                apart_alike += same
            if margins is not None:
                if (p, q) in known_order:
                    known += 1
                    known_alike += same
                    world_alike &= bool(same)
                elif not same:
                    unknown_swaps.append(
                        f"world {r['perturbation']}: {p} / {q}, {vt[p] - vt[q]:+.2f} EUR in the true world (two standard errors "
                        f"{margins[f'{p}|{q}']:.2f})"
                    )
            if not same:
                gaps.append(gap)
        if gaps:
            swapped.append(max(gaps))
        worlds_known_alike += world_alike
    out: dict[str, Any] = {
        "pairs": total,
        "pairs_alike": alike,
        "pairs_apart": apart,
        "pairs_apart_alike": apart_alike,
        "swapped_gaps": swapped,
    }
    if rows and all("true_margins" in r for r in rows):
        out |= {
            "pairs_known": known,
            "pairs_known_alike": known_alike,
            "same_known_order": worlds_known_alike,
            "swaps_of_unknown_order": unknown_swaps,
        }
    if rows and all("fit_pairs" in r for r in rows):
        out |= fit_orders(rows)
    return out


def fit_orders(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ranking as the fitted world states it under its own uncertainty (rows with ``fit_pairs``,
    :meth:`Ranking.pairs`): of the pairs each fitted world says it orders, how many the true world
    orders alike; the worlds whose every such pair is alike; the worlds that order every pair (a whole
    ranking) and whether it is the true one; and the pairs left open, with their true differences."""
    claimed = claimed_alike = worlds_alike = whole = whole_alike = known_claimed = 0
    values = values_covered = 0
    left_open: list[str] = []
    wrong: list[str] = []
    for r in rows:
        vt = r["value_true"]
        known_order = _known_order(r)
        alike = True
        for fp in r["fit_pairs"]:
            a, b = fp["ahead"], fp["behind"]
            true_diff = vt[a] - vt[b]
            is_known = tuple(sorted((a, b))) in known_order
            if fp["ordered"]:
                claimed += 1
                known_claimed += is_known
                ok = true_diff > 0
                claimed_alike += ok
                alike &= ok
                if not ok:
                    wrong.append(
                        f"world {r['perturbation']}: {a} ahead of {b} by {fp['difference']:.2f} +- {fp['half_width']:.2f} EUR; true {true_diff:+.2f}"
                    )
            else:
                left_open.append(
                    f"world {r['perturbation']}: {a} / {b}, {fp['difference']:+.2f} +- {fp['half_width']:.2f} EUR on the fitted world "
                    f"(ahead in {fp['ahead_in_draws']} of {fp['draws']} drawn worlds); {true_diff:+.2f} EUR in the true world"
                )
        worlds_alike += alike
        for p, half in r.get("fit_half_widths", {}).items():  # the same debtors and luck: the gap is the parameters'
            values += 1
            values_covered += abs(r["value_fitted"][p] - vt[p]) <= half
        if all(fp["ordered"] for fp in r["fit_pairs"]):
            whole += 1
            whole_alike += alike
    return {
        "pairs_fit_ordered": claimed,
        "pairs_fit_ordered_alike": claimed_alike,
        "worlds_fit_order_alike": worlds_alike,
        "worlds_fit_orders_every_pair": whole,
        "worlds_fit_orders_every_pair_alike": whole_alike,
        "pairs_known_fit_ordered": known_claimed,
        "values_within_fit_interval": values_covered,
        "values": values,
        "fit_left_open": left_open,
        "fit_ordered_wrongly": wrong,
    }


def format_check(c: dict[str, Any]) -> str:
    lines = [
        f"calibrate check: base {c['base']}, {c['perturbations']} perturbations (+-{PERTURBATION:.0%}), {c['accounts']:,} accounts each, "
        f"logging policy exploring_ladder:{c['explore_share']}, {c['seconds'] / 60:.1f} min",
        "",
        f"interval coverage (95 % intervals; target >= 85 %): {c['parameters_at_least_85pct']} of {c['parameters']} parameters reach it",
    ]
    for k, v in c["coverage"].items():
        flag = "" if v["share"] >= 0.85 else "   <-- below 85 %"
        lines.append(f"  {k:<66} {v['covered']:>3}/{v['fits']:<3} {v['share']:6.0%}{flag}")
    lines += ["", f"net value per debtor, fitted vs true world ({c['evaluation_debtors']:,} debtors, same seed): relative error"]
    for p in c["policies"]:
        lines.append(f"  {p:<30} mean {c['value_error_mean'][p]:+7.2%}   max |error| {c['value_error_max_abs'][p]:6.2%}")
    n = c["perturbations"]
    which = "rule policies and learners" if len(c["policies"]) > len(RULE_POLICIES) else "rule policies"
    lines += [
        f"all {which} within 5 %: {c['within_5pct']} of {n} perturbations",
        f"same ranking of the {which}: {c['same_ranking']} of {n}",
    ]
    if "pairs" in c:
        gaps = ", ".join(f"{g:.2%}" for g in c["swapped_gaps"])
        lines += [
            f"  pairs ordered alike: {c['pairs_alike']} of {c['pairs']}; of the pairs whose true values differ by more than "
            f"{CLOSE:.0%}: {c['pairs_apart_alike']} of {c['pairs_apart']}",
        ]
        if gaps:
            lines.append(f"  the widest true gap of a swapped pair, per world that swapped one: {gaps}")
    if "pairs_known" in c:
        lines += [
            f"same order of every pair the true world orders (true values more than two standard errors of their difference "
            f"apart, {c['evaluation_debtors']:,} debtors): {c['same_known_order']} of {n} worlds; such pairs ordered alike: "
            f"{c['pairs_known_alike']} of {c['pairs_known']}",
            *(f"  swapped, but of no known true order: {x}" for x in c["swaps_of_unknown_order"]),
        ]
    if "pairs_fit_ordered" in c:
        lines += [
            f"the ranking each fitted world states under its own uncertainty ({c.get('draws', DRAWS)} worlds drawn from its intervals): "
            f"every pair it orders ordered alike in the true world in {c['worlds_fit_order_alike']} of {n} worlds "
            f"({c['pairs_fit_ordered_alike']} of {c['pairs_fit_ordered']} pairs); a whole ranking stated in "
            f"{c['worlds_fit_orders_every_pair']} worlds, the true one in {c['worlds_fit_orders_every_pair_alike']}; "
            f"of the pairs the true world orders, the fit orders {c['pairs_known_fit_ordered']} of {c.get('pairs_known', '?')}; "
            f"true values within the fitted value +- the fit's 95 % half-width: {c['values_within_fit_interval']} of {c['values']}",
            *(f"  ordered, wrongly: {x}" for x in c["fit_ordered_wrongly"]),
            *(f"  left open by the fit: {x}" for x in c["fit_left_open"]),
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------ the command


def _bar_progress(bar: Any) -> Callable[[int, int], None]:
    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return update


def command(args: Any) -> int:
    """``collectrl calibrate fit`` and ``collectrl calibrate check`` (argparse namespace of experiments.cli)."""
    import json
    import sys

    from tqdm import tqdm

    from experiments.io import clean_json

    if args.action == "transfer":
        if not args.out:
            raise CalibrationError("calibrate transfer needs --out DIR (the worlds, the training runs and transfer.json go there)")

        def say(msg: str) -> None:
            if not args.no_progress:
                print(f"calibrate transfer: {msg}", file=sys.stderr, flush=True)

        t = transfer(
            args.base, args.perturbations or 2, args.accounts, args.explore_share, args.debtors, args.seed, args.out, args.timesteps, progress=say
        )
        print(json.dumps(clean_json({k: v for k, v in t.items() if k != "worlds"})) if args.json else format_transfer(t))
        return 0
    if args.action == "check":
        perturbations = args.perturbations or 20
        bar = None if args.no_progress else tqdm(total=perturbations, desc="calibrate check", unit="world", file=sys.stderr)
        result = check(
            args.base,
            perturbations,
            args.accounts,
            args.explore_share,
            args.debtors,
            args.seed,
            progress=None if bar is None else _bar_progress(bar),
            out=args.out,
            learners=tuple(args.learner or ()),
            draws=DRAWS if args.draws is None else args.draws,
        )
        if bar is not None:
            bar.close()
        print(json.dumps(clean_json({k: v for k, v in result.items() if k != "runs"})) if args.json else format_check(result))
        return 0
    if args.action == "rank":
        return _rank_command(args)
    if not args.history:
        raise CalibrationError("calibrate fit needs --history DIR (a folder in the history format)")
    if not args.out:
        raise CalibrationError("calibrate fit needs --out FILE.yaml (the fitted scenario to write)")
    if Path(args.out).suffix not in (".yaml", ".yml"):
        raise CalibrationError(f"--out {args.out}: the fitted scenario is a .yaml file")
    total = (1 + slope_replays() + NEWTON_STEPS) * args.replicates
    bar = None if args.no_progress else tqdm(total=total, desc="calibrate fit", unit="simulation", file=sys.stderr)
    f = fit(
        args.history,
        args.base,
        args.seed,
        args.replicates,
        progress=(lambda _msg: bar.update(1)) if bar is not None else None,
        logging_policy=args.logging_policy,
        workers=args.workers,
        backend=args.backend,
        ray_address=args.ray_address,
    )
    if bar is not None:
        bar.total = bar.n  # knobs this history cannot identify have no slope replay: the bar ends full
        bar.refresh()
        bar.close()
    path = write_scenario(f, args.out)
    from experiments.calibrate_report import write_report
    from sim.config import load_scenario

    sc = load_scenario(str(path))  # the file loads as any scenario does
    logging = make_policy(args.logging_policy) if args.logging_policy else None
    report = write_report(f, load_history(args.history), sc, report_folder(path), path, seed=args.seed + 100, logging=logging)
    if args.json:
        print(json.dumps(clean_json(fit_summary(f) | {"scenario": str(path), "report": [str(p) for p in report]})))
        return 0
    print(format_fit(f))
    print(f"wrote {path}")
    for p in report:
        print(f"wrote {p}")
    return 0


def report_folder(scenario: str | Path) -> Path:
    """Where ``calibrate fit`` puts the report (and fit.json) of the scenario it writes to ``scenario``."""
    path = Path(scenario)
    return path.parent / f"{path.stem}_report"


def load_fit_estimates(scenario: str | Path) -> list[Estimate]:
    """The estimates of the fit that wrote ``scenario`` (its report folder's fit.json, written by ``calibrate fit``)."""
    import json

    from experiments.calibrate_report import FIT_JSON

    where = report_folder(scenario) / FIT_JSON
    if not where.is_file():
        raise CalibrationError(
            f"{scenario}: no fit beside it ({where} is missing); calibrate rank needs a scenario written by "
            f"`collectrl calibrate fit --out {scenario}` together with its report folder"
        )
    try:
        rows = json.loads(where.read_text())["estimates"]
        out = []
        for i, row in enumerate(rows):
            numbers = {k: (float("nan") if row.get(k) is None else row[k]) for k in ("value", "low", "high", "base")}
            if not isinstance(row.get("key"), str) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers.values()):
                raise ValueError(f"estimate {i} needs a key and numbers for value, low, high and base")
            value, low, high, base = (float(numbers[k]) for k in ("value", "low", "high", "base"))
            out.append(Estimate(row["key"], value, low, high, base, str(row.get("method", ""))))
        return out
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CalibrationError(f"{where}: not a fit's estimates ({e}); write it again with `collectrl calibrate fit`") from None


def edited_keys(raw: dict[str, Any], estimates: list[Estimate]) -> tuple[list[str], int]:
    """The fitted keys (knobs set by value, and population keys drawn) whose value in the scenario ``raw``
    is not the fit's (beyond the file's 6 significant digits), and how many were compared."""
    edited, compared = [], 0
    for e in estimates:
        spec = _drawn_key(e)
        if spec is None or (spec[0] is not None and spec[0].per_archetype):
            continue  # families are multipliers on the base, not values in the file
        path = spec[0].path if spec[0] is not None else tuple(e.key.split("."))
        compared += 1
        if not _has(raw, path) or not math.isclose(float(_get(raw, path)), e.value, rel_tol=1e-5, abs_tol=1e-9):
            edited.append(e.key)
    return edited, compared


def _rank_command(args: Any) -> int:
    """``collectrl calibrate rank --scenario FITTED.yaml --policies a,b,...``: rank policies under the fit's uncertainty."""
    import json
    import sys

    from tqdm import tqdm

    from experiments.calibrate_report import format_ranking, ranking_json, write_ranking
    from experiments.io import clean_json

    if args.scenario in (None, "all") or Path(args.scenario).suffix not in (".yaml", ".yml"):
        raise CalibrationError("calibrate rank needs --scenario FITTED.yaml (a scenario written by `collectrl calibrate fit`)")
    if not Path(args.scenario).is_file():
        raise CalibrationError(f"--scenario {args.scenario}: no such file")
    if args.set or args.learner:
        raise CalibrationError(
            "calibrate rank takes no --set or --learner: edit the fitted file for a what-if (an edited value is drawn around), "
            "and give learners in --policies"
        )
    draws = DRAWS if args.draws is None else args.draws
    if draws < MIN_DRAWS:
        raise CalibrationError(f"--draws {draws}: ranking under a fit's uncertainty needs at least {MIN_DRAWS} drawn worlds")
    estimates = load_fit_estimates(args.scenario)
    try:
        raw = load_raw(args.scenario)
    except ConfigError as e:
        raise CalibrationError(f"--scenario {args.scenario}: {e}") from None
    edited, compared = edited_keys(raw, estimates)
    if compared and 2 * len(edited) > compared:  # a hand-edited value or two is a what-if; most of them is another fit
        raise CalibrationError(
            f"{args.scenario}: {len(edited)} of its {compared} fitted values are not those in {report_folder(args.scenario)}; that fit.json "
            "belongs to another scenario (write both again with `collectrl calibrate fit`)"
        )
    if edited:
        print(f"calibrate rank: {', '.join(edited)} differ from the fit's values; drawn around the scenario's", file=sys.stderr)
    names = [p.strip() for p in (args.policies or ",".join(RULE_POLICIES)).split(",") if p.strip()]
    if len(names) < 2:
        raise CalibrationError(f"--policies {args.policies}: give two or more different policies, comma-separated")
    named = policy_labels(names)
    for _, n in named:
        resolve_policy(n)  # an unknown name fails before any simulation
    bar = None if args.no_progress else tqdm(total=draws + 1, desc="calibrate rank", unit="world", file=sys.stderr)
    rk = rank_under_fit(raw, estimates, named, args.debtors, args.seed, draws, None if bar is None else _bar_progress(bar))
    if bar is not None:
        bar.close()
    result = ranking_json(rk, str(args.scenario), draws)
    written = write_ranking(result, args.out) if args.out else []
    if args.json:
        print(json.dumps(clean_json(result | {"written": [str(p) for p in written]})))
        return 0
    print(format_ranking(result))
    for p in written:
        print(f"wrote {p}")
    return 0


def fit_summary(f: Fit) -> dict[str, Any]:
    return {
        "history": f.history,
        "base": f.base,
        "accounts": f.accounts,
        "days": f.days,
        "seconds": f.seconds,
        "simulations": f.replays,
        "estimates": [vars(e) for e in f.estimates()],
        "not_identified": [{"key": k, "why": w} for k, w in f.not_identified],
    }


def format_fit(f: Fit) -> str:
    lines = [f"calibrate fit: {f.history} ({f.accounts:,} accounts, {f.days} days) on {f.base}, {f.seconds:.0f} s, {f.replays} simulations", ""]
    lines.append(f"{'key':<66} {'fitted':>10} {'95 % interval':>24} {'base':>10}")
    for e in f.estimates():
        lines.append(f"{e.key:<66} {e.value:>10.4g} [{e.low:>10.4g}, {e.high:>10.4g}] {e.base:>10.4g}")
    lines += ["", "not identifiable from this history (kept at the base value):"]
    lines += [f"  {k}: {w}" for k, w in f.not_identified]
    return "\n".join(lines)
