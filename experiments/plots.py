"""Figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from experiments.io import atomic_write


def recovery_curves(curves: dict[str, np.ndarray], path: str | Path, title: str) -> Path:
    """Cumulative recovery (share of the balance) by days in collections, one line per policy."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, c in curves.items():
        ax.plot(np.arange(len(c)), 100 * c, label=name, lw=2)
    ax.set_xlabel("days in collections")
    ax.set_ylabel("collected, % of balance")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out
