"""Exporting a policy as a servable artifact: ``model.onnx`` (learned policies) + ``manifest.json``.

The artifact is assembled in a temporary directory beside the target and renamed into place, so a
failed export leaves nothing half-written; an existing artifact is only replaced with
``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import policies
from agents.learned import LearnedPolicy, load_model
from policies.decision import policy_key
from policies.features import FEATURES, N_FEATURES
from policies.runtime import FORMAT_VERSION, MANIFEST, codec_spec, sha256_file
from sim.config import ConfigError, load_scenario
from sim.kpis import portfolio_kpis
from sim.runner import WorldPolicy, run_portfolio

EVAL_SEED = 2000
DECISION_SEED = 0


class _ScoreHead(torch.nn.Module):
    """obs (N, 58) -> scores: the 19 action logits of an actor-critic policy, or DQN's 448 Q-values."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        p = self.policy
        if hasattr(p, "q_net"):
            return p.q_net(obs)
        features = p.extract_features(obs, p.pi_features_extractor)
        return p.action_net(p.mlp_extractor.forward_actor(features))


def _onnx_export(head: torch.nn.Module, path: Path) -> None:
    """Trace the score head with torch's current exporter (``torch.export``, ``dynamo=True``) into one
    self-contained ONNX file with a dynamic batch dimension. An example batch of 2, not 1: a size-1
    dimension would be specialised to a constant."""
    with torch.no_grad():
        program = torch.onnx.export(
            head,
            (torch.zeros(2, N_FEATURES),),
            input_names=["obs"],
            output_names=["scores"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            dynamo=True,
            optimize=True,
            verbose=False,
        )
    if program is None:  # pragma: no cover - the dynamo exporter always returns its program
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("collectrl", "numpy", "torch", "onnxscript", "stable-baselines3", "sb3-contrib", "onnx", "onnxruntime", "gymnasium", "simpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def _eval_kpis(scenario: str, overrides: list[str], policy: Any, debtors: int) -> dict[str, Any]:
    sc = load_scenario(scenario, overrides)
    k = portfolio_kpis(run_portfolio(sc, policy, debtors, EVAL_SEED))
    ref = portfolio_kpis(run_portfolio(sc, policies.make("static_ladder"), debtors, EVAL_SEED))
    return {"scenario": scenario, "debtors": debtors, "seed": EVAL_SEED, "kpis": k, "static_ladder_net_value_per_debtor": ref["net_value_per_debtor"]}


def export(source: str, out: str | Path, scenario: str = "default", eval_debtors: int = 5000, overwrite: bool = False) -> Path:
    """Export a training run directory (its best model) or a registered rule policy to ``out``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; choose another --out or pass --overwrite")
    src = Path(source)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "observation": {"count": N_FEATURES, "features": [{"name": n, "description": d} for n, d in FEATURES]},
        "action_codec": codec_spec(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": _versions(),
    }
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        if src.is_dir():
            cfg_path = src / "config.yaml"
            if not cfg_path.exists() or not (src / "best" / "model.zip").exists():
                raise ConfigError(f"{src} is not a finished training run (needs config.yaml and best/model.zip)")
            cfg = yaml.safe_load(cfg_path.read_text())
            model = load_model(cfg["algo"], src / "best" / "model.zip")
            head = _ScoreHead(model.policy).eval()
            _onnx_export(head, tmp / "model.onnx")
            learned = LearnedPolicy(model, src.name)
            learned.reset(DECISION_SEED)
            sc = load_scenario(cfg["scenario"], cfg.get("scenario_overrides", []))
            manifest |= {
                "policy_id": src.name,
                "kind": "onnx",
                "algo": cfg["algo"],
                "decision_rule": "sample masked logits" if cfg["algo"] != "dqn" else "argmax masked Q-values",
                "decision_key": policy_key(DECISION_SEED),
                "scenario": cfg["scenario"],
                "compliance_profile": sc.compliance_profile,
                "training": {"run": src.name, "timesteps": cfg.get("timesteps"), "seed": cfg.get("seed")},
                "evaluation": _eval_kpis(cfg["scenario"], cfg.get("scenario_overrides", []), learned, eval_debtors),
            }
        else:
            pol = policies.make(source)  # ValueError names the registered ids
            if isinstance(pol, WorldPolicy):
                raise ConfigError(f"{source} needs the simulator's latent state or rewards and cannot be served")
            sc = load_scenario(scenario)
            manifest |= {
                "policy_id": source,
                "policy_version": int(getattr(pol, "version", 1)),
                "kind": "rule",
                "algo": "rule",
                "decision_rule": "rule",
                "seed": 0,
                "scenario": scenario,
                "compliance_profile": sc.compliance_profile,
                "evaluation": _eval_kpis(scenario, [], pol, eval_debtors),
            }
        manifest["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(_clean(manifest), indent=2) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
