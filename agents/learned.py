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

from agents.vec_env import joint_mask
from policies.actions import decode_flat
from policies.features import encode
from policies.hashing import mix, mix_scalar, to_unit
from policies.rules import view_keys
from policies.schema import ACTION_DIMS, ViewBatch

_OFFSETS = np.cumsum((0, *ACTION_DIMS[:-1]))
ALGOS = ("maskable_ppo", "ppo", "a2c", "dqn")


def load_model(algo: str, path: str | Path, device: str = "cpu") -> Any:
    if algo == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO.load(path, device=device)
    import stable_baselines3 as sb3

    cls = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}.get(algo)
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


def masked_sample(logits: np.ndarray, mask: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Sample each action dimension from the masked softmax of its logits with uniforms ``u`` (N, 4)."""
    out = np.empty((len(logits), 4), dtype=np.int64)
    for k, (s, n) in enumerate(zip(_OFFSETS, ACTION_DIMS, strict=True)):
        z = np.where(mask[:, s : s + n], logits[:, s : s + n], -np.inf)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        out[:, k] = np.minimum((u[:, k : k + 1] * cdf[:, -1:] > cdf).sum(axis=1), n - 1)
    return out


def masked_argmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The most likely allowed action per row, as (N, 4) ints."""
    if logits.shape[1] == sum(ACTION_DIMS):
        out = np.empty((len(logits), 4), dtype=np.int64)
        for k, (s, n) in enumerate(zip(_OFFSETS, ACTION_DIMS, strict=True)):
            block = np.where(mask[:, s : s + n], logits[:, s : s + n], -np.inf)
            out[:, k] = block.argmax(axis=1)
        return out
    q = np.where(joint_mask(mask), logits, -np.inf)
    return decode_flat(q.argmax(axis=1))


class LearnedPolicy:
    """A trained model behind the common policy interface (seeded, always compliant)."""

    def __init__(self, model: Any, policy_id: str = "learned") -> None:
        self.model = model
        self.policy_id = policy_id
        self.key_ = mix_scalar(0x4C454152)

    def reset(self, seed: int | None = None) -> None:
        self.key_ = mix_scalar(0x4C454152 if seed is None else int(seed) + 7)

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        logits = action_logits(self.model, encode(views))
        if logits.shape[1] != sum(ACTION_DIMS):
            return masked_argmax(logits, mask)
        base = view_keys(views) ^ np.uint64(self.key_)
        u = np.stack([to_unit(mix(base + np.uint64(k + 1))) for k in range(4)], axis=1)
        return masked_sample(logits, mask, u)
