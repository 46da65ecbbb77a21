"""Decision logs: what a policy decided, with the probabilities off-policy evaluation needs.

A decision log is a folder holding a history (``sim.history``: accounts, contacts, payments,
events: the outcomes) and ``decisions.parquet`` (or ``decisions.jsonl``, the server's log), one
row per decision the policy made, waiting included:

===================  ==========================================================================
column               meaning
===================  ==========================================================================
account_id           the account (an ``account_id`` of the history's accounts table)
day                  the day of the decision (the history's day numbering)
policy_id            the logging policy; ``policy_version`` its version (an artifact's: the
                     digest of its manifest, as the server logs it)
arm                  the champion/challenger arm, or null; ``assignment_prob`` its share
channel ... offer    the action by name (``wait`` with window, tone and offer of index 0)
action               the action's flat index (``policies.actions.encode_flat``; 0 = wait)
propensity           the probability the logging policy gave this action
probs                19 floats: the logging policy's per-dimension probabilities (channel 7,
                     window 4, tone 4, offer 4); the action's probability is their product
                     (the channel's alone for wait) ...
epsilon              ... mixed with a share ``epsilon`` of uniformly random allowed actions:
                     ``p(a) = (1 - epsilon) * prod(probs) + epsilon * uniform_allowed(a)``
allowed              19 booleans: the compliance mask of the decision (allowed values per dimension)
view_<field>         the observable view the policy saw (``policies.schema.ViewBatch``'s fields;
                     per-channel fields as lists of 6)
===================  ==========================================================================

Every logging policy in collectrl fits that form exactly: a deterministic rule is one-hot
``probs`` (the ladder with a share of random actions adds ``epsilon``), an exported learner its
masked softmax heads, the random policy ``epsilon = 1``.

The server's JSON lines map onto the same table: ``account_id``, ``day``, ``arm``,
``assignment_prob``, ``policy_id``, ``policy_version``, the action (``action_index``, or
``decision`` / ``action``: an object with ``channel``, ``window``, ``tone``, ``offer``),
``propensity``, ``probs`` (an object of the four per-dimension lists, or one list of 19; null when
the policy chose with probability 1), optional ``epsilon`` (default 0) and ``allowed`` (default: the
compliance mask recomputed from the view), and ``view`` (the validated view's fields, as the server
logs it, or an account record).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from experiments.errors import UsageError
from policies import compliance
from policies.actions import canonical, decode_flat, encode_flat
from policies.base import Policy
from policies.decision import HEAD_WIDTH, OFFSETS, masked_probabilities
from policies.features import encode
from policies.fileio import atomic_write
from policies.records import RecordError, parse_record, views_from_rows
from policies.schema import ACTION_DIMS, CHANNEL_NAMES, OFFER_NAMES, TONE_NAMES, WINDOW_NAMES, ViewBatch
from sim.runner import WorldPolicy
from sim.world import World

DECISIONS = "decisions"
_NAMES = (CHANNEL_NAMES, WINDOW_NAMES, TONE_NAMES, OFFER_NAMES)
_SEG = tuple(zip(OFFSETS.tolist(), ACTION_DIMS, strict=True))


# ------------------------------------------------------------------ action distributions


@dataclass
class Dist:
    """Per decision, ``(1 - epsilon) * product(probs) + epsilon * uniform over allowed``."""

    probs: np.ndarray  # (N, 19) per-dimension probabilities
    epsilon: np.ndarray  # (N,)
    allowed: np.ndarray  # (N, 19) bool

    def _uniform(self) -> np.ndarray:
        u = self.allowed.astype(np.float64)
        for s, n in _SEG:
            u[:, s : s + n] /= np.maximum(u[:, s : s + n].sum(axis=1, keepdims=True), 1.0)
        return u

    def prob(self, actions: np.ndarray) -> np.ndarray:
        """The probability of each row's action (N, 4)."""
        a = np.asarray(actions, dtype=np.int64)
        rows = np.arange(len(a))
        contact = a[:, 0] != 0

        def product(p: np.ndarray) -> np.ndarray:
            out = p[rows, a[:, 0]].copy()
            for k in (1, 2, 3):
                out = np.where(contact, out * p[rows, OFFSETS[k] + a[:, k]], out)
            return out

        return (1 - self.epsilon) * product(self.probs) + self.epsilon * product(self._uniform())

    def expected_onehots(self) -> np.ndarray:
        """(N, 19) E[one-hot(channel)], E[contact * one-hot(window)], ... under the distribution:
        a model linear in these features has its expectation under the policy in closed form."""

        def one(p: np.ndarray) -> np.ndarray:
            out = p.copy()
            out[:, 7:] *= (1 - p[:, 0])[:, None]
            return out

        e = self.epsilon[:, None]
        return (1 - e) * one(self.probs) + e * one(self._uniform())

    def mass_outside(self, logger: Dist) -> np.ndarray:
        """(N,) this distribution's probability of actions ``logger`` never takes (support deficiency)."""
        lz = logger.probs <= 0
        uz = ~logger.allowed
        # an action is never taken when both mixture components give it zero
        cz = np.where(logger.epsilon[:, None] > 0, lz[:, :7] & uz[:, :7], lz[:, :7])
        dz = [np.where(logger.epsilon[:, None] > 0, lz[:, s : s + n] & uz[:, s : s + n], lz[:, s : s + n]) for s, n in _SEG[1:]]
        # channel zero: exact; a contact with a zero window/tone/offer: exact for a product component and
        # for a uniform one (both factor); the logger's own mixture is handled by the AND above
        out = np.zeros(len(self.probs))
        for comp, weight in ((self.probs, 1 - self.epsilon), (self._uniform(), self.epsilon)):
            pc = comp[:, :7]
            keep = np.ones(len(comp))
            for (s, n), z in zip(_SEG[1:], dz, strict=True):
                keep = keep * (comp[:, s : s + n] * ~z).sum(axis=1)
            m = (pc * cz).sum(axis=1) + (pc[:, 1:] * ~cz[:, 1:]).sum(axis=1) * (1 - keep)
            out += weight * m
        return out


