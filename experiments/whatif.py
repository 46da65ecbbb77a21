"""What-if experiments: a question, variants of the world, policies to compare, and an answer.

A spec (``configs/experiments/*.yaml``) names a base scenario, variants as dotted overrides
(absolute values, or relative ones: ``"x2"`` doubles the base value, ``"x0.66"`` keeps 66 %),
policies (registry ids, artifact or run directories), seeds, debtors and the KPIs to report.

The grid (variant x policy x seed) runs with common random numbers: a seed gives every cell the
same debtors' random draws, so differences between variants are paired per debtor. Each cell's
result is written (atomically) the moment it completes; running again skips finished cells, and a
cell that failed is reported and retried on the next run.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policies.fileio import atomic_write
from sim.config import ConfigError, apply_override, load_raw
from sim.kpis import KPI_NAMES

EXPERIMENT_DIR = Path(__file__).resolve().parent.parent / "configs" / "experiments"


class TrainArgs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    algo: Literal["maskable_ppo", "ppo", "a2c", "dqn"]
    timesteps: int = Field(ge=1, le=100_000_000)
    overrides: list[str] = Field(default_factory=list, description="training hyperparameter overrides, key=value")


class TrainPolicy(BaseModel):
    """``{train: {algo, timesteps}}``: retrain this learner on every variant."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    train: TrainArgs

    @property
    def label(self) -> str:
        return f"train:{self.train.algo}"


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(min_length=1)
    scenario: str = "default"
    variants: dict[str, dict[str, Any]] = Field(min_length=1, description="name -> dotted overrides; the first is the base")
    policies: list[str | TrainPolicy] = Field(min_length=1, description="registry ids, run or artifact directories, or {train: {algo, timesteps}}")
    seeds: int = Field(default=3, ge=1, le=100)
    debtors: int = Field(default=10_000, ge=10, le=5_000_000)
    kpis: list[str] = Field(default_factory=lambda: ["net_value_per_debtor", "recovery_rate_amount", "contact_cost_per_debtor", "complaint_rate"])

    @field_validator("kpis")
    @classmethod
    def _known_kpis(cls, v: list[str]) -> list[str]:
        unknown = [k for k in v if k not in KPI_NAMES]
        if unknown:
            raise ValueError(f"unknown KPIs {unknown}; allowed: {', '.join(KPI_NAMES)}")
        return v

    @property
    def base(self) -> str:
        return next(iter(self.variants))

    @property
    def policy_labels(self) -> list[str]:
        return [p if isinstance(p, str) else p.label for p in self.policies]

    def trainers(self) -> list[TrainPolicy]:
        return [p for p in self.policies if isinstance(p, TrainPolicy)]


def load_spec(path: str | Path) -> Spec:
    p = Path(path)
    if not p.exists():
        candidate = EXPERIMENT_DIR / f"{path}.yaml"
        if not candidate.exists():
            examples = ", ".join(sorted(q.stem for q in EXPERIMENT_DIR.glob("*.yaml")))
            raise ConfigError(f"experiment spec {path} does not exist (examples: {examples})")
        p = candidate
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        lines = [f"invalid experiment spec {p}:"]
        for err in e.errors():
            lines.append(f"  {'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg'].replace('Value error, ', '')}")
        raise ConfigError("\n".join(lines)) from None
    import policies as _policies

    for pol in spec.policies:  # a registered id, or an existing run / artifact directory
        if isinstance(pol, TrainPolicy):
            continue
        if pol not in _policies.registered() and not Path(pol).is_dir():
            import agents.bandit  # noqa: F401  (registers linear_ts)

            if pol not in _policies.registered():
                raise ConfigError(
                    f"{p}: policies: {pol!r} is neither a registered policy ({', '.join(_policies.registered())}) nor an existing directory"
                )
    for name in spec.variants:  # every variant must make a valid scenario
        try:
            variant_overrides(spec, name)
        except ConfigError as e:
            raise ConfigError(f"{p}: variant {name!r}: {e}") from None
    return spec


