"""The shipped configuration files: scenario presets (``scenarios/``), training configs
(``training/``) and example experiment specs (``experiments/``). They are package data, so an
installed collectrl finds them wherever it runs; :func:`config_dir` is the one way to reach them."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

KINDS = ("scenarios", "training", "experiments")


def config_dir(kind: str) -> Path:
    """The folder of the shipped configs of ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown config kind {kind!r}; one of {', '.join(KINDS)}")
    # installed as plain files (a wheel is unpacked, never imported from a zip), so a real path
    return Path(str(files(__name__) / kind))
