"""Run a portfolio under a policy, day by day, to the end of every debtor's horizon."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from policies.base import Policy
from policies.schema import ViewBatch
from sim.config import Scenario
from sim.population import Debtors
from sim.world import DayResult, World

ProgressFn = Callable[[int, int], None]  # (days done, days in all)


@runtime_checkable
class WorldPolicy(Protocol):
    """A policy that reads the world, not only the observable views: the oracle (latent traits),
    the online bandit (its own bookkeeping of the world's debtors). Only the simulator can run it."""

    def act_with_world(self, world: World, views: ViewBatch, mask: np.ndarray) -> np.ndarray:
        """(N, 4) actions for the world's slots, as ``Policy.act``, with the world at hand."""


@runtime_checkable
class OnlineLearner(Protocol):
    """A policy that learns while it acts: it sees each day's outcome."""

    def observe(self, world: World, result: DayResult) -> None:
        """Learn from what ``world.step`` returned today."""


def total_days(sc: Scenario, horizon_days: int | None = None) -> int:
    return sc.population.entry_spread_days + (horizon_days or sc.horizon_days)


def run_portfolio(
    sc: Scenario,
    policy: Policy,
    debtors: int,
    seed: int = 0,
    *,
    horizon_days: int | None = None,
    record_events: bool = False,
    progress: ProgressFn | None = None,
    max_days: int | None = None,
    population: Debtors | None = None,
) -> World:
    """Simulate ``debtors`` debtors of scenario ``sc`` under ``policy``; returns the finished world.

    The policy is reset with ``seed``; the world's randomness comes from ``seed`` too, so two
    policies run with the same seed face the same debtors and the same luck. ``population``:
    the debtors as given (``sim.world.World``) instead of sampled.
    """
    world = World(sc, debtors, seed, mode="portfolio", horizon_days=horizon_days, record_events=record_events, population=population)
    policy.reset(seed)
    days = total_days(sc, horizon_days) if max_days is None else max_days
    for day in range(days):
        if world.finished:
            break
        views = world.views()
        mask = world.action_mask(views)
        actions = policy.act_with_world(world, views, mask) if isinstance(policy, WorldPolicy) else policy.act(views, mask)
        result = world.step(actions, views)
        if isinstance(policy, OnlineLearner):  # online learners see each day's rewards
            policy.observe(world, result)
        if progress is not None:
            progress(day + 1, days)
    return world