def point_mass(actions: np.ndarray, allowed: np.ndarray) -> Dist:
    a = canonical(actions)
    probs = np.zeros((len(a), HEAD_WIDTH))
    rows = np.arange(len(a))
    for k, (s, _) in enumerate(_SEG):
        probs[rows, s + a[:, k]] = 1.0
    return Dist(probs, np.zeros(len(a)), allowed)


def sample(dist: Dist, rng: np.random.Generator) -> np.ndarray:
    """(N, 4) actions drawn from ``dist``."""
    n = len(dist.probs)
    u = rng.random((n, 5))
    explore = u[:, 4] < dist.epsilon
    p = np.where(explore[:, None], dist._uniform(), dist.probs)
    out = np.zeros((n, 4), dtype=np.int64)
    for k, (s, size) in enumerate(_SEG):
        cdf = np.cumsum(p[:, s : s + size], axis=1)
        out[:, k] = np.minimum((u[:, k : k + 1] * cdf[:, -1:] > cdf).sum(axis=1), size - 1)
    return canonical(out)


class TargetPolicy:
    """A policy's action probabilities on logged views: a registered rule, an exported artifact or a
    training run directory (its best model's masked softmax heads)."""

    def __init__(self, name: str) -> None:
        from policies.runtime import ArtifactError, load

        self.name = name
        self.rule: Policy | None = None
        self._scores: Any = None  # views -> (N, width) scores of a learned policy
        path = Path(name)
        if path.is_dir() and (path / "manifest.json").exists():
            try:
                fn = load(path)
            except ArtifactError as e:
                raise UsageError(str(e)) from None
            self.policy_id, self.version = fn.policy_id, fn.version
            if fn.kind == "rule":
                self.rule = fn._rule
            else:
                self._scores = lambda views: fn.scores(encode(views))
        else:
            from agents.learned import LearnedPolicy, action_logits
            from experiments.resolve import resolve_policy

            policy = resolve_policy(name)
            if isinstance(policy, WorldPolicy):
                raise UsageError(
                    f"policy {name!r} reads the simulator's world (latent traits, its own bookkeeping): it cannot re-score logged decisions"
                )
            self.policy_id, self.version = policy.policy_id, str(getattr(policy, "version", 1))
            if isinstance(policy, LearnedPolicy):  # a training run: the model's own heads
                self._scores = lambda views: action_logits(policy.model, encode(views))
            else:
                self.rule = policy
                self.rule.reset(0)

    @property
    def stochastic(self) -> bool:
        """Whether the policy spreads probability over actions (a logit head, the random policy);
        a deterministic one logs one-hot probabilities and can evaluate no other policy alone."""
        if self.rule is not None:
            return hasattr(self.rule, "propensity")
        return True  # a learned policy; a Q-value head (DQN) is found deterministic in dist()

    def dist(self, views: ViewBatch, allowed: np.ndarray) -> Dist:
        n = len(views)
        if self.rule is not None:
            if hasattr(self.rule, "propensity"):  # the random policy: uniform over the allowed values
                return Dist(np.zeros((n, HEAD_WIDTH)), np.ones(n), allowed)
            return point_mass(self.rule.act(views, allowed), allowed)
        scores = self._scores(views)
        if scores.shape[1] == HEAD_WIDTH:
            return Dist(np.concatenate(masked_probabilities(scores, allowed), axis=1), np.zeros(n), allowed)
        from policies.decision import masked_argmax

        return point_mass(masked_argmax(scores, allowed), allowed)


