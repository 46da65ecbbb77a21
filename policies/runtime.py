"""The production runtime: load an exported artifact and answer next-best-action queries.

``policies.load(path)`` reads ``manifest.json`` (and ``model.onnx`` for learned policies) with
numpy, json and onnxruntime only; it never unpickles anything and never imports torch,
stable-baselines3, SimPy or Gymnasium. An artifact whose format version, feature schema, action
codec or file hashes do not match is refused with :class:`ArtifactError`.

Every decision is legal for the account under the compliance profile, whatever the model outputs:
masked choices first, then a guardrail that checks the result again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import struct
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policies import compliance
from policies.actions import N_ACTIONS, Action, decode_flat, encode_flat, flat_index
from policies.base import make
from policies.decision import (
    _PAIRS_JC,
    _RANKS_WTO,
    HEAD_WIDTH,
    alternatives,
    argmax_row,
    decide_actions,
    joint_mask,
    masked_argmax,
    masked_probabilities,
    probabilities_row,
    propensity_row,
    sample_row,
    uniforms_row,
)
from policies.features import FEATURE_NAMES, N_FEATURES, encode, encode_row
from policies.records import record_row, views_from_records, views_from_rows
from policies.rules import view_key_row
from policies.schema import ACTION_DIMS, CHANNEL_NAMES, OFFER_NAMES, TONE_NAMES, WINDOW_HOURS, WINDOW_NAMES, ViewBatch

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHUNK_ROWS = 4096  # batches larger than this are split into chunks decided on every core


class ArtifactError(ValueError):
    """An artifact that cannot be served; the message says what is wrong and how to fix it."""


@dataclass(slots=True)
class Alternative:
    channel: str
    window: str
    tone: str
    offer: str
    probability: float


@dataclass(slots=True)
class Decision:
    """One next-best action for one account."""

    channel: str  # "wait" or a contact channel
    window: str  # "" for wait
    window_start: str  # local time, "HH:MM"
    window_end: str
    tone: str
    offer: str
    propensity: float  # the probability the policy gave this action (for off-policy evaluation)
    alternatives: list[Alternative] = field(default_factory=list)
    reason: str | None = None  # why compliance changed the model's first choice, if it did
    # for the decision log (not in ``as_dict``): the action's indices (channel, window, tone, offer),
    # and the policy's masked probabilities per head when it has factored heads (None otherwise)
    action: tuple[int, ...] = ()
    probs: list[list[float]] | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (written out field by field: ``dataclasses.asdict`` deep-copies
        and would cost more than the decision itself)."""
        return {
            "channel": self.channel,
            "window": self.window,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "tone": self.tone,
            "offer": self.offer,
            "propensity": self.propensity,
            "alternatives": [
                {"channel": a.channel, "window": a.window, "tone": a.tone, "offer": a.offer, "probability": a.probability} for a in self.alternatives
            ],
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Columns:
    """The decisions of a batch column by column, for callers that answer many accounts at once
    (the server's batch route, bulk scoring): no object per account. Row ``i`` is the same decision
    :meth:`DecisionFunction.decide_batch` returns for it (tested)."""

    actions: np.ndarray  # (N, 4) indices (channel, window, tone, offer)
    flat: np.ndarray  # (N,) flat action index of each action: ``ACTION_NAMES[flat[i]]`` names it
    propensity: np.ndarray  # (N,)
    reasons: list[str | None]
    alt_index: np.ndarray  # (N, k) flat index of each alternative, best first; -1 past the last
    alt_prob: np.ndarray  # (N, k) their probabilities (unrounded; :func:`rounded_probabilities` as in ``Alternative``)
    probs: list[np.ndarray] | None  # per head (N, n) masked probabilities, when asked for and factored

    def __len__(self) -> int:
        return len(self.actions)

    def alternatives(self) -> list[list[Alternative]]:
        """Each row's alternatives as :class:`Alternative` objects."""
        return _alternative_lists(self.alt_index, self.alt_prob)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def codec_spec() -> dict[str, Any]:
    return {
        "dims": list(ACTION_DIMS),
        "channels": list(CHANNEL_NAMES),
        "windows": [{"name": n, "start": f"{a:02d}:00", "end": f"{b:02d}:00"} for n, (a, b) in zip(WINDOW_NAMES, WINDOW_HOURS, strict=True)],
        "tones": list(TONE_NAMES),
        "offers": list(OFFER_NAMES),
    }


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        raise ArtifactError(f"{root} is not an artifact: no {MANIFEST} (create one with `collectrl export`)")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path} is not valid JSON ({e}); re-export the policy") from None
    if not isinstance(m, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return m


def verify(root: Path, m: Mapping[str, Any]) -> None:
    """Refuse an artifact that does not match this runtime or its own manifest."""
    if m.get("format_version") != FORMAT_VERSION:
        got = m.get("format_version")
        raise ArtifactError(f"artifact format version {got!r} is not supported (this runtime reads {FORMAT_VERSION}); re-export it")
    names = [f["name"] for f in m.get("observation", {}).get("features", [])]
    if names != list(FEATURE_NAMES):
        raise ArtifactError("the artifact's observation schema differs from this runtime's feature encoder; re-export it with this version")
    if m.get("action_codec") != codec_spec():
        raise ArtifactError("the artifact's action codec differs from this runtime's; re-export it with this version")
    if m.get("compliance_profile") not in compliance.PROFILES:
        raise ArtifactError(f"unknown compliance profile {m.get('compliance_profile')!r}; allowed: {sorted(compliance.PROFILES)}")
    files = m.get("files", {})
    if m.get("kind") == "onnx" and "model.onnx" not in files:
        raise ArtifactError("the manifest lists no model.onnx for an ONNX policy")
    for name, digest in files.items():
        p = root / name
        if Path(name).name != name or not p.is_file():
            raise ArtifactError(f"artifact file {name!r} is missing")
        if sha256_file(p) != digest:
            raise ArtifactError(f"artifact file {name} does not match its sha256 in the manifest: it was changed or corrupted; re-export the policy")


class DecisionFunction:
    """``decide(view)`` and ``decide_batch(views)`` for one exported policy."""

    def __init__(self, root: Path, manifest: Mapping[str, Any], profile: str | None = None) -> None:
        self.root = root
        self.manifest = dict(manifest)
        self.policy_id: str = manifest["policy_id"]
        # the manifest lists every file's sha256, so its own digest names this exact artifact
        self.version: str = sha256_file(root / MANIFEST)[:16] if (root / MANIFEST).is_file() else "unversioned"
        self.kind: str = manifest["kind"]
        self.profile = compliance.get_profile(profile or manifest["compliance_profile"])
        self._key = int(manifest.get("decision_key", 0))
        self._session: Any = None
        self._rule: Any = None
        self._row_path = False
        self._pool: ThreadPoolExecutor | None = None
        if self.kind == "onnx":
            import onnxruntime as ort

            def session(threads: int) -> Any:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                return ort.InferenceSession(str(root / "model.onnx"), sess_options=opts, providers=["CPUExecutionProvider"])

            # one thread per call: a single account is answered fastest that way, and large batches
            # run one chunk per core (numpy and onnxruntime release the GIL), see _run
            self._session = session(1)
            self._input = self._session.get_inputs()[0].name
            # a logit head (actor-critic) has a one-account path in plain Python; Q-value heads use the batch path
            self._row_path = self._session.get_outputs()[0].shape[-1] == HEAD_WIDTH
            self._output = self._session.get_outputs()[0].name
            self._bound = threading.local()  # per thread: a one-account input, output and their IOBinding
            # large batches are decided in chunks on every core; threads start when first needed
            self._pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="collectrl-decide")
        elif self.kind == "rule":
            self._rule = make(self.policy_id)
            self._rule.reset(int(manifest.get("seed", 0)))
        else:
            raise ArtifactError(f"unknown artifact kind {self.kind!r}")

    # -- scores
    def scores(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {self._input: obs})[0], dtype=np.float64)

    def _run(self, views: ViewBatch) -> dict[str, Any]:
        """Mask, scores, actions, propensities, the unmasked first choices and reasons, in one pass;
        a large batch is cut into chunks decided in parallel threads (each row's decision depends
        only on that row, so the result is the same)."""
        n = len(views)
        workers = min(os.cpu_count() or 1, -(-n // CHUNK_ROWS))
        if self._pool is None or workers < 2:
            return self._run_chunk(views)
        bounds = np.linspace(0, n, 2 * workers + 1).astype(int).tolist()
        parts = list(self._pool.map(lambda ab: self._run_chunk(views.rows(*ab)), itertools.pairwise(bounds)))
        out: dict[str, Any] = {}
        for key in ("mask", "scores", "actions", "prop", "first"):
            out[key] = np.concatenate([p[key] for p in parts])
        out["probs"] = None if parts[0]["probs"] is None else [np.concatenate([p["probs"][k] for p in parts]) for k in range(4)]
        out["reasons"] = [r for p in parts for r in p["reasons"]]
        return out

    def _run_chunk(self, views: ViewBatch) -> dict[str, Any]:
        mask = compliance.action_mask(views, self.profile)
        n = len(views)
        probs: list[np.ndarray] | None = None
        scores: np.ndarray | None = None
        if self.kind == "rule":
            actions = self._rule.act(views, mask)
            first = actions
            # deterministic rules choose with probability 1; a stochastic rule states its propensities
            prop = self._rule.propensity(mask, actions) if hasattr(self._rule, "propensity") else np.ones(n)
        else:
            scores = self.scores(encode(views))
            probs = masked_probabilities(scores, mask) if scores.shape[1] == HEAD_WIDTH else None
            actions = decide_actions(scores, mask, views, self._key, probs)
            first = masked_argmax(scores, np.ones_like(mask))
            if probs is not None:
                rows = np.arange(n)
                prop = np.prod([probs[k][rows, actions[:, k]] for k in range(4)], axis=0)
                wait = actions[:, 0] == 0
                prop[wait] = probs[0][rows[wait], 0]  # waiting ignores window, tone and offer
            else:
                prop = np.ones(n)
        reasons = _reasons(first, compliance.check(first, views, self.profile))
        # guardrail: whatever happened above, never return an action the profile forbids
        still = compliance.check(actions, views, self.profile)
        for i in np.flatnonzero(still):
            reasons[i] = _reason_guardrail(int(still[i]))
            actions[i] = 0
            prop[i] = 0.0
        return {"mask": mask, "scores": scores, "probs": probs, "actions": actions, "prop": prop, "first": first, "reasons": reasons}

    def decide_arrays(self, views: ViewBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
        """Columnar decisions: actions (N, 4), propensities (N,), the model's unmasked first choices
        (N, 4) and reasons."""
        r = self._run(views)
        return r["actions"], r["prop"], r["first"], r["reasons"]

    def _alternative_columns(self, run: dict[str, Any], k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """(N, k) flat indices and probabilities of each row's next ``k`` most probable actions."""
        actions, scores, probs = run["actions"], run["scores"], run["probs"]
        if scores is None:
            return np.full((len(actions), k), -1, dtype=np.int64), np.zeros((len(actions), k))
        if probs is not None:
            return _factored_alternative_columns(probs, actions, k)
        # Q-values over the flat codec: a softmax over the allowed actions ranks the alternatives
        q = np.where(joint_mask(run["mask"]), scores, -np.inf)
        joint = np.exp(q - q.max(axis=1, keepdims=True))
        joint /= joint.sum(axis=1, keepdims=True)
        per_channel = N_ACTIONS // ACTION_DIMS[0]  # waiting is the first block of the flat codec
        index, prob = np.full((len(actions), k), -1, dtype=np.int64), np.zeros((len(actions), k))
        for i in range(len(actions)):
            top = np.argpartition(-joint[i, per_channel:], k)[: k + 1] + per_channel
            cands = [(float(joint[i, :per_channel].sum()), (0, 0, 0, 0))]
            cands += [(float(joint[i, t]), tuple(row)) for t, row in zip(top, decode_flat(top).tolist(), strict=True)]
            cands.sort(key=lambda x: (-x[0], x[1]))
            chosen = tuple(actions[i].tolist()) if actions[i, 0] else (0, 0, 0, 0)
            kept = [(p, a) for p, a in cands if p > 0 and a != chosen][:k]
            _put_ranked(index, prob, i, kept)
        return index, prob

    def _forward_row(self, features: list[float]) -> list[float]:
        """The model's logits for one account: the features written into this thread's input
        buffer, the logits read from its output buffer, both bound to the session once (an
        ``InferenceSession.run`` per call costs twice the forward pass in argument handling)."""
        b = self._bound
        if not hasattr(b, "binding"):
            b.x = np.zeros((1, N_FEATURES), dtype=np.float32)
            b.y = np.zeros((1, HEAD_WIDTH), dtype=np.float32)
            b.binding = self._session.io_binding()
            b.binding.bind_cpu_input(self._input, b.x)
            b.binding.bind_output(self._output, "cpu", 0, np.float32, list(b.y.shape), b.y.ctypes.data)
        try:  # the floats packed straight into the bound buffer: a seventh of numpy's row assignment
            _OBS_ROW.pack_into(b.x, 0, *features)  # the same float32 rounding (a C cast); tested
        except OverflowError:  # a feature beyond float32's range: numpy makes it inf, as the batch path does
            b.x[0] = features
        self._session.run_with_iobinding(b.binding)
        return b.y[0].tolist()  # type: ignore[no-any-return]

    def _decide_row(self, r: Mapping[str, Any]) -> Decision:
        """One account from plain values: the same decision as the batch path (tested), at a
        fraction of its cost (no numpy call per column)."""
        mask = compliance.action_mask_row(r, self.profile)
        logits = self._forward_row(encode_row(r))
        probs = probabilities_row(logits, mask)
        action = sample_row(probs, uniforms_row(view_key_row(r), self._key))
        prop = propensity_row(probs, action)
        reason = None
        first = argmax_row(logits)
        blocked = compliance.check_row(first, r, self.profile)
        if blocked:
            reason = _reason_first(first, blocked)
        still = compliance.check_row(action, r, self.profile)
        if still:
            reason, action, prop = _reason_guardrail(still), [0, 0, 0, 0], 0.0
        a = _named(action)
        alts = _named_alternatives(alternatives(probs, action))
        return Decision(a.channel, a.window, a.window_start, a.window_end, a.tone, a.offer, prop, alts, reason, tuple(action), probs)

    # -- public API
    def decide_columns(self, views: ViewBatch | Sequence[Mapping[str, Any]], alternatives: bool = True, probs: bool = False) -> Columns:
        """Decisions for many accounts as columns (see :class:`Columns`); ``probs`` keeps the
        per-head probabilities (for the decision log)."""
        v = views if isinstance(views, ViewBatch) else views_from_records(views)
        run = self._run(v)
        actions = run["actions"]
        if alternatives:
            alt_index, alt_prob = self._alternative_columns(run)
        else:
            alt_index, alt_prob = np.full((len(actions), 0), -1, dtype=np.int64), np.zeros((len(actions), 0))
        heads = run["probs"] if probs else None
        return Columns(actions, encode_flat(actions), run["prop"], run["reasons"], alt_index, alt_prob, heads)

    def decide_batch(self, views: ViewBatch | Sequence[Mapping[str, Any]], alternatives: bool = True, probs: bool = False) -> list[Decision]:
        """Decisions for many accounts (a ViewBatch, or account records as dicts); ``probs`` also
        fills each decision's per-head probabilities (for the decision log)."""
        cols = self.decide_columns(views, alternatives, probs)
        alts = cols.alternatives()
        heads = [h.tolist() for h in cols.probs] if cols.probs is not None else None
        out = []
        for i, (row, j, prop) in enumerate(zip(cols.actions.tolist(), cols.flat.tolist(), cols.propensity.tolist(), strict=True)):
            a = ACTION_NAMES[j]
            p = [h[i] for h in heads] if heads is not None else None
            out.append(Decision(a.channel, a.window, a.window_start, a.window_end, a.tone, a.offer, prop, alts[i], cols.reasons[i], tuple(row), p))
        return out

    def decide(self, view: ViewBatch | Mapping[str, Any]) -> Decision:
        """The decision for one account (a one-row ViewBatch or an account record)."""
        if isinstance(view, ViewBatch):
            return self.decide_batch(view)[0]
        return self.decide_row(record_row(view))

    def decide_row(self, row: Mapping[str, Any]) -> Decision:
        """The decision for one account already validated by ``parse_record`` / ``record_row`` (or taken from
        ``ViewBatch.row``), for callers that keep the validated view, like the server's log."""
        if self._row_path:
            return self._decide_row(row)
        return self.decide_batch(views_from_rows([row]), probs=True)[0]


_OBS_ROW = struct.Struct(f"={N_FEATURES}f")
_NAMED: dict[tuple[int, ...], Action] = {}


def _named(action: Sequence[int]) -> Action:
    key = tuple(action)
    a = _NAMED.get(key)
    if a is None:
        a = _NAMED[key] = Action.from_row(np.array(key))
    return a


def _named_alternatives(ranked: Sequence[tuple[float, Sequence[int]]]) -> list[Alternative]:
    out = []
    for p, action in ranked:
        a = _named(action)
        out.append(Alternative(a.channel, a.window, a.tone, a.offer, math.floor(p * 1e6 + 0.5) / 1e6))  # as rounded_probabilities
    return out


_WTO = ACTION_DIMS[1] * ACTION_DIMS[2] * ACTION_DIMS[3]  # (window, tone, offer) combinations per channel
# the names of every flat action index (all of the first block wait)
ACTION_NAMES: list[Action] = [_named(row) for row in decode_flat(np.arange(N_ACTIONS)).tolist()]
_ALT_NAMES: list[tuple[str, str, str, str]] = [(a.channel, a.window, a.tone, a.offer) for a in ACTION_NAMES]


def _put_ranked(index: np.ndarray, prob: np.ndarray, i: int, ranked: Sequence[tuple[float, Sequence[int]]]) -> None:
    for j, (p, action) in enumerate(ranked):
        index[i, j] = flat_index(action) if action[0] else 0
        prob[i, j] = p


# the (window, tone, offer) rank triples of decision.alternatives, as columns
_RW, _RT, _RO = (np.array(r, dtype=np.int64) for r in zip(*_RANKS_WTO, strict=True))
# which of the 4 best (window, tone, offer) combinations meets which channel rank
_PAIR_J, _PAIR_C = (np.array(r, dtype=np.int64) for r in zip(*_PAIRS_JC, strict=True))


def _factored_alternative_columns(probs: list[np.ndarray], actions: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """:func:`policies.decision.alternatives` for every row at once, as (N, k) flat indices (-1 past
    the last) and probabilities: the same pruned search, step by step over whole columns, with
    the same floating-point operations in the same order and the same tie-breaks (stable sorts,
    ties to the lower action), so the same pairs to the last bit (tested, ties included)."""
    if not 0 <= k <= 3:
        raise ValueError(f"alternatives: k must be 0..3, got {k}")
    pc, pw, pt, po = probs
    n = len(pc)
    rows = np.arange(n)[:, None]
    # each head's values by falling probability (stable: ties keep index order); channels without waiting
    oc = np.argsort(-pc[:, 1:], axis=1, kind="stable") + 1
    ow, ot, oo = (np.argsort(-p, axis=1, kind="stable") for p in (pw, pt, po))
    w, t, o = ow[:, _RW], ot[:, _RT], oo[:, _RO]
    wto_q = -((pw[rows, w] * pt[rows, t]) * po[rows, o])
    wto_code = (w * ACTION_DIMS[2] + t) * ACTION_DIMS[3] + o
    best = np.lexsort((wto_code, wto_q), axis=-1)[:, :4]  # the 4 best combinations, ties to the lower one
    best_q, best_code = np.take_along_axis(wto_q, best, axis=1), np.take_along_axis(wto_code, best, axis=1)
    c = oc[:, _PAIR_C]
    cand_q = np.concatenate([-pc[:, :1], best_q[:, _PAIR_J] * pc[rows, c]], axis=1)
    cand_code = np.concatenate([np.zeros((n, 1), dtype=np.int64), c * _WTO + best_code[:, _PAIR_J]], axis=1)
    order = np.lexsort((cand_code, cand_q), axis=-1)
    cand_q, cand_code = np.take_along_axis(cand_q, order, axis=1), np.take_along_axis(cand_code, order, axis=1)
    chosen = np.where(actions[:, 0] > 0, encode_flat(actions), 0)
    drop = (cand_q >= 0) | (cand_code == chosen[:, None])  # impossible, or the chosen action itself
    keep = np.argsort(drop, axis=1, kind="stable")[:, :k]  # the first k kept, in rank order
    ok = ~np.take_along_axis(drop, keep, axis=1)
    index = np.where(ok, np.take_along_axis(cand_code, keep, axis=1), -1)
    prob = np.where(ok, -np.take_along_axis(cand_q, keep, axis=1), 0.0)
    return index, prob


def rounded_probabilities(p: np.ndarray) -> np.ndarray:
    """Alternatives' probabilities to 6 places, half up: ``floor(p * 1e6 + 0.5) / 1e6``, the same
    IEEE operations the one-account path does with ``math.floor`` (so both give the same floats;
    ``round(p, 6)`` and ``np.round`` can disagree in the last bit)."""
    return np.floor(p * 1e6 + 0.5) / 1e6


def _alternative_lists(index: np.ndarray, prob: np.ndarray) -> list[list[Alternative]]:
    # (mypy cannot count a fixed-length tuple unpacked before another argument: hence the ignore below)
    out = []
    for js, ps in zip(index.tolist(), rounded_probabilities(prob).tolist(), strict=True):
        out.append([Alternative(*_ALT_NAMES[j], p) for j, p in zip(js, ps, strict=True) if j >= 0])  # type: ignore[call-arg]
    return out


def _factored_alternatives(probs: list[np.ndarray], actions: np.ndarray, k: int = 3) -> list[list[Alternative]]:
    """:func:`_factored_alternative_columns` as lists of :class:`Alternative`."""
    return _alternative_lists(*_factored_alternative_columns(probs, actions, k))


def _reason_first(first: Sequence[int], block: int) -> str:
    a = _named(first)
    return f"the policy's first choice ({a.channel} {a.window} {a.tone} {a.offer}) is not allowed: {compliance.BLOCK_NAMES[block]}"


def _reasons(first: np.ndarray, blocked: np.ndarray) -> list[str | None]:
    """Per row, why the policy's first choice was not allowed (None where it was): each distinct
    (action, reason) is worded once, however many rows share it."""
    out = np.full(len(first), None, dtype=object)
    idx = np.flatnonzero(blocked)
    if idx.size:
        code = encode_flat(first[idx]) * len(compliance.Block) + blocked[idx]
        uniq, inverse = np.unique(code, return_inverse=True)
        n_blocks = len(compliance.Block)
        texts = [_reason_first(decode_flat(np.array([u // n_blocks]))[0].tolist(), int(u % n_blocks)) for u in uniq.tolist()]
        out[idx] = np.array(texts, dtype=object)[inverse]
    return out.tolist()  # type: ignore[no-any-return]


def _reason_guardrail(block: int) -> str:
    return f"guardrail: replaced a disallowed action ({compliance.BLOCK_NAMES[block]}) by waiting"


def load(path: str | Path, profile: str | None = None) -> DecisionFunction:
    """Load and verify an artifact directory; ``profile`` overrides its compliance profile."""
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"{root} is not a directory; give the directory `collectrl export` wrote")
    m = read_manifest(root)
    verify(root, m)
    return DecisionFunction(root, m, profile)
