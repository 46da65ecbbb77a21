"""What a policy name means, wherever a policy is named (``simulate --policy``, ``evaluate
--policies``, experiment specs, the leaderboard, worker processes): a registered id
(``policies.base``), a training run directory (its best model), or an exported artifact directory
(``manifest.json`` + model). Below the command line, so every part of orchestration and every
worker resolves names the same way without loading the CLI."""

from __future__ import annotations

from pathlib import Path

import policies
from experiments.errors import UsageError
from experiments.learned import ArtifactPolicy, load_run_policy
from policies.base import Policy
from policies.runtime import ArtifactError


def resolve_policy(name: str) -> Policy:
    """The policy ``name`` stands for; :class:`UsageError` naming what is wrong otherwise."""
    path = Path(name)
    if path.is_dir() and (path / "manifest.json").exists():
        try:
            return ArtifactPolicy(path)  # type: ignore[return-value]
        except ArtifactError as e:
            raise UsageError(str(e)) from None
    if path.is_dir():
        return load_run_policy(path)  # type: ignore[no-any-return]
    try:
        return policies.make(name)
    except ValueError as e:
        raise UsageError(f"{e} (or give a training run directory or an exported artifact)") from None