def mix(dist: Dist, epsilon: float) -> Dist:
    """``dist`` with a share ``epsilon`` of uniformly random allowed actions."""
    return Dist(dist.probs, 1 - (1 - dist.epsilon) * (1 - epsilon), dist.allowed)


# ------------------------------------------------------------------ logging a simulated run


class LoggingPolicy:
    """Runs ``target`` in the simulator sampling from its probabilities (with a share ``epsilon`` of
    uniformly random allowed actions), and records every decision of every open account."""

    def __init__(
        self,
        target: TargetPolicy,
        epsilon: float = 0.0,
        seed: int = 0,
        arm: str | None = None,
        probe: TargetPolicy | None = None,
        probe_share: float = 0.0,
    ) -> None:
        if not 0 <= epsilon <= 1:
            raise UsageError(f"epsilon must be in [0, 1], got {epsilon}")
        self.target, self.epsilon, self.seed, self.arm = target, float(epsilon), int(seed), arm
        # a probe (the OPE bench's ground truth): a share of decisions made by another policy, flagged
        self.probe, self.probe_share = probe, float(probe_share)
        self.policy_id, self.version = target.policy_id, target.version
        self.rng_ = np.random.default_rng(seed)
        self.parts_: list[dict[str, Any]] = []

    def reset(self, seed: int | None = None) -> None:
        self.rng_ = np.random.default_rng(np.random.SeedSequence([self.seed, 0x4C4F47]))
        self.parts_ = []

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        raise UsageError("a logging policy records account ids: run it with sim.runner.run_portfolio")

    def act_with_world(self, world: World, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        out = np.zeros((len(views), 4), dtype=np.int64)
        rows = np.flatnonzero(world.open)
        if len(rows) == 0:
            return out
        v, m = views.take(rows), mask[rows]
        dist = mix(self.target.dist(v, m), self.epsilon)
        actions = sample(dist, self.rng_)
        flags = np.zeros(len(rows), dtype=bool)
        if self.probe is not None:
            flags = self.rng_.random(len(rows)) < self.probe_share
            actions[flags] = sample(self.probe.dist(v.take(np.flatnonzero(flags)), m[flags]), self.rng_)
        out[rows] = actions
        self.parts_.append(
            {
                "account": world.state.debtor_id[rows].astype(np.int64),
                "day": np.full(len(rows), world.day, dtype=np.int64),
                "actions": actions,
                "propensity": dist.prob(actions),
                "probs": dist.probs.astype(np.float64),
                "epsilon": dist.epsilon.astype(np.float64),
                "allowed": m.copy(),
                "views": v,
                "probe": flags,
            }
        )
        return out

    def probe_flags(self) -> np.ndarray:
        """Which recorded decisions the probe made (in the order of :meth:`table`)."""
        return np.concatenate([p["probe"] for p in self.parts_])

    def table(self) -> Decisions:
        if not self.parts_:
            raise UsageError("no decisions were made (no account was open)")
        ids = np.array([str(i) for i in np.concatenate([p["account"] for p in self.parts_]).tolist()], dtype=object)
        return stack_decisions(self.parts_, ids, self.policy_id, self.version, self.arm)


def stack_decisions(parts: list[dict[str, Any]], account_id: np.ndarray, policy_id: str, version: str, arm: str | None = None) -> Decisions:
    """One policy's decisions, recorded in parts (each a dict of ``day``, ``actions``, ``propensity``,
    ``probs``, ``epsilon``, ``allowed`` and ``views``), as one table; ``account_id`` for all rows."""
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("day", "actions", "propensity", "probs", "epsilon", "allowed")}
    views = ViewBatch(**{f: np.concatenate([getattr(p["views"], f) for p in parts]) for f in ViewBatch.field_names()})
    n = len(views)
    return Decisions(
        **cat,
        account_id=account_id,
        policy_id=np.full(n, policy_id, dtype=object),
        policy_version=np.full(n, version, dtype=object),
        arm=np.full(n, arm, dtype=object),
        assignment_prob=np.ones(n),
        views=views,
    )


