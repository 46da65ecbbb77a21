"""Benchmarks measured as ratios to a reference run in the same process (these machines are noisy)."""

from __future__ import annotations

import functools
import json
import os
import resource
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

import policies
from experiments.errors import UsageError
from experiments.served import serving
from experiments.whatif import Spec, cells, run_experiment
from policies.features import encode
from policies.records import records_from_views
from policies.runtime import load
from sim import load_scenario
from sim.envs import DebtorBatchEnv, DebtorEnv
from sim.runner import run_portfolio
from sim.world import World


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cartpole(seed: int = 0) -> Any:
    """gymnasium CartPole-v1 through gym.make, random actions: the reference. Returns ``run(seconds)``
    -> steps/s, which carries on from where the last call stopped."""
    env = gym.make("CartPole-v1")
    env.reset(seed=seed)
    env.action_space.seed(seed)

    def run(seconds: float) -> float:
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

    return run


def _alternating(runners: dict[str, Callable[[], float]], rounds: int) -> list[dict[str, float]]:
    """The rate each runner returns, in ``rounds`` rounds, the order reversed every other round, so
    a burst of load on the machine moves one round of every ratio alike."""
    names = list(runners)
    out = []
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        out.append({name: runners[name]() for name in order})
    return out


def _median_ratio(per_round: list[dict[str, float]], name: str, reference: str) -> tuple[float, dict[str, float], list[float]]:
    """The median over rounds of ``name``'s rate / ``reference``'s, the round it came from, and all ratios."""
    ratios = [x[name] / x[reference] for x in per_round]
    mid = int(np.argsort(ratios)[len(ratios) // 2])
    return ratios[mid], per_round[mid], ratios


def perf_sim(scenario: str = "default", debtors: int = 200_000, days: int = 180, seed: int = 0, reference_s: float = 3.0) -> dict[str, Any]:
    """A portfolio under static_ladder vs CartPole. ``debtor_days_per_s`` counts the days debtors were
    open (resolved debtors drop out); ``portfolio_debtor_days_per_s`` counts debtors x days."""
    sc = load_scenario(scenario, [f"horizon_days={days}"])
    cartpole = _cartpole()
    before = cartpole(reference_s)
    t0 = time.perf_counter()
    world = run_portfolio(sc, policies.make("static_ladder"), debtors, seed)
    el = time.perf_counter() - t0
    after = cartpole(reference_s)
    cart = (before + after) / 2  # the reference on both sides of the run, so a drift in machine speed moves both
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
        "cartpole_before_after": [round(before), round(after)],
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


class _RowSampler:
    """:func:`_random_masked` for one mask row, cheaply: the same distribution (each dimension
    uniform over its allowed values, independently), drawn from ``rng`` in bulk for each distinct
    mask. What CartPole's ``action_space.sample()`` is to its benchmark; numpy on one row costs
    more than the step being measured."""

    def __init__(self, rng: np.random.Generator, bulk: int = 1024) -> None:
        self.rng, self.bulk = rng, bulk
        self.drawn: dict[bytes, list[list[int]]] = {}  # per mask: actions drawn, not yet used

    def __call__(self, mask: np.ndarray) -> list[int]:
        key = mask.tobytes()
        todo = self.drawn.get(key)
        if not todo:
            todo = self.drawn[key] = _random_masked(self.rng, np.broadcast_to(mask, (self.bulk, mask.size))).tolist()
        return todo.pop()


def perf_env(
    scenario: str = "default", n_slots: int = 16384, seconds: float = 4.0, seed: int = 0, rounds: int = 9, warm_up_days: int = 30
) -> dict[str, Any]:
    """Debtor-v1 steps/s and DebtorBatch-v0 debtor-steps/s with random allowed actions (the stress
    case), and the batched env under the static ladder's actions (a typical mix: mostly waiting),
    each as a ratio to CartPole. The four run ``seconds`` each, in ``rounds`` alternating rounds;
    every ratio is the median of its per-round ratios. The batched envs are measured from day
    ``warm_up_days`` of their episode on."""
    rng = np.random.default_rng(seed)

    single = gym.make("collectrl/Debtor-v1", scenario=scenario)
    single.reset(seed=seed)
    base: DebtorEnv = single.unwrapped  # type: ignore[assignment]

    sample_row = _RowSampler(rng)

    def run_single(budget: float) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < budget:
            for _ in range(50):
                a = sample_row(base.action_masks())
                _, _, term, trunc, _ = single.step(a)
                if term or trunc:
                    single.reset()
            n += 50
        return n / (time.perf_counter() - t0)

    def batched(actions_of: Any) -> Any:
        env = gym.make("collectrl/DebtorBatch-v0", scenario=scenario, n_slots=n_slots)
        env.reset(seed=seed)
        b: DebtorBatchEnv = env.unwrapped  # type: ignore[assignment]
        for _ in range(warm_up_days):  # past the first days, when every slot holds a new debtor
            env.step(actions_of(b).reshape(-1))

        def run(budget: float) -> float:
            steps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < budget:
                _, _, _, trunc, _ = env.step(actions_of(b).reshape(-1))
                if trunc:
                    env.reset()
                steps += 1
            return steps * n_slots / (time.perf_counter() - t0)

        return run

    ladder = policies.make("static_ladder")

    def ladder_actions(b: DebtorBatchEnv) -> np.ndarray:
        views = b.world.views()
        return ladder.act(views, b.world.action_mask(views))

    runners = {
        "cartpole": _cartpole(seed),
        "single": run_single,
        "batched": batched(lambda b: _random_masked(rng, b.action_masks().reshape(n_slots, -1))),
        "ladder": batched(ladder_actions),
    }
    per_round = _alternating({name: functools.partial(run, seconds / rounds) for name, run in runners.items()}, rounds)
    single_ratio, single_round, single_ratios = _median_ratio(per_round, "single", "cartpole")
    batched_ratio, batched_round, batched_ratios = _median_ratio(per_round, "batched", "cartpole")
    ladder_ratio, ladder_round, ladder_ratios = _median_ratio(per_round, "ladder", "cartpole")
    return {
        "benchmark": "env",
        "scenario": scenario,
        "actions": "uniformly random allowed actions (a contact nearly every day: the stress case)",
        "n_slots": n_slots,
        "rounds": rounds,
        "single_steps_per_s": round(single_round["single"]),
        "batched_debtor_steps_per_s": round(batched_round["batched"]),
        "cartpole_steps_per_s": round(batched_round["cartpole"]),
        "single_ratio": round(single_ratio, 3),
        "batched_ratio": round(batched_ratio, 2),
        "batched_ladder_debtor_steps_per_s": round(ladder_round["ladder"]),
        "batched_ladder_ratio": round(ladder_ratio, 2),
        "round_ratios": {
            "single": [round(x, 3) for x in single_ratios],
            "batched": [round(x, 2) for x in batched_ratios],
            "batched_ladder": [round(x, 2) for x in ladder_ratios],
        },
    }


def perf_train(scenario: str = "default", n_envs: int = 256, timesteps: int = 400_000, seed: int = 0, rounds: int = 8) -> dict[str, Any]:
    """SB3 PPO env-steps/s on the batched debtor world and on CartPole-v1 with the same number of
    environments and hyperparameters, in the same process (the simulator must not be the bottleneck).
    Both use the policy class our training uses (``agents.heads``: SB3's MlpPolicy with the
    MultiDiscrete heads evaluated as one tensor; CartPole's single head is SB3's own).

    ``timesteps`` env-steps of each are measured in ``rounds`` chunks of whole rollouts, alternating
    between the two (CartPole first in odd rounds, ours first in even ones); the ratio is the median
    of the per-round ratios, so a burst of load on the machine moves one round, not the verdict."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from agents.heads import HeadsActorCriticPolicy
    from agents.train import quiet
    from agents.vec_env import DebtorVecEnv

    torch.set_num_threads(1)
    kwargs: dict[str, Any] = {"n_steps": 32, "batch_size": 2048, "n_epochs": 4, "learning_rate": 3e-4, "seed": seed, "device": "cpu", "verbose": 0}
    envs = {"cartpole": make_vec_env("CartPole-v1", n_envs=n_envs, seed=seed), "debtor": DebtorVecEnv(load_scenario(scenario), n_envs, seed=seed)}
    models = {name: quiet(PPO(HeadsActorCriticPolicy, env, **kwargs)) for name, env in envs.items()}
    env_seconds = dict.fromkeys(envs, 0.0)  # time inside the environments' step, to show where the rest goes
    for name, env in envs.items():

        def timed_step(inner: Any = env.step_wait, name: str = name) -> Any:
            t0 = time.perf_counter()
            out = inner()
            env_seconds[name] += time.perf_counter() - t0
            return out

        env.step_wait = timed_step  # type: ignore[method-assign]
    for model in models.values():
        model.learn(n_envs * 32)  # warm-up rollout
    env_seconds.update(dict.fromkeys(envs, 0.0))  # the warm-up does not count

    rollout = n_envs * 32
    chunk = max(1, round(timesteps / rounds / rollout)) * rollout

    def rate(name: str) -> float:
        t0 = time.perf_counter()
        models[name].learn(chunk, reset_num_timesteps=False)
        return chunk / (time.perf_counter() - t0)

    per_round = _alternating({name: functools.partial(rate, name) for name in ("cartpole", "debtor")}, rounds)
    ratio, mid_round, ratios = _median_ratio(per_round, "debtor", "cartpole")
    return {
        "benchmark": "train",
        "algo": "ppo",
        "policy": f"{HeadsActorCriticPolicy.__module__}.{HeadsActorCriticPolicy.__qualname__}",
        "n_envs": n_envs,
        "timesteps": chunk * rounds,
        "rounds": rounds,
        "debtor_env_steps_per_s": round(mid_round["debtor"]),
        "cartpole_env_steps_per_s": round(mid_round["cartpole"]),
        "ratio": round(ratio, 3),
        "round_ratios": [round(x, 3) for x in ratios],
        # the share of the measured time spent stepping the environments (over all rounds); the rest
        # is SB3 and torch, which cost more on our 58 features and 4 action heads than on CartPole's 4 and 1
        "debtor_env_share": round(env_seconds["debtor"] / sum(chunk / x["debtor"] for x in per_round), 3),
        "cartpole_env_share": round(env_seconds["cartpole"] / sum(chunk / x["cartpole"] for x in per_round), 3),
        # env-steps/s inside the environments alone (ours / CartPole's), over all rounds
        "env_only_ratio": round(env_seconds["cartpole"] / env_seconds["debtor"], 3),
    }


def _percentiles_us(samples: list[float]) -> tuple[float, float]:
    a = np.array(samples) * 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def _wrk(url: str, seconds: int, script: str | None, connections: int = 32) -> dict[str, float]:
    import re
    import subprocess

    # One wrk thread: it generates 35-37k /healthz requests/s, as two threads do on these machines,
    # at less CPU per request, and every core wrk does not use is one the server's workers can.
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url] + (["-s", script] if script else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert m is not None, out
    p99_ms = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    client_us = cpu_s / max(requests, 1) * 1e6  # wrk's own CPU (user and kernel) per request
    return {"requests_per_s": rps, "p99_ms": p99_ms, "non_2xx": float(non2xx.group(1)) if non2xx else 0.0, "client_us_per_request": client_us}


BATCH_ROWS_HTTP = 1000  # the service's MAX_BATCH


def perf_serve(artifact: str, seconds: int = 5, seed: int = 0) -> dict[str, Any]:
    """In-process decide latency vs the raw onnxruntime forward, decide_batch rows/s, and HTTP
    requests/s and p99 at 32 connections for /v1/decide vs the same server's /healthz."""
    import shutil
    import tempfile

    if shutil.which("wrk") is None:  # checked first: the in-process part takes a while
        raise UsageError(
            "perf serve drives the server with wrk, which is not installed: `apt-get install wrk` (a Python client would be the bottleneck)"
        )

    fn = load(artifact)
    if fn.kind != "onnx":
        raise ValueError("perf serve measures an ONNX artifact; export a training run first")
    # states drawn from a simulated portfolio, so the inputs look like production accounts

    w = World(load_scenario(fn.manifest.get("scenario", "default")), 4096, seed)
    for _ in range(20):
        v = w.views()
        w.step(policies.make("static_ladder").act(v, w.action_mask(v)), v)
    views = w.views()
    records = records_from_views(views)

    obs = encode(views)
    sess, name = fn._session, fn._input
    raw: list[float] = []
    for i in range(3000):
        x = obs[i % len(obs)][None, :]
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        raw.append(time.perf_counter() - t0)
    lat: list[float] = []
    for i in range(3000):
        r = records[i % len(records)]
        t0 = time.perf_counter()
        fn.decide(r)
        lat.append(time.perf_counter() - t0)
    raw50, raw99 = _percentiles_us(raw)
    d50, d99 = _percentiles_us(lat)
    big = views.take(np.arange(65536) % len(views))
    t0 = time.perf_counter()
    reps = 0
    while time.perf_counter() - t0 < 3.0:
        fn.decide_arrays(big)
        reps += 1
    batch_rate = reps * len(big) / (time.perf_counter() - t0)

    def post_script(payload: Any) -> str:
        body = json.dumps(payload).replace("\\", "\\\\").replace('"', '\\"')
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(f'wrk.method = "POST"\nwrk.body = "{body}"\nwrk.headers["Content-Type"] = "application/json"\n')
            return f.name

    one, batch = post_script(records[0]), post_script({"accounts": records[:BATCH_ROWS_HTTP]})
    try:
        with serving(artifact) as base:
            health = _wrk(base + "/healthz", seconds, None)
            decide = _wrk(base + "/v1/decide", seconds, one)
            # a few connections, each carrying a full batch: the rows/s a bulk caller gets
            over_http = _wrk(base + "/v1/decide/batch", seconds, batch, connections=4)
        with serving(artifact, "--workers", "2") as base:
            decide2 = _wrk(base + "/v1/decide", seconds, one)
            over_http2 = _wrk(base + "/v1/decide/batch", seconds, batch, connections=4)
    finally:
        os.unlink(one)
        os.unlink(batch)
    return {
        "benchmark": "serve",
        "artifact": artifact,
        "decide_p50_us": round(d50, 1),
        "decide_p99_us": round(d99, 1),
        "onnx_forward_p50_us": round(raw50, 1),
        "onnx_forward_p99_us": round(raw99, 1),
        "decide_p50_over_forward": round(d50 / raw50, 2),
        "decide_batch_rows_per_s": round(batch_rate),
        "http_decide_requests_per_s": round(decide["requests_per_s"]),
        "http_decide_p99_ms": round(decide["p99_ms"], 2),
        "http_healthz_requests_per_s": round(health["requests_per_s"]),
        "http_healthz_p99_ms": round(health["p99_ms"], 2),
        "http_ratio": round(decide["requests_per_s"] / health["requests_per_s"], 3),
        "http_decide_non_2xx": int(decide["non_2xx"]),
        "http_decide_2_workers_requests_per_s": round(decide2["requests_per_s"]),
        "http_decide_2_workers_p99_ms": round(decide2["p99_ms"], 2),
        "http_2_workers_over_1": round(decide2["requests_per_s"] / decide["requests_per_s"], 2),
        # wrk's own CPU per request (1 worker, /v1/decide): the share of the cores the load takes
        "http_wrk_us_per_request": round(decide["client_us_per_request"], 1),
        "http_batch_rows_per_request": BATCH_ROWS_HTTP,
        "http_batch_rows_per_s": round(over_http["requests_per_s"] * BATCH_ROWS_HTTP),
        "http_batch_p99_ms": round(over_http["p99_ms"], 2),
        "http_batch_2_workers_rows_per_s": round(over_http2["requests_per_s"] * BATCH_ROWS_HTTP),
        "http_batch_2_workers_p99_ms": round(over_http2["p99_ms"], 2),
        "http_non_2xx": int(decide["non_2xx"] + decide2["non_2xx"] + over_http["non_2xx"] + over_http2["non_2xx"]),
    }


def perf_experiment(debtors: int = 8000, seed_count: int = 2) -> dict[str, Any]:
    """The same small what-if grid with 1 and 2 local workers; speedup and whether results agree."""
    import shutil
    import tempfile
    from pathlib import Path

    spec = Spec(
        question="perf: how much faster is the grid with 2 workers?",
        scenario="default",
        variants={"base": {}, "sms_x2": {"channels.sms.cost_eur": "x2"}},
        policies=["static_ladder", "segment_journeys"],
        seeds=seed_count,
        debtors=debtors,
    )
    root = Path(tempfile.mkdtemp(prefix="collectrl-perf-"))
    try:
        times = {}
        for w in (1, 2):
            t0 = time.perf_counter()
            r = run_experiment(spec, root / f"w{w}", workers=w)
            times[w] = time.perf_counter() - t0
            assert not r["failed"], r["failed"]
        same = all(
            json.loads((root / "w1" / "cells" / f"{c.key}.json").read_text())["kpis"]
            == json.loads((root / "w2" / "cells" / f"{c.key}.json").read_text())["kpis"]
            for c in cells(spec)
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "benchmark": "experiment",
        "cells": len(cells(spec)),
        "debtors_per_cell": debtors,
        "seconds_1_worker": round(times[1], 2),
        "seconds_2_workers": round(times[2], 2),
        "speedup": round(times[1] / times[2], 2),
        "identical_results": same,
    }


def perf_calibrate(scenario: str = "default", accounts: int = 100_000, days: int = 180, seed: int = 0, replicates: int = 2) -> dict[str, Any]:
    """``calibrate fit`` on a simulated history of ``accounts`` x ``days`` (the ladder with 5 % random
    actions, written to disk and read back as a user's would be), by replay as for a user's history,
    against one ``perf sim`` of the same portfolio in the same run."""
    import tempfile

    from experiments import calibrate
    from sim import history as fmt

    sc = load_scenario(scenario, [f"horizon_days={days}"])
    world = run_portfolio(sc, calibrate.make_policy("exploring_ladder:0.05"), accounts, seed, record_events=True)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        fmt.write_history(calibrate.world_history(world), tmp)
        del world
        t0 = time.perf_counter()
        reference = run_portfolio(sc, policies.make("static_ladder"), accounts, seed + 1)
        sim_s = time.perf_counter() - t0
        del reference
        base = tmp + "/base.yaml"
        with open(base, "w") as f:
            f.write(f"extends: {scenario}\nhorizon_days: {days}\n")
        t0 = time.perf_counter()
        fitted = calibrate.fit(tmp, base, seed + 2, replicates)
        fit_s = time.perf_counter() - t0
        rss_one = _peak_rss_mb()
        import ray

        # a local Ray with 2 CPUs, started first (a cluster user's Ray is already running); its start is timed apart
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start_s = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            on_ray = calibrate.fit(tmp, base, seed + 2, replicates, workers=2, backend="ray")
            ray_s = time.perf_counter() - t0
        finally:
            ray.shutdown()
    same = [(e.key, e.value) for e in fitted.estimates()] == [(e.key, e.value) for e in on_ray.estimates()]
    return {
        "benchmark": "calibrate",
        "scenario": scenario,
        "accounts": accounts,
        "days": days,
        "method": "replay (simulated moments)",
        "simulations": fitted.replays,
        "fit_seconds": round(fit_s, 1),
        "sim_seconds": round(sim_s, 2),
        "ratio_fit_to_sim": round(fit_s / sim_s, 1),
        "fitted_keys": len(fitted.estimates()),
        "peak_rss_mb": round(rss_one),
        "ray_start_seconds": round(ray_start_s, 1),
        "fit_seconds_ray_2_workers": round(ray_s, 1),
        "ray_2_workers_speedup": round(fit_s / ray_s, 2),
        "ray_2_workers_speedup_with_start": round(fit_s / (ray_s + ray_start_s), 2),
        "ray_same_fit": same,
    }


def perf_ope(scenario: str = "default", debtors: int = 20_000, days: int = 180, seed: int = 0, target: str = "segment_journeys") -> dict[str, Any]:
    """Off-policy evaluation of one target on the log of ``debtors`` accounts x ``days`` (the ladder
    with 10 % random actions): seconds of the per-decision estimators with their intervals and of
    the sequential ones, as ratios to a plain simulation of the same accounts in this run."""
    from experiments import ope
    from experiments.decision_log import TargetPolicy

    sc = load_scenario(scenario, [f"horizon_days={days}"])
    t0 = time.perf_counter()
    run_portfolio(sc, policies.make("static_ladder"), debtors, seed)
    sim_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = ope.simulate_logged(sc, "static_ladder", debtors, seed, 0.1, days, ope.REWARD_DAYS)
    log_s = time.perf_counter() - t0
    pol = TargetPolicy(target)
    t0 = time.perf_counter()
    fit = ope.Fitted.of(data, seed)
    ope.evaluate_target(fit, pol, sequential=False)
    decision_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ope.evaluate_target(fit, pol)
    all_s = time.perf_counter() - t0
    sequential_s = all_s  # the full evaluation, per-decision estimators included (a small part of it)
    return {
        "benchmark": "ope",
        "scenario": scenario,
        "target": target,
        "accounts": data.n_accounts,
        "days": days,
        "decisions": len(data),
        "bootstrap": ope.BOOTSTRAP,
        "sim_seconds": round(sim_s, 2),
        "log_seconds": round(log_s, 2),
        "per_decision_seconds": round(decision_s, 2),
        "per_decision_seconds_per_1m": round(decision_s * 1e6 / len(data), 2),
        "sequential_seconds": round(sequential_s, 2),
        "ratio_per_decision_to_sim": round(decision_s / sim_s, 2),
        "ratio_sequential_to_sim": round(sequential_s / sim_s, 2),
        "total_seconds": round(sim_s + log_s + decision_s + all_s, 2),
        "peak_rss_mb": round(_peak_rss_mb()),
    }
