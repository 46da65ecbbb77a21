"""``collectrl dataset``: Minari datasets whose propensities are right and whose environment and
reference scores come back when the dataset is loaded."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_train import tiny_run
from helpers_views import random_views

from experiments.dataset import make_dataset
from experiments.errors import UsageError
from policies import make
from policies.schema import Channel

SMALL = {"ref_debtors": 400, "ref_seeds": (1000,)}


@pytest.fixture()
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    return tmp_path


def _episodes(dataset):  # type: ignore[no-untyped-def]
    return list(dataset.iterate_episodes())


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal actions; a wait equals a wait whatever its window, tone and offer."""
    return (a == b).all(axis=1) | ((a[:, 0] == Channel.WAIT) & (b[:, 0] == Channel.WAIT))


def test_the_ladder_with_exploration_logs_propensities_a_target_can_be_weighted_by(minari_root):
    """E[pi(a) / p(a)] = 1 at every state when p is the logging probability: with the ladder as the
    target this fails at once if a propensity is wrong (the exploring share, the wait convention)."""
    import minari

    s = make_dataset("default", "static_ladder", 60, minari_root, epsilon=0.3, seed=3, **SMALL)
    data = minari.load_dataset(s.dataset_id)
    assert data.total_episodes == 60 and data.total_steps == s.steps
    ladder = make("static_ladder")
    ladder.reset(3)
    weights = []
    sold = 0
    from policies.records import views_from_rows

    env = data.recover_environment()
    assert env.spec.id == "collectrl/Debtor-v1" and env.spec.kwargs["scenario"] == "default"
    for ep in _episodes(data):
        # replay the episode in the recovered environment: same seed, same actions, same observations
        obs, _ = env.reset(seed=int(ep.id) + 3 * 1_000_003)
        np.testing.assert_allclose(obs, ep.observations[0], rtol=1e-6)
        for t, a in enumerate(ep.actions):
            mask = ep.infos["action_mask"][t]
            np.testing.assert_array_equal(mask, env.unwrapped.action_masks())
            target = ladder.act(views_from_rows([env.unwrapped.debtor.row()]), mask[None])
            weights.append(float(_same(target, a[None])[0]) / ep.infos["propensity"][t])
            obs, *_ = env.step(a)
            np.testing.assert_allclose(obs, ep.observations[t + 1], rtol=1e-6)
        assert np.isnan(ep.infos["propensity"][-1]) and len(ep.infos["propensity"]) == len(ep.actions) + 1
        # every episode ends by a termination (resolution or the sale), which "sold" tells apart
        assert ep.terminations[-1] and not ep.truncations.any() and not ep.infos["sold"][:-1].any()
        sold += bool(ep.infos["sold"][-1])
    assert 0 < sold < 60  # some debtors reach the sale, the ladder resolves others
    w = np.asarray(weights)
    assert abs(w.mean() - 1.0) < 4 * w.std() / np.sqrt(len(w)), (w.mean(), w.std(), len(w))
    # the reference scores are the leaderboard's, so normalising them gives 0 and 1
    assert np.allclose(minari.get_normalized_score(data, np.array([s.ref_min_score, s.ref_max_score])), [0.0, 1.0])


def test_a_failed_run_keeps_the_dataset_already_there(minari_root, monkeypatch):
    import minari

    first = make_dataset("default", "random", 5, minari_root, epsilon=0.5, seed=1, name="kept", **SMALL)
    import experiments.dataset as ds

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full")

    monkeypatch.setattr(minari, "create_dataset_from_buffers", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ds.make_dataset("default", "random", 7, minari_root, epsilon=0.5, seed=2, name="kept", **SMALL)
    assert minari.load_dataset(first.dataset_id).total_episodes == 5
    assert not [p for p in minari_root.iterdir() if p.name.startswith(".dataset-")]  # no staging left behind


@pytest.mark.parametrize(
    ("policy", "epsilon", "message"),
    [
        ("static_ladder", 0.0, "chooses deterministically"),
        ("oracle", 0.1, "reads the simulator"),
        ("static_ladder", 1.5, "epsilon must lie in"),
        ("no_such_policy", 0.1, "no_such_policy"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(minari_root, policy, epsilon, message):
    with pytest.raises(UsageError, match=message):
        make_dataset("default", policy, 3, minari_root, epsilon=epsilon, **SMALL)


def test_a_training_run_logs_by_sampling_from_its_own_probabilities(tmp_path):
    """A training run directory as a logging policy: its actions follow its model's masked
    probabilities, and each propensity is the probability of the action taken."""
    from agents.learned import action_logits
    from experiments.decision_log import TargetPolicy, mix, sample
    from experiments.resolve import resolve_policy
    from policies.decision import masked_probabilities
    from policies.features import encode

    run = tiny_run(tmp_path)
    target = TargetPolicy(str(run))
    assert target.stochastic
    n = 4000
    many = random_views(np.random.default_rng(5), 1).take(np.zeros(n, dtype=np.int64))  # one account, asked n times
    mask = np.ones((n, 19), dtype=bool)
    mask[:, 6] = False  # no calls today
    dist = mix(target.dist(many, mask), 0.0)
    actions = sample(dist, np.random.default_rng(2))
    probs = masked_probabilities(action_logits(resolve_policy(str(run)).model, encode(many)), mask)  # type: ignore[attr-defined]
    expected = probs[0][np.arange(n), actions[:, 0]]
    contact = actions[:, 0] != Channel.WAIT
    for k in (1, 2, 3):
        expected = np.where(contact, expected * probs[k][np.arange(n), actions[:, k]], expected)
    np.testing.assert_allclose(dist.prob(actions), expected)
    assert not (actions[:, 0] == 6).any()  # a masked channel is never taken
    freq = np.bincount(actions[:, 0], minlength=7) / n
    assert np.abs(freq - probs[0][0]).max() < 4 * np.sqrt(0.25 / n)
