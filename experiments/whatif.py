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

import functools
import json
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from configs import config_dir
from experiments.evaluate import kpis_by_batch
from experiments.labels import LABEL_RE, LABEL_RULE, assign_labels
from experiments.resolve import resolve_policy
from policies.base import registered
from policies.fileio import atomic_write
from sim.config import ConfigError, apply_override, load_raw, load_scenario
from sim.kpis import KPI_NAMES, portfolio_kpis, recovery_curve
from sim.runner import run_portfolio
from sim.world import Status

EXPERIMENT_DIR = config_dir("experiments")


class TrainArgs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    algo: Literal["maskable_ppo", "ppo", "a2c", "dqn"]
    timesteps: int = Field(ge=1, le=100_000_000)
    overrides: list[str] = Field(default_factory=list, description="training hyperparameter overrides, key=value")


class TrainPolicy(BaseModel):
    """``{train: {algo, timesteps}, label: ...}``: retrain this learner on every variant."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    train: TrainArgs
    label: str | None = Field(default=None, description="short name in tables and figures (default: the algorithm)")

    @property
    def ref(self) -> str:
        return f"train:{self.train.algo}"

    def describe(self) -> str:
        return f"{self.train.algo} retrained on each variant for {self.train.timesteps:,} debtor-days"


class NamedPolicy(BaseModel):
    """``{policy: ID_OR_DIRECTORY, label: SHORT}``: a policy with a label of your choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    policy: str = Field(min_length=1)
    label: str | None = None

    @property
    def ref(self) -> str:
        return self.policy

    def describe(self) -> str:
        return self.policy


def _policy_kind(v: Any) -> str:
    """Which form a policy entry takes, so a mistake is reported against that form only."""
    if isinstance(v, dict):
        return "train" if "train" in v else "named"
    return "train" if isinstance(v, TrainPolicy) else "named" if isinstance(v, NamedPolicy) else "id"


PolicyEntry = Annotated[
    Annotated[str, Tag("id")] | Annotated[NamedPolicy, Tag("named")] | Annotated[TrainPolicy, Tag("train")], Discriminator(_policy_kind)
]


