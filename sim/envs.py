"""Gymnasium environments: thin adapters over :class:`sim.world.World`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from policies.features import FEATURE_NAMES, N_FEATURES, encode, encode_row_f32
from policies.schema import ACTION_DIMS, CONTACT_CHANNEL_NAMES, OFFER_NAMES, TONE_NAMES
from sim.config import ARCHETYPES, Scenario, load_scenario
from sim.population import sample
from sim.single import OneDebtor
from sim.world import REWARD_COMPONENTS, DayResult, Status, World

_OPEN = int(Status.OPEN)


@dataclass
class BatchStep:
    """What :meth:`DebtorBatchEnv.advance` returns."""

    obs: np.ndarray  # (n_slots, N_FEATURES), finished slots already show their next debtor
    result: DayResult
    done_slots: np.ndarray  # slots whose debtor episode ended today
    final_obs: np.ndarray  # (len(done_slots), N_FEATURES), their last observation
    blocked: int
    calls_dropped: int


# the latent traits a training-only critic may see (``DebtorBatchEnv(latent="all")``): standardised by
# the scenario's own population, so a value of 1 is one standard deviation above its mean
_LATENT_TRAITS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ability", ("",)),
    ("willingness", ("",)),
    ("attention", CONTACT_CHANNEL_NAMES),
    ("tone_effect", TONE_NAMES),
    ("offer_effect", OFFER_NAMES),
    ("self_cure", ("",)),
    ("ability_growth", ("",)),
    ("complaint_logit", ("",)),
    ("churn_logit", ("",)),
)
_LATENT_SAMPLE = 20_000  # debtors drawn (seed 0) to standardise the traits


LATENT_VIEWS = ("all", "state")


class LatentView:
    """What the strategy never sees, as feature columns. ``"all"``: the archetype (one-hot), whether the
    debtor is distressed, the standardised traits of ``_LATENT_TRAITS`` and the latent state;
    ``"state"``: the latent state alone, i.e. what a contact changes that the view does not show
    (fatigue; the unprompted-repayment intensity, over the population's mean self-cure rate).

    Only for training an asymmetric critic (a value function that knows the debtor, so the advantage
    of a contact is measured against what this debtor was worth anyway); the actor, the exported
    policy and every evaluation see the observable features alone."""

    def __init__(self, sc: Scenario, which: str = "all") -> None:
        if which not in LATENT_VIEWS:
            raise ValueError(f"unknown latent view {which!r}; choose one of {', '.join(LATENT_VIEWS)}")
        self.traits = which == "all"
        d = sample(sc, 0, 0, _LATENT_SAMPLE)
        self._mean: dict[str, np.ndarray] = {}
        self._sd: dict[str, np.ndarray] = {}
        for name, _ in _LATENT_TRAITS:
            x = np.asarray(getattr(d, name), dtype=np.float64)
            self._mean[name] = x.mean(axis=0)
            self._sd[name] = np.maximum(x.std(axis=0), 1e-9)
        self._cure = max(float(np.mean(d.self_cure)), 1e-9)
        traits = (
            *(f"archetype_{a}" for a in ARCHETYPES),
            "distressed",
            *(f"{n}_{c}" if c else n for n, cols in _LATENT_TRAITS for c in cols),
        )
        self.names: tuple[str, ...] = (*(traits if self.traits else ()), "fatigue", "intensity")
        self.width = len(self.names)

    def encode(self, world: World, idx: np.ndarray | None = None) -> np.ndarray:
        """``(len(idx), width)`` float32 for the slots ``idx`` (all slots if None)."""
        t, s = world.traits, world.state
        take = (lambda x: x) if idx is None else (lambda x: x[idx])
        parts: list[np.ndarray] = []
        if self.traits:
            arch = take(t.archetype).astype(np.int64)
            parts += [np.eye(len(ARCHETYPES))[arch], take(t.distressed).astype(np.float64)[:, None]]
            for name, _ in _LATENT_TRAITS:
                z = (take(getattr(t, name)) - self._mean[name]) / self._sd[name]
                parts.append(z.reshape(len(arch), -1))
        parts.append(take(s.fatigue)[:, None])
        parts.append((take(s.intensity) / self._cure)[:, None])
        out = np.concatenate(parts, axis=1).astype(np.float32)
        assert out.shape[1] == self.width, (out.shape, self.width)
        return out


def _scenario(scenario: str | Scenario, overrides: tuple[str, ...] | list[str]) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario, list(overrides))


def _obs_space(shape: tuple[int, ...]) -> spaces.Box:
    return spaces.Box(low=-1.0, high=np.inf, shape=shape, dtype=np.float32)


class DebtorEnv(gym.Env[np.ndarray, np.ndarray]):
    """One debtor per episode, one step per day: choose today's contact.

    ## Description
    A debtor enters collections with a balance, some days past due. Each day the agent chooses to
    wait or to contact them on a channel, in a local time window, with a tone and an offer. The
    debtor's ability and willingness to pay, reachability, habits and reactions are latent; the
    agent sees only what a collections system knows (``policies.schema.ViewBatch``).

    ## Action Space
    ``MultiDiscrete([7, 4, 4, 4])``:

    | index | name    | values                                                                  |
    |-------|---------|-------------------------------------------------------------------------|
    | 0     | channel | 0 wait, 1 sms, 2 email, 3 push, 4 messenger, 5 letter, 6 call           |
    | 1     | window  | 0 08-12h, 1 12-17h, 2 17-21h, 3 21-23h (local time)                     |
    | 2     | tone    | 0 friendly, 1 empathetic, 2 social norm, 3 firm                         |
    | 3     | offer   | 0 none, 1 instalment plan, 2 settlement discount, 3 short deferral      |

    ``action_masks()`` returns the 19 booleans (7 + 4 + 4 + 4) allowed by the scenario's
    compliance profile, in the layout sb3-contrib's ``MaskablePPO`` expects. A disallowed action
    is not executed: it is blocked, counted (``info["blocked"]``) and the debtor is not contacted.

    ## Observation Space
    ``Box(-1, inf, (58,), float32)``: the feature vector of :mod:`policies.features` (the same
    encoder the production runtime uses). Main groups, with units before scaling: balance and
    outstanding (EUR, log-scaled), days past due, days in collections and days left (days / 365),
    product (one-hot), behaviour score (0-1), app user, channels on file and opted out (per
    channel), contact attempts in the last 7 days (per channel, / 7), days since the last
    contact, response and telephone conversation (min(days, 90) / 90), promise and plan state,
    complaints, disclosed vulnerability, last outcome (one-hot), day of week and of month (sin,
    cos). ``policies.features.FEATURES`` lists every column with its unit.

    ## Rewards
    Net value of the day in EUR, discounted to the debtor's entry at the scenario's annual rate:
    cash collected - contact costs - complaint and opt-out penalties - lost retention value if
    the customer churns on resolution + the debt-sale proceeds at the horizon. Each component is
    in ``info`` (``cash``, ``contact_cost``, ``complaint_penalty``, ``opt_out_penalty``,
    ``churn_penalty``, ``terminal_value``), with ``blocked`` (today's action was not allowed),
    ``calls_dropped`` (today's call found no agent on shift: 0 or 1), ``outstanding_eur`` and
    ``collected_eur``.

    ## Starting State
    A new debtor sampled from the scenario's population (seeded: ``reset(seed=s)`` starts the
    same sequence of debtors and the same luck).

    ## Episode End
    ``terminated``: the debt is resolved (paid in full, settled, or instalment plan completed), or the
    horizon (``horizon_days``) is reached and the rest is sold (``info["sold"]``). The sale is part of
    the task, not a cut-off: the days left are observed and the sale's proceeds are the last reward,
    so nothing follows it. ``truncated`` is never set (v0 reported the sale as a truncation, which
    made learners that bootstrap truncated episodes, as stable-baselines3 does, add a value after it).

    ## Arguments
    ``gym.make("collectrl/Debtor-v1", scenario="default", overrides=(), horizon_days=None)``.
    The call centre is the scenario's scaled to one debtor: for the presets, one agent on the
    largest shift (08:00-16:00), so a call in a window outside it is not made (it costs nothing,
    counts as an attempt, and shows in ``info["calls_dropped"]``). Queueing for agents among many
    debtors lives in ``collectrl/DebtorBatch-v0`` and in the simulator.

    ## Engine
    :class:`sim.single.OneDebtor`: the simulator's rules for one debtor in plain Python (tens of
    microseconds a day, where the batched SimPy world spends ~0.5 ms on a batch of one). It gives
    the observations, rewards and episode ends of ``World(scenario, 1, seed, mode="episodic")``;
    ``tests/test_single.py`` compares the two day by day (on these machines, to the last bit).

    ## Version History
    * v1: the sale at the horizon ends the episode as a termination (``info["sold"]`` says which end).
    * v0: initial version; the sale was reported as a truncation.
    """

    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(self, scenario: str | Scenario = "default", overrides: tuple[str, ...] = (), horizon_days: int | None = None) -> None:
        self.scenario = _scenario(scenario, overrides)
        self.horizon_days = horizon_days
        self.action_space = spaces.MultiDiscrete(np.array(ACTION_DIMS, dtype=np.int64))
        self.observation_space = _obs_space((N_FEATURES,))
        self.feature_names = FEATURE_NAMES
        self._debtor: OneDebtor | None = None

    @property
    def debtor(self) -> OneDebtor:
        """The engine holding the current debtor (:class:`sim.single.OneDebtor`)."""
        if self._debtor is None:
            raise RuntimeError("call reset() first")
        return self._debtor

    def _observe(self) -> np.ndarray:
        return encode_row_f32(self.debtor.row())

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None or self._debtor is None:
            s = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
            self._debtor = OneDebtor(self.scenario, s, horizon_days=self.horizon_days)
        else:
            self._debtor.next_debtor()
        return self._observe(), {"debtor": self._debtor.debtor_id}

    def action_masks(self) -> np.ndarray:
        d = self._debtor
        if d is None:
            raise RuntimeError("call reset() first")
        return np.array(d.mask(), dtype=bool)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        d = self._debtor
        if d is None or d.status != _OPEN:
            raise RuntimeError("call reset() first" if d is None else "the episode is over; call reset()")
        dropped = d.calls_dropped
        res = d.step(action)
        info: dict[str, Any] = res.components  # a new dict every step
        info["calls_dropped"] = d.calls_dropped - dropped
        info["blocked"] = res.blocked
        info["outstanding_eur"] = d.outstanding
        info["collected_eur"] = d.collected
        info["sold"] = res.truncated
        # the sale is part of the task (days_left is observed, its proceeds are the last reward): a
        # termination, so that learners do not bootstrap a value after it (as they do after truncations)
        return encode_row_f32(d.row()), res.reward, res.terminated or res.truncated, False, info


class DebtorBatchEnv(gym.Env[np.ndarray, np.ndarray]):
    """Many debtor slots in one world, sharing its clock and its call centre; one step per day.

    ## Description
    ``n_slots`` debtors are managed at once. When a slot's debtor is resolved or sold, the next
    debtor of the seeded population takes the slot the next day (auto-reset), so the env is a
    continuing stream of debtor episodes; the env's own episode is truncated after
    ``episode_days`` days. Calls of all slots compete for the same agents: calls beyond the
    capacity of a window are not made (``info["calls_dropped"]``).

    ## Action Space
    ``MultiDiscrete(tile([7, 4, 4, 4], n_slots))``: slot ``i`` uses entries ``4i .. 4i+3``
    (channel, window, tone, offer; see :class:`DebtorEnv`). ``action_masks()`` returns
    ``n_slots * 19`` booleans, slot by slot.

    ## Observation Space
    ``Box(-1, inf, (n_slots, 58), float32)``: one feature row per slot (:class:`DebtorEnv`). With
    ``latent="all"`` (or ``"state"``) each row also carries the :class:`LatentView` columns after the 58 (for a
    training-only critic; a policy must not read them).

    ## Rewards
    The scalar reward is the sum over slots of the day's discounted net value (EUR). Per-slot
    values are in ``info["slot_reward"]`` (float array) and per component in
    ``info["slot_<component>"]``; ``info["slot_terminated"]`` and ``info["slot_truncated"]``
    say which slots ended a debtor episode today (their observation row already shows the
    next debtor).

    ## Starting State
    ``n_slots`` new debtors, all on their first day in collections.

    ## Episode End
    Never terminated; truncated after ``episode_days`` days (default: twice the horizon).

    ## Arguments
    ``gym.make("collectrl/DebtorBatch-v0", scenario="default", n_slots=256, overrides=(), horizon_days=None, episode_days=None)``

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        scenario: str | Scenario = "default",
        n_slots: int = 256,
        overrides: tuple[str, ...] = (),
        horizon_days: int | None = None,
        episode_days: int | None = None,
        latent: str = "none",
    ) -> None:
        if n_slots < 1:
            raise ValueError("n_slots must be >= 1")
        self.scenario = _scenario(scenario, overrides)
        self.n_slots = n_slots
        self.horizon_days = horizon_days
        self.episode_days = episode_days or 2 * (horizon_days or self.scenario.horizon_days)
        self.action_space = spaces.MultiDiscrete(np.tile(np.array(ACTION_DIMS, dtype=np.int64), n_slots))
        self.latent = LatentView(self.scenario, latent) if latent != "none" else None
        self.observation_space = _obs_space((n_slots, N_FEATURES + (self.latent.width if self.latent is not None else 0)))
        self._world: World | None = None
        self._obs = np.zeros((n_slots, N_FEATURES), dtype=np.float32)
        self._t = 0

    @property
    def world(self) -> World:
        assert self._world is not None, "call reset() first"
        return self._world

    def _observe(self) -> np.ndarray:
        encode(self.world.views(), out=self._obs)
        if self.latent is None:
            return self._obs.copy()
        return np.concatenate([self._obs, self.latent.encode(self.world)], axis=1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        s = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        self._world = World(self.scenario, self.n_slots, s, mode="episodic", horizon_days=self.horizon_days)
        self._t = 0
        return self._observe(), {}

    def action_masks(self) -> np.ndarray:
        return self.world.action_mask().reshape(-1)

    def advance(self, actions: np.ndarray) -> BatchStep:
        """One day for every slot: (n_slots, 4) actions in; rewards, ends, the final observation of
        each finished slot (before the next debtor takes it) and the next observations out."""
        w = self.world
        a = np.asarray(actions, dtype=np.int64).reshape(self.n_slots, 4)
        dropped_before = int(w.calls_dropped.sum())
        res = w.step(a)
        dropped = int(w.calls_dropped.sum()) - dropped_before  # before refill resets the slots
        done = res.terminated | res.truncated
        done_idx = np.flatnonzero(done)
        final_obs = np.zeros((0, self.observation_space.shape[1]), dtype=np.float32)  # type: ignore[index]
        if len(done_idx):
            final_obs = encode(w.views().take(done_idx))
            if self.latent is not None:
                final_obs = np.concatenate([final_obs, self.latent.encode(w, done_idx)], axis=1)
            w.refill(done_idx)
        self._t += 1
        return BatchStep(self._observe(), res, done_idx, final_obs, int(res.blocked.sum()), dropped)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        out = self.advance(action)
        res = out.result
        info: dict[str, Any] = {
            "slot_reward": res.reward,
            "slot_terminated": res.terminated,
            "slot_truncated": res.truncated,
            "blocked": out.blocked,
            "calls_dropped": out.calls_dropped,
            **{f"slot_{k}": res.components[k] for k in REWARD_COMPONENTS},
        }
        return out.obs, float(res.reward.sum()), False, self._t >= self.episode_days, info
