"""The policy interface and registry.

A policy maps a batch of observable views (plus the compliance mask for them) to actions.
Rule policies, learned policies and exported artifacts all implement :class:`Policy`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from policies.schema import ViewBatch


@runtime_checkable
class Policy(Protocol):
    """Anything that chooses contact actions."""

    policy_id: str
    version: int  # bumped whenever the policy's behaviour changes; exported with it

    def reset(self, seed: int | None = None) -> None:
        """Start a new run; a policy that draws randomness re-seeds its Generator here."""

    def act(self, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        """Return (N, 4) int actions [channel, window, tone, offer] for N views.

        ``mask`` is the (N, 19) boolean action mask of the compliance profile
        (see :func:`policies.compliance.action_mask`).
        """


PolicyFactory = Callable[[], Policy]
_REGISTRY: dict[str, PolicyFactory] = {}


def register(policy_id: str, factory: PolicyFactory) -> None:
    if policy_id in _REGISTRY:
        raise ValueError(f"policy id {policy_id!r} is already registered")
    _REGISTRY[policy_id] = factory


def registered() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def describe(policy_id: str) -> tuple[int, str]:
    """(version, first line of the docstring) of a registered policy."""
    p = make(policy_id)
    doc = (type(p).__doc__ or "").strip().splitlines()
    return int(getattr(p, "version", 1)), (doc[0] if doc else "")


def make(policy_id: str) -> Policy:
    """A new instance of a registered policy."""
    try:
        factory = _REGISTRY[policy_id]
    except KeyError:
        raise ValueError(f"unknown policy {policy_id!r}; registered policies: {', '.join(registered())}") from None
    return factory()