def _entry(p: PolicyEntry) -> NamedPolicy | TrainPolicy:
    return NamedPolicy(policy=p) if isinstance(p, str) else p


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(min_length=1)
    scenario: str = "default"
    variants: dict[str, dict[str, Any]] = Field(min_length=1, description="name -> dotted overrides; the first is the base")
    policies: list[PolicyEntry] = Field(
        min_length=1, description="registry ids, run or artifact directories, {policy: ..., label: ...}, or {train: {algo, timesteps}, label: ...}"
    )
    seeds: int = Field(default=3, ge=1, le=100)
    debtors: int = Field(default=10_000, ge=10, le=5_000_000)
    kpis: list[str] = Field(default_factory=lambda: ["net_value_per_debtor", "recovery_rate_amount", "contact_cost_per_debtor", "complaint_rate"])

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in v:  # names go into file names and table cells
            if not LABEL_RE.match(name):
                raise ValueError(f"variant name {name!r} is not valid: {LABEL_RULE}")
        return v

    @field_validator("kpis")
    @classmethod
    def _known_kpis(cls, v: list[str]) -> list[str]:
        unknown = [k for k in v if k not in KPI_NAMES]
        if unknown:
            raise ValueError(f"unknown KPIs {unknown}; allowed: {', '.join(KPI_NAMES)}")
        return v

    @model_validator(mode="after")
    def _labels_are_distinct(self) -> Spec:
        try:
            self.policy_labels  # noqa: B018  (raises ValueError naming the two policies that collide)
        except ValueError as e:
            raise ValueError(f"policies: {e}") from None
        return self

    @property
    def base(self) -> str:
        return next(iter(self.variants))

    @property
    def entries(self) -> list[NamedPolicy | TrainPolicy]:
        return [_entry(p) for p in self.policies]

    @property
    def policy_labels(self) -> list[str]:
        """One short label per policy: given in the spec, or derived (``experiments.labels``)."""
        entries = self.entries
        given = [e.label if e.label else (e.train.algo if isinstance(e, TrainPolicy) else None) for e in entries]
        return assign_labels([e.ref for e in entries], given)

    def entry(self, label: str) -> NamedPolicy | TrainPolicy:
        return dict(zip(self.policy_labels, self.entries, strict=True))[label]

    def with_labels(self) -> Spec:
        """The same spec with every policy's label written out (so the experiment directory keeps them)."""
        entries = [e.model_copy(update={"label": label}) for e, label in zip(self.entries, self.policy_labels, strict=True)]
        return self.model_copy(update={"policies": entries})

    def trainers(self) -> list[tuple[str, TrainPolicy]]:
        return [(label, e) for label, e in zip(self.policy_labels, self.entries, strict=True) if isinstance(e, TrainPolicy)]


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
            where = ".".join(map(str, err["loc"]))
            lines.append(f"  {where + ': ' if where else ''}{err['msg'].replace('Value error, ', '')}")
        raise ConfigError("\n".join(lines)) from None
    for label, entry in zip(spec.policy_labels, spec.entries, strict=True):  # a registered id, an existing directory, or a valid training
        if isinstance(entry, TrainPolicy):
            from agents.train import load_train_config

            try:
                load_train_config(entry.train.algo, entry.train.overrides)
            except ConfigError as e:
                raise ConfigError(f"{p}: policies: {label}: {e}") from None
            continue
        pol = entry.policy
        if pol not in registered() and not Path(pol).is_dir():
            raise ConfigError(f"{p}: policies: {pol!r} is neither a registered policy ({', '.join(registered())}) nor an existing directory")
    for name in spec.variants:  # every variant must make a valid scenario
        try:
            variant_overrides(spec, name)
        except ConfigError as e:
            raise ConfigError(f"{p}: variant {name!r}: {e}") from None
    return spec.with_labels()


def variant_overrides(spec: Spec, name: str) -> list[str]:
    """Dotted ``key=value`` overrides of a variant, relative values (``x2``) resolved against the base."""

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


CELL_FORMAT = 2  # cells of an older format (no debtor batches) are run again


@dataclass(frozen=True)
class Cell:
    variant: str
    policy: str  # the policy's label
    seed: int

    @property
    def key(self) -> str:
        return f"{self.variant}__{self.policy}__{self.seed}"


def cells(spec: Spec) -> list[Cell]:
    return [Cell(v, p, s) for v in spec.variants for p in spec.policy_labels for s in range(spec.seeds)]


@functools.lru_cache(maxsize=64)
def _training_of(spec_json: str, variant: str, label: str) -> tuple[Any, Any]:
    """The resolved scenario of ``variant`` and the training config of the learner ``label``."""
    from agents.train import load_train_config

    spec = Spec.model_validate_json(spec_json)
    tp = spec.entry(label)
    assert isinstance(tp, TrainPolicy)
    return load_scenario(spec.scenario, variant_overrides(spec, variant)), load_train_config(tp.train.algo, list(tp.train.overrides))


def trained_run(spec: Spec, out: Path, variant: str, label: str) -> Path | None:
    """The newest finished training run of the learner ``label`` on ``variant`` that was trained as the
    experiment now says (its length, config and world: :func:`agents.train.why_not_reusable`)."""
    from agents.train import why_not_reusable

    tp = spec.entry(label)
    assert isinstance(tp, TrainPolicy)
    world, cfg = _training_of(spec.model_dump_json(), variant, label)
    for model in sorted((out / "train" / f"{variant}__{label}").glob("*/best/model.zip"), reverse=True):
        run = model.parent.parent
        if why_not_reusable(run, world, cfg, tp.train.timesteps) is None:
            return run
    return None


