"""The wheel: built from the project and installed (not editable) into a fresh environment, it
runs from an empty folder outside the checkout, with its presets and configs inside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHERE = "sim.__file__, configs.config_dir('training'), load_train_config('maskable_ppo').algo"


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    # built from a copy, so the checkout gains no build/ or egg-info (which pip would take for an install)
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "out", "artifacts", "__pycache__", "*.egg-info", "build"))
    dist = tmp_path / "dist"
    plain = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
        env=plain,
    )
    (wheel,) = dist.glob("collectrl-*.whl")
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, capture_output=True, env=plain)
    py = env_dir / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([py, "-c", purelib], check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True, env=plain)
    # the dependencies (numpy, torch, ...) come from the test's own environment, after the wheel's files
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "empty"
    work.mkdir()
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MPLBACKEND": "Agg"}

    def run(*args: str) -> str:
        out = subprocess.run([str(env_dir / "bin" / "collectrl"), *args], cwd=work, env=clean, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    listed = run("scenarios")
    assert all(name in listed for name in ("default", "telecom", "late_stage"))
    kpis = json.loads(run("simulate", "--debtors", "200", "--days", "20", "--json", "--no-progress"))
    assert kpis["debtors"] == 200 and kpis["scenario"] == "default"
    where = subprocess.run(
        [py, "-c", f"import sim, configs; from agents.train import load_train_config; print({WHERE})"],
        cwd=work,
        env=clean,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr
    sim_file, training_dir, algo = where.stdout.split()
    assert str(env_dir) in sim_file and str(env_dir) in training_dir and algo == "maskable_ppo"  # the installed copy, not the checkout
    assert not list(work.iterdir()) or all(p.name != "configs" for p in work.iterdir())
