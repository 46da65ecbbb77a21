"""The action codec: channel x window x tone x offer, one encoding and one decoding.

An action is a row ``[channel, window, tone, offer]`` of ints (a gymnasium ``MultiDiscrete``
sample). A flat index in ``range(N_ACTIONS)`` encodes the same action for algorithms that need
one discrete space (DQN, bandits). Waiting ignores window, tone and offer; its canonical form is
``[0, 0, 0, 0]``.

>>> encode_flat(np.array([[1, 2, 0, 3]]))
array([43])
>>> decode_flat(np.array([43])).tolist()
[[1, 2, 0, 3]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from policies.schema import (
    ACTION_DIMS,
    CHANNEL_NAMES,
    OFFER_NAMES,
    TONE_NAMES,
    WINDOW_HOURS,
    WINDOW_NAMES,
    Channel,
)

N_ACTIONS = int(np.prod(ACTION_DIMS))
_STRIDES = np.array([ACTION_DIMS[1] * ACTION_DIMS[2] * ACTION_DIMS[3], ACTION_DIMS[2] * ACTION_DIMS[3], ACTION_DIMS[3], 1])


def canonical(actions: np.ndarray) -> np.ndarray:
    """Actions with the ignored dimensions of ``wait`` set to zero (copy)."""
    a = np.array(actions, dtype=np.int64, copy=True).reshape(-1, 4)
    a[a[:, 0] == Channel.WAIT, 1:] = 0
    return a


def encode_flat(actions: np.ndarray) -> np.ndarray:
    """(N, 4) actions -> (N,) flat indices."""
    a = np.asarray(actions, dtype=np.int64).reshape(-1, 4)
    return a @ _STRIDES


def flat_index(action: Sequence[int]) -> int:
    """One action's flat index, :func:`encode_flat` in plain Python (for the one-account path)."""
    c, w, t, o = action
    return ((c * ACTION_DIMS[1] + w) * ACTION_DIMS[2] + t) * ACTION_DIMS[3] + o


def decode_flat(index: np.ndarray) -> np.ndarray:
    """(N,) flat indices -> (N, 4) actions."""
    i = np.asarray(index, dtype=np.int64).reshape(-1)
    if i.size and (i.min() < 0 or i.max() >= N_ACTIONS):
        raise ValueError(f"flat action index out of range 0..{N_ACTIONS - 1}")
    out = np.empty((i.size, 4), dtype=np.int64)
    rem = i
    for k in range(4):
        out[:, k], rem = np.divmod(rem, _STRIDES[k])
    return out


ACTION_COLUMNS = ("channel", "window", "tone", "offer")


def validate(actions: np.ndarray) -> np.ndarray:
    """Check shape, integrality and ranges; return the actions as an (N, 4) int64 array."""
    a = np.asarray(actions)
    if a.ndim == 1 and a.shape[0] == 4:
        a = a.reshape(1, 4)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"actions must have shape (N, 4) [channel, window, tone, offer], got {a.shape}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError("actions must be whole numbers [channel, window, tone, offer]")
    elif a.dtype.kind not in "iub":
        raise ValueError(f"actions must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    for k, n in enumerate(ACTION_DIMS):
        col = a[:, k]
        if col.size and (col.min() < 0 or col.max() >= n):
            raise ValueError(f"action column {k} ({ACTION_COLUMNS[k]}) must be in 0..{n - 1}")
    return a


@dataclass(frozen=True)
class Action:
    """A decoded action with names, for people and JSON."""

    channel: str
    window: str
    window_start: str
    window_end: str
    tone: str
    offer: str

    @classmethod
    def from_row(cls, row: np.ndarray) -> Action:
        c, w, t, o = (int(x) for x in row)
        if c == Channel.WAIT:
            return cls("wait", "", "", "", "", "")
        start, end = WINDOW_HOURS[w]
        return cls(CHANNEL_NAMES[c], WINDOW_NAMES[w], f"{start:02d}:00", f"{end:02d}:00", TONE_NAMES[t], OFFER_NAMES[o])
