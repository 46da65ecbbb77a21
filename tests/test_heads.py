"""agents.heads: the padded-head distributions are SB3's and sb3-contrib's distributions, computed faster."""

import numpy as np
import pytest
import torch as th
from sb3_contrib.common.maskable.distributions import MaskableMultiCategoricalDistribution
from stable_baselines3.common.distributions import CategoricalDistribution, MultiCategoricalDistribution

from agents.heads import (
    HeadsActorCriticPolicy,
    HeadsMaskableActorCriticPolicy,
    PaddedMaskableMultiCategoricalDistribution,
    PaddedMultiCategoricalDistribution,
)
from policies.schema import ACTION_DIMS
from sim.config import ConfigError

DIMS = list(ACTION_DIMS)


def _draw(rows: int, seed: int) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Logits, a mask leaving at least one choice per head, and one allowed action per row."""
    rng = np.random.default_rng(seed)
    logits = th.as_tensor(rng.normal(0, 3, (rows, sum(DIMS))), dtype=th.float32)
    mask = rng.random((rows, sum(DIMS))) > 0.4
    actions = np.zeros((rows, len(DIMS)), dtype=np.int64)
    start = 0
    for h, d in enumerate(DIMS):
        block = mask[:, start : start + d]
        block[np.arange(rows), rng.integers(0, d, rows)] = True  # one allowed choice at least
        actions[:, h] = [rng.choice(np.flatnonzero(r)) for r in block]
        start += d
    return logits, th.as_tensor(mask), th.as_tensor(actions, dtype=th.float32)


def _objective(dist, actions):  # type: ignore[no-untyped-def]
    return (dist.log_prob(actions) * 1.3 + dist.entropy() * 0.7).sum()


@pytest.mark.parametrize("masked", [False, True])
def test_padded_heads_match_the_stock_distribution_in_value_and_gradient(masked):
    logits, mask, actions = _draw(512, seed=1)
    if masked:
        stock_cls, padded_cls = MaskableMultiCategoricalDistribution, PaddedMaskableMultiCategoricalDistribution
    else:
        stock_cls, padded_cls = MultiCategoricalDistribution, PaddedMultiCategoricalDistribution
    results = []
    for cls in (stock_cls, padded_cls):
        x = logits.clone().requires_grad_()
        dist = cls(DIMS).proba_distribution(x)
        if masked:
            dist.apply_masking(mask.numpy())
        _objective(dist, actions).backward()
        results.append((dist.log_prob(actions).detach(), dist.entropy().detach(), dist.mode(), x.grad))
    (lp_a, ent_a, mode_a, grad_a), (lp_b, ent_b, mode_b, grad_b) = results
    assert th.allclose(lp_a, lp_b, atol=1e-5)
    assert th.allclose(ent_a, ent_b, atol=1e-5)
    assert th.equal(mode_a, mode_b)
    assert th.allclose(grad_a, grad_b, atol=1e-5)
    if masked:  # the mode is an allowed choice of every head
        offsets = np.cumsum([0, *DIMS[:-1]])
        assert bool(mask[th.arange(len(mask))[:, None], mode_b + th.as_tensor(offsets)].all())


def test_removing_the_masks_restores_the_unmasked_distribution():
    logits, mask, actions = _draw(64, seed=2)
    dist = PaddedMaskableMultiCategoricalDistribution(DIMS).proba_distribution(logits)
    dist.apply_masking(mask.numpy())
    masked_lp = dist.log_prob(actions)
    dist.apply_masking(None)
    plain = PaddedMultiCategoricalDistribution(DIMS).proba_distribution(logits)
    assert th.allclose(dist.log_prob(actions), plain.log_prob(actions))
    assert not th.allclose(masked_lp, plain.log_prob(actions))


def test_samples_are_legal_and_follow_each_heads_probabilities():
    logits, mask, _ = _draw(1, seed=3)
    n = 100_000
    th.manual_seed(0)
    dist = PaddedMaskableMultiCategoricalDistribution(DIMS).proba_distribution(logits.repeat(n, 1))
    dist.apply_masking(mask.repeat(n, 1).numpy())
    samples = dist.sample()
    assert samples.shape == (n, len(DIMS))
    stock = MaskableMultiCategoricalDistribution(DIMS).proba_distribution(logits)
    stock.apply_masking(mask.numpy())
    start = 0
    for h, d in enumerate(DIMS):
        counts = th.bincount(samples[:, h], minlength=d).double()
        assert len(counts) == d  # never a padding index
        assert (counts[~mask[0, start : start + d]] == 0).all()  # never a masked choice
        p = stock.distributions[h].probs[0].double()
        # each frequency within 5 standard errors of its probability
        assert th.all((counts / n - p).abs() <= 5 * th.sqrt(p * (1 - p) / n) + 1e-9)
        start += d


def test_a_head_with_every_choice_masked_is_uniform_over_its_own_choices():
    logits, mask, _ = _draw(4, seed=4)
    mask[:, 7:11] = False  # the second head (4 choices, padded to 7) has nothing allowed
    dist = PaddedMaskableMultiCategoricalDistribution(DIMS).proba_distribution(logits)
    dist.apply_masking(mask.numpy())
    probs = dist.logp.exp()[1].T  # (rows, widest) of the second head
    assert th.allclose(probs[:, :4], th.full((4, 4), 0.25))
    assert (probs[:, 4:] == 0).all()
    # no entropy from the dead head, as in sb3-contrib: the same as a head with one allowed choice
    alive = mask.clone()
    alive[:, 7] = True
    ref = PaddedMaskableMultiCategoricalDistribution(DIMS).proba_distribution(logits)
    ref.apply_masking(alive.numpy())
    assert th.allclose(dist.entropy(), ref.entropy(), atol=1e-5)


def test_the_policies_swap_only_multidiscrete_distributions():
    from gymnasium import spaces

    obs = spaces.Box(-1.0, 1.0, (5,), np.float32)
    pairs = [
        (HeadsActorCriticPolicy, PaddedMultiCategoricalDistribution),
        (HeadsMaskableActorCriticPolicy, PaddedMaskableMultiCategoricalDistribution),
    ]
    for cls, padded in pairs:
        multi = cls(obs, spaces.MultiDiscrete(DIMS), lambda _: 3e-4)
        assert isinstance(multi.action_dist, padded)
        assert multi.action_net.out_features == sum(DIMS)
    single = HeadsActorCriticPolicy(obs, spaces.Discrete(2), lambda _: 3e-4)
    assert type(single.action_dist) is CategoricalDistribution


@pytest.mark.parametrize("algo", ["maskable_ppo", "ppo", "a2c", "dqn"])
def test_training_builds_the_padded_policies_for_the_actor_critic_learners(algo, tmp_path, monkeypatch):
    import tempfile

    from agents.train import load_train_config, make_model
    from agents.vec_env import DebtorVecEnv
    from sim import load_scenario

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cfg = load_train_config(algo, ["n_slots=4"])
    model = make_model(cfg, DebtorVecEnv(load_scenario("default"), 4, seed=0, flat_actions=algo == "dqn"), seed=0, tb=None)
    model.learn(64 if algo == "dqn" else 4 * (cfg.n_steps if algo != "dqn" else 1))
    assert list(tmp_path.glob("SB3-*")) == []  # no TensorBoard folder, so no log directory (SB3 would make SB3-<time>)
    if algo == "dqn":  # the flat Discrete(448) codec keeps SB3's Q-network
        assert not hasattr(model.policy, "action_dist")
    else:
        padded = PaddedMaskableMultiCategoricalDistribution if algo == "maskable_ppo" else PaddedMultiCategoricalDistribution
        assert isinstance(model.policy.action_dist, padded)


@pytest.mark.parametrize("cls", [HeadsActorCriticPolicy, HeadsMaskableActorCriticPolicy])
def test_wait_prior_sets_the_untrained_probability_of_waiting_and_survives_a_reload(cls, tmp_path):
    from gymnasium import spaces

    obs_space = spaces.Box(-1.0, 1.0, (5,), np.float32)
    th.manual_seed(0)
    policy = cls(obs_space, spaces.MultiDiscrete(DIMS), lambda _: 3e-4, wait_prior=0.9)
    obs = th.as_tensor(np.random.default_rng(0).uniform(-1, 1, (256, 5)), dtype=th.float32)
    dist = policy.get_distribution(obs)
    p_channel = dist.logp.exp()[0, : DIMS[0]].T  # (rows, channels)
    # the start is the prior, not only on average: the action layer's weights are tiny (SB3's gain 0.01)
    assert th.allclose(p_channel[:, 0], th.full((256,), 0.9), atol=0.01)
    rest = p_channel[:, 1:]
    assert th.allclose(rest, th.full_like(rest, 0.1 / (DIMS[0] - 1)), atol=0.01)
    # the other heads stay uniform
    p_tone = dist.logp.exp()[2, : DIMS[2]].T
    assert th.allclose(p_tone, th.full_like(p_tone, 1 / DIMS[2]), atol=0.01)
    # a saved policy rebuilds with the same prior and its saved weights
    policy.save(str(tmp_path / "p.pt"))
    again = cls.load(str(tmp_path / "p.pt"))
    assert again.wait_prior == 0.9
    assert th.equal(again.action_net.bias, policy.action_net.bias)
    # no prior: SB3's uniform start
    plain = cls(obs_space, spaces.MultiDiscrete(DIMS), lambda _: 3e-4)
    assert th.allclose(plain.get_distribution(obs).logp.exp()[0, 0], th.full((256,), 1 / DIMS[0]), atol=0.01)


def test_wait_prior_is_checked_where_it_is_set():
    from gymnasium import spaces

    from agents.train import ConfigError, load_train_config

    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        HeadsActorCriticPolicy(spaces.Box(-1.0, 1.0, (5,), np.float32), spaces.MultiDiscrete(DIMS), lambda _: 3e-4, wait_prior=1.0)
    with pytest.raises(ValueError, match="MultiDiscrete"):  # no channel head to bias: refused, not ignored
        HeadsActorCriticPolicy(spaces.Box(-1.0, 1.0, (5,), np.float32), spaces.Discrete(2), lambda _: 3e-4, wait_prior=0.9)
    with pytest.raises(ConfigError, match="wait_prior"):
        load_train_config("ppo", ["wait_prior=1.5"])
    with pytest.raises(ConfigError, match="DQN has none"):
        load_train_config("dqn", ["wait_prior=0.9"])


@pytest.mark.parametrize("cls", [PaddedMultiCategoricalDistribution, PaddedMaskableMultiCategoricalDistribution])
def test_conditional_heads_leave_the_window_tone_and_offer_out_of_a_waiting_days_probability(cls):
    logits, mask, actions = _draw(512, seed=3)
    actions[::2, 0] = 0  # every other row waits (waiting is never masked in the world; here unmasked)
    mask[::2, 0] = True
    x = logits.clone().requires_grad_()
    dist = cls(DIMS).proba_distribution(x)
    dist.conditional = True
    if cls is PaddedMaskableMultiCategoricalDistribution:
        dist.apply_masking(mask.numpy())
    full = cls(DIMS).proba_distribution(logits)
    if cls is PaddedMaskableMultiCategoricalDistribution:
        full.apply_masking(mask.numpy())
    lp, lp_full = dist.log_prob(actions), full.log_prob(actions)
    channel = full.logp[0].gather(0, actions[:, 0].long().unsqueeze(0)).squeeze(0)
    waits = actions[:, 0] == 0
    assert th.allclose(lp[waits], channel[waits])  # a waiting day: the channel's probability alone
    assert th.allclose(lp[~waits], lp_full[~waits])  # a contact: all four heads
    assert not th.allclose(lp_full[waits], channel[waits])  # (which is not what the plain product says)
    lp.sum().backward()
    assert th.all(x.grad[waits][:, DIMS[0] :] == 0)  # no push on the idle heads from a waiting day
    assert th.any(x.grad[~waits][:, DIMS[0] :] != 0)


def test_conditional_heads_reach_the_policy_and_survive_a_reload(tmp_path):
    from gymnasium import spaces

    from agents.train import ConfigError, load_train_config

    obs_space = spaces.Box(-1.0, 1.0, (5,), np.float32)
    policy = HeadsMaskableActorCriticPolicy(obs_space, spaces.MultiDiscrete(DIMS), lambda _: 3e-4, conditional_heads=True)
    assert policy.action_dist.conditional
    policy.save(str(tmp_path / "p.pt"))
    assert HeadsMaskableActorCriticPolicy.load(str(tmp_path / "p.pt")).action_dist.conditional
    assert not HeadsMaskableActorCriticPolicy(obs_space, spaces.MultiDiscrete(DIMS), lambda _: 3e-4).action_dist.conditional
    with pytest.raises(ValueError, match="MultiDiscrete"):
        HeadsActorCriticPolicy(obs_space, spaces.Discrete(2), lambda _: 3e-4, conditional_heads=True)
    with pytest.raises(ConfigError, match="DQN has none"):
        load_train_config("dqn", ["conditional_heads=true"])
    assert load_train_config("maskable_ppo", ["conditional_heads=true"]).conditional_heads


@pytest.mark.parametrize("cls", [HeadsActorCriticPolicy, HeadsMaskableActorCriticPolicy])
def test_a_latent_critic_reads_the_critic_only_columns_and_the_actor_never_does(cls, tmp_path):
    from gymnasium import spaces

    from agents.heads import CriticOnlyExtractor

    obs_space = spaces.Box(-5.0, 5.0, (7,), np.float32)
    th.manual_seed(0)
    policy = cls(obs_space, spaces.MultiDiscrete(DIMS), lambda _: 3e-4, critic_only_features=3)
    assert isinstance(policy.mlp_extractor, CriticOnlyExtractor) and policy.mlp_extractor.public == 4
    rng = np.random.default_rng(0)
    obs = th.as_tensor(rng.normal(size=(64, 7)), dtype=th.float32)
    moved = obs.clone()
    moved[:, 4:] = th.as_tensor(rng.normal(size=(64, 3)), dtype=th.float32)
    with th.no_grad():
        logits = policy.action_net(policy.mlp_extractor.forward_actor(policy.extract_features(obs, policy.pi_features_extractor)))
        logits_moved = policy.action_net(policy.mlp_extractor.forward_actor(policy.extract_features(moved, policy.pi_features_extractor)))
        # the observable columns alone (evaluation, the exported score head) give the same actor
        logits_public = policy.action_net(policy.mlp_extractor.forward_actor(obs[:, :4]))
        values, values_moved = policy.predict_values(obs), policy.predict_values(moved)
    assert th.equal(logits, logits_moved) and th.equal(logits, logits_public)
    assert not th.allclose(values, values_moved)
    # no gradient from the policy loss reaches the latent columns
    x = obs.clone().requires_grad_(True)
    policy.action_net(policy.mlp_extractor.forward_actor(x)).sum().backward()
    assert x.grad is not None and th.all(x.grad[:, 4:] == 0) and th.any(x.grad[:, :4] != 0)
    policy.save(str(tmp_path / "p.pt"))
    again = cls.load(str(tmp_path / "p.pt"))
    assert again.critic_only_features == 3
    with th.no_grad():
        assert th.equal(again.predict_values(moved), values_moved)
    with pytest.raises(ValueError, match="fewer than the features"):
        cls(obs_space, spaces.MultiDiscrete(DIMS), lambda _: 3e-4, critic_only_features=7)


def test_latent_critic_trains_on_the_latent_env_and_is_refused_for_dqn():
    from agents.train import load_train_config, make_model
    from agents.vec_env import DebtorVecEnv
    from policies.features import N_FEATURES
    from sim import load_scenario

    with pytest.raises(ValueError, match="latent_critic"):
        load_train_config("dqn", ["latent_critic=all"])
    with pytest.raises(ValueError, match="latent_critic"):
        load_train_config("maskable_ppo", ["latent_critic=traits"])
    cfg = load_train_config("maskable_ppo", ["latent_critic=all", "n_slots=4", "n_steps=8", "batch_size=32"])
    env = DebtorVecEnv(load_scenario("default"), 4, seed=0, latent=cfg.latent_critic)
    model = make_model(cfg, env, seed=0, tb=None)
    assert env.observation_space.shape == (N_FEATURES + env.latent_width,) and env.latent_width > 0
    assert model.policy.mlp_extractor.public == N_FEATURES
    model.learn(32)
    # the critic trained on rows carrying the latent columns, the actor's first layer reads the observable ones
    assert model.rollout_buffer.observations.shape[-1] == N_FEATURES + env.latent_width
    assert model.policy.mlp_extractor.policy_net[0].in_features == N_FEATURES
    assert model.policy.mlp_extractor.value_net[0].in_features == N_FEATURES + env.latent_width


def test_vf_arch_widens_the_critic_alone_and_is_refused_for_dqn():
    from agents.train import load_train_config, make_model
    from agents.vec_env import DebtorVecEnv
    from sim import load_scenario

    with pytest.raises(ConfigError, match="vf_arch"):
        load_train_config("dqn", ["vf_arch=256,256"])
    for latent in ("none", "all"):
        cfg = load_train_config(
            "maskable_ppo", ["net_arch=128,128", "vf_arch=256,256", f"latent_critic={latent}", "n_slots=4", "n_steps=8", "batch_size=32"]
        )
        assert cfg.net_arch == [128, 128] and cfg.vf_arch == [256, 256]
        env = DebtorVecEnv(load_scenario("default"), 4, seed=0, latent=cfg.latent_critic)
        ext = make_model(cfg, env, seed=0, tb=None).policy.mlp_extractor
        assert [m.out_features for m in ext.policy_net if hasattr(m, "out_features")] == [128, 128]
        assert [m.out_features for m in ext.value_net if hasattr(m, "out_features")] == [256, 256]
    plain = make_model(
        load_train_config("maskable_ppo", ["n_slots=4", "net_arch=64,32"]), DebtorVecEnv(load_scenario("default"), 4, seed=0), seed=0, tb=None
    )
    assert [m.out_features for m in plain.policy.mlp_extractor.value_net if hasattr(m, "out_features")] == [64, 32]  # without vf_arch: net_arch
