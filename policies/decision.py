"""Turning a policy's scores into a compliant decision: one implementation for training-side
evaluation (agents.learned) and the production runtime (policies.runtime).

Actor-critic policies give one logit head of 7 + 4 + 4 + 4 entries (channel, window, tone, offer);
DQN gives 448 Q-values over the flat action codec. Disallowed entries are masked out before a
choice, so the result is always legal for the mask.

The array functions are the definitions. The ``*_row`` functions do the same for one account's
logit head held as Python lists (the runtime's single-decision path); tests check they choose the
same actions with the same probabilities. :func:`alternatives` serves both paths.
"""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np

from policies.actions import N_ACTIONS, decode_flat
from policies.hashing import mix, mix_scalar, to_unit, unit_scalar
from policies.rules import view_keys
from policies.schema import ACTION_DIMS, ViewBatch

OFFSETS = np.cumsum((0, *ACTION_DIMS[:-1]))
HEAD_WIDTH = int(sum(ACTION_DIMS))
_SEGMENTS = tuple(zip(OFFSETS.tolist(), ACTION_DIMS, strict=True))
assert _SEGMENTS == ((0, 7), (7, 4), (11, 4), (15, 4)), "probabilities_row slices the logit head by these"


def joint_mask(mask: np.ndarray) -> np.ndarray:
    """(N, 19) per-dimension masks -> (N, 448) mask over flat actions."""
    c, w, t, o = (mask[:, s : s + n] for s, n in zip(OFFSETS, ACTION_DIMS, strict=True))
    j = c[:, :, None, None, None] & w[:, None, :, None, None] & t[:, None, None, :, None] & o[:, None, None, None, :]
    return j.reshape(len(mask), N_ACTIONS)


