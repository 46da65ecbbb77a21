"""Atomic file writing: a half-written result never replaces a good one."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from policies.fileio import atomic_write

__all__ = ["atomic_write", "clean_json", "write_json"]


def clean_json(obj: Any) -> Any:
    """NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write(path, lambda p: p.write_text(json.dumps(clean_json(obj), indent=2) + "\n"))
