"""Evaluation that strategy teams can trust: common random numbers, confidence intervals, paired tests.

Protocol
--------
Every policy runs on the same seeds; for a given seed every policy faces the same debtors and the
same luck (``sim.rng``), so differences between policies are *paired* per debtor.

The intervals are ``experiments.stats``'s, the same as the what-if report's and the leaderboard's:
each run's debtors are split into ``BATCHES`` batches by debtor id, and the ``seeds x BATCHES``
batch values are the replicates (Student t; rates by a Wilson interval that stays in [0, 1]).

* KPIs: the point estimate is the mean over seeds of the whole-run KPI.
* The difference of net value per debtor against the champion: per-batch differences on the same
  debtors, its interval and p-value. The unpaired (Welch) interval on the same runs is reported
  too, to show what pairing buys.
* The normalised score ``(V(p) - V(ladder)) / (V(oracle) - V(ladder))``: the paired batch values
  with a delta-method interval. ``static_ladder`` and ``oracle`` are always run as its references.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import policies
from experiments import stats
from experiments.stats import BATCHES, Interval
from policies.schema import CONTACT_CHANNEL_NAMES
from sim.config import ARCHETYPES, Scenario
from sim.kpis import KPI_NAMES, blocked_by_reason, per_debtor, portfolio_kpis, recovery_curve
from sim.runner import run_portfolio, total_days
from sim.world import Status, World

__all__ = ["BATCHES", "Evaluation", "Interval", "PairedDiff", "PolicyResult", "evaluate", "kpis_by_batch"]

REFERENCE_LOW, REFERENCE_HIGH = "static_ladder", "oracle"


@dataclass
class PairedDiff:
    policy: str
    champion: str
    diff: Interval  # paired, with its p-value
    unpaired: Interval
    n_pairs: int  # debtor pairs behind it

    @property
    def p_value(self) -> float:
        return float("nan") if self.diff.p_value is None else self.diff.p_value

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "champion": self.champion,
            **{f"diff_{k}": v for k, v in self.diff.as_dict().items() if k != "p_value"},
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
    policies: list[str]  # short labels, as shown in tables and figures
    champion: str
    results: dict[str, PolicyResult] = field(default_factory=dict)
    paired: dict[str, PairedDiff] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # label -> full id, where they differ

    @property
    def replicates(self) -> int:
        return len(self.seeds) * BATCHES

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "compliance_profile": self.profile,
            "debtors": self.debtors,
            "seeds": self.seeds,
            "champion": self.champion,
            "protocol": "common random numbers; " + stats.method_note(len(self.seeds)),
            "sources": self.sources,
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


def kpis_by_batch(world: World) -> list[dict[str, float]]:
    """The KPIs of each of the ``BATCHES`` debtor batches (by debtor id) of a finished portfolio run."""
    entered = world.status != Status.WAITING
    batch = (world.debtor_id % BATCHES).astype(np.int64)
    return [portfolio_kpis(world, entered & (batch == b)) for b in range(BATCHES)]


def evaluate(
    sc: Scenario,
    policy_ids: Sequence[str],
    debtors: int,
    seeds: Sequence[int],
    champion: str = REFERENCE_LOW,
    progress: Callable[[int, int], None] | None = None,
    make: Callable[[str], policies.Policy] = policies.make,
    sources: dict[str, str] | None = None,
) -> Evaluation:
    """Run every policy on every seed (common random numbers) and compute the statistics above.

    ``make`` turns an id into a policy (default: the registry; the CLI also accepts run directories).
    ``sources`` maps a short label to the full id it stands for, for the reports' footnotes.
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
                    "batches": kpis_by_batch(world),
                    "net": cols["net_value_eur"],
                    "debtor": cols["debtor"],
                    "archetype": cols["archetype"],
                    "curve": recovery_curve(world),
                    "blocked": blocked_by_reason(world),
                }
            )
            if progress is not None:
                progress(done, total)

    def seed_values(pid: str, kpi: str) -> np.ndarray:
        return np.array([r["kpis"][kpi] for r in per_seed[pid]], dtype=np.float64)

    def batch_values(pid: str, kpi: str) -> np.ndarray:
        return np.array([[b[kpi] for b in r["batches"]] for r in per_seed[pid]], dtype=np.float64)

    net = "net_value_per_debtor"
    ev = Evaluation(sc.name, sc.compliance_profile, debtors, list(seeds), asked, champion, sources=dict(sources or {}))
    for pid in run_ids:
        runs = per_seed[pid]
        units = sum(r["kpis"]["debtors"] for r in runs)
        kpis = {k: stats.kpi_interval(k, seed_values(pid, k), batch_values(pid, k), units) for k in KPI_NAMES}
        by_arch = {}
        for i, name in enumerate(ARCHETYPES):
            mine = [r["archetype"] == i for r in runs]
            if sum(int(m.sum()) for m in mine) < 2:
                continue
            seed_means = [float(r["net"][m].mean()) if m.any() else float("nan") for r, m in zip(runs, mine, strict=True)]
            batch_means = [stats.batch_means(r["net"], r["debtor"], m) for r, m in zip(runs, mine, strict=True)]
            by_arch[name] = stats.level_interval(seed_means, batch_means)
        blocked: dict[str, int] = {}
        for r in runs:
            for k, v in r["blocked"].items():
                blocked[k] = blocked.get(k, 0) + v
        lo, hi = seed_values(REFERENCE_LOW, net), seed_values(REFERENCE_HIGH, net)
        blo, bhi = batch_values(REFERENCE_LOW, net), batch_values(REFERENCE_HIGH, net)
        ev.results[pid] = PolicyResult(
            policy=pid,
            kpis=kpis,
            score=stats.ratio_interval(seed_values(pid, net) - lo, hi - lo, batch_values(pid, net) - blo, bhi - blo),
            curve=np.mean([r["curve"] for r in runs], axis=0),
            channel_mix={c: kpis[f"contacts_per_debtor_{c}"].mean for c in CONTACT_CHANNEL_NAMES},
            by_archetype=by_arch,
            blocked_by_reason=blocked,
        )
    for pid in asked:
        if pid == champion:
            continue
        args = (seed_values(pid, net), seed_values(champion, net), batch_values(pid, net), batch_values(champion, net))
        n_pairs = sum(len(r["net"]) for r in per_seed[pid])
        ev.paired[pid] = PairedDiff(pid, champion, stats.paired_difference(*args), stats.unpaired_difference(*args), n_pairs)
    return ev
