"""Benchmarks measured as ratios to a reference run in the same process (these machines are noisy)."""

from __future__ import annotations

import resource
import time
from typing import Any

import gymnasium as gym
import numpy as np

import policies
from sim import load_scenario
from sim.envs import DebtorBatchEnv, DebtorEnv
from sim.runner import run_portfolio


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cartpole_steps_per_s(seconds: float = 3.0, seed: int = 0) -> float:
    """gymnasium CartPole-v1 through gym.make, random actions: the reference."""
    env = gym.make("CartPole-v1")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(1000):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                env.reset()
        n += 1000
        el = time.perf_counter() - t0
        if el >= seconds:
            return n / el


def perf_sim(scenario: str = "default", debtors: int = 200_000, days: int = 180, seed: int = 0, reference_s: float = 3.0) -> dict[str, Any]:
    """A portfolio under static_ladder vs CartPole. ``debtor_days_per_s`` counts the days debtors were
    open (resolved debtors drop out); ``portfolio_debtor_days_per_s`` counts debtors x days."""
    sc = load_scenario(scenario, [f"horizon_days={days}"])
    cart = cartpole_steps_per_s(reference_s)
    t0 = time.perf_counter()
    world = run_portfolio(sc, policies.make("static_ladder"), debtors, seed)
    el = time.perf_counter() - t0
    dd = world.debtor_days / el
    return {
        "benchmark": "sim",
        "scenario": scenario,
        "policy": "static_ladder",
        "debtors": debtors,
        "days": days,
        "seconds": round(el, 2),
        "debtor_days_per_s": round(dd),
        "portfolio_debtor_days_per_s": round(debtors * days / el),
        "cartpole_steps_per_s": round(cart),
        "ratio": round(dd / cart, 2),
        "peak_rss_mb": round(_peak_rss_mb()),
    }


def _random_masked(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """One uniformly random allowed value per action dimension, for each mask row."""
    out = np.empty((mask.shape[0], 4), dtype=np.int64)
    start = 0
    for k, size in enumerate((7, 4, 4, 4)):
        keys = rng.random((mask.shape[0], size))
        keys[~mask[:, start : start + size]] = -1.0
        out[:, k] = keys.argmax(axis=1)
        start += size
    return out


def perf_env(scenario: str = "default", n_slots: int = 4096, seconds: float = 4.0, seed: int = 0) -> dict[str, Any]:
    """Debtor-v0 steps/s and DebtorBatch-v0 debtor-steps/s with random allowed actions (the stress
    case), and the batched env under the static ladder's actions (a typical mix: mostly waiting),
    each as a ratio to CartPole measured in the same process."""
    rng = np.random.default_rng(seed)
    cart = cartpole_steps_per_s(seconds)

    single = gym.make("collectrl/Debtor-v0", scenario=scenario)
    single.reset(seed=seed)
    base: DebtorEnv = single.unwrapped  # type: ignore[assignment]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            a = _random_masked(rng, base.action_masks()[None, :])[0]
            _, _, term, trunc, _ = single.step(a)
            if term or trunc:
                single.reset()
        n += 200
    single_rate = n / (time.perf_counter() - t0)

    def batched(actions_of) -> float:  # type: ignore[no-untyped-def]
        env = gym.make("collectrl/DebtorBatch-v0", scenario=scenario, n_slots=n_slots)
        env.reset(seed=seed)
        base: DebtorBatchEnv = env.unwrapped  # type: ignore[assignment]
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            _, _, _, trunc, _ = env.step(actions_of(base).reshape(-1))
            if trunc:
                env.reset()
            steps += 1
        return steps * n_slots / (time.perf_counter() - t0)

    batched_rate = batched(lambda b: _random_masked(rng, b.action_masks().reshape(n_slots, -1)))
    ladder = policies.make("static_ladder")

    def ladder_actions(b: DebtorBatchEnv) -> np.ndarray:
        views = b.world.views()
        return ladder.act(views, b.world.action_mask(views))

    ladder_rate = batched(ladder_actions)
    return {
        "benchmark": "env",
        "scenario": scenario,
        "actions": "uniformly random allowed actions (a contact nearly every day: the stress case)",
        "single_steps_per_s": round(single_rate),
        "batched_debtor_steps_per_s": round(batched_rate),
        "n_slots": n_slots,
        "cartpole_steps_per_s": round(cart),
        "single_ratio": round(single_rate / cart, 3),
        "batched_ratio": round(batched_rate / cart, 2),
        "batched_ladder_debtor_steps_per_s": round(ladder_rate),
        "batched_ladder_ratio": round(ladder_rate / cart, 2),
    }


def perf_train(scenario: str = "default", n_envs: int = 256, timesteps: int = 200_000, seed: int = 0) -> dict[str, Any]:
    """SB3 PPO env-steps/s on the batched debtor world and on CartPole-v1 with the same number of
    environments and hyperparameters, in the same process (the simulator must not be the bottleneck)."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from agents.vec_env import DebtorVecEnv

    torch.set_num_threads(1)
    kwargs = {"n_steps": 32, "batch_size": 2048, "n_epochs": 4, "learning_rate": 3e-4, "seed": seed, "device": "cpu", "verbose": 0}

    def rate(env: Any) -> float:
        model = PPO("MlpPolicy", env, **kwargs)
        model.learn(n_envs * 32)  # warm-up rollout
        t0 = time.perf_counter()
        model.learn(timesteps, reset_num_timesteps=False)
        return timesteps / (time.perf_counter() - t0)

    cart = rate(make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed))
    ours = rate(DebtorVecEnv(load_scenario(scenario), n_envs, seed=seed))
    return {
        "benchmark": "train",
        "algo": "ppo",
        "n_envs": n_envs,
        "timesteps": timesteps,
        "debtor_env_steps_per_s": round(ours),
        "cartpole_env_steps_per_s": round(cart),
        "ratio": round(ours / cart, 3),
    }
