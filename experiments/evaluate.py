"""Evaluation that strategy teams can trust: common random numbers, confidence intervals, paired tests.

Protocol
--------
Every policy runs on the same seeds; for a given seed every policy faces the same debtors and the
same luck (``sim.rng``), so per-debtor differences between policies are *paired*.

* KPI confidence intervals (95 %) use batch means: each run's debtors are split into ``BATCHES``
  batches by debtor id, the KPI is computed per batch, and the half-width is
  ``t(0.975, n-1) x sd / sqrt(n)`` over the ``seeds x BATCHES`` batch values (for totals, the
  batch values are scaled to a whole run). The point estimate is the mean over seeds of the
  whole-run KPI.
* The paired difference of net value per debtor against the champion pools the per-debtor
  differences over all seeds: mean, normal 95 % interval and two-sided p-value. The unpaired
  (Welch) interval on the same runs is reported too, to show what pairing buys.
* The normalised score ``(V(p) - V(ladder)) / (V(oracle) - V(ladder))`` uses the paired
  per-debtor differences, with a delta-method interval. ``static_ladder`` and ``oracle`` are always
  run as its references.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import policies
from policies.schema import CONTACT_CHANNEL_NAMES
from sim.config import ARCHETYPES, Scenario
from sim.kpis import KPI_NAMES, blocked_by_reason, per_debtor, portfolio_kpis, recovery_curve
from sim.runner import run_portfolio, total_days
from sim.world import Status, World

BATCHES = 10
REFERENCE_LOW, REFERENCE_HIGH = "static_ladder", "oracle"
TOTAL_KPIS = ("debtors", "blocked_actions", "capacity_dropped_calls")
Z95 = 1.959963984540054

# two-sided 97.5 % quantiles of Student's t for small degrees of freedom (beyond 30: normal)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df: int) -> float:
    if df <= 0:
        return float("nan")
    if df in _T975:
        return _T975[df]
    keys = sorted(_T975)
    if df > keys[-1]:
        return Z95 + 2.4 / df  # within 0.3 % of the exact quantile for df > 30
    lo = max(k for k in keys if k < df)
    hi = min(k for k in keys if k > df)
    return _T975[lo] + (_T975[hi] - _T975[lo]) * (df - lo) / (hi - lo)


def p_value_two_sided(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def format_p(p: float) -> str:
    return "< 1e-300" if p < 1e-300 else f"= {p:.2g}"


@dataclass
class Interval:
    mean: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high}


@dataclass
class PairedDiff:
    policy: str
    champion: str
    diff: Interval
    unpaired: Interval
    p_value: float
    n_pairs: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "champion": self.champion,
            **{f"diff_{k}": v for k, v in self.diff.as_dict().items()},
            "p_value": self.p_value,
            "unpaired_ci_low": self.unpaired.low,
            "unpaired_ci_high": self.unpaired.high,
            "n_pairs": self.n_pairs,
        }


@dataclass
class PolicyResult:
    policy: str
    kpis: dict[str, Interval]
    score: Interval | None
    curve: np.ndarray  # mean cumulative recovery share by day
    channel_mix: dict[str, float]  # contacts per debtor per channel
    by_archetype: dict[str, Interval]  # net value per debtor
    blocked_by_reason: dict[str, int]


@dataclass
class Evaluation:
    scenario: str
    profile: str
    debtors: int
    seeds: list[int]
    policies: list[str]
    champion: str
    results: dict[str, PolicyResult] = field(default_factory=dict)
    paired: dict[str, PairedDiff] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "compliance_profile": self.profile,
            "debtors": self.debtors,
            "seeds": self.seeds,
            "champion": self.champion,
            "protocol": "common random numbers; KPI 95% CI by batch means over seeds x 10 debtor batches; paired per-debtor differences",
            "policies": {
                p: {
                    "kpis": {k: v.as_dict() for k, v in r.kpis.items()},
                    "normalised_score": r.score.as_dict() if r.score else None,
                    "paired_vs_champion": self.paired[p].as_dict() if p in self.paired else None,
                    "net_value_by_archetype": {k: v.as_dict() for k, v in r.by_archetype.items()},
                    "contacts_per_debtor_by_channel": r.channel_mix,
                    "blocked_by_reason": r.blocked_by_reason,
                }
                for p, r in self.results.items()
                if p in self.policies
            },
        }


def _interval(values: np.ndarray, center: float, scale: float = 1.0) -> Interval:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return Interval(center, float("nan"), float("nan"))
    hw = t975(len(v) - 1) * float(np.std(v, ddof=1)) / math.sqrt(len(v)) * scale
    return Interval(center, center - hw, center + hw)


def _batch_kpis(world: World) -> list[dict[str, float]]:
    entered = world.status != Status.WAITING
    batch = (world.debtor_id % BATCHES).astype(np.int64)
    return [portfolio_kpis(world, entered & (batch == b)) for b in range(BATCHES)]


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[Interval, Interval, float]:
    """Per-debtor ``a - b``: the paired interval, the unpaired (Welch) interval and the paired p-value."""
    d = a - b
    n = len(d)
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(n)
    se_u = math.sqrt(float(a.var(ddof=1)) / n + float(b.var(ddof=1)) / n)
    p = p_value_two_sided(mean / se) if se > 0 else (0.0 if mean != 0 else 1.0)
    return Interval(mean, mean - Z95 * se, mean + Z95 * se), Interval(mean, mean - Z95 * se_u, mean + Z95 * se_u), p


def _score(p: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Interval:
    """(mean(p - lo)) / (mean(hi - lo)) with a delta-method interval over paired debtors."""
    d1, d2 = p - lo, hi - lo
    m2 = float(d2.mean())
    if abs(m2) < 1e-12:
        return Interval(float("nan"), float("nan"), float("nan"))
    r = float(d1.mean()) / m2
    se = float(np.std(d1 - r * d2, ddof=1)) / math.sqrt(len(d1)) / abs(m2)
    return Interval(r, r - Z95 * se, r + Z95 * se)


def evaluate(
    sc: Scenario,
    policy_ids: Sequence[str],
    debtors: int,
    seeds: Sequence[int],
    champion: str = REFERENCE_LOW,
    progress: Callable[[int, int], None] | None = None,
    make: Callable[[str], policies.Policy] = policies.make,
) -> Evaluation:
    """Run every policy on every seed (common random numbers) and compute the statistics above.

    ``make`` turns an id into a policy (default: the registry; the CLI also accepts run directories).
    """
    asked = list(dict.fromkeys(policy_ids))
    if not asked:
        raise ValueError("give at least one policy")
    run_ids = list(dict.fromkeys([*asked, champion, REFERENCE_LOW, REFERENCE_HIGH]))
    instances = {pid: make(pid) for pid in run_ids}  # raises ValueError for an unknown id
    days = total_days(sc)
    total = len(run_ids) * len(seeds) * days
    done = 0

    per_seed: dict[str, list[dict[str, Any]]] = {p: [] for p in run_ids}
    for seed in seeds:
        for pid in run_ids:

            def tick(d: int, _total: int, base: int = done) -> None:
                if progress is not None:
                    progress(base + d, total)

            world = run_portfolio(sc, instances[pid], debtors, seed, progress=tick)
            done += days
            cols = per_debtor(world)
            per_seed[pid].append(
                {
                    "kpis": portfolio_kpis(world),
                    "batches": _batch_kpis(world),
                    "net": cols["net_value_eur"],
                    "archetype": cols["archetype"],
                    "curve": recovery_curve(world),
                    "blocked": blocked_by_reason(world),
                }
            )
            if progress is not None:
                progress(done, total)

    ev = Evaluation(sc.name, sc.compliance_profile, debtors, list(seeds), asked, champion)
    net = {p: np.concatenate([r["net"] for r in per_seed[p]]) for p in run_ids}
    for pid in run_ids:
        runs = per_seed[pid]
        kpis: dict[str, Interval] = {}
        for k in KPI_NAMES:
            seed_vals = np.array([r["kpis"][k] for r in runs], dtype=np.float64)
            center = float(seed_vals[np.isfinite(seed_vals)].mean()) if np.isfinite(seed_vals).any() else float("nan")
            batch_vals = np.array([b[k] for r in runs for b in r["batches"]])
            kpis[k] = _interval(batch_vals, center, BATCHES if k in TOTAL_KPIS else 1.0)
        arch = np.concatenate([r["archetype"] for r in runs])
        by_arch = {}
        for i, name in enumerate(ARCHETYPES):
            vals = net[pid][arch == i]
            if len(vals) >= 2:
                hw = Z95 * float(vals.std(ddof=1)) / math.sqrt(len(vals))
                by_arch[name] = Interval(float(vals.mean()), float(vals.mean()) - hw, float(vals.mean()) + hw)
        blocked: dict[str, int] = {}
        for r in runs:
            for k, v in r["blocked"].items():
                blocked[k] = blocked.get(k, 0) + v
        ev.results[pid] = PolicyResult(
            policy=pid,
            kpis=kpis,
            score=_score(net[pid], net[REFERENCE_LOW], net[REFERENCE_HIGH]),
            curve=np.mean([r["curve"] for r in runs], axis=0),
            channel_mix={c: kpis[f"contacts_per_debtor_{c}"].mean for c in CONTACT_CHANNEL_NAMES},
            by_archetype=by_arch,
            blocked_by_reason=blocked,
        )
    for pid in asked:
        if pid == champion:
            continue
        diff, unpaired, p = _paired(net[pid], net[champion])
        ev.paired[pid] = PairedDiff(pid, champion, diff, unpaired, p, len(net[pid]))
    return ev