def variant_overrides(spec: Spec, name: str) -> list[str]:
    """Dotted ``key=value`` overrides of a variant, relative values (``x2``) resolved against the base."""
    from sim.config import load_scenario

    raw = load_raw(spec.scenario)
    out = []
    for key, value in (spec.variants[name] or {}).items():
        if isinstance(value, str) and value.startswith("x"):
            try:
                factor = float(value[1:])
            except ValueError:
                raise ConfigError(f"{key}: relative value {value!r} must look like x2 or x0.66") from None
            node: Any = raw
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise ConfigError(f"{key}: no such key in scenario {spec.scenario!r}")
                node = node[part]
            if isinstance(node, bool) or not isinstance(node, int | float):
                raise ConfigError(f"{key}: relative value {value!r} needs a number, the base value is {node!r}")
            value = node * factor
        apply_override(raw, key, value)  # raises ConfigError naming an unknown key
        out.append(f"{key}={json.dumps(value)}")
    load_scenario(spec.scenario, out)  # validate the whole variant now, not in a worker
    return out


@dataclass(frozen=True)
class Cell:
    variant: str
    policy: str
    seed: int

    @property
    def key(self) -> str:
        safe = self.policy.replace("/", "_").replace(":", "-")
        return f"{self.variant}__{safe}__{self.seed}"


def cells(spec: Spec) -> list[Cell]:
    return [Cell(v, p, s) for v in spec.variants for p in spec.policy_labels for s in range(spec.seeds)]


def trained_run(out: Path, variant: str, algo: str) -> Path | None:
    """The finished training run of ``algo`` on ``variant`` in this experiment, if any."""
    runs = sorted((out / "train" / f"{variant}__{algo}").glob("*/best/model.zip"))
    return runs[-1].parent.parent if runs else None


def train_variants(spec: Spec, out: Path, log: Callable[[str], None] = lambda _m: None) -> None:
    """Train each ``train:`` learner once per variant (reused when the experiment runs again)."""
    from agents.train import train

    for tp in spec.trainers():
        for v in spec.variants:
            if trained_run(out, v, tp.train.algo) is None:
                log(f"training {tp.train.algo} on variant {v} for {tp.train.timesteps:,} debtor-days")
                train(
                    spec.scenario,
                    tp.train.algo,
                    tp.train.timesteps,
                    0,
                    out / "train" / f"{v}__{tp.train.algo}",
                    variant_overrides(spec, v),
                    list(tp.train.overrides),
                )


def compute_cell(spec_json: str, cell: Cell, out_dir: str = ".") -> tuple[dict[str, Any], np.ndarray]:
    """Simulate one cell: its result (KPIs, recovery curve) and per-debtor net values."""
    from experiments.cli import _policy
    from sim.config import load_scenario
    from sim.kpis import portfolio_kpis, recovery_curve
    from sim.runner import run_portfolio
    from sim.world import Status

    spec = Spec.model_validate_json(spec_json)
    sc = load_scenario(spec.scenario, variant_overrides(spec, cell.variant))
    policy_ref = cell.policy
    if policy_ref.startswith("train:"):
        run = trained_run(Path(out_dir), cell.variant, policy_ref.split(":", 1)[1])
        if run is None:
            raise RuntimeError(f"no trained {policy_ref} for variant {cell.variant}; the experiment trains it before the grid")
        policy_ref = str(run)
    world = run_portfolio(sc, _policy(policy_ref), spec.debtors, cell.seed)
    result = {"cell": cell.__dict__, "kpis": portfolio_kpis(world), "curve": recovery_curve(world).tolist()}
    return result, world.net_value[world.status != Status.WAITING].astype(np.float64)


def write_cell(out_dir: str | Path, cell: Cell, result: dict[str, Any], net: np.ndarray) -> None:
    d = Path(out_dir) / "cells"
    atomic_write(d / f"{cell.key}.npy", lambda p: np.save(p.open("wb"), net))
    atomic_write(d / f"{cell.key}.json", lambda p: p.write_text(json.dumps(result, allow_nan=True)))  # last: marks the cell done
    (d / f"{cell.key}.error.txt").unlink(missing_ok=True)