def train_one(spec_json: str, out: str, variant: str, label: str) -> str:
    """Train the learner ``label`` on ``variant`` (in a worker process); returns its run directory."""
    from agents.train import train

    spec = Spec.model_validate_json(spec_json)
    tp = spec.entry(label)
    assert isinstance(tp, TrainPolicy)
    dest = Path(out) / "train" / f"{variant}__{label}"
    run = train(spec.scenario, tp.train.algo, tp.train.timesteps, 0, dest, variant_overrides(spec, variant), list(tp.train.overrides))
    return str(run.root)


def train_variants(spec: Spec, out: Path, workers: int = 1, log: Callable[[str], None] = lambda _m: None) -> None:
    """Train each ``train:`` learner once per variant (reused when the experiment runs again).

    Each training uses one core (its torch threads are 1), so ``workers`` of them run side by side."""
    todo = [(v, label) for label, tp in spec.trainers() for v in spec.variants if trained_run(spec, out, v, label) is None]
    for v, label in todo:
        tp = spec.entry(label)
        assert isinstance(tp, TrainPolicy)
        log(f"training {label} ({tp.train.algo}) on variant {v} for {tp.train.timesteps:,} debtor-days")
    spec_json = spec.model_dump_json()
    if workers <= 1 or len(todo) <= 1:
        for v, label in todo:
            train_one(spec_json, str(out), v, label)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
        for f in [pool.submit(train_one, spec_json, str(out), v, label) for v, label in todo]:
            f.result()  # a training that fails stops the experiment before the grid, with its error


def policy_source(spec: Spec, cell: Cell, out: Path) -> str | None:
    """What the cell's policy label stands for: the registry id or directory, or the learner trained on its variant."""
    entry = spec.entry(cell.policy)
    if isinstance(entry, TrainPolicy):
        run = trained_run(spec, out, cell.variant, cell.policy)
        return None if run is None else str(run)
    return entry.policy


def cell_is_current(spec: Spec, cell: Cell, out: Path) -> bool:
    """The cell's result exists, in the current format, for the policy its label stands for now."""
    f = out / "cells" / f"{cell.key}.json"
    if not f.exists():
        return False
    try:
        result = json.loads(f.read_text())
    except ValueError:
        return False
    return bool(result.get("format") == CELL_FORMAT and result.get("policy") == policy_source(spec, cell, out))


def compute_cell(spec_json: str, cell: Cell, out_dir: str = ".") -> tuple[dict[str, Any], np.ndarray]:
    """Simulate one cell: its result (KPIs of the run and of each debtor batch, recovery curve) and per-debtor net values."""

    spec = Spec.model_validate_json(spec_json)
    sc = load_scenario(spec.scenario, variant_overrides(spec, cell.variant))
    policy_ref = policy_source(spec, cell, Path(out_dir))
    if policy_ref is None:
        raise RuntimeError(f"no trained {cell.policy} for variant {cell.variant}; the experiment trains it before the grid")
    world = run_portfolio(sc, resolve_policy(policy_ref), spec.debtors, cell.seed)
    result = {
        "format": CELL_FORMAT,
        "cell": cell.__dict__,
        "policy": policy_ref,
        "kpis": portfolio_kpis(world),
        "batches": kpis_by_batch(world),
        "curve": recovery_curve(world).tolist(),
    }
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
    train_variants(spec, out, workers)
    todo = [c for c in cells(spec) if not cell_is_current(spec, c, out)]
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


def load_results(out: Path) -> tuple[Spec, dict[str, dict[str, Any]]]:
    """The spec and the current cells' results by cell key (a cell that is missing or out of date is left out)."""
    spec = Spec.model_validate_json((out / "spec.json").read_text())
    res = {}
    for c in cells(spec):
        if cell_is_current(spec, c, out):
            res[c.key] = json.loads((out / "cells" / f"{c.key}.json").read_text())
    return spec, res
