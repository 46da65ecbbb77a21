"""Figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from agents.plotting import finish_png


def recovery_curves(curves: dict[str, np.ndarray], path: str | Path, title: str) -> Path:
    """Cumulative recovery (share of the balance) by days in collections, one line per policy."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, c in curves.items():
        ax.plot(np.arange(len(c)), 100 * c, label=name, lw=2)
    ax.set_xlabel("days in collections")
    ax.set_ylabel("collected, % of balance")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    return finish_png(fig, ax, Path(path), "lower right")
