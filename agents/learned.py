"""A trained stable-baselines3 model as a collectrl policy (``policies.Policy``).

Decisions read the policy's logits (one flat head of 7 + 4 + 4 + 4 entries, or the 448 Q-values of
DQN), mask what the compliance profile forbids, and then either sample from the masked
distribution (actor-critic policies: a daily decision is naturally stochastic, and its argmax
would be "wait" every day) or take the best allowed action (DQN). Sampling uses uniforms hashed
from (seed, view), so a decision is reproducible and the same in a batch as alone. Either way a
learned policy's actions are always legal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.decision import decide_actions, policy_key
from policies.features import encode
from policies.schema import ViewBatch

ALGOS = ("maskable_ppo", "ppo", "a2c", "dqn")


def load_model(algo: str, path: str | Path, device: str = "cpu") -> Any:
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO.load(path, device=device)
    import stable_baselines3 as sb3

    cls: Any = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}.get(algo)
    if cls is None:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    return cls.load(path, device=device)


def action_logits(model: Any, obs: np.ndarray) -> np.ndarray:
    """(N, 19) logits of an actor-critic policy, or (N, 448) Q-values of DQN."""
    with torch.no_grad():
        x = torch.as_tensor(obs, dtype=torch.float32)
        pol = model.policy
        if hasattr(pol, "q_net"):
            return pol.q_net(x).numpy()
        features = pol.extract_features(x, pol.pi_features_extractor)
        latent = pol.mlp_extractor.forward_actor(features)
        return pol.action_net(latent).numpy()


class LearnedPolicy:
    """A trained model behind the common policy interface (seeded, always compliant)."""

    def __init__(self, model: Any, policy_id: str = "learned") -> None:
        self.model = model
        self.policy_id = policy_id
        self.version = 1
        self.key_ = policy_key(None)

    def reset(self, seed: int | None = None) -> None:
        self.key_ = policy_key(seed)

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        return decide_actions(action_logits(self.model, encode(views)), mask, views, self.key_)