def run_cell(spec_json: str, cell: Cell, out_dir: str) -> str:
    """Run one cell (in a worker process) and write its result; returns the cell key."""
    result, net = compute_cell(spec_json, cell, out_dir)
    write_cell(out_dir, cell, result, net)
    return cell.key


def run_experiment(
    spec: Spec,
    out: Path,
    workers: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the missing cells of the grid; returns counts and the cells that failed."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "spec.json", lambda p: p.write_text(spec.model_dump_json(indent=2)))
    (out / "cells").mkdir(exist_ok=True)
    train_variants(spec, out)
    todo = [c for c in cells(spec) if not (out / "cells" / f"{c.key}.json").exists()]
    total = len(cells(spec))
    done = total - len(todo)
    failed: dict[str, str] = {}
    spec_json = spec.model_dump_json()
    if progress:
        progress(done, total)

    def record_failure(c: Cell, err: str) -> None:
        failed[c.key] = err
        atomic_write(out / "cells" / f"{c.key}.error.txt", lambda p: p.write_text(err))

    if backend == "ray":
        for c, err in _run_on_ray(spec_json, todo, out, workers, ray_address):
            if err:
                record_failure(c, err)
            done += 1
            if progress:
                progress(done, total)
    elif backend != "local":
        raise ValueError(f"unknown backend {backend!r}; choose local or ray")
    elif workers <= 1:
        for c in todo:
            try:
                run_cell(spec_json, c, str(out))
            except Exception:
                record_failure(c, traceback.format_exc())
            done += 1
            if progress:
                progress(done, total)
    else:
        from concurrent.futures.process import BrokenProcessPool

        broken: list[Cell] = []
        with ProcessPoolExecutor(max_workers=workers) as pool:
            pending = {pool.submit(run_cell, spec_json, c, str(out)): c for c in todo}
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    c = pending.pop(f)
                    try:
                        f.result()
                    except BrokenProcessPool:
                        broken.append(c)  # a worker process died: this cell, or one running beside it
                        continue
                    except Exception as e:  # the cell raised: reported; the other cells go on
                        record_failure(c, f"{type(e).__name__}: {e}")
                    done += 1
                    if progress:
                        progress(done, total)
        # cells caught in a dead pool run again, each alone in its own process: only a cell that
        # kills its worker by itself is reported (and retried on the next run)
        for c in broken:
            with ProcessPoolExecutor(max_workers=1) as solo:
                try:
                    solo.submit(run_cell, spec_json, c, str(out)).result()
                except BrokenProcessPool:
                    record_failure(c, "the worker process died while running this cell")
                except Exception as e:
                    record_failure(c, f"{type(e).__name__}: {e}")
            done += 1
            if progress:
                progress(done, total)
    return {"cells": total, "ran": len(todo) - len(failed), "skipped": total - len(todo), "failed": failed, "time": time.time()}


def _run_on_ray(spec_json: str, todo: list[Cell], out: Path, workers: int, address: str | None) -> Any:
    """Yield (cell, error or None) as cells finish on Ray. Workers compute; the driver writes the
    files, so a cluster needs no shared filesystem. Joins ``address`` or starts a local Ray."""
    import ray

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            started = True
    try:
        remote = ray.remote(compute_cell)
        refs = {remote.remote(spec_json, c, str(out)): c for c in todo}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for r in ready:
                c = refs.pop(r)
                try:
                    result, net = ray.get(r)
                    write_cell(out, c, result, net)
                    yield c, None
                except Exception as e:  # a task or worker that dies is reported; the rest go on
                    yield c, f"{type(e).__name__}: {e}"
    finally:
        if started:
            ray.shutdown()


def load_results(out: Path) -> tuple[Spec, dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    spec = Spec.model_validate_json((out / "spec.json").read_text())
    res, nets = {}, {}
    for c in cells(spec):
        f = out / "cells" / f"{c.key}.json"
        if f.exists():
            res[c.key] = json.loads(f.read_text())
            nets[c.key] = np.load(out / "cells" / f"{c.key}.npy")
    return spec, res, nets