def masked_probabilities(logits: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """Per action dimension, the (N, n) softmax of the logits over the allowed values.

    Worked on the transposed (19, N) scores, one value of a dimension at a time: numpy reduces a
    short row slowly, while a running maximum and sum over whole columns is fast (and the sum runs
    in the same order as a row sum, so the results are the same to the last bit)."""
    zt = np.ascontiguousarray(np.where(mask.T, logits.T, -np.inf))
    out = []
    for s, n in _SEGMENTS:
        top = zt[s].copy()
        for j in range(s + 1, s + n):
            np.maximum(top, zt[j], out=top)
        e = np.exp(zt[s : s + n] - top)
        total = e[0].copy()
        for j in range(1, n):
            total += e[j]
        out.append((e / total).T)
    return out


def masked_sample(logits: np.ndarray, mask: np.ndarray, u: np.ndarray, probs: list[np.ndarray] | None = None) -> np.ndarray:
    """Sample each dimension from the masked softmax with uniforms ``u`` (N, 4); (N, 4) ints.
    ``probs`` (from :func:`masked_probabilities`) saves recomputing them."""
    out = np.empty((len(logits), 4), dtype=np.int64)
    for k, p in enumerate(probs if probs is not None else masked_probabilities(logits, mask)):
        cdf = np.cumsum(p.T, axis=0)  # (n, N)
        out[:, k] = np.minimum((u[:, k] * cdf[-1] > cdf).sum(axis=0), p.shape[1] - 1)
    return out


def masked_argmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The best allowed action per row, as (N, 4) ints (logit head or 448 Q-values)."""
    if scores.shape[1] == HEAD_WIDTH:
        zt = np.where(mask.T, scores.T, -np.inf)
        out = np.empty((len(scores), 4), dtype=np.int64)
        for k, (s, n) in enumerate(_SEGMENTS):
            best, idx = zt[s].copy(), np.zeros(len(scores), dtype=np.int64)
            for j in range(1, n):
                better = zt[s + j] > best  # strictly: the first maximum wins, as in argmax
                idx[better] = j
                np.maximum(best, zt[s + j], out=best)
            out[:, k] = idx
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


# -- one account, plain Python values (a logit head only)


def probabilities_row(logits: list[float], mask: list[bool]) -> list[list[float]]:
    """:func:`masked_probabilities` of one row: four lists of probabilities. Written out for the
    heads' fixed widths (7, 4, 4, 4; asserted with ``_SEGMENTS``): a third faster than loops over
    the segments, with the same operations in the same order (each head's sum from its first entry
    on, as numpy sums so few), so the same floats as the batch path (tested)."""
    z = [x if m else -math.inf for x, m in zip(logits, mask, strict=True)]
    c, w, t, o = max(z[0:7]), max(z[7:11]), max(z[11:15]), max(z[15:19])
    # numpy's exp, as in the batch path: identical to the last bit (math.exp is not)
    shifted = [z[0] - c, z[1] - c, z[2] - c, z[3] - c, z[4] - c, z[5] - c, z[6] - c, z[7] - w, z[8] - w, z[9] - w, z[10] - w]
    shifted += [z[11] - t, z[12] - t, z[13] - t, z[14] - t, z[15] - o, z[16] - o, z[17] - o, z[18] - o]
    e = _exp(shifted).tolist()
    a = e[0] + e[1] + e[2] + e[3] + e[4] + e[5] + e[6]
    b, d, f = e[7] + e[8] + e[9] + e[10], e[11] + e[12] + e[13] + e[14], e[15] + e[16] + e[17] + e[18]
    return [
        [e[0] / a, e[1] / a, e[2] / a, e[3] / a, e[4] / a, e[5] / a, e[6] / a],
        [e[7] / b, e[8] / b, e[9] / b, e[10] / b],
        [e[11] / d, e[12] / d, e[13] / d, e[14] / d],
        [e[15] / f, e[16] / f, e[17] / f, e[18] / f],
    ]


_exp = np.exp
_accumulate = itertools.accumulate


def uniforms_row(view_key: int, key: int) -> list[float]:
    """:func:`decision_uniforms` of one view from its :func:`policies.rules.view_key_row`."""
    base = view_key ^ key
    return [unit_scalar(base + 1), unit_scalar(base + 2), unit_scalar(base + 3), unit_scalar(base + 4)]


def sample_row(probs: list[list[float]], u: list[float]) -> list[int]:
    """:func:`masked_sample` of one row (the cdf is sorted, so counting the entries below the
    threshold is a bisection)."""
    out = []
    for p, uk in zip(probs, u, strict=True):
        cdf = list(_accumulate(p))  # the running sums, as numpy's cumsum adds them (probabilities: no -0.0 to lose)
        out.append(min(bisect.bisect_left(cdf, uk * cdf[-1]), len(p) - 1))
    return out


def argmax_row(logits: list[float]) -> list[int]:
    """The unmasked first choice of a logit head (first index of each dimension's maximum)."""
    out = []
    for s, n in _SEGMENTS:
        seg = logits[s : s + n]
        out.append(seg.index(max(seg)))
    return out


def propensity_row(probs: list[list[float]], action: list[int]) -> float:
    """The probability of ``action``; waiting ignores window, tone and offer."""
    if action[0] == 0:
        return probs[0][0]
    return probs[0][action[0]] * probs[1][action[1]] * probs[2][action[2]] * probs[3][action[3]]


# Rank triples (window, tone, offer) with (a + 1)(b + 1)(c + 1) <= 4: the 4 most probable (window,
# tone, offer) combinations always lie among these 13. A combination comes after every one it
# dominates (ranks no higher in each head: a probability at least as high in each, so a product at
# least as high; an equal positive product means equal probabilities, and then stable ranks put the
# dominating one's indices, hence its code, first), and (a + 1)(b + 1)(c + 1) - 1 others dominate it.
_RANKS_WTO = [r for r in itertools.product(range(4), repeat=3) if (r[0] + 1) * (r[1] + 1) * (r[2] + 1) <= 4]
# (combination rank j, channel rank c) pairs with (j + 1)(c + 1) <= 4, by the same argument: the 4
# most probable contacts always lie among these 8
_PAIRS_JC = [(j, c) for j in range(4) for c in range(4 // (j + 1))]


def alternatives(probs: list[list[float]], chosen: list[int], k: int = 3) -> list[tuple[float, tuple[int, int, int, int]]]:
    """The next ``k`` (at most 3) most probable actions other than ``chosen`` (waiting counts as one
    action), as (probability, action) pairs, best first; ties go to the lower action.

    The top 4 contacts are found without scoring all 384: the top 4 (window, tone, offer) among the
    13 rank triples that can hold them (:data:`_RANKS_WTO`), then the 8 pairs of those with the
    channels that can hold the top 4 contacts (:data:`_PAIRS_JC`). Actions are
    ranked by their flat codes (``((c * 4 + w) * 4 + t) * 4 + o``, which order as the tuples do)."""
    if not 0 <= k <= 3:
        raise ValueError(f"alternatives: k must be 0..3, got {k}")
    pc, pw, pt, po = probs
    oc = sorted(range(1, len(pc)), key=pc.__getitem__, reverse=True)  # stable: ties keep index order
    ow = sorted(range(len(pw)), key=pw.__getitem__, reverse=True)
    ot = sorted(range(len(pt)), key=pt.__getitem__, reverse=True)
    oo = sorted(range(len(po)), key=po.__getitem__, reverse=True)
    wto = sorted([(-(pw[ow[a]] * pt[ot[b]] * po[oo[c]]), (ow[a] * _NT + ot[b]) * _NO + oo[c]) for a, b, c in _RANKS_WTO])
    ranked = [(-pc[0], 0)]  # (-p, code) sorts best first, ties to the lower action
    for j, c in _PAIRS_JC:
        q, code = wto[j]
        x = oc[c]
        ranked.append((q * pc[x], x * _NWTO + code))
    ranked.sort()
    same = 0 if chosen[0] == 0 else ((chosen[0] * _NW + chosen[1]) * _NT + chosen[2]) * _NO + chosen[3]
    out: list[tuple[float, tuple[int, int, int, int]]] = []
    for q, code in ranked:
        if len(out) == k:
            break
        if q < 0 and code != same:
            out.append((-q, _DECODED[code]))
    return out


_NW, _NT, _NO = ACTION_DIMS[1:]
_NWTO = _NW * _NT * _NO
_DECODED: list[tuple[int, int, int, int]] = [(c, w, t, o) for c, w, t, o in decode_flat(np.arange(N_ACTIONS)).tolist()]
