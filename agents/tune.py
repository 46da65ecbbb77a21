"""Hyperparameter tuning with Optuna; the study lives in SQLite in its directory, so it resumes.

Each trial trains the algorithm on the scenario for ``timesteps_per_trial`` debtor-days with
sampled hyperparameters and reports the evaluation net value per debtor (the same CRN evaluation
population as training runs) after every evaluation; unpromising trials are pruned (median rule).
The best parameters are written to ``best_params.yaml`` in the study directory, in the format of
``configs/training/{algo}.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from agents.train import load_train_config, train
from configs import config_dir
from policies.fileio import atomic_write


def sample_params(trial: Any, algo: str) -> list[str]:
    """Training overrides (``key=value``) for one trial."""
    p = {
        "learning_rate": trial.suggest_float("learning_rate", 5e-5, 2e-3, log=True),
        "gamma": trial.suggest_categorical("gamma", [0.99, 0.995, 0.998, 0.999]),
        "net_arch": trial.suggest_categorical("net_arch", ["64,64", "128,128", "256,256"]),
        "n_slots": trial.suggest_categorical("n_slots", [128, 256, 512]),
    }
    if algo in ("maskable_ppo", "ppo", "a2c"):
        p["ent_coef"] = trial.suggest_float("ent_coef", 1e-4, 5e-2, log=True)
        p["n_steps"] = trial.suggest_categorical("n_steps", [8, 16, 32, 64])
        p["gae_lambda"] = trial.suggest_categorical("gae_lambda", [0.9, 0.95, 0.97, 0.98])
        # a linear decay to a tenth of the starting rate, or a constant rate (whatever the base config says)
        decay = trial.suggest_categorical("lr_decay", [False, True])
        p["learning_rate_final"] = p["learning_rate"] / 10 if decay else None
    if algo in ("maskable_ppo", "ppo"):
        p["n_epochs"] = trial.suggest_int("n_epochs", 3, 10)
        p["batch_size"] = trial.suggest_categorical("batch_size", [1024, 2048, 4096])
        p["clip_range"] = trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3])
    if algo == "dqn":
        p["batch_size"] = trial.suggest_categorical("batch_size", [128, 256, 512])
        p["exploration_fraction"] = trial.suggest_float("exploration_fraction", 0.05, 0.5)
    out = []
    for k, v in p.items():
        out.append(f"net_arch=[{v}]" if k == "net_arch" else f"{k}={'null' if v is None else v}")
    return out


def tune(
    scenario: str,
    algo: str,
    trials: int,
    timesteps_per_trial: int,
    out: Path,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    import optuna

    load_train_config(algo)  # unknown algorithm -> clear error
    study_dir = out / f"{Path(scenario).stem}__{algo}__tune"
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{study_dir / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"{scenario}-{algo}",
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
    )
    done = len([t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)])
    # a resumed study must not replay the sampler's first draws: seed it past the trials already run
    study.sampler = optuna.samplers.TPESampler(seed=seed + done)
    if done:
        log(f"resuming study {study_dir} ({done} trials done)")

    def objective(trial: Any) -> float:
        overrides = sample_params(trial, algo)
        every = max(timesteps_per_trial // 4, 1)
        evals: list[float] = []

        def report(row: dict[str, float]) -> None:
            evals.append(row["net_value_per_debtor"])
            trial.report(evals[-1], len(evals))
            if trial.should_prune():
                raise optuna.TrialPruned()

        log(f"trial {trial.number}: {' '.join(overrides)}")
        train(
            scenario,
            algo,
            timesteps_per_trial,
            seed,
            study_dir / "runs",
            train_overrides=[*overrides, f"eval_every_steps={every}", f"checkpoint_every_steps={timesteps_per_trial * 10}"],
            on_evaluate=report,
        )
        return max(evals)

    remaining = max(0, trials - done)
    if remaining:
        study.optimize(objective, n_trials=remaining)
    best = study.best_trial
    cfg = yaml.safe_load((config_dir("training") / f"{algo}.yaml").read_text())
    for text in sample_params(optuna.trial.FixedTrial(best.params), algo):
        key, value = text.split("=", 1)
        cfg[key] = yaml.safe_load(value)
    atomic_write(
        study_dir / "best_params.yaml",
        lambda p: p.write_text(
            f"# best of {len(study.trials)} trials, value {best.value:.2f} EUR per debtor\n" + yaml.safe_dump(cfg, sort_keys=False)
        ),
    )
    return {"study": str(study_dir), "trials": len(study.trials), "best_value": best.value, "best_params": best.params}
