"""``collectrl dataset``: logged episodes of ``collectrl/Debtor-v0`` as a Minari dataset for offline RL.

The policy samples from its own probabilities (a registered rule or an exported artifact, as in
``collectrl simulate --log-decisions``); each step's ``infos`` carry the propensity of the action
taken and the 19-entry action mask it was taken under, so offline-RL and off-policy methods can
reweight. The environment is recoverable by id (``collectrl/Debtor-v0`` with its scenario), and the
dataset's reference scores are the leaderboard's: the static ladder's and the oracle's mean
episode return on the same scenario (normalised score 0 and 1).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from experiments.decision_log import TargetPolicy, sample
from experiments.errors import UsageError
from policies.records import views_from_rows


def reference_scores(scenario: str, debtors: int, seed: int) -> tuple[float, float]:
    """(static ladder, oracle) mean net value per debtor: the leaderboard's 0 and 1."""
    import policies
    from sim import load_scenario
    from sim.runner import run_portfolio
    from sim.state import Status

    sc = load_scenario(scenario, [])
    out = []
    for pid in ("static_ladder", "oracle"):
        w = run_portfolio(sc, policies.make(pid), debtors, seed)
        entered = w.state.status != Status.WAITING
        out.append(float(w.state.net_value[entered].mean()))
    return out[0], out[1]


def _step_callback() -> Any:
    from minari.data_collector.callbacks import StepDataCallback

    class PropensityCallback(StepDataCallback):  # type: ignore[misc]
        """Every step's infos: the propensity of the action taken and the mask it was taken under
        (the same keys at reset, where no action was taken yet: propensity 1, the first mask)."""

        def __call__(self, env: Any, **kwargs: Any) -> dict[str, Any]:
            data: dict[str, Any] = super().__call__(env, **kwargs)
            base = env.unwrapped
            info = data.get("info") or {}
            data["info"] = {
                "propensity": np.float64(getattr(base, "logged_propensity", 1.0)),
                "action_mask": np.asarray(getattr(base, "logged_mask", np.ones(19, dtype=bool)), dtype=bool),
                "cash_eur": np.float64(info.get("cash", 0.0)),
                "contact_cost_eur": np.float64(info.get("contact_cost", 0.0)),
            }
            return data

    return PropensityCallback


def write_dataset(
    scenario: str, policy: str, episodes: int, out: str | Path, *, seed: int = 0, dataset_id: str | None = None, reference_debtors: int = 2000
) -> dict[str, Any]:
    """Collect ``episodes`` episodes of ``policy`` on ``collectrl/Debtor-v0`` and write the Minari
    dataset under ``out`` (Minari's datasets folder); returns its id and reference scores."""
    import sim  # noqa: F401  (registers the env ids)

    if episodes < 1:
        raise UsageError("--episodes must be at least 1")
    target = TargetPolicy(policy)
    if dataset_id is not None:
        check_dataset_id(dataset_id)
    name = dataset_id or f"collectrl/{scenario}/{target.policy_id.replace('_', '-')}-v0"
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(out)  # Minari reads its datasets folder from the environment
    try:
        return _collect(target, name, scenario, episodes, out, seed, reference_debtors)
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def _collect(target: TargetPolicy, name: str, scenario: str, episodes: int, out: Path, seed: int, reference_debtors: int) -> dict[str, Any]:
    import minari
    from minari import DataCollector

    policy = target.name
    env = DataCollector(gym.make("collectrl/Debtor-v0", scenario=scenario), step_data_callback=_step_callback(), record_infos=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4D494E]))
    from tqdm import tqdm

    for ep in tqdm(range(episodes), desc=f"dataset {name}", unit="episode", leave=False):
        env.reset(seed=seed + ep)
        base = env.unwrapped
        done = False
        while not done:
            mask = np.asarray(base.action_masks(), dtype=bool)[None]
            views = views_from_rows([base.debtor.row()])
            dist = target.dist(views, mask)
            action = sample(dist, rng)
            base.logged_propensity = float(dist.prob(action)[0])
            base.logged_mask = mask[0]
            _, _, terminated, truncated, _ = env.step(action[0])
            done = bool(terminated or truncated)
    low, high = reference_scores(scenario, reference_debtors, seed)
    if name in minari.list_local_datasets():
        minari.delete_dataset(name)
    env.create_dataset(
        dataset_id=name,
        algorithm_name=f"{target.policy_id} (sampling its own probabilities)",
        author="collectrl",
        code_permalink="https://github.com/collectrl/collectrl",
        ref_min_score=low,
        ref_max_score=high,
        description=(
            f"Episodes of one debtor each on collectrl/Debtor-v0 (scenario {scenario}) under {policy}; infos carry the propensity "
            "of the action taken and its action mask. Reference scores: static ladder (0) and oracle (1), as on the leaderboard."
        ),
    )
    env.close()
    return {"dataset_id": name, "path": str(out), "episodes": episodes, "ref_min_score": low, "ref_max_score": high}


def check_dataset_id(name: str) -> None:
    parts = name.split("/")
    if len(parts) != 3 or not parts[-1].rsplit("-v", 1)[-1].isdigit():
        raise UsageError(f"dataset id {name!r} must read namespace/env/name-vN (e.g. collectrl/default/ladder-v0)")
