"""Run a portfolio under a policy, day by day, to the end of every debtor's horizon."""

from __future__ import annotations

from collections.abc import Callable

from policies.base import Policy
from sim.config import Scenario
from sim.population import Debtors
from sim.world import World

ProgressFn = Callable[[int, int], None]  # (days done, days in all)


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
        actions = policy.act_with_world(world, views, mask) if getattr(policy, "needs_world", False) else policy.act(views, mask)  # type: ignore[attr-defined]
        result = world.step(actions, views)
        observe = getattr(policy, "observe", None)
        if observe is not None:  # online learners see each day's rewards
            observe(world, result)
        if progress is not None:
            progress(day + 1, days)
    return world
