"""Shared figure finishing: grid, legend, tight layout, atomic PNG write, close."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policies.fileio import atomic_write


def finish_png(fig: Any, ax: Any, path: Path, legend_loc: str = "best") -> Path:
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(loc=legend_loc, fontsize=8)
    fig.tight_layout()
    out = atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return out
