"""The researchers' benchmark: every registered policy and every learner, on every preset.

Protocol (fixed; changing it makes scores incomparable)
--------------------------------------------------------
* Learners are trained with their shipped config (``configs/training/{algo}.yaml``), seed 0, for
  its own length (stopped early by patience, the best model chosen by the config's selection) or
  for ``timesteps`` debtor-days when given; a finished run of the same (preset, algo, seed, length),
  trained with the same config on the same version of the preset, under ``runs_dir`` is reused.
* Every policy is evaluated by ``experiments.evaluate`` on ``PROTOCOL_DEBTORS`` debtors x the
  seeds ``PROTOCOL_SEEDS`` (never used for training or the training-time evaluation), with common
  random numbers, under the preset's compliance profile.
* The score is the normalised score (0 = static ladder, 1 = oracle) with its 95 % interval; the
  online bandit learns from scratch on each evaluation run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import policies
from agents.learned import ALGOS
from agents.train import TrainConfig, load_train_config, train, why_not_reusable
from experiments import stats
from experiments.evaluate import evaluate
from experiments.resolve import resolve_policy
from sim.config import Scenario, load_scenario

PROTOCOL_DEBTORS = 20_000
PROTOCOL_SEEDS = (1000, 1001, 1002, 1003, 1004)
TRAIN_SEED = 0


def find_run(
    runs_dir: Path, scenario: str, world: Scenario, algo: str, seed: int, cfg: TrainConfig, timesteps: int, log: Callable[[str], None] = print
) -> Path | None:
    """The newest run of (scenario, algo, seed) that :func:`agents.train.why_not_reusable` accepts; the
    log says why each newer one was passed over."""
    for d in sorted(runs_dir.glob(f"{scenario}__{algo}__{seed}__*"), reverse=True):
        why = why_not_reusable(d, world, cfg, timesteps)
        if why is None:
            return d
        log(f"not reusing {d}: {why}")
    return None


def leaderboard(
    scenarios: list[str],
    algos: list[str],
    timesteps: int | None,
    runs_dir: Path,
    debtors: int = PROTOCOL_DEBTORS,
    seeds: tuple[int, ...] = PROTOCOL_SEEDS,
    log: Callable[[str], None] = print,
    train_overrides: list[str] | None = None,
) -> dict[str, Any]:
    for algo in algos:
        if algo not in ALGOS:
            raise ValueError(f"unknown learner {algo!r}; choose from {', '.join(ALGOS)}")
    # without an explicit length, every learner trains as `collectrl train` would: its shipped config's
    # own length (stopped early by patience), so the leaderboard shows what the defaults deliver
    configs = {algo: load_train_config(algo, train_overrides or []) for algo in algos}
    lengths = {algo: timesteps or configs[algo].timesteps for algo in algos}
    table: dict[str, Any] = {
        "protocol": {"debtors": debtors, "seeds": list(seeds), "timesteps": lengths, "train_seed": TRAIN_SEED},
        "scenarios": {},
    }
    for sc_name in scenarios:
        sc = load_scenario(sc_name)
        runs: dict[str, Path] = {}
        for algo in algos:
            found = find_run(runs_dir, sc_name, sc, algo, TRAIN_SEED, configs[algo], lengths[algo], log)
            if found is None:
                log(f"training {algo} on {sc_name} for up to {lengths[algo]:,} debtor-days ...")
                found = train(sc_name, algo, lengths[algo], TRAIN_SEED, runs_dir, train_overrides=train_overrides).root
            else:
                log(f"reusing {found}")
            runs[algo] = found
        ids = [*policies.registered(), *runs]
        log(f"evaluating {len(ids)} policies on {sc_name} ({debtors:,} debtors x {len(seeds)} seeds) ...")
        ev = evaluate(sc, ids, debtors, list(seeds), "static_ladder", make=lambda name: resolve_policy(str(runs[name]) if name in runs else name))
        rows = {}
        for pid in ids:
            r = ev.results[pid]
            assert r.score is not None
            rows[pid] = {
                "normalised_score": r.score.as_dict(),
                "net_value_per_debtor": r.kpis["net_value_per_debtor"].as_dict(),
                "blocked_actions": r.kpis["blocked_actions"].mean,
                "firm_contacts_per_debtor": r.kpis["firm_contacts_per_debtor"].mean,
                "complaint_rate": r.kpis["complaint_rate"].mean,
                "complaint_rate_interval": r.kpis["complaint_rate"].as_dict(),
                "kind": "learner" if pid in runs else "policy",
                "run": str(runs[pid]) if pid in runs else None,
            }
        table["scenarios"][sc_name] = rows
    return table


def _lengths(timesteps: int | dict[str, int]) -> str:
    """Training lengths as written in a table (one number in tables from before the lengths were per learner)."""
    if isinstance(timesteps, int):
        return f"{timesteps:,}"
    return ", ".join(f"{n:,} ({algo})" for algo, n in timesteps.items())


def markdown(table: dict[str, Any]) -> str:
    scen = list(table["scenarios"])
    ids = sorted(
        {p for rows in table["scenarios"].values() for p in rows},
        key=lambda p: -max(table["scenarios"][s].get(p, {}).get("normalised_score", {}).get("mean", -9) for s in scen),
    )
    pr = table["protocol"]
    lines = [
        "# collectrl leaderboard",
        "",
        f"Normalised score (0 = static ladder, 1 = oracle) with 95 % CI; {pr['debtors']:,} debtors x seeds {pr['seeds']}, "
        f"common random numbers; learners trained with their shipped configs (seed {pr['train_seed']}) "
        f"for up to {_lengths(pr['timesteps'])} debtor-days.",
    ]

    def grid(cell: Callable[[dict[str, Any]], str]) -> list[str]:
        rows = ["", "| policy | " + " | ".join(scen) + " |", "|---|" + "---|" * len(scen)]
        for p in ids:
            cells = [("n/a" if (r := table["scenarios"][s].get(p)) is None else cell(r)) for s in scen]
            rows.append(f"| `{p}` | " + " | ".join(cells) + " |")
        return rows

    def score(r: dict[str, Any]) -> str:
        return stats.format_interval(stats.Interval.from_dict(r["normalised_score"]), ".3f")

    note = stats.method_note(len(pr["seeds"]))
    lines += grid(score)
    lines += ["", f"*{note} The normalised score: the delta method over the paired batch values.*"]
    lines += ["", "Firm-tone contacts per debtor / debtors who complained / blocked actions (compliance):"]
    lines += grid(lambda r: f"{r['firm_contacts_per_debtor']:.2f} / {r['complaint_rate']:.1%} / {r['blocked_actions']:,.0f}")
    return "\n".join(lines) + "\n"
