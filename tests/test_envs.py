"""Gymnasium environments: checkers, determinism, masks, reward accounting, auto-reset."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import sim
from policies.features import N_FEATURES
from policies.schema import Channel
from sim.world import REWARD_COMPONENTS

KWARGS = {"collectrl/Debtor-v1": {}, "collectrl/DebtorBatch-v0": {"n_slots": 16}}


def _random_allowed(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    mask = mask.reshape(-1, 19)
    out = np.empty((len(mask), 4), dtype=np.int64)
    for k, (s, n) in enumerate(((0, 7), (7, 4), (11, 4), (15, 4))):
        out[:, k] = [rng.choice(np.flatnonzero(row[s : s + n])) for row in mask]
    return out.reshape(-1)


@pytest.mark.parametrize("env_id", sim.ENV_IDS)
def test_registered_envs_pass_gymnasium_and_sb3_checkers(env_id):
    env = gym.make(env_id, **KWARGS[env_id])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advisory warnings (unbounded Box high, 2-D batch obs) are not errors
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", sim.ENV_IDS)
def test_same_seed_gives_identical_rollouts(env_id):
    def rollout(seed: int):
        env = gym.make(env_id, **KWARGS[env_id])
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(123)
        trace = [obs]
        rewards = []
        for _ in range(60):
            a = _random_allowed(rng, env.unwrapped.action_masks())
            obs, r, term, trunc, _ = env.step(a)
            trace.append(obs)
            rewards.append(r)
            if term or trunc:
                obs, _ = env.reset()
                trace.append(obs)
        return np.concatenate([t.reshape(-1) for t in trace]), np.array(rewards)

    o1, r1 = rollout(5)
    o2, r2 = rollout(5)
    o3, _ = rollout(6)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(o1[: len(o3)], o3[: len(o1)])


def test_single_env_reward_is_the_sum_of_its_components_and_episodes_end_properly():
    env = gym.make("collectrl/Debtor-v1")
    obs, info = env.reset(seed=0)
    assert obs.shape == (N_FEATURES,) and obs.dtype == np.float32
    rng = np.random.default_rng(0)
    ends = {"resolved": 0, "sold": 0}
    for _ in range(3000):
        mask = env.unwrapped.action_masks()
        assert mask.shape == (19,) and mask.dtype == bool and mask[0]  # waiting is always allowed
        obs, r, term, trunc, info = env.step(_random_allowed(rng, mask))
        assert r == pytest.approx(sum(info[k] for k in REWARD_COMPONENTS), abs=1e-9)
        assert all(isinstance(v, float | bool | int) for v in info.values())
        assert not trunc  # every end is part of the task: resolution or the sale
        if term:
            ends["sold" if info["sold"] else "resolved"] += 1
            if info["sold"]:
                assert info["outstanding_eur"] == 0.0 and info["terminal_value"] > 0.0
            else:
                assert info["terminal_value"] == 0.0
            env.reset()
        else:
            assert not info["sold"]
    assert ends["resolved"] > 0 and ends["sold"] > 0


def test_a_disallowed_action_is_blocked_and_costs_nothing():
    env = gym.make("collectrl/Debtor-v1", overrides=("population.on_file.email=0.0",))
    env.reset(seed=1)
    assert not env.unwrapped.action_masks()[Channel.EMAIL]
    *_, info = env.step(np.array([Channel.EMAIL, 0, 0, 0]))
    assert info["blocked"] is True and info["contact_cost"] == 0.0


def test_the_sale_at_the_horizon_terminates_the_episode():
    """The sale is part of the task (its proceeds are the last reward): a termination, never a
    truncation, so a learner that bootstraps truncated episodes adds no value after it."""
    env = gym.make("collectrl/Debtor-v1", horizon_days=5)
    sold = 0
    for seed in range(20):
        env.reset(seed=seed)
        ends = []
        for _ in range(5):  # the horizon: the episode ends on the fifth day at the latest
            _, _, term, trunc, info = env.step(np.zeros(4, dtype=np.int64))
            ends.append((term, trunc, info["sold"]))
            if term or trunc:
                break
        term, trunc, was_sold = ends[-1]
        assert term and not trunc, "no end by the horizon"
        assert not any(t or u for t, u, _ in ends[:-1])
        assert was_sold == (len(ends) == 5 and info["outstanding_eur"] == 0.0 and info["terminal_value"] > 0.0)
        sold += was_sold
    assert sold > 10  # waiting for 5 days resolves few debtors: most are sold


def test_batched_env_shares_one_world_and_refills_finished_slots():
    env = gym.make("collectrl/DebtorBatch-v0", n_slots=64, horizon_days=10, episode_days=30)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (64, N_FEATURES)
    base = env.unwrapped
    rng = np.random.default_rng(3)
    first_ids = base.world.debtor_id.copy()
    done_total = 0
    for t in range(30):
        obs, r, term, trunc, info = env.step(_random_allowed(rng, base.action_masks()))
        assert r == pytest.approx(float(info["slot_reward"].sum()))
        comp = sum(info[f"slot_{k}"] for k in REWARD_COMPONENTS)
        np.testing.assert_allclose(comp, info["slot_reward"])
        done = info["slot_terminated"] | info["slot_truncated"]
        done_total += int(done.sum())
        # a finished slot starts a new debtor on day 0 of its episode
        if done.any():
            assert (base.world.days_in[done] == 0).all()
        assert not term
        if trunc:
            assert t == 29
    assert done_total >= 64  # horizon 10 days, 30 days: every slot finished at least once
    assert len(np.intersect1d(first_ids, base.world.debtor_id)) < 64


def test_docs_state_the_true_observation_size():
    import pathlib

    from sim.envs import DebtorBatchEnv, DebtorEnv

    assert f"({N_FEATURES},)" in DebtorEnv.__doc__
    assert f"(n_slots, {N_FEATURES})" in DebtorBatchEnv.__doc__
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    assert f"`Box({N_FEATURES},)`" in readme


def test_perf_env_reports_median_ratios_of_alternating_rounds():
    from experiments.perf import perf_env

    r = perf_env("default", n_slots=64, seconds=0.6, seed=0, rounds=3, warm_up_days=2)
    assert r["n_slots"] == 64 and r["rounds"] == 3
    for key, name in (("single_ratio", "single"), ("batched_ratio", "batched"), ("batched_ladder_ratio", "batched_ladder")):
        rounds = r["round_ratios"][name]
        assert len(rounds) == 3 and all(x > 0 for x in rounds)
        assert r[key] == sorted(rounds)[1]  # the median round's ratio
    # the reported rates are the median round's: the batched one over its CartPole gives the ratio
    assert abs(r["batched_debtor_steps_per_s"] / r["cartpole_steps_per_s"] - r["batched_ratio"]) < 0.01 + 1 / r["cartpole_steps_per_s"]


def test_perf_env_row_sampler_draws_allowed_values_uniformly_per_dimension():
    from experiments.perf import _RowSampler

    mask = np.zeros(19, dtype=bool)
    mask[[0, 2, 6]] = True  # channels: wait, email, call
    mask[[7, 9]] = True  # windows: morning, evening
    mask[11:15] = True  # every tone
    mask[15] = True  # offer: none only
    sample = _RowSampler(np.random.default_rng(3), bulk=512)
    draws = np.array([sample(mask) for _ in range(3000)])  # several bulks
    for k, allowed in enumerate(([0, 2, 6], [0, 2], [0, 1, 2, 3], [0])):
        values, counts = np.unique(draws[:, k], return_counts=True)
        assert values.tolist() == allowed, (k, values)
        expected = len(draws) / len(allowed)
        assert np.all(np.abs(counts - expected) < 0.12 * expected), (k, counts)
    other = mask.copy()
    other[6] = False  # a second mask gets its own draws, never a value it forbids
    assert all(sample(other)[0] in (0, 2) for _ in range(600))


def test_perf_sim_divides_by_the_cartpole_rate_measured_before_and_after_the_run():
    from experiments.perf import perf_sim

    r = perf_sim("default", debtors=300, days=20, reference_s=0.2)
    before, after = r["cartpole_before_after"]
    assert before > 0 and after > 0 and abs(r["cartpole_steps_per_s"] - (before + after) / 2) <= 1  # each rounded
    assert abs(r["ratio"] - r["debtor_days_per_s"] / ((before + after) / 2)) < 0.01
    assert 0 < r["debtor_days_per_s"] <= r["portfolio_debtor_days_per_s"] and r["debtors"] == 300


def test_the_latent_view_adds_columns_without_changing_the_world_and_ends_with_the_finished_debtor():
    from sim.envs import DebtorBatchEnv
    from sim.population import sample

    plain = DebtorBatchEnv("late_stage", 32, horizon_days=8, episode_days=30)
    latent = DebtorBatchEnv("late_stage", 32, horizon_days=8, episode_days=30, latent="all")
    width = latent.latent.width
    assert latent.observation_space.shape == (32, N_FEATURES + width) and len(latent.latent.names) == width
    obs_p, _ = plain.reset(seed=5)
    obs_l, _ = latent.reset(seed=5)
    rng = np.random.default_rng(5)
    ended = 0
    for _ in range(20):
        np.testing.assert_array_equal(obs_l[:, :N_FEATURES], obs_p)  # the observable part is untouched
        arch = latent.world.traits.archetype.astype(int)
        np.testing.assert_array_equal(obs_l[:, N_FEATURES : N_FEATURES + 5].argmax(axis=1), arch)  # one-hot archetype first
        np.testing.assert_allclose(obs_l[:, N_FEATURES + width - 2], latent.world.state.fatigue, rtol=1e-6)
        a = _random_allowed(rng, plain.action_masks()).reshape(32, 4)
        before = latent.world.traits.archetype.astype(int).copy()
        out_p, out_l = plain.advance(a), latent.advance(a)
        np.testing.assert_array_equal(out_l.done_slots, out_p.done_slots)
        np.testing.assert_array_equal(out_l.final_obs[:, :N_FEATURES], out_p.final_obs)
        # a finished slot's last row describes the debtor who left, not the one who took the slot
        np.testing.assert_array_equal(out_l.final_obs[:, N_FEATURES : N_FEATURES + 5].argmax(axis=1), before[out_l.done_slots])
        ended += len(out_l.done_slots)
        obs_p, obs_l = out_p.obs, out_l.obs
    assert ended >= 32
    # the traits are standardised by the scenario's own population: about mean 0, sd 1 over many debtors
    d = sample(latent.scenario, 7, 0, 5000)
    z = (np.asarray(d.willingness) - latent.latent._mean["willingness"]) / latent.latent._sd["willingness"]
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1
    # the latent state alone: the last two columns of the full view
    state = DebtorBatchEnv("late_stage", 32, horizon_days=8, episode_days=30, latent="state")
    assert state.latent.names == ("fatigue", "intensity") == latent.latent.names[-2:]
    obs_s, _ = state.reset(seed=5)
    obs_l, _ = latent.reset(seed=5)
    np.testing.assert_array_equal(obs_s, np.concatenate([obs_l[:, :N_FEATURES], obs_l[:, -2:]], axis=1))
    with pytest.raises(ValueError, match="unknown latent view 'traits'; choose one of all, state"):
        DebtorBatchEnv("late_stage", 4, latent="traits")
