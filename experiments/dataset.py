"""Logged datasets for offline-RL research: ``collectrl dataset`` writes a Minari dataset.

Episodes are debtors of ``collectrl/Debtor-v0`` (one debtor per episode, one step per day), run
under a *logging policy* whose action probabilities are known:

* a learned policy (a training run directory, or an exported ONNX artifact) **samples from its own
  probabilities** (the masked, per-dimension softmax of its logit head), so every action has a
  known probability; a Q-value learner (DQN) and a rule policy choose deterministically;
* ``epsilon`` mixes in uniformly random allowed actions (the distribution of ``random``: uniform
  over the allowed channels, then over the allowed windows, tones and offers), so a deterministic
  rule such as the static ladder still explores with known probabilities.

Each step's ``infos`` carry ``propensity`` (the probability the logging policy gave the action
taken from that state, under the mixture) and ``action_mask`` (the 19 allowed-value booleans of
that state), aligned with ``actions``: ``infos["propensity"][t]`` belongs to ``actions[t]``; the
last entry of an episode (the final observation, where no action is taken) has propensity NaN.

The dataset's environment is recoverable (``dataset.recover_environment()`` makes
``collectrl/Debtor-v0`` with the same scenario), and its reference scores are the leaderboard's:
``ref_min_score`` is the static ladder's and ``ref_max_score`` the oracle's net value per debtor on
the leaderboard protocol, so ``dataset.get_normalized_score(returns)`` is the leaderboard's
normalised score (0 = static ladder, 1 = oracle).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import sim  # noqa: F401  (registers collectrl/Debtor-v0)
from agents.learned import LearnedPolicy, action_logits
from experiments.errors import UsageError
from experiments.evaluate import evaluate
from experiments.leaderboard import PROTOCOL_DEBTORS, PROTOCOL_SEEDS
from experiments.learned import ArtifactPolicy
from experiments.resolve import resolve_policy
from policies.base import Policy
from policies.decision import HEAD_WIDTH, masked_probabilities
from policies.features import encode
from policies.records import views_from_rows
from policies.schema import ACTION_DIMS, Channel
from sim.config import load_scenario
from sim.envs import DebtorEnv

_SEGMENTS = tuple((int(s), int(n)) for s, n in zip(np.cumsum((0, *ACTION_DIMS[:-1])), ACTION_DIMS, strict=True))
Probs = list[np.ndarray]  # four (N, size) arrays: channel, window, tone, offer


@dataclass(frozen=True)
class DatasetSummary:
    dataset_id: str
    path: Path
    episodes: int
    steps: int
    mean_return: float
    ref_min_score: float
    ref_max_score: float
    normalised_score: float
    min_propensity: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def uniform_probabilities(mask: np.ndarray) -> Probs:
    """The exploration distribution: uniform over the allowed values of each action dimension."""
    out = []
    for s, n in _SEGMENTS:
        m = mask[:, s : s + n].astype(np.float64)
        out.append(m / m.sum(axis=1, keepdims=True))
    return out


def one_hot(actions: np.ndarray) -> Probs:
    """A deterministic choice as probabilities (1 on the action taken in every dimension)."""
    out = []
    for k, (_, n) in enumerate(_SEGMENTS):
        p = np.zeros((len(actions), n))
        p[np.arange(len(actions)), actions[:, k]] = 1.0
        out.append(p)
    return out


def joint_probability(probs: Probs, actions: np.ndarray) -> np.ndarray:
    """P(action) under per-dimension probabilities; waiting ignores window, tone and offer, so its
    probability is the channel's alone (the convention of ``policies.decision.propensity_row``)."""
    rows = np.arange(len(actions))
    p = probs[0][rows, actions[:, 0]]
    rest = probs[1][rows, actions[:, 1]] * probs[2][rows, actions[:, 2]] * probs[3][rows, actions[:, 3]]
    return np.where(actions[:, 0] == Channel.WAIT, p, p * rest)


def _sample(probs: Probs, rng: np.random.Generator) -> np.ndarray:
    n = len(probs[0])
    out = np.empty((n, len(probs)), dtype=np.int64)
    for k, p in enumerate(probs):
        out[:, k] = (rng.random((n, 1)) > np.cumsum(p, axis=1)).sum(axis=1).clip(0, p.shape[1] - 1)
    return out


