"""A tiny training run for tests that need a learned policy (not a good one): MaskablePPO on
``default`` for 512 debtor-days, evaluated on 100 debtors, no final selection."""

from __future__ import annotations

from pathlib import Path

TINY = [
    "n_slots=32",
    "n_steps=8",
    "batch_size=128",
    "eval_every_steps=512",
    "checkpoint_every_steps=100000",
    "eval_debtors=100",
    "select_top=null",
]


def tiny_run(out: Path, algo: str = "maskable_ppo", seed: int = 0) -> Path:
    """The run directory of a tiny training under ``out``."""
    from agents.train import train

    return train("default", algo, 512, seed=seed, out=out, train_overrides=TINY).root
