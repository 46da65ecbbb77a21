"""Learners: a smoke run per algorithm, exact resume, learning beats random, masks and codecs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import policies
import sim  # noqa: F401
from agents.learned import LearnedPolicy, load_model
from agents.train import LinearRate, learning_rate, load_train_config, train
from agents.vec_env import DebtorVecEnv, joint_mask
from policies.actions import decode_flat
from policies.compliance import PROFILES, action_mask
from policies.decision import masked_argmax, masked_sample
from sim import load_scenario
from sim.config import ConfigError
from sim.kpis import portfolio_kpis
from sim.runner import run_portfolio

SMALL = ["horizon_days=30", "population.entry_spread_days=0"]


def tiny(algo: str) -> list[str]:
    slots = 32
    steps = 8
    return [
        f"n_slots={slots}",
        f"n_steps={steps}",
        "batch_size=128",
        "eval_every_steps=256",
        "checkpoint_every_steps=256",
        "eval_debtors=150",
        "select_top=null",
        "learning_starts=100",
    ]


@pytest.mark.parametrize("algo", ["maskable_ppo", "ppo", "a2c", "dqn"])
def test_every_algorithm_trains_evaluates_checkpoints_and_acts_legally(tmp_path, algo):
    run = train("default", algo, 800, seed=1, out=tmp_path, overrides=SMALL, train_overrides=tiny(algo))
    root = run.root
    assert root.name.startswith(f"default__{algo}__1__")
    for f in ("config.yaml", "curve.csv", "learning_curve.png", "best/model.zip", "best/meta.json"):
        assert (root / f).exists(), f
    assert list((root / "checkpoints").glob("model_*.zip"))
    assert list((root / "tb").rglob("events.out.tfevents.*"))
    assert len(run.curve) >= 2 and run.curve[-1]["timesteps"] >= 800
    model = load_model(algo, root / "best" / "model.zip")
    w = run_portfolio(load_scenario("default", SMALL), LearnedPolicy(model), 300, seed=2)
    assert w.blocked_by_reason.sum() == 0  # decisions are masked: never a violation


class Kill(Exception):
    pass


def test_resume_reaches_the_same_state_as_an_uninterrupted_run(tmp_path):
    over = [
        "n_slots=16",
        "n_steps=8",
        "batch_size=64",
        "eval_every_steps=128",
        "checkpoint_every_steps=128",
        "eval_debtors=60",
        "select_top=null",
        "learning_rate=0.001",
        "learning_rate_final=0.0001",
    ]
    full = train("default", "maskable_ppo", 512, seed=3, out=tmp_path / "a", overrides=SMALL, train_overrides=over)

    def killer(steps: int, _kpis: dict) -> None:
        if steps > 256:
            raise Kill  # the process dies after the checkpoint at 256 steps

    with pytest.raises(Kill):
        train("default", "maskable_ppo", 512, seed=3, out=tmp_path / "b", overrides=SMALL, train_overrides=over, progress=killer)
    (killed,) = list((tmp_path / "b").iterdir())
    assert (killed / "checkpoints" / "model_256.zip").exists()
    resumed = train("default", "maskable_ppo", 512, resume=killed)
    a = load_model("maskable_ppo", full.root / "checkpoints" / "model_256.zip")
    b = load_model("maskable_ppo", killed / "checkpoints" / "model_256.zip")
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert resumed.curve[-1]["timesteps"] == full.curve[-1]["timesteps"] == 512
    # the training clock continues across the resume (time-to-target stays readable from curve.csv)
    clock = [r["wall_seconds"] for r in resumed.curve]
    assert clock == sorted(clock) and clock[0] > 0 and len(clock) == len(full.curve)
    assert resumed.curve[-1]["net_value_per_debtor"] == pytest.approx(full.curve[-1]["net_value_per_debtor"], abs=1e-9)
    # the decaying learning rate continues where the killed run stopped: the resumed run's last update
    # used the rate the schedule gives at 384 of 512 steps, as the uninterrupted run's did
    lrs = [load_model("maskable_ppo", r / "checkpoints" / "model_384.zip").policy.optimizer.param_groups[0]["lr"] for r in (full.root, killed)]
    assert lrs[0] == lrs[1] == pytest.approx(0.0001 + 0.0009 * (1 - 384 / 512))


def _cli(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "experiments.cli", *args]


def test_a_run_killed_on_the_command_line_and_resumed_ends_where_the_uninterrupted_one_does(tmp_path):
    """The user's way: `collectrl train ... --timesteps N`, SIGKILL after a checkpoint, then
    `collectrl train --resume RUN` with nothing else: it trains to N (the run's own length, not
    the command line's default) and ends bit for bit where the uninterrupted run ends."""
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    over = ["n_slots=16", "n_steps=8", "batch_size=64", "eval_every_steps=2048", "checkpoint_every_steps=512", "eval_debtors=40", "select_top=null"]
    over += ["learning_rate=0.001", "learning_rate_final=0.0001", "patience_evals=null"]
    args = ["train", "--scenario", "default", "--timesteps", "8192", "--seed", "3", "--no-progress"]
    for o in SMALL:
        args += ["--set", o]
    for o in over:
        args += ["--train-set", o]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    subprocess.run(_cli(*args, "--out", str(tmp_path / "a")), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_cli(*args, "--out", str(tmp_path / "b")), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(6000):  # polls for up to ~10 minutes on a loaded machine; the checkpoint usually comes within seconds
            if list((tmp_path / "b").glob("*/checkpoints/model_1024.zip")):
                break
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    ((full,), (killed,)) = (list((tmp_path / x).iterdir()) for x in "ab")
    assert not (killed / "curve.csv").exists() or len((killed / "curve.csv").read_text().splitlines()) < 6  # it was killed mid-way
    done = subprocess.run(_cli("train", "--resume", str(killed), "--no-progress"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    a, b = ((r / "curve.csv").read_text().splitlines() for r in (full, killed))
    strip = lambda rows: [",".join(c for i, c in enumerate(r.split(",")) if i != header.index("wall_seconds")) for r in rows]
    header = a[0].split(",")
    assert strip(a) == strip(b)  # the same evaluations at the same steps, to the last digit
    assert b[-1].split(",")[0] == "8192.0"  # the run's own length, not the 9,000,000 a bare command would train
    pa, pb = (load_model("maskable_ppo", r / "best" / "model.zip").policy.parameters() for r in (full, killed))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))
    assert "at 8,192 steps" in done.stdout


def test_train_defaults_to_maskable_ppo_and_its_configs_length(tmp_path, monkeypatch):
    import agents.train as training

    seen = {}
    monkeypatch.setattr(training.Run, "write_config", lambda self, timesteps: seen.setdefault("timesteps", timesteps))
    monkeypatch.setattr(training.DebtorVecEnv, "__init__", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError, match="stop"):
        training.train("default", out=tmp_path)
    assert seen["timesteps"] == load_train_config("maskable_ppo").timesteps == 9_000_000
    assert next(iter(tmp_path.iterdir())).name.startswith("default__maskable_ppo__0__")


@pytest.mark.slow
def test_a_short_training_run_beats_random_by_a_clear_margin(tmp_path):
    sc_over = ["horizon_days=60", "population.entry_spread_days=0"]
    run = train(
        "default",
        "maskable_ppo",
        200_000,
        seed=0,
        out=tmp_path,
        overrides=sc_over,
        train_overrides=["eval_every_steps=65536", "eval_debtors=1500", "select_top=null"],
    )
    sc = load_scenario("default", sc_over)
    learned = portfolio_kpis(run_portfolio(sc, LearnedPolicy(load_model("maskable_ppo", run.root / "best" / "model.zip")), 3000, 20_000))
    rand = portfolio_kpis(run_portfolio(sc, policies.make("random"), 3000, 20_000))
    assert learned["net_value_per_debtor"] > rand["net_value_per_debtor"] + 100, (learned["net_value_per_debtor"], rand["net_value_per_debtor"])


def test_linear_rate_falls_from_start_to_end_and_saves_by_name():
    rate = LinearRate(3e-4, 0.0)
    assert [rate(p) for p in (1.0, 0.5, 0.0, -0.1)] == pytest.approx([3e-4, 1.5e-4, 0.0, 0.0])
    assert learning_rate(load_train_config("maskable_ppo", ["learning_rate_final=null"])) == pytest.approx(3e-4)
    with pytest.raises(ConfigError, match="learning_rate_final"):
        load_train_config("maskable_ppo", ["learning_rate_final=-1"])


def test_a_decay_length_makes_a_longer_run_follow_the_shorter_runs_schedule_step_for_step():
    short, long = 6_000_000, 12_000_000
    plain = LinearRate(3e-4, 3e-5)  # the schedule of a 6M run
    decayed = learning_rate(load_train_config("maskable_ppo", ["learning_rate_decay_steps=6000000"]), long)
    for t in range(0, short + 1, 8192 * 37):  # SB3's share of training left, as SB3 computes it
        assert decayed(1.0 - float(t) / float(long)) == plain(1.0 - float(t) / float(short))  # bit for bit
    assert decayed(1.0 - 9_000_000 / long) == 3e-5 and decayed(0.0) == 3e-5  # at its floor after the decay
    assert learning_rate(load_train_config("maskable_ppo", ["learning_rate_decay_steps=6000000"]), short)(0.5) == plain(0.5)
    with pytest.raises(ValueError, match="run's length"):
        LinearRate(3e-4, 3e-5, decay=10)


def test_train_overrides_accept_layer_lists_in_both_forms_and_name_bad_values():
    assert load_train_config("a2c", ["net_arch=64,64"]).net_arch == [64, 64]
    assert load_train_config("a2c", ["net_arch=[32, 16]"]).net_arch == [32, 16]
    with pytest.raises(ConfigError, match=r"net_arch.*got 'wide'"):
        load_train_config("a2c", ["net_arch=wide"])
    with pytest.raises(ConfigError, match=r"gamma.*got 1\.5"):
        load_train_config("a2c", ["gamma=1.5"])


def test_joint_mask_and_flat_actions_agree_with_per_dimension_masks():
    rng = np.random.default_rng(0)
    m = rng.random((50, 19)) < 0.7
    m[:, 0] = True
    j = joint_mask(m)
    assert j.shape == (50, 448)
    acts = decode_flat(np.arange(448))
    for r in range(50):
        expect = m[r, acts[:, 0]] & m[r, 7 + acts[:, 1]] & m[r, 11 + acts[:, 2]] & m[r, 15 + acts[:, 3]]
        np.testing.assert_array_equal(j[r], expect)


def test_masked_decisions_never_pick_a_disallowed_value():
    rng = np.random.default_rng(1)
    m = rng.random((400, 19)) < 0.5
    for s in (0, 7, 11, 15):
        m[:, s] = True
    logits = rng.normal(0, 5, (400, 19))
    for a in (masked_argmax(logits, m), masked_sample(logits, m, rng.random((400, 4)))):
        for k, s in enumerate((0, 7, 11, 15)):
            assert m[np.arange(400), s + a[:, k]].all()
    q = rng.normal(0, 1, (400, 448))
    a = masked_argmax(q, m)
    assert joint_mask(m)[np.arange(400), (a * np.array([64, 16, 4, 1])).sum(axis=1)].all()


def test_vec_env_reports_episodes_and_terminal_observations():
    env = DebtorVecEnv(load_scenario("default", ["horizon_days=5"]), 8, seed=0)
    env.reset()
    done_seen = 0
    for _ in range(6):
        env.step_async(np.zeros((8, 4), dtype=np.int64))
        obs, rew, dones, infos = env.step_wait()
        assert obs.shape == (8, 58) and rew.dtype == np.float32
        for i in np.flatnonzero(dones):
            assert infos[i]["terminal_observation"].shape == (58,)
            assert infos[i]["episode"]["l"] <= 5
            done_seen += 1
    assert done_seen >= 8
    masks = np.stack(env.env_method("action_masks"))
    assert masks.shape == (8, 19)
    for p in PROFILES.values():
        assert action_mask(env.batch.world.views(), p).shape == (8, 19)


def test_a_sold_debtor_ends_its_episode_and_the_learner_adds_no_value_after_the_sale():
    """The sale at the horizon is the debtor's last reward. Flagged as a time-limit truncation, SB3 would
    add gamma * V(last observation) to it; the learner's stored rewards must be the world's."""
    from sb3_contrib import MaskablePPO

    from agents.heads import HeadsMaskableActorCriticPolicy

    env = DebtorVecEnv(load_scenario("default", ["horizon_days=5"]), 8, seed=0)
    seen: list[np.ndarray] = []
    sold = 0
    step_wait = env.step_wait

    def recorded():  # the rewards the world hands out, and the flags of each ending
        nonlocal sold
        obs, rew, dones, infos = step_wait()
        seen.append(rew.copy())
        for i in np.flatnonzero(dones):
            assert infos[i]["TimeLimit.truncated"] is False
            sold += infos[i]["sold"]
        return obs, rew, dones, infos

    env.step_wait = recorded  # type: ignore[method-assign]
    model = MaskablePPO(HeadsMaskableActorCriticPolicy, env, n_steps=16, batch_size=64, seed=0, device="cpu")
    with torch.no_grad():  # a critic worth a lot everywhere: any bootstrap after the sale would show
        model.policy.value_net.bias.fill_(100.0)
    model.learn(16)
    assert sold >= 8  # most debtors of a 5-day horizon are sold, every slot at least once in 16 days
    np.testing.assert_array_equal(model.rollout_buffer.rewards, np.stack(seen))


@pytest.mark.slow
def test_bandit_regret_grows_sub_linearly_on_a_stationary_stream():
    from agents.regret import bandit_regret

    res = bandit_regret(load_scenario("default"), 16_000, seed=0, stream_days=240)
    q = res.by_quarter()
    # per-debtor regret falls as the bandit learns: cumulative regret grows slower than linearly
    assert q[-1]["bandit_regret_per_debtor"] < q[0]["bandit_regret_per_debtor"] - 20, q
    first_half, second_half = res.regret[: res.debtors // 2].sum(), res.regret[res.debtors // 2 :].sum()
    assert second_half < first_half


def test_bandit_actions_are_legal_and_seeded():
    from agents.bandit import LinearThompsonBandit

    sc = load_scenario("default", ["horizon_days=40"])
    a = run_portfolio(sc, LinearThompsonBandit(), 600, seed=4, record_events=True)
    b = run_portfolio(sc, LinearThompsonBandit(), 600, seed=4, record_events=True)
    assert a.blocked_by_reason.sum() == 0
    np.testing.assert_array_equal(a.net_value, b.net_value)
    with pytest.raises(TypeError, match="learns from the rewards"):
        LinearThompsonBandit().act(None, None)  # type: ignore[arg-type]


def test_tune_resumes_a_study_and_writes_the_best_params(tmp_path):
    import yaml

    from agents.tune import tune

    first = tune("default", "maskable_ppo", 2, 1024, tmp_path, log=lambda _m: None)
    assert first["trials"] == 2
    again = tune("default", "maskable_ppo", 3, 1024, tmp_path, log=lambda _m: None)
    assert again["trials"] == 3  # the stored study was continued, not restarted
    study = tmp_path / "default__maskable_ppo__tune"
    assert (study / "study.db").exists()
    best = yaml.safe_load((study / "best_params.yaml").read_text())
    assert best["algo"] == "maskable_ppo" and best["learning_rate"] == pytest.approx(again["best_params"]["learning_rate"])
    from agents.train import TrainConfig

    cfg = TrainConfig.model_validate(best)  # the written file is a usable training config
    assert cfg.gae_lambda == again["best_params"]["gae_lambda"]
    assert (cfg.learning_rate_final is not None) == again["best_params"]["lr_decay"]
    import optuna

    trials = optuna.load_study(study_name="default-maskable_ppo", storage=f"sqlite:///{study / 'study.db'}").trials
    assert trials[2].params != trials[0].params  # resuming does not replay the first draws


def test_leaderboard_trains_once_reuses_runs_and_scores_every_policy(tmp_path):
    from experiments.leaderboard import leaderboard, markdown

    kw = {
        "debtors": 300,
        "seeds": (0,),
        "log": lambda _m: None,
        "train_overrides": ["n_slots=32", "eval_debtors=100", "eval_every_steps=512", "select_top=null"],
    }
    t1 = leaderboard(["default"], ["maskable_ppo"], 1024, tmp_path, **kw)
    runs = list(tmp_path.glob("default__maskable_ppo__0__*"))
    assert len(runs) == 1
    t2 = leaderboard(["default"], ["maskable_ppo"], 1024, tmp_path, **kw)
    assert list(tmp_path.glob("default__maskable_ppo__0__*")) == runs  # reused, not retrained
    rows = t2["scenarios"]["default"]
    assert set(policies.registered()) | {"maskable_ppo"} <= set(rows)
    assert rows["static_ladder"]["normalised_score"]["mean"] == pytest.approx(0.0)
    assert rows["oracle"]["normalised_score"]["mean"] == pytest.approx(1.0)
    assert all(r["blocked_actions"] == 0 for r in rows.values())
    assert t1["scenarios"]["default"]["maskable_ppo"]["normalised_score"] == rows["maskable_ppo"]["normalised_score"]
    md = markdown(t2)
    assert "| `oracle` | 1.000" in md and "`maskable_ppo`" in md
    assert rows["static_ladder"]["firm_contacts_per_debtor"] > 0 == rows["no_contact"]["firm_contacts_per_debtor"]
    ladder = rows["static_ladder"]
    assert f"| `static_ladder` | {ladder['firm_contacts_per_debtor']:.2f} / {ladder['complaint_rate']:.1%} / 0 |" in md
    # a run of another config (after a change to the shipped one, say) is not reused, and the log says why
    said: list[str] = []
    changed = {**kw, "log": said.append, "train_overrides": [*kw["train_overrides"], "ent_coef=0.02"]}
    leaderboard(["default"], ["maskable_ppo"], 1024, tmp_path, **changed)
    assert len(list(tmp_path.glob("default__maskable_ppo__0__*"))) == 2
    assert any(m.startswith(f"not reusing {runs[0]}") and "ent_coef" in m for m in said), said


def test_perf_train_reports_the_median_of_alternating_rounds(tmp_path, monkeypatch):
    import tempfile

    from experiments.perf import perf_train

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    r = perf_train("default", n_envs=4, timesteps=1024, rounds=3)
    assert list(tmp_path.glob("SB3-*")) == []  # SB3 left no empty SB3-<time> log directory per learn() behind
    assert len(r["round_ratios"]) == 3 and all(x > 0 for x in r["round_ratios"])
    assert r["ratio"] == sorted(r["round_ratios"])[1]
    assert r["timesteps"] == 3 * 4 * 32 * 3  # whole rollouts of 4 envs x 32 steps, ~1024 / 3 per round
    assert 0 < r["debtor_env_share"] < 1 and 0 < r["cartpole_env_share"] < 1 and r["env_only_ratio"] > 0
    # the reported rates are the median round's, and the ratio is theirs
    assert abs(r["debtor_env_steps_per_s"] / r["cartpole_env_steps_per_s"] - r["ratio"]) < 0.01 * r["ratio"] + 2 / r["cartpole_env_steps_per_s"]


def test_patience_stops_training_once_evaluations_set_no_new_best(tmp_path, monkeypatch):
    import agents.train as training

    # evaluations 3, 4 and 5 set no new best (12.0 does not beat 12.0): with patience 3, training ends at the fifth
    scripted = iter([10.0, 12.0, 11.0, 12.0, 9.0, 30.0])

    def scripted_evaluate(self, model, logger):  # type: ignore[no-untyped-def]
        row = {"timesteps": float(model.num_timesteps), "net_value_per_debtor": next(scripted), "normalised_score": 0.0}
        self.curve.append(row)
        return row

    monkeypatch.setattr(training.Run, "evaluate", scripted_evaluate)
    over = [*tiny("maskable_ppo"), "patience_evals=3"]
    run = train("default", "maskable_ppo", 50_000, seed=1, out=tmp_path, overrides=SMALL, train_overrides=over)
    assert [r["net_value_per_debtor"] for r in run.curve] == [10.0, 12.0, 11.0, 12.0, 9.0]  # and no final evaluation after the stop
    assert run.stopped_early == run.curve[-1]["timesteps"] == 5 * 256
    assert run.evals_since_best() == 3


def test_selection_keeps_the_candidate_best_on_new_debtors_not_the_luckiest_evaluation(tmp_path, monkeypatch):
    import agents.train as training

    real = training.evaluate_policy
    # the training-time evaluations (seed eval_seed) rank the models one way; the selection
    # population (seed 4242) ranks them the other way: selection must follow the new debtors
    scripted_eval = iter([10.0, 30.0, 20.0, 25.0])
    selection_value = {}

    def evaluate(sc, policy, debtors, seed):  # type: ignore[no-untyped-def]
        k = real(sc, policy, debtors, seed)
        if isinstance(policy, LearnedPolicy):
            if seed == 4242:
                steps = int(policy.model.num_timesteps)
                k["net_value_per_debtor"] = selection_value.setdefault(steps, -float(steps))  # the earliest model is best here
            else:
                k["net_value_per_debtor"] = next(scripted_eval)
        return k

    monkeypatch.setattr(training, "evaluate_policy", evaluate)
    over = [*tiny("maskable_ppo"), "select_top=3", "select_debtors=50", "select_seed=4242", "patience_evals=null"]
    run = train("default", "maskable_ppo", 4 * 256, seed=2, out=tmp_path, overrides=SMALL, train_overrides=over)
    evals = [r["net_value_per_debtor"] for r in run.curve]
    assert evals == [10.0, 30.0, 20.0, 25.0]  # at 256, 512 and 768 debtor-days, and the final one at 1024
    kept = sorted(int(p.stem.split("_")[1]) for p in (run.root / "candidates").glob("model_*.zip"))
    assert kept == [512, 768, 1024]  # the three best evaluated: 30 at 512, 25 at 1024, 20 at 768
    assert [int(r["timesteps"]) for r in run.selection] == kept
    # best/model.zip is the earliest kept model (best on the new debtors), not the 30 of the evaluation
    assert (run.root / "best" / "model.zip").read_bytes() == (run.root / "candidates" / "model_512.zip").read_bytes()
    meta = json.loads((run.root / "best" / "meta.json").read_text())
    assert meta["timesteps"] == 512 and meta["selected_on"]["seed"] == 4242