class LoggingPolicy:
    """A policy with known action probabilities: ``choose(views, mask) -> (actions, propensities)``.

    A logit-head learner samples from its masked probabilities; anything else acts as it does and
    counts as deterministic. ``epsilon`` of the decisions take a uniformly random allowed action.
    """

    def __init__(self, policy: Policy, epsilon: float, rng: np.random.Generator) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise UsageError(f"--epsilon must lie in [0, 1], got {epsilon}")
        self.policy, self.epsilon, self.rng = policy, epsilon, rng
        self._scores = self._score_function(policy)

    @staticmethod
    def _score_function(policy: Policy) -> Callable[[Any], np.ndarray] | None:
        if isinstance(policy, LearnedPolicy):
            return lambda views: action_logits(policy.model, encode(views))
        if isinstance(policy, ArtifactPolicy) and policy.fn.kind == "onnx":
            return lambda views: policy.fn.scores(encode(views))
        return None

    @property
    def stochastic(self) -> bool:
        return self._scores is not None

    def probabilities(self, views: Any, mask: np.ndarray) -> tuple[Probs | None, np.ndarray | None]:
        """The policy's own probabilities (a logit head), or its deterministic actions."""
        if self._scores is not None:
            scores = self._scores(views)
            if scores.shape[1] == HEAD_WIDTH:
                return masked_probabilities(scores, mask), None
        return None, np.asarray(self.policy.act(views, mask), dtype=np.int64)

    def choose(self, views: Any, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, fixed = self.probabilities(views, mask)
        own = _sample(probs, self.rng) if probs is not None else fixed
        assert own is not None
        uniform = uniform_probabilities(mask)
        explore = self.rng.random(len(own)) < self.epsilon
        actions = np.where(explore[:, None], _sample(uniform, self.rng), own)
        own_p = joint_probability(probs if probs is not None else one_hot(own), actions)
        if probs is None:  # deterministic: equal to its choice, a wait equal to a wait
            same = (actions == own).all(axis=1) | ((actions[:, 0] == Channel.WAIT) & (own[:, 0] == Channel.WAIT))
            own_p = same.astype(np.float64)
        return actions, (1.0 - self.epsilon) * own_p + self.epsilon * joint_probability(uniform, actions)


def reference_scores(scenario: str, debtors: int, seeds: tuple[int, ...]) -> tuple[float, float]:
    """The static ladder's and the oracle's net value per debtor (EUR) on the leaderboard protocol."""
    ev = evaluate(load_scenario(scenario), ["static_ladder", "oracle"], debtors, list(seeds), "static_ladder")
    return float(ev.results["static_ladder"].kpis["net_value_per_debtor"].mean), float(ev.results["oracle"].kpis["net_value_per_debtor"].mean)


def _label(policy_name: str, policy: Policy) -> str:
    raw = getattr(policy, "policy_id", None) or Path(policy_name).name or policy_name
    return "".join(c if c.isalnum() or c == "_" else "_" for c in str(raw)).strip("_") or "policy"


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    """Minari reads its datasets folder from MINARI_DATASETS_PATH at each call."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def make_dataset(
    scenario: str,
    policy_name: str,
    episodes: int,
    out: Path,
    *,
    epsilon: float = 0.0,
    seed: int = 0,
    name: str | None = None,
    ref_debtors: int = PROTOCOL_DEBTORS,
    ref_seeds: tuple[int, ...] = PROTOCOL_SEEDS,
    progress: Callable[[int], None] | None = None,
) -> DatasetSummary:
    """Run ``episodes`` debtors of ``scenario`` under the logging policy and write the Minari
    dataset ``collectrl/{scenario}/{name}-v0`` under ``out`` (a Minari datasets folder).

    The dataset is assembled in a temporary folder beside ``out`` and moved into place only when it
    is complete, so an interrupted run never replaces a good dataset of the same id.
    """
    import minari
    from minari.data_collector import EpisodeBuffer

    if episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {episodes}")
    load_scenario(scenario)  # a clear error for an unknown scenario before anything runs
    policy = resolve_policy(policy_name)
    if hasattr(policy, "act_with_world"):
        raise UsageError(
            f"{policy_name!r} reads the simulator's hidden state (or learns online); a logging policy must act on what a collections system sees"
        )
    rng = np.random.default_rng(seed)
    logger = LoggingPolicy(policy, epsilon, rng)
    if not logger.stochastic and epsilon == 0.0:
        raise UsageError(
            f"{policy_name!r} chooses deterministically, so its logs cannot evaluate any other policy; give --epsilon (e.g. 0.1) "
            "for a share of random allowed actions"
        )
    label = name or (_label(policy_name, policy) + (f"_eps{epsilon:g}".replace(".", "p") if epsilon else ""))
    dataset_id = f"collectrl/{scenario}/{label}-v0"
    if hasattr(policy, "reset"):
        policy.reset(seed)
    env = gym.make("collectrl/Debtor-v0", scenario=scenario)
    base: DebtorEnv = env.unwrapped  # type: ignore[assignment]
    buffers: list[EpisodeBuffer] = []
    returns, steps, min_prop = [], 0, 1.0
    for ep in range(episodes):
        ep_seed = seed * 1_000_003 + ep
        obs, _ = env.reset(seed=ep_seed)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        props: list[float] = []
        masks: list[np.ndarray] = []
        blocked, cash, cost = [False], [0.0], [0.0]
        done = False
        while not done:
            mask = base.action_masks().astype(bool)[None]
            a, p = logger.choose(views_from_rows([base.debtor.row()]), mask)
            obs, r, term, trunc, info = env.step(a[0])
            observations.append(obs)
            actions.append(a[0])
            rewards.append(float(r))
            terms.append(bool(term))
            truncs.append(bool(trunc))
            props.append(float(p[0]))
            masks.append(mask[0])
            blocked.append(bool(info["blocked"]))
            cash.append(float(info["cash"]))
            cost.append(float(info["contact_cost"]))
            done = term or trunc
        masks.append(base.action_masks().astype(bool))
        props.append(float("nan"))
        buffers.append(
            EpisodeBuffer(
                id=ep,
                seed=ep_seed,
                observations=np.asarray(observations, dtype=np.float32),
                actions=np.asarray(actions, dtype=np.int64),
                rewards=rewards,
                terminations=terms,
                truncations=truncs,
                infos={
                    "propensity": np.asarray(props),
                    "action_mask": np.asarray(masks),
                    "blocked": np.asarray(blocked),
                    "cash": np.asarray(cash),
                    "contact_cost": np.asarray(cost),
                },
            )
        )
        returns.append(sum(rewards))
        steps += len(actions)
        min_prop = min(min_prop, min(props[:-1]))
        if progress is not None:
            progress(ep + 1)
    low, high = reference_scores(scenario, ref_debtors, ref_seeds)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dataset-", dir=out))
    try:
        with _minari_root(staging), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*author_email.*")  # the dataset names its code instead
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=buffers,
                env=env,
                eval_env=env.spec,  # its spec (collectrl/Debtor-v0 with this scenario) makes the dataset's environment recoverable
                algorithm_name=f"{label} (logging policy: {policy_name}, epsilon {epsilon:g})",
                author="collectrl",
                code_permalink="collectrl: experiments/dataset.py",
                ref_min_score=low,
                ref_max_score=high,
                description=(
                    f"{episodes} debtors of the collectrl scenario {scenario!r} under {policy_name!r} with {epsilon:g} random allowed actions. "
                    "infos: propensity (of actions[t] under the logging mixture; NaN on the final observation), action_mask (19 allowed-value "
                    "booleans), blocked, cash, contact_cost. Reference scores: static ladder (min) and oracle (max) net value per debtor on "
                    f"the leaderboard protocol ({ref_debtors:,} debtors x seeds {list(ref_seeds)})."
                ),
            )
        final = out / dataset_id
        new = staging / dataset_id
        mean = float(np.mean(returns))
        summary = DatasetSummary(dataset_id, final, episodes, steps, mean, low, high, (mean - low) / (high - low), min_prop)
        (new / "collectrl.json").write_text(json.dumps(summary.as_dict(), indent=1) + "\n")
        final.parent.mkdir(parents=True, exist_ok=True)
        old = final.with_name(final.name + ".replaced")
        if final.exists():
            os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary
