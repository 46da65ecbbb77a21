"""Turning a policy's scores into a compliant decision: one implementation for training-side
evaluation (agents.learned) and the production runtime (policies.runtime).

Actor-critic policies give one logit head of 7 + 4 + 4 + 4 entries (channel, window, tone, offer);
DQN gives 448 Q-values over the flat action codec. Disallowed entries are masked out before a
choice, so the result is always legal for the mask.
"""

from __future__ import annotations

import numpy as np

from policies.actions import N_ACTIONS, decode_flat
from policies.hashing import mix, mix_scalar, to_unit
from policies.rules import view_keys
from policies.schema import ACTION_DIMS, ViewBatch

OFFSETS = np.cumsum((0, *ACTION_DIMS[:-1]))
HEAD_WIDTH = int(sum(ACTION_DIMS))


def joint_mask(mask: np.ndarray) -> np.ndarray:
    """(N, 19) per-dimension masks -> (N, 448) mask over flat actions."""
    c, w, t, o = (mask[:, s : s + n] for s, n in zip(OFFSETS, ACTION_DIMS, strict=True))
    j = c[:, :, None, None, None] & w[:, None, :, None, None] & t[:, None, None, :, None] & o[:, None, None, None, :]
    return j.reshape(len(mask), N_ACTIONS)


def masked_probabilities(logits: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """Per action dimension, the (N, n) softmax of the logits over the allowed values."""
    out = []
    for s, n in zip(OFFSETS, ACTION_DIMS, strict=True):
        z = np.where(mask[:, s : s + n], logits[:, s : s + n], -np.inf)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        out.append(p / p.sum(axis=1, keepdims=True))
    return out


def masked_sample(logits: np.ndarray, mask: np.ndarray, u: np.ndarray, probs: list[np.ndarray] | None = None) -> np.ndarray:
    """Sample each dimension from the masked softmax with uniforms ``u`` (N, 4); (N, 4) ints.
    ``probs`` (from :func:`masked_probabilities`) saves recomputing them."""
    out = np.empty((len(logits), 4), dtype=np.int64)
    for k, p in enumerate(probs if probs is not None else masked_probabilities(logits, mask)):
        cdf = np.cumsum(p, axis=1)
        out[:, k] = np.minimum((u[:, k : k + 1] * cdf[:, -1:] > cdf).sum(axis=1), p.shape[1] - 1)
    return out


def masked_argmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The best allowed action per row, as (N, 4) ints (logit head or 448 Q-values)."""
    if scores.shape[1] == HEAD_WIDTH:
        out = np.empty((len(scores), 4), dtype=np.int64)
        for k, (s, n) in enumerate(zip(OFFSETS, ACTION_DIMS, strict=True)):
            out[:, k] = np.where(mask[:, s : s + n], scores[:, s : s + n], -np.inf).argmax(axis=1)
        return out
    return decode_flat(np.where(joint_mask(mask), scores, -np.inf).argmax(axis=1))


def decision_uniforms(views: ViewBatch, key: int) -> np.ndarray:
    """(N, 4) uniforms hashed from (key, view): the same view always draws the same numbers."""
    base = view_keys(views) ^ np.uint64(key)
    return np.stack([to_unit(mix(base + np.uint64(k + 1))) for k in range(4)], axis=1)


def policy_key(seed: int | None) -> int:
    return mix_scalar(0x4C454152 if seed is None else int(seed) + 7)


def decide_actions(scores: np.ndarray, mask: np.ndarray, views: ViewBatch, key: int, probs: list[np.ndarray] | None = None) -> np.ndarray:
    """The decision rule of learned policies: sample from a logit head, argmax over Q-values."""
    if scores.shape[1] == HEAD_WIDTH:
        return masked_sample(scores, mask, decision_uniforms(views, key), probs)
    return masked_argmax(scores, mask)
