"""The policy interface and registry.

A policy maps a batch of observable views (plus the compliance mask for them) to actions.
Rule policies, learned policies and exported artifacts all implement :class:`Policy`.
"""

from __future__ import annotations

import importlib
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

# The built-in policies, in one place: id -> "module:factory". A factory's module is imported the
# first time the policy is made, so the registry is the same whatever has been imported (a worker
# process sees the same ids as the command line), and asking for the oracle or the bandit is what
# loads the simulator, not importing this module.
BUILTIN: dict[str, str] = {
    "static_ladder": "policies.rules:StaticLadder",
    "segment_journeys": "policies.rules:SegmentJourneys",
    "digital_first": "policies.rules:DigitalFirst",
    "random": "policies.rules:RandomPolicy",
    "no_contact": "policies.rules:NoContact",
    "oracle": "sim.oracle:Oracle",
    "linear_ts": "agents.bandit:LinearThompsonBandit",
}
_REGISTRY: dict[str, PolicyFactory] = {}


def register(policy_id: str, factory: PolicyFactory) -> None:
    """Add a policy of your own (a plug-in, a test double) under ``policy_id``."""
    if policy_id in _REGISTRY or policy_id in BUILTIN:
        raise ValueError(f"policy id {policy_id!r} is already registered")
    _REGISTRY[policy_id] = factory


def registered() -> tuple[str, ...]:
    return tuple(sorted({*BUILTIN, *_REGISTRY}))


def describe(policy_id: str) -> tuple[int, str]:
    """(version, first line of the docstring) of a registered policy."""
    p = make(policy_id)
    doc = (type(p).__doc__ or "").strip().splitlines()
    return int(getattr(p, "version", 1)), (doc[0] if doc else "")


def _factory(policy_id: str) -> PolicyFactory:
    factory = _REGISTRY.get(policy_id)
    if factory is not None:
        return factory
    entry = BUILTIN.get(policy_id)
    if entry is None:
        raise ValueError(f"unknown policy {policy_id!r}; registered policies: {', '.join(registered())}")
    module, name = entry.split(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def make(policy_id: str) -> Policy:
    """A new instance of a registered policy."""
    return _factory(policy_id)()