# ------------------------------------------------------------------ the table


@dataclass
class Decisions:
    account_id: np.ndarray  # object (str)
    day: np.ndarray
    policy_id: np.ndarray
    policy_version: np.ndarray
    arm: np.ndarray
    assignment_prob: np.ndarray
    actions: np.ndarray  # (N, 4) canonical
    propensity: np.ndarray
    probs: np.ndarray  # (N, 19)
    epsilon: np.ndarray
    allowed: np.ndarray  # (N, 19)
    views: ViewBatch

    def __len__(self) -> int:
        return len(self.day)

    @property
    def logger(self) -> Dist:
        return Dist(self.probs, self.epsilon, self.allowed)

    def take(self, idx: np.ndarray) -> Decisions:
        kw = {f.name: getattr(self, f.name)[idx] for f in fields(self) if f.name != "views"}
        return Decisions(**kw, views=self.views.take(idx))


def _fixed_list(a: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])


def write_decisions(d: Decisions, folder: str | Path) -> Path:
    """``decisions.parquet`` in ``folder``, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = d.actions
    cols: dict[str, Any] = {
        "account_id": pa.array(d.account_id.tolist(), pa.string()),
        "day": pa.array(d.day, pa.int64()),
        "policy_id": pa.array(d.policy_id.tolist(), pa.string()),
        "policy_version": pa.array([str(v) for v in d.policy_version.tolist()], pa.string()),
        "arm": pa.array(d.arm.tolist(), pa.string()),
        "assignment_prob": pa.array(d.assignment_prob, pa.float64()),
    }
    for k, key in enumerate(("channel", "window", "tone", "offer")):
        cols[key] = pa.array(np.array(_NAMES[k], dtype=object)[a[:, k]].tolist(), pa.string())
    cols["action"] = pa.array(encode_flat(a), pa.int64())
    cols["propensity"] = pa.array(d.propensity, pa.float64())
    cols["probs"] = _fixed_list(d.probs.astype(np.float64))
    cols["epsilon"] = pa.array(d.epsilon, pa.float64())
    cols["allowed"] = _fixed_list(d.allowed.astype(bool))
    for name in ViewBatch.field_names():
        v = getattr(d.views, name)
        cols[f"view_{name}"] = _fixed_list(v) if v.ndim == 2 else pa.array(v)
    table = pa.table(cols)
    path = Path(folder) / f"{DECISIONS}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda p: pq.write_table(table, p, compression="zstd"))


_REQUIRED = ("account_id", "day", "policy_id", "action", "propensity", "probs")


def _column(table: Any, name: str, path: Path) -> Any:
    if name not in table.column_names:
        close = [c for c in table.column_names if c.startswith(name[:4])]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"{path}: missing column {name!r}{hint}; the README's 'Off-policy evaluation' section lists the decision log's columns")
    return table.column(name).combine_chunks()


def _matrix(col: Any, width: int, name: str, path: Path) -> np.ndarray:
    try:
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return np.asarray(flat).reshape(-1, width)
    except (ValueError, AttributeError) as e:
        raise UsageError(f"{path}: column {name!r} must hold lists of {width} values ({e})") from None


def _read_parquet(path: Path, profile: str) -> Decisions:
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise UsageError(f"{path}: not a readable Parquet file ({e})") from None
    for name in _REQUIRED:
        _column(t, name, path)
    n = t.num_rows
    vcols = {}
    for name in ViewBatch.field_names():
        col = _column(t, f"view_{name}", path)
        vcols[name] = _matrix(col, 6, f"view_{name}", path) if name in ("on_file", "opted_out", "contacts_7d") else col.to_numpy(zero_copy_only=False)
    views = ViewBatch(**vcols)
    allowed = (
        _matrix(_column(t, "allowed", path), HEAD_WIDTH, "allowed", path).astype(bool)
        if "allowed" in t.column_names
        else compliance.action_mask(views, compliance.get_profile(profile))
    )

    def opt(name: str, default: Any, dtype: Any) -> np.ndarray:
        if name not in t.column_names:
            return np.full(n, default, dtype=dtype)
        return np.asarray(t.column(name).to_pylist() if dtype is object else t.column(name).to_numpy(zero_copy_only=False), dtype=dtype)

    return Decisions(
        account_id=np.asarray([str(x) for x in t.column("account_id").to_pylist()], dtype=object),
        day=t.column("day").to_numpy().astype(np.int64),
        policy_id=np.asarray(t.column("policy_id").to_pylist(), dtype=object),
        policy_version=np.array([str(v) for v in opt("policy_version", "1", object).tolist()], dtype=object),
        arm=opt("arm", None, object),
        assignment_prob=opt("assignment_prob", 1.0, np.float64),
        actions=canonical(decode_flat(t.column("action").to_numpy().astype(np.int64))),
        propensity=t.column("propensity").to_numpy().astype(np.float64),
        probs=_matrix(_column(t, "probs", path), HEAD_WIDTH, "probs", path).astype(np.float64),
        epsilon=opt("epsilon", 0.0, np.float64),
        allowed=allowed,
        views=views,
    )


def _probs_of(line: int, raw: Any, path: Path) -> list[float]:
    if isinstance(raw, dict):
        out: list[float] = []
        for key, size in zip(("channel", "window", "tone", "offer"), ACTION_DIMS, strict=True):
            part = raw.get(key)
            if not isinstance(part, list) or len(part) != size:
                raise UsageError(f"{path}:{line}: probs.{key} must be a list of {size} probabilities")
            out += part
        return out
    if isinstance(raw, list) and len(raw) == HEAD_WIDTH:
        return raw
    raise UsageError(f"{path}:{line}: probs must be an object of channel/window/tone/offer lists or a list of {HEAD_WIDTH} numbers")


def _action_of(line: int, raw: Any, path: Path) -> list[int]:
    if not isinstance(raw, dict):
        raise UsageError(f"{path}:{line}: action must be an object with channel, window, tone, offer (and index)")
    if "index" in raw:
        return [int(x) for x in decode_flat(np.array([int(raw["index"])]))[0]]
    try:
        return [_NAMES[k].index(raw.get(key) or _NAMES[k][0]) for k, key in enumerate(("channel", "window", "tone", "offer"))]
    except ValueError as e:
        raise UsageError(f"{path}:{line}: action: {e}") from None


def _logged_action(r: dict[str, Any], path: Path) -> list[int]:
    if r.get("action_index") is not None:
        return _action_of(r["_line"], {"index": r["action_index"]}, path)
    return _action_of(r["_line"], r.get("action") or r.get("decision"), path)


def _probs_or_point(r: dict[str, Any], action: list[int], path: Path) -> list[float]:
    """The logged probabilities; a policy that logs none (a deterministic rule, a Q-value argmax)
    chose with probability 1, which its propensity must say."""
    if r.get("probs") is not None:
        return _probs_of(r["_line"], r["probs"], path)
    if abs(float(r["propensity"]) - 1.0) > 1e-9:
        raise UsageError(f"{path}:{r['_line']}: probs missing while the propensity is {r['propensity']} (not 1): the log cannot be reweighted")
    out = [0.0] * HEAD_WIDTH
    for k, (s, _) in enumerate(_SEG):
        out[s + action[k]] = 1.0
    return out


def _read_jsonl(path: Path, profile: str) -> Decisions:
    rows: list[dict[str, Any]] = []
    with path.open() as f:
        for line, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path}:{line}: not JSON ({e})") from None
            missing = [k for k in ("account_id", "day", "policy_id", "propensity", "view") if rec.get(k) is None]
            if not any(k in rec for k in ("action", "decision", "action_index")):
                missing.append("action (or decision / action_index)")
            if missing:
                raise UsageError(f"{path}:{line}: missing field(s) {', '.join(missing)}")
            rec["_line"] = line
            rows.append(rec)
    if not rows:
        raise UsageError(f"{path}: no decisions")
    fields_ = set(ViewBatch.field_names())
    try:
        # the server logs the validated view as a row of view fields; other systems may log the account record
        views = views_from_rows([r["view"] if fields_ <= set(r["view"]) else parse_record(r["view"], i) for i, r in enumerate(rows)])
    except RecordError as e:
        raise UsageError(f"{path}: line {rows[e.index]['_line']}: view: {e}") from None
    except (TypeError, ValueError) as e:
        raise UsageError(f"{path}: a view is neither an account record nor a row of view fields ({e})") from None
    actions = canonical(np.array([_logged_action(r, path) for r in rows], dtype=np.int64))
    computed = compliance.action_mask(views, compliance.get_profile(profile))
    allowed = np.array([r["allowed"] if "allowed" in r else computed[i] for i, r in enumerate(rows)], dtype=bool)
    return Decisions(
        account_id=np.array([str(r["account_id"]) for r in rows], dtype=object),
        day=np.array([int(r["day"]) for r in rows], dtype=np.int64),
        policy_id=np.array([str(r["policy_id"]) for r in rows], dtype=object),
        policy_version=np.array([str(r.get("policy_version") or 1) for r in rows], dtype=object),
        arm=np.array([r.get("arm") for r in rows], dtype=object),
        assignment_prob=np.array([float(r.get("assignment_prob") or 1.0) for r in rows]),
        actions=actions,
        propensity=np.array([float(r["propensity"]) for r in rows]),
        probs=np.array([_probs_or_point(r, a, path) for r, a in zip(rows, actions.tolist(), strict=True)], dtype=np.float64),
        epsilon=np.array([float(r.get("epsilon") or 0.0) for r in rows]),
        allowed=allowed,
        views=views,
    )


def read_decisions(folder: str | Path, profile: str = "us_reg_f") -> Decisions:
    """The decisions of a log folder (``decisions.parquet`` or ``decisions.jsonl``), checked:
    propensities in (0, 1], equal to what ``probs``/``epsilon`` give the logged action."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give the folder `collectrl simulate --log-decisions` wrote")
    pq_path, js_path = folder / f"{DECISIONS}.parquet", folder / f"{DECISIONS}.jsonl"
    if pq_path.exists():
        d = _read_parquet(pq_path, profile)
        path = pq_path
    elif js_path.exists():
        d = _read_jsonl(js_path, profile)
        path = js_path
    else:
        raise UsageError(f"{folder} has no {DECISIONS}.parquet or {DECISIONS}.jsonl (write one with `collectrl simulate --log-decisions {folder}`)")
    bad = np.flatnonzero(~((d.propensity > 0) & (d.propensity <= 1 + 1e-9)))
    if len(bad):
        raise UsageError(f"{path}: propensity must be in (0, 1] (rows {', '.join(str(i + 1) for i in bad[:10])})")
    recomputed = d.logger.prob(d.actions)
    off = np.flatnonzero(np.abs(recomputed - d.propensity) > 1e-6 * np.maximum(1.0, d.propensity) + 1e-9)
    if len(off):
        raise UsageError(
            f"{path}: the propensity of {len(off):,} row(s) differs from what probs/epsilon give the logged action "
            f"(rows {', '.join(str(i + 1) for i in off[:10])}): the log cannot be reweighted"
        )
    return d


