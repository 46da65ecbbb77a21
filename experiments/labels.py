"""Short policy labels for tables, legends, axes and file names; the full id goes in a footnote.

A registered policy is labelled by its id. A training run directory (``{scenario}__{algo}__{seed}__{time}``)
by its algorithm and start time, e.g. ``maskable_ppo@0314-1530`` (``-s1`` added for a seed other than 0);
an exported artifact by its manifest's policy id, shortened the same way. A label set by hand (a
spec's ``label:``) wins. Labels are file-name safe, and two policies may not share one.

>>> derive_label("static_ladder")
'static_ladder'
>>> derive_label("runs/default__maskable_ppo__0__20260314-153012")
'maskable_ppo@0314-1530'
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

MAX_LABEL = 32
LABEL_RE = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.@+-]{{0,{MAX_LABEL - 1}}}$")
LABEL_RULE = f"1-{MAX_LABEL} characters: letters, digits and _ . @ + -, starting with a letter or digit"
_RUN_NAME = re.compile(r"^(?P<scenario>.+)__(?P<algo>[A-Za-z0-9_]+)__(?P<seed>\d+)__(?P<date>\d{8})-(?P<time>\d{6})$")


def check_label(label: str) -> str:
    """``label`` if it is a valid label, else ValueError naming the rule."""
    if not LABEL_RE.match(label):
        raise ValueError(f"label {label!r} is not valid: {LABEL_RULE}")
    return label


def _shorten(name: str) -> str:
    m = _RUN_NAME.match(name)
    if m:
        seed = "" if m["seed"] == "0" else f"-s{m['seed']}"
        return f"{m['algo']}{seed}@{m['date'][4:]}-{m['time'][:4]}"
    safe = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", name).strip("_.@+-") or "policy"
    return safe[:MAX_LABEL]


def derive_label(ref: str) -> str:
    """The short label of a policy reference: a registry id, a run directory or an artifact directory."""
    path = Path(ref)
    manifest = path / "manifest.json"
    if path.is_dir() and manifest.exists():
        try:
            return _shorten(str(json.loads(manifest.read_text())["policy_id"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable manifest: the loader reports it; the directory name labels it meanwhile
    return _shorten(path.name if path.is_dir() else ref)


def assign_labels(refs: Sequence[str], given: Sequence[str | None] | None = None) -> list[str]:
    """One label per reference: the given one where set, else derived. ValueError if two collide."""
    given = list(given) if given is not None else [None] * len(refs)
    labels = [check_label(g) if g else derive_label(r) for r, g in zip(refs, given, strict=True)]
    seen: dict[str, str] = {}
    for ref, label in zip(refs, labels, strict=True):
        if label in seen:
            if seen[label] == ref:
                raise ValueError(f"policy {ref!r} is listed twice under the label {label!r}; give each its own label")
            raise ValueError(f"policies {seen[label]!r} and {ref!r} would both be labelled {label!r}; give one of them its own label")
        seen[label] = ref
    return labels
