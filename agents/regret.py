"""Learning over time, shown: the bandit's cumulative regret against the oracle on a stream of debtors.

Debtors arrive over ``stream_days`` days; the bandit acts on them and learns from what it causes.
The oracle and the static ladder run on the same debtors and luck (common random numbers), so the
per-debtor regret ``V(oracle) - V(bandit)`` is paired. Cumulative regret growing more slowly than
the number of debtors (a falling per-debtor regret) is the sign of learning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import policies
from agents.bandit import LinearThompsonBandit
from agents.plotting import finish_png
from sim.config import Scenario
from sim.runner import run_portfolio


@dataclass
class RegretResult:
    debtors: int
    regret: np.ndarray  # per debtor, in arrival order (EUR)
    ladder_regret: np.ndarray  # the static ladder's, same debtors

    def by_quarter(self) -> list[dict[str, float]]:
        out = []
        for part in np.array_split(np.arange(self.debtors), 4):
            r, lad = self.regret[part], self.ladder_regret[part]
            out.append(
                {
                    "bandit_regret_per_debtor": float(r.mean()),
                    "ci95": float(1.96 * r.std(ddof=1) / np.sqrt(len(r))),
                    "ladder_regret_per_debtor": float(lad.mean()),
                }
            )
        return out


def bandit_regret(sc: Scenario, debtors: int, seed: int = 0, stream_days: int = 240) -> RegretResult:
    stream = sc.model_copy(update={"population": sc.population.model_copy(update={"entry_spread_days": stream_days})})
    bandit = run_portfolio(stream, LinearThompsonBandit(), debtors, seed)
    oracle = run_portfolio(stream, policies.make("oracle"), debtors, seed)
    ladder = run_portfolio(stream, policies.make("static_ladder"), debtors, seed)
    order = np.argsort(bandit.entry_day, kind="stable")
    return RegretResult(debtors, (oracle.net_value - bandit.net_value)[order], (oracle.net_value - ladder.net_value)[order])


def plot_regret(res: RegretResult, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.arange(1, res.debtors + 1)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(n, np.cumsum(res.regret) / 1000, lw=2, label="linear_ts bandit (learning online)")
    ax.plot(n, np.cumsum(res.ladder_regret) / 1000, lw=2, ls="--", color="tab:gray", label="static_ladder (fixed)")
    ax.set(xlabel="debtors, in order of arrival", ylabel="cumulative regret vs oracle (thousand EUR)", title=title)
    finish_png(fig, ax, path, "upper left")