def log_run(
    scenario: Any,
    policy: str,
    debtors: int,
    seed: int,
    out: str | Path,
    *,
    epsilon: float = 0.0,
    horizon_days: int | None = None,
    progress: Any = None,
) -> tuple[World, Decisions]:
    """Simulate ``policy`` (sampling, with a share ``epsilon`` of random allowed actions) and write
    its decisions and the outcomes (the history format) to ``out``."""
    from sim import history as fmt
    from sim.runner import run_portfolio

    logger = LoggingPolicy(TargetPolicy(policy), epsilon, seed)
    world = run_portfolio(scenario, logger, debtors, seed, horizon_days=horizon_days, record_events=True, progress=progress)  # type: ignore[arg-type]
    decisions = logger.table()
    history = history_of(
        world, {"source": f"collectrl simulate --log-decisions ({policy}, epsilon {epsilon})", "scenario": scenario.name, "seed": seed}
    )
    fmt.write_history(history, out)
    write_decisions(decisions, out)
    return world, decisions


def history_of(world: World, meta: dict[str, Any]) -> Any:
    """The history (``sim.history.History``) of a finished simulated world."""
    from sim import history as fmt
    from sim.state import Status

    s = world.state
    entered = np.flatnonzero(s.status != Status.WAITING)
    traits = world.traits.take(entered)
    accounts = fmt.accounts_table(s.debtor_id[entered], s.entry_day[entered], s.balance[entered], traits)
    return fmt.from_ledger(world.ledger.columns(), accounts, meta | {"days": int(world.day)})
