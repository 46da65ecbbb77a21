"""Loading a training run directory as a policy (its best model)."""

from __future__ import annotations

from pathlib import Path

import yaml

from policies.runtime import load
from sim.config import ConfigError


def load_run_policy(run_dir: str | Path):  # type: ignore[no-untyped-def]
    from agents.learned import LearnedPolicy, load_model

    root = Path(run_dir)
    cfg_path, model_path = root / "config.yaml", root / "best" / "model.zip"
    if not cfg_path.exists() or not model_path.exists():
        raise ConfigError(f"{root} is not a finished training run (needs config.yaml and best/model.zip)")
    cfg = yaml.safe_load(cfg_path.read_text())
    # decide with the thread count the run trained with (1 by default): torch's default, one thread per
    # core, made a what-if cell 4x slower on a shared 2-core machine, its threads waiting on each other
    import torch

    torch.set_num_threads(int((cfg.get("training") or {}).get("torch_threads", 1)))
    return LearnedPolicy(load_model(cfg["algo"], model_path), policy_id=root.name)


class ArtifactPolicy:
    """An exported artifact behind the policy interface (so experiments can compare served policies)."""

    def __init__(self, root: str | Path) -> None:

        self.fn = load(root)
        self.policy_id = self.fn.policy_id

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, views, mask):  # type: ignore[no-untyped-def]
        return self.fn.decide_arrays(views)[0]
