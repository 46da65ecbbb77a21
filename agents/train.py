"""Training a learner on the batched debtor world, readable top to bottom.

A run directory ``{scenario}__{algo}__{seed}__{time}`` holds:

* ``config.yaml``       the resolved training config and the scenario (with overrides applied);
* ``tb/``               TensorBoard logs: SB3's losses and ``business/`` metrics (net value,
                        recovery, cost, complaints, blocked actions) of finished training episodes
                        and of each evaluation;
* ``checkpoints/``      at rollout boundaries: ``model_{steps}.zip``, the actions taken so far
                        (``actions_{steps}.npy``) and the RNG and rollout state (``state_{steps}.npz``);
                        ``--resume RUN_DIR`` replays the actions to rebuild the deterministic world
                        exactly and continues, reaching the same state as an uninterrupted run;
* ``best/model.zip``    the model with the best evaluation net value (``best/meta.json`` says when); with
                        ``select_top`` set, at the end of training the ``select_top`` best models of
                        the training-time evaluations (kept in ``candidates/``) are scored again on a
                        larger population never seen before (``select_debtors``, seed ``select_seed``)
                        and the best of them becomes ``best/model.zip`` (``selection.csv``): a model
                        chosen on one noisy evaluation is often chosen for its luck;
* ``curve.csv`` and ``learning_curve.png``: evaluation net value per debtor vs timesteps, with the
                        static ladder and the oracle as lines.

Evaluation runs the learned policy on a separate population (seed ``eval_seed``, never used for
training) with common random numbers, so its difference from the static ladder is paired.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from stable_baselines3.common.callbacks import BaseCallback

import policies
from agents.heads import HeadsActorCriticPolicy, HeadsMaskableActorCriticPolicy
from agents.learned import ALGOS, LearnedPolicy, load_model
from agents.plotting import finish_png
from agents.vec_env import DebtorVecEnv
from configs import config_dir
from policies.fileio import atomic_write
from sim.config import ConfigError, Scenario, apply_override, load_raw, load_scenario, parse_override
from sim.kpis import portfolio_kpis
from sim.runner import run_portfolio
from sim.world import REWARD_COMPONENTS

TRAINING_DIR = config_dir("training")


class TrainConfig(BaseModel):
    """Hyperparameters of one algorithm (``configs/training/{algo}.yaml``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    algo: Literal["maskable_ppo", "ppo", "a2c", "dqn"]
    timesteps: int = Field(default=2_000_000, ge=1, description="debtor-days of training when the command line does not say")
    n_slots: int = Field(ge=1, le=65536, description="debtor slots = parallel environments")
    learning_rate: float = Field(gt=0, le=1, description="step size at the start of training")
    learning_rate_final: float | None = Field(
        default=None, ge=0, le=1, description="if set, the step size falls linearly to this value by the last timestep"
    )
    learning_rate_decay_steps: int | None = Field(
        default=None,
        ge=1,
        description="with learning_rate_final: the debtor-days by which the step size reaches it and then stays (None: the run's length)",
    )
    gamma: float = Field(gt=0, le=1, description="per-day discount of the learner")
    n_steps: int = Field(default=32, ge=1, description="days per rollout (on-policy algorithms)")
    batch_size: int = Field(default=2048, ge=1)
    n_epochs: int = Field(default=4, ge=1)
    gae_lambda: float = Field(default=0.95, ge=0, le=1)
    ent_coef: float = Field(default=0.0, ge=0)
    clip_range: float = Field(default=0.2, gt=0)
    net_arch: list[int] = Field(default_factory=lambda: [128, 128], description="hidden layers of the network (the actor's, with vf_arch)")
    vf_arch: list[int] | None = Field(
        default=None,
        description="actor-critic learners: the critic's hidden layers, if not net_arch's (the critic is not exported, so a wider "
        "one costs training time only)",
    )
    wait_prior: float | None = Field(
        default=None, gt=0, lt=1, description="actor-critic learners: the untrained policy's probability of waiting (None: uniform channels)"
    )
    conditional_heads: bool = Field(
        default=False,
        description="actor-critic learners: a waiting day's probability is the channel head's alone (its window, tone and offer did nothing)",
    )
    latent_critic: Literal["none", "state", "all"] = Field(
        default="none",
        description="actor-critic learners: the critic (training only) also sees the debtor's latent state (fatigue, repayment "
        "intensity) or all of it (and the traits); the actor never does",
    )
    buffer_size: int = Field(default=200_000, ge=1, description="DQN replay buffer")
    learning_starts: int = Field(default=10_000, ge=0, description="DQN")
    exploration_fraction: float = Field(default=0.3, gt=0, le=1, description="DQN")
    train_freq: int = Field(default=1, ge=1, description="DQN: env steps (of all slots) between updates")
    eval_every_steps: int = Field(default=200_000, ge=1)
    patience_evals: int | None = Field(
        default=None, ge=1, description="stop once this many evaluations in a row set no new best (None: train for all the timesteps)"
    )
    eval_debtors: int = Field(default=3000, ge=10)
    eval_seed: int = Field(default=10_000, ge=0, description="evaluation population, never trained on")
    select_top: int | None = Field(
        default=None, ge=1, description="at the end, re-score this many best-evaluated models on the selection population and keep the best"
    )
    select_debtors: int = Field(default=20_000, ge=10, description="the selection population's size")
    select_seed: int = Field(default=20_000, ge=0, description="the selection population, never trained or evaluated on during training")
    checkpoint_every_steps: int = Field(default=200_000, ge=1)
    torch_threads: int = Field(default=1, ge=1, description="1 was faster for small MLPs on these machines")

    @model_validator(mode="after")
    def _wait_prior_needs_actor_critic(self) -> TrainConfig:
        if self.wait_prior is not None and self.algo == "dqn":
            raise ValueError("wait_prior shapes the actor-critic learners' channel head; DQN has none (remove it or use another algo)")
        if self.conditional_heads and self.algo == "dqn":
            raise ValueError("conditional_heads is about the actor-critic learners' action heads; DQN has none (remove it or use another algo)")
        if self.vf_arch is not None and self.algo == "dqn":
            raise ValueError("vf_arch sizes an actor-critic learner's critic; DQN has none (remove it or use another algo)")
        if self.latent_critic != "none" and self.algo == "dqn":
            raise ValueError("latent_critic feeds an actor-critic learner's critic; DQN has none (remove it or use another algo)")
        return self

    @field_validator("net_arch", "vf_arch", mode="before")
    @classmethod
    def _layers_from_text(cls, v: Any) -> Any:
        """``--train-set net_arch=64,64`` (the form `collectrl tune` prints) means ``[64, 64]``."""
        if isinstance(v, str) and v.replace(",", "").replace(" ", "").isdigit():
            return [int(x) for x in v.split(",") if x.strip()]
        return v


def load_train_config(algo: str, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:

    path = TRAINING_DIR / f"{algo}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    try:
        data = TrainConfig.model_validate(yaml.safe_load(path.read_text())).model_dump()  # every field, defaults filled in
        for text in overrides:
            key, value = parse_override(text)
            data = apply_override(data, key, value)
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        lines = [f"invalid training config {path.name}:"]
        for err in e.errors():
            where = ".".join(map(str, err["loc"]))
            lines.append(f"  {where}: {err['msg']} (got {err.get('input')!r})" if where else f"  {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def _as_stored(x: Any) -> Any:
    """``x`` as a run's ``config.yaml`` holds it (a YAML round trip: tuples become lists)."""
    return yaml.safe_load(yaml.safe_dump(x, sort_keys=False))


def why_not_reusable(root: Path, world: Scenario, cfg: TrainConfig, timesteps: int | None = None) -> str | None:
    """None if the run directory ``root`` is finished (it has a best model) and was trained for
    ``timesteps`` debtor-days (any length if None) with the training config ``cfg`` (every key but
    its default length) on ``world`` (the resolved scenario); otherwise why not, in a few words. What
    reuses trained runs (the leaderboard, what-if experiments) asks this, so a change to a shipped
    config or a scenario trains again instead of scoring the old models."""
    path = Path(root) / "config.yaml"
    if not (Path(root) / "best" / "model.zip").exists() or not path.exists():
        return "unfinished"
    data = yaml.safe_load(path.read_text()) or {}
    if timesteps is not None and data.get("timesteps") != timesteps:
        return f"trained for {data.get('timesteps')} debtor-days, not {timesteps}"
    want = {k: v for k, v in _as_stored(cfg.model_dump()).items() if k != "timesteps"}
    have = {k: v for k, v in (data.get("training") or {}).items() if k != "timesteps"}
    changed = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
    if changed:
        return f"trained with other {cfg.algo} settings ({', '.join(f'{k} {have.get(k)} -> {want.get(k)}' for k in changed)})"
    if data.get("resolved_scenario") != _as_stored(world.model_dump()):
        return f"trained on another version of the {world.name} scenario"
    return None


def read_run_config(root: Path) -> dict[str, Any]:
    """The ``config.yaml`` of a run directory; a clear error when it is not one."""
    path = Path(root) / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{root} is not a run directory (no config.yaml); give the directory `collectrl train` created")
    try:
        saved = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}); the run cannot be resumed") from None
    needed = ("scenario", "scenario_overrides", "algo", "seed", "timesteps", "training")
    missing = [k for k in needed if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise ConfigError(f"{path}: missing {', '.join(missing)}; the run cannot be resumed")
    return saved  # type: ignore[no-any-return]


class LinearRate:
    """A learning rate that falls linearly from ``start`` to ``end`` as training progresses.

    SB3 calls it with the share of training still to do (1 at the first step, 0 at the last);
    a resumed run keeps counting from where it stopped, so the schedule continues too. With
    ``decay`` (debtor-days) and the run's length ``total`` it reaches ``end`` after ``decay``
    debtor-days and stays there: a longer run then follows a shorter one's schedule step for step
    (the debtor-day count is recovered exactly from SB3's share and ``total``, and the share of the
    decay computed as SB3 computes its own, so a run with ``decay`` equal to its length takes the
    very same step sizes as one without).
    A module-level class (not a lambda) so a saved model refers to it by name.
    """

    def __init__(self, start: float, end: float, total: int | None = None, decay: int | None = None) -> None:
        if decay is not None and total is None:
            raise ValueError("LinearRate: a decay length needs the run's length (total)")
        self.start, self.end, self.total, self.decay = float(start), float(end), total, decay

    def __call__(self, progress_remaining: float) -> float:
        share = progress_remaining
        if getattr(self, "decay", None) is not None:  # models saved before the decay length have no attribute
            done = round((1.0 - progress_remaining) * float(self.total))  # type: ignore[arg-type]
            share = 1.0 - float(done) / float(self.decay)  # type: ignore[arg-type]
        return self.end + (self.start - self.end) * max(0.0, min(1.0, share))

    def __repr__(self) -> str:
        tail = f", total={self.total}, decay={self.decay}" if getattr(self, "decay", None) is not None else ""
        return f"LinearRate({self.start}, {self.end}{tail})"


def learning_rate(cfg: TrainConfig, timesteps: int | None = None) -> float | LinearRate:
    """The step size of ``cfg`` for a run of ``timesteps`` debtor-days (needed with ``learning_rate_decay_steps``)."""
    if cfg.learning_rate_final is None:
        return cfg.learning_rate
    if cfg.learning_rate_decay_steps is None:
        return LinearRate(cfg.learning_rate, cfg.learning_rate_final)
    return LinearRate(cfg.learning_rate, cfg.learning_rate_final, timesteps, cfg.learning_rate_decay_steps)


def quiet(model: Any) -> Any:
    """Give ``model`` a logger that writes nothing. Without one, SB3 makes a fresh empty directory
    under the system temp dir on every ``learn()`` (``SB3-<time>``) when no TensorBoard folder is set."""
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def make_model(cfg: TrainConfig, env: DebtorVecEnv, seed: int, tb: str | None, timesteps: int | None = None) -> Any:
    """A fresh SB3 model for ``cfg`` and a run of ``timesteps`` debtor-days (for the learning-rate schedule);
    the actor-critic learners use ``agents.heads``' policies (the same networks and distributions as SB3's
    ``MlpPolicy``, with the four action heads evaluated as one tensor). With ``tb=None`` the model logs
    nowhere (see ``quiet``)."""
    model = _new_model(cfg, env, seed, tb, timesteps if timesteps is not None else cfg.timesteps)
    return model if tb is not None else quiet(model)


def _new_model(cfg: TrainConfig, env: DebtorVecEnv, seed: int, tb: str | None, timesteps: int) -> Any:

    net_arch: Any = list(cfg.net_arch)
    if cfg.vf_arch is not None:
        net_arch = {"pi": net_arch, "vf": list(cfg.vf_arch)}  # SB3's form for separate actor and critic layers
    policy_kwargs: dict[str, Any] = {"net_arch": net_arch}
    if cfg.algo != "dqn":
        policy_kwargs["wait_prior"] = cfg.wait_prior
        policy_kwargs["conditional_heads"] = cfg.conditional_heads
        if env.latent_width:
            policy_kwargs["critic_only_features"] = env.latent_width
    common: dict[str, Any] = {
        "learning_rate": learning_rate(cfg, timesteps),
        "gamma": cfg.gamma,
        "seed": seed,
        "verbose": 0,
        "device": "cpu",
        "tensorboard_log": tb,
        "policy_kwargs": policy_kwargs,
    }
    if cfg.algo in ("maskable_ppo", "ppo"):
        ppo_args: dict[str, Any] = {
            "n_steps": cfg.n_steps,
            "batch_size": cfg.batch_size,
            "n_epochs": cfg.n_epochs,
            "gae_lambda": cfg.gae_lambda,
            "ent_coef": cfg.ent_coef,
            "clip_range": cfg.clip_range,
        }
        if cfg.algo == "maskable_ppo":
            from sb3_contrib import MaskablePPO

            return MaskablePPO(HeadsMaskableActorCriticPolicy, env, **ppo_args, **common)
        from stable_baselines3 import PPO

        return PPO(HeadsActorCriticPolicy, env, **ppo_args, **common)
    if cfg.algo == "a2c":
        from stable_baselines3 import A2C

        return A2C(HeadsActorCriticPolicy, env, n_steps=cfg.n_steps, gae_lambda=cfg.gae_lambda, ent_coef=cfg.ent_coef, **common)
    from stable_baselines3 import DQN

    return DQN(
        "MlpPolicy",
        env,
        buffer_size=cfg.buffer_size,
        learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size,
        exploration_fraction=cfg.exploration_fraction,
        train_freq=cfg.train_freq,
        gradient_steps=1,
        **common,
    )


def model_bytes(model: Any) -> bytes:
    buf = io.BytesIO()
    model.save(buf)
    return buf.getvalue()


@dataclass
class Baselines:
    """Evaluation-population net value per debtor of the references."""

    static_ladder: float
    oracle: float


def evaluate_policy(sc: Scenario, policy: policies.Policy, debtors: int, seed: int) -> dict[str, float]:
    return portfolio_kpis(run_portfolio(sc, policy, debtors, seed))


class TrainingMonitor(BaseCallback):
    """Business metrics, periodic evaluation (best model kept), checkpoints and the progress bar."""

    def __init__(self, run: Run, progress: Callable[[int, dict[str, float]], None] | None = None) -> None:
        super().__init__(verbose=0)
        self.run = run
        self.progress = progress
        self.next_eval = run.cfg.eval_every_steps
        self.next_ckpt = run.cfg.checkpoint_every_steps
        self._episodes: list[dict[str, float]] = []
        self.stop = False  # set by the patience rule; SB3 ends learn() when _on_step returns False

    def _on_training_start(self) -> None:
        # a resumed run continues the schedule where it stopped
        every_e, every_c = self.run.cfg.eval_every_steps, self.run.cfg.checkpoint_every_steps
        self.next_eval = (self.num_timesteps // every_e + 1) * every_e
        self.next_ckpt = (self.num_timesteps // every_c + 1) * every_c

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            b = info.get("business")
            if b is not None:
                self._episodes.append(b)
        if len(self._episodes) >= 256:
            self._flush_business()
        if self.progress is not None:
            self.progress(self.num_timesteps, self.run.last_eval)
        return not self.stop

    def _flush_business(self) -> None:
        eps = self._episodes
        self._episodes = []
        for k in REWARD_COMPONENTS:
            self.logger.record(f"business/train_{k}_per_debtor", float(np.mean([e[k] for e in eps])))
        self.logger.record("business/train_net_value_per_debtor", float(np.mean([sum(e.values()) for e in eps])))

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.next_eval:
            self.run.evaluate(self.model, self.logger)
            while self.next_eval <= self.num_timesteps:
                self.next_eval += self.run.cfg.eval_every_steps
            patience = self.run.cfg.patience_evals
            if patience is not None and self.run.evals_since_best() >= patience:
                self.stop = True
                self.run.stopped_early = int(self.num_timesteps)
        if self.num_timesteps >= self.next_ckpt:
            self.run.checkpoint(self.model)
            while self.next_ckpt <= self.num_timesteps:
                self.next_ckpt += self.run.cfg.checkpoint_every_steps


class Run:
    """One training run and its directory."""

    def __init__(self, root: Path, sc: Scenario, scenario_name: str, cfg: TrainConfig, seed: int, overrides: list[str]) -> None:
        self.root, self.sc, self.scenario_name, self.cfg, self.seed, self.overrides = root, sc, scenario_name, cfg, seed, overrides
        self.env: DebtorVecEnv | None = None
        self.baselines: Baselines | None = None
        self.curve: list[dict[str, float]] = []
        self.best = -np.inf
        self.last_eval: dict[str, float] = {}
        self.on_evaluate: Callable[[dict[str, float]], None] | None = None
        self.stopped_early: int | None = None  # timesteps at which the patience rule ended training
        self.candidates: list[tuple[float, int]] = []  # (evaluation net value, timesteps) of the models kept for selection
        self.selection: list[dict[str, float]] = []
        # wall-clock seconds of training so far (continued across a resume), for time-to-target
        self.clock_start, self.clock_offset = time.perf_counter(), 0.0

    # ---- directory
    @staticmethod
    def new_dir(out: Path, scenario: str, algo: str, seed: int) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        d = out / f"{scenario}__{algo}__{seed}__{stamp}"
        d.mkdir(parents=True, exist_ok=False)
        return d

    def write_config(self, timesteps: int) -> None:
        data = {
            "scenario": self.scenario_name,
            "scenario_overrides": self.overrides,
            "algo": self.cfg.algo,
            "seed": self.seed,
            "timesteps": timesteps,
            "training": self.cfg.model_dump(),
            "resolved_scenario": self.sc.model_dump(),
        }
        atomic_write(self.root / "config.yaml", lambda p: p.write_text(yaml.safe_dump(data, sort_keys=False)))

    # ---- evaluation
    def reference_values(self) -> Baselines:
        if self.baselines is None:
            c = self.cfg
            lad = evaluate_policy(self.sc, policies.make("static_ladder"), c.eval_debtors, c.eval_seed)["net_value_per_debtor"]
            ora = evaluate_policy(self.sc, policies.make("oracle"), c.eval_debtors, c.eval_seed)["net_value_per_debtor"]
            self.baselines = Baselines(lad, ora)
        return self.baselines

    def evaluate(self, model: Any, logger: Any) -> dict[str, float]:
        ref = self.reference_values()
        k = evaluate_policy(self.sc, LearnedPolicy(model, self.cfg.algo), self.cfg.eval_debtors, self.cfg.eval_seed)
        nv = k["net_value_per_debtor"]
        score = (nv - ref.static_ladder) / (ref.oracle - ref.static_ladder) if ref.oracle != ref.static_ladder else float("nan")
        row = {
            "timesteps": float(model.num_timesteps),
            "net_value_per_debtor": nv,
            "normalised_score": score,
            "wall_seconds": self.clock_offset + time.perf_counter() - self.clock_start,
            **{f"kpi_{n}": v for n, v in k.items()},
        }
        self.curve.append(row)
        self.last_eval = {"net": nv, "score": score}
        for name in ("net_value_per_debtor", "recovery_rate_amount", "contact_cost_per_debtor", "complaint_rate", "blocked_actions"):
            logger.record(f"business/eval_{name}", k[name])
        logger.record("business/eval_normalised_score", score)
        logger.dump(model.num_timesteps)
        self._keep_candidate(model, nv)
        if nv > self.best:
            self.best = nv
            data = model_bytes(model)
            atomic_write(self.root / "best" / "model.zip", lambda p: p.write_bytes(data))
            meta = {"algo": self.cfg.algo, "timesteps": model.num_timesteps, "net_value_per_debtor": nv, "normalised_score": score}
            atomic_write(self.root / "best" / "meta.json", lambda p: p.write_text(json.dumps(meta, indent=2)))
        self.write_curve()
        if self.on_evaluate is not None:
            self.on_evaluate(row)  # may raise to stop the run (e.g. a pruned tuning trial)
        return row

    def _keep_candidate(self, model: Any, nv: float) -> None:
        """Keep the model if it is among the ``select_top`` best evaluated so far (``candidates/``)."""
        k = self.cfg.select_top
        if k is None:
            return
        steps = int(model.num_timesteps)
        ranked = sorted([*self.candidates, (nv, steps)], key=lambda c: (-c[0], c[1]))
        keep, drop = ranked[:k], ranked[k:]
        if (nv, steps) in keep:
            data = model_bytes(model)
            atomic_write(self.root / "candidates" / f"model_{steps}.zip", lambda p: p.write_bytes(data))
        for _, s in drop:
            (self.root / "candidates" / f"model_{s}.zip").unlink(missing_ok=True)
        self.candidates = keep

    def select(self, progress: Callable[[str], None] | None = None) -> dict[str, float] | None:
        """Score the kept candidates on the selection population (common random numbers with the
        ladder and the oracle there) and make the best of them ``best/model.zip``."""
        if self.cfg.select_top is None or not self.candidates:
            return None
        c = self.cfg
        ladder = evaluate_policy(self.sc, policies.make("static_ladder"), c.select_debtors, c.select_seed)["net_value_per_debtor"]
        oracle = evaluate_policy(self.sc, policies.make("oracle"), c.select_debtors, c.select_seed)["net_value_per_debtor"]
        rows = []
        for i, (eval_nv, steps) in enumerate(sorted(self.candidates, key=lambda x: x[1])):
            if progress is not None:
                progress(f"selection {i + 1}/{len(self.candidates)}: the model at {steps:,} debtor-days on {c.select_debtors:,} new debtors")
            model = load_model(c.algo, self.root / "candidates" / f"model_{steps}.zip")
            nv = evaluate_policy(self.sc, LearnedPolicy(model, c.algo), c.select_debtors, c.select_seed)["net_value_per_debtor"]
            score = (nv - ladder) / (oracle - ladder) if oracle != ladder else float("nan")
            rows.append({"timesteps": float(steps), "eval_net_value_per_debtor": eval_nv, "net_value_per_debtor": nv, "normalised_score": score})
        best = max(rows, key=lambda r: (r["net_value_per_debtor"], -r["timesteps"]))
        steps = int(best["timesteps"])
        data = (self.root / "candidates" / f"model_{steps}.zip").read_bytes()
        atomic_write(self.root / "best" / "model.zip", lambda p: p.write_bytes(data))
        meta = {
            "algo": c.algo,
            "timesteps": steps,
            "net_value_per_debtor": best["eval_net_value_per_debtor"],
            "selected_on": {"debtors": c.select_debtors, "seed": c.select_seed, **best},
        }
        atomic_write(self.root / "best" / "meta.json", lambda p: p.write_text(json.dumps(meta, indent=2)))

        def write(p: Path) -> None:
            with p.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)

        atomic_write(self.root / "selection.csv", write)
        self.selection = rows
        return best

    def evals_since_best(self) -> int:
        """Evaluations since the last one that set a new best net value (0 if the latest did)."""
        best, since = -np.inf, 0
        for row in self.curve:
            if row["net_value_per_debtor"] > best:
                best, since = row["net_value_per_debtor"], 0
            else:
                since += 1
        return since

    def write_curve(self) -> None:
        if not self.curve:
            return
        keys = list(dict.fromkeys(k for row in self.curve for k in row))  # a run resumed across versions may gain columns

        def write(p: Path) -> None:
            with p.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=keys)
                w.writeheader()
                w.writerows(self.curve)

        atomic_write(self.root / "curve.csv", write)
        plot_learning_curve(self.curve, self.reference_values(), self.root / "learning_curve.png", f"{self.scenario_name}: {self.cfg.algo}")

    # ---- checkpoints
    def checkpoint(self, model: Any) -> Path:
        assert self.env is not None
        steps = int(model.num_timesteps)
        d = self.root / "checkpoints"
        actions = np.stack(self.env.actions_taken) if self.env.actions_taken else np.zeros((0, self.env.num_envs, 4), dtype=np.int8)
        state = {
            "np_state": np.array(np.random.get_state(), dtype=object),
            "torch_state": torch.get_rng_state().numpy(),
            "py_state": np.array(random.getstate(), dtype=object),
            "last_obs": model._last_obs,
            "episode_starts": model._last_episode_starts,
            "ep_return": self.env._ep_return,
            "ep_len": self.env._ep_len,
            "curve": np.array(json.dumps(self.curve)),
            "best": np.array(self.best),
            "candidates": np.array(json.dumps(self.candidates)),
            "baselines": np.array(json.dumps(self.baselines.__dict__ if self.baselines else None)),
        }
        data = model_bytes(model)
        atomic_write(d / f"actions_{steps}.npy", lambda p: np.save(p.open("wb"), actions))
        atomic_write(d / f"state_{steps}.npz", lambda p: np.savez(p.open("wb"), **state))
        atomic_write(d / f"model_{steps}.zip", lambda p: p.write_bytes(data))  # written last: marks the checkpoint complete
        return d / f"model_{steps}.zip"

    def latest_checkpoint(self) -> int | None:
        d = self.root / "checkpoints"
        steps = sorted(int(p.stem.split("_")[1]) for p in d.glob("model_*.zip")) if d.exists() else []
        return steps[-1] if steps else None


def plot_learning_curve(curve: list[dict[str, float]], ref: Baselines, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    xs = [r["timesteps"] for r in curve]
    ax.plot(xs, [r["net_value_per_debtor"] for r in curve], "o-", lw=2, label="learned policy")
    ax.axhline(ref.static_ladder, color="tab:gray", ls="--", label="static_ladder")
    ax.axhline(ref.oracle, color="tab:red", ls=":", label="oracle")
    ax.set(xlabel="timesteps (debtor-days)", ylabel="net value per debtor (EUR), evaluation population", title=title)
    finish_png(fig, ax, path, "lower right")


def _restore(run: Run, model: Any, steps: int) -> None:
    """Bring the model, the world and the RNGs back to checkpoint ``steps``."""
    d = run.root / "checkpoints"
    assert run.env is not None
    actions = np.load(d / f"actions_{steps}.npy")
    st = np.load(d / f"state_{steps}.npz", allow_pickle=True)  # our own training-side file, never served
    obs = run.env.replay(list(actions))
    np.testing.assert_allclose(obs, st["last_obs"], err_msg="replay did not rebuild the checkpointed world")
    run.env._ep_return[:] = st["ep_return"]
    run.env._ep_len[:] = st["ep_len"]
    model._last_obs = st["last_obs"]
    model._last_episode_starts = st["episode_starts"]
    np.random.set_state(tuple(st["np_state"]))
    torch.set_rng_state(torch.from_numpy(st["torch_state"]))
    random.setstate(tuple(st["py_state"]))
    run.curve = json.loads(str(st["curve"]))
    run.clock_start, run.clock_offset = time.perf_counter(), float(run.curve[-1].get("wall_seconds", 0.0)) if run.curve else 0.0
    run.best = float(st["best"])
    run.candidates = [(float(nv), int(steps)) for nv, steps in json.loads(str(st["candidates"]))] if "candidates" in st else []
    b = json.loads(str(st["baselines"]))
    run.baselines = Baselines(**b) if b else None


DEFAULT_ALGO = "maskable_ppo"


def train(
    scenario: str,
    algo: str = DEFAULT_ALGO,
    timesteps: int | None = None,
    seed: int = 0,
    out: str | Path = "runs",
    overrides: list[str] | None = None,
    train_overrides: list[str] | None = None,
    resume: str | Path | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
    on_evaluate: Callable[[dict[str, float]], None] | None = None,
    selecting: Callable[[str], None] | None = None,
) -> Run:
    """Train ``algo`` on ``scenario`` for ``timesteps`` debtor-days (the config's ``timesteps`` when
    not given), or resume a run directory: a resumed run trains to the length it was started with,
    unless ``timesteps`` asks for another (its learning-rate schedule then stretches to it)."""
    overrides = list(overrides or [])
    if resume is not None:
        root = Path(resume)
        saved = read_run_config(root)
        scenario, algo, seed, overrides = saved["scenario"], saved["algo"], int(saved["seed"]), list(saved["scenario_overrides"])
        cfg = TrainConfig.model_validate(saved["training"])
        timesteps = int(saved["timesteps"]) if timesteps is None else timesteps
    else:
        cfg = load_train_config(algo, train_overrides or [])
        timesteps = cfg.timesteps if timesteps is None else timesteps
        root = Run.new_dir(Path(out), Path(scenario).stem, algo, seed)
    load_raw(scenario)  # a clear error for an unknown scenario before anything heavy
    sc = load_scenario(scenario, overrides)
    torch.set_num_threads(cfg.torch_threads)
    run = Run(root, sc, Path(scenario).stem, cfg, seed, overrides)
    run.on_evaluate = on_evaluate
    if resume is None or timesteps != int(saved["timesteps"]):
        run.write_config(timesteps)
    env = DebtorVecEnv(sc, cfg.n_slots, seed=seed, flat_actions=cfg.algo == "dqn", latent=cfg.latent_critic)
    env.record_actions = True
    run.env = env
    tb = str(root / "tb")
    step0 = run.latest_checkpoint() if resume is not None else None
    if step0 is not None:
        model = load_model(cfg.algo, root / "checkpoints" / f"model_{step0}.zip")
        model.set_env(env)
        model.learning_rate = learning_rate(cfg, timesteps)  # the schedule of this length (a resume may ask for another)
        model._setup_lr_schedule()
        model.tensorboard_log = tb
        _restore(run, model, step0)
    else:
        model = make_model(cfg, env, seed, tb, timesteps)
    monitor = TrainingMonitor(run, progress)
    remaining = max(0, timesteps - int(model.num_timesteps))
    if remaining:
        model.learn(remaining, callback=monitor, reset_num_timesteps=step0 is None, tb_log_name="train")
    if run.stopped_early is None:  # a run the patience rule stopped was evaluated a moment ago, by the rule
        run.evaluate(model, model.logger)
    run.select(selecting)
    return run
