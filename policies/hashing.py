"""Counter-based hashing (SplitMix64's finaliser, vectorised): uniforms from keys, no RNG state.

The simulator uses it for common random numbers; the random policy keys its choices on the view,
so a batch gives the same actions as one view at a time.
"""

from __future__ import annotations

import hashlib
import operator
import struct
from typing import Any

import msgspec
import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


def mix_scalar(z: int) -> int:
    """SplitMix64 finaliser of one Python int."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def unit_scalar(z: int) -> float:
    """``to_unit_scalar(mix_scalar(z))`` in one call: a uniform in [0, 1) from one Python int (the hot
    path of the one-debtor engine's draws)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return ((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0)


def mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of a uint64 array (in place; returns it)."""
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def to_unit(z: np.ndarray) -> np.ndarray:
    """uint64 -> float64 uniforms in [0, 1)."""
    return (z >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)


def row_keys(*columns: np.ndarray) -> np.ndarray:
    """One uint64 key per row from numeric columns (each (N,) or (N, k)): the rows' 64-bit patterns
    weighted by fixed odd multipliers and summed (wrapping), then mixed."""
    n = len(columns[0])
    cols = [col for c in columns for col in np.asarray(c, dtype=np.float64).reshape(n, -1).T]
    weights = _weights(len(cols))
    total = np.zeros(n, dtype=np.uint64)
    for col, w in zip(cols, weights, strict=True):  # column by column: sums of uint64 wrap, in any order
        total += np.ascontiguousarray(col).view(np.uint64) * w
    return mix(total)


def row_key_scalar(values: list[float]) -> int:
    """:func:`row_keys` of one row given as a flat list of its numbers (same order, same key)."""
    k = len(values)
    layout = _ROW_LAYOUTS.get(k)
    if layout is None:  # the structs compiled once per row length: a third of the call otherwise
        layout = _ROW_LAYOUTS[k] = (struct.Struct(f"={k}d"), struct.Struct(f"={k}Q"), _weights(k).tolist())
    as_float, as_bits, w = layout
    return mix_scalar(sum(map(operator.mul, as_bits.unpack(as_float.pack(*values)), w)))


def to_unit_scalar(z: int) -> float:
    """:func:`to_unit` of one Python int."""
    return (z >> 11) * (1.0 / 9007199254740992.0)


_WEIGHTS: dict[int, np.ndarray] = {}
_ROW_LAYOUTS: dict[int, tuple[struct.Struct, struct.Struct, list[int]]] = {}


def _weights(k: int) -> np.ndarray:
    w = _WEIGHTS.get(k)
    if w is None:
        w = np.array([mix_scalar(0xC011EC7 + j) | 1 for j in range(k)], dtype=np.uint64)
        _WEIGHTS[k] = w
    return w


_SORTED_JSON = msgspec.json.Encoder(order="sorted").encode


def view_hash(view: dict[str, Any]) -> str:
    """A digest of a validated view (defaults filled in, account id left out): the same account
    state gives the same hash however the request spelled it (logged with every served decision).
    The first 16 hex digits of the SHA-256 of the view as compact JSON with sorted keys (msgspec's
    encoding: 4x faster than ``json.dumps``, which spells small floats differently)."""
    return hashlib.sha256(_SORTED_JSON(view)).hexdigest()[:16]
