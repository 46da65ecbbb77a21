"""Logged datasets for offline-RL research: ``collectrl dataset`` writes a Minari dataset.

Episodes are debtors of ``collectrl/Debtor-v1`` (one debtor per episode, one step per day), run
under a *logging policy* whose action probabilities are known:

* a learned policy (a training run directory, or an exported ONNX artifact) **samples from its own
  probabilities** (the masked, per-dimension softmax of its logit head), so every action has a
  known probability; a Q-value learner (DQN) and a rule policy choose deterministically;
* ``epsilon`` mixes in uniformly random allowed actions (the distribution of ``random``: uniform
  over the allowed channels, then over the allowed windows, tones and offers), so a deterministic
  rule such as the static ladder still explores with known probabilities.

The probabilities are ``experiments.decision_log``'s (``TargetPolicy``, ``mix``, ``sample``), the
same machinery ``collectrl simulate --log-decisions`` logs with and ``collectrl ope`` re-scores with.

Each step's ``infos`` carry ``propensity`` (the probability the logging policy gave the action
taken from that state, under the mixture) and ``action_mask`` (the 19 allowed-value booleans of
that state), aligned with ``actions``: ``infos["propensity"][t]`` belongs to ``actions[t]``; the
last entry of an episode (the final observation, where no action is taken) has propensity NaN.

The dataset's environment is recoverable (``dataset.recover_environment()`` makes
``collectrl/Debtor-v1`` with the same scenario), and its reference scores are the leaderboard's:
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

import sim  # noqa: F401  (registers collectrl/Debtor-v1)
from experiments.decision_log import TargetPolicy, mix, sample
from experiments.errors import UsageError
from experiments.evaluate import evaluate
from experiments.leaderboard import PROTOCOL_DEBTORS, PROTOCOL_SEEDS
from policies.records import views_from_rows
from sim.config import load_scenario
from sim.envs import DebtorEnv


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


def reference_scores(scenario: str, debtors: int, seeds: tuple[int, ...]) -> tuple[float, float]:
    """The static ladder's and the oracle's net value per debtor (EUR) on the leaderboard protocol."""
    ev = evaluate(load_scenario(scenario), ["static_ladder", "oracle"], debtors, list(seeds), "static_ladder")
    return float(ev.results["static_ladder"].kpis["net_value_per_debtor"].mean), float(ev.results["oracle"].kpis["net_value_per_debtor"].mean)


def _label(policy_name: str, policy: TargetPolicy) -> str:
    raw = policy.policy_id or Path(policy_name).name or policy_name
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
    if not 0.0 <= epsilon <= 1.0:
        raise UsageError(f"--epsilon must lie in [0, 1], got {epsilon}")
    policy = TargetPolicy(policy_name)  # refuses a policy that reads the simulator's hidden state
    rng = np.random.default_rng(seed)
    if not policy.stochastic and epsilon == 0.0:
        raise UsageError(
            f"{policy_name!r} chooses deterministically, so its logs cannot evaluate any other policy; give --epsilon (e.g. 0.1) "
            "for a share of random allowed actions"
        )
    label = name or (_label(policy_name, policy) + (f"_eps{epsilon:g}".replace(".", "p") if epsilon else ""))
    dataset_id = f"collectrl/{scenario}/{label}-v0"
    env = gym.make("collectrl/Debtor-v1", scenario=scenario)
    base: DebtorEnv = env.unwrapped  # type: ignore[assignment]
    buffers: list[EpisodeBuffer] = []
    returns, steps, min_prop = [], 0, 1.0
    for ep in range(episodes):
        ep_seed = seed * 1_000_003 + ep
        obs, _ = env.reset(seed=ep_seed)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        props: list[float] = []
        masks: list[np.ndarray] = []
        blocked, sold, cash, cost = [False], [False], [0.0], [0.0]
        done = False
        while not done:
            mask = base.action_masks().astype(bool)[None]
            dist = mix(policy.dist(views_from_rows([base.debtor.row()]), mask), epsilon)
            a = sample(dist, rng)
            p = dist.prob(a)
            obs, r, term, trunc, info = env.step(a[0])
            observations.append(obs)
            actions.append(a[0])
            rewards.append(float(r))
            terms.append(bool(term))
            truncs.append(bool(trunc))
            props.append(float(p[0]))
            masks.append(mask[0])
            blocked.append(bool(info["blocked"]))
            sold.append(bool(info["sold"]))  # the episode's end: resolved (False) or sold at the horizon
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
                    "sold": np.asarray(sold),
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
                eval_env=env.spec,  # its spec (collectrl/Debtor-v1 with this scenario) makes the dataset's environment recoverable
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
