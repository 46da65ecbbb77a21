"""Seeded randomness with common random numbers.

A run has one ``SeedSequence``. From it we derive

* a 64-bit key for the *behaviour* stream: the uniform a debtor draws for a given purpose on a given
  day is a hash of (key, debtor id, day, purpose). So two policies run on the same seed face the same
  luck whatever they do, and no per-debtor ``Generator`` has to be built (a million would cost
  seconds). The hash is SplitMix64's finaliser, vectorised in numpy.
* ``numpy.random.Generator`` streams for everything drawn in bulk (the population, in blocks of
  ``BLOCK`` debtors, so debtor ``j`` is the same in a portfolio of any size).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from policies.hashing import GOLDEN, mix, mix_scalar, to_unit, unit_scalar

BLOCK = 4096


class Stream(IntEnum):
    """Independent purposes; each gets its own child of the run's SeedSequence."""

    POPULATION = 1
    BEHAVIOUR = 2
    HANDLE_TIME = 3


class Draw(IntEnum):
    """Purposes of behaviour uniforms within one debtor-day."""

    DELIVER = 0
    NOTICE = 1
    ENGAGE = 2
    OUTCOME = 3
    AMOUNT = 4
    COMPLAINT = 5
    OPT_OUT = 6
    DISCLOSE = 7
    KEEP = 8
    SPONTANEOUS = 9
    SPONTANEOUS_AMOUNT = 10
    CHURN = 11
    PROMISE_DAYS = 12
    HANDLE = 13


def stream_key(seed: int, stream: Stream) -> int:
    """A 64-bit key for a stream of a run."""
    state = np.random.SeedSequence(entropy=seed, spawn_key=(int(stream),)).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 32) | int(state[1])


_SALT = 0x5DEECE66D


def uniforms(key: int, ids: np.ndarray, day: int, purpose: int, channel: int = 0) -> np.ndarray:
    """Uniforms in [0, 1) for debtors ``ids`` (uint64) on ``day`` for ``purpose``; float64, same shape."""
    k = mix_scalar(key ^ mix_scalar((day << 24) ^ (purpose << 8) ^ channel ^ _SALT))
    if ids.size <= _SCALAR_MAX and ids.ndim == 1:  # a few debtors: Python ints beat numpy's per-call cost
        return np.array([unit_scalar(i * _GOLDEN + k) for i in ids.tolist()], dtype=np.float64)
    z = ids.astype(np.uint64, copy=False) * GOLDEN + np.uint64(k)
    return to_unit(mix(z))


_SCALAR_MAX = 8
_GOLDEN = int(GOLDEN)


def draw_keys(key: int, days: np.ndarray, purpose: int, channel: int = 0) -> np.ndarray:
    """The key :func:`uniforms` mixes each debtor id with, for each of ``days`` (uint64 array): a
    debtor's uniform on day ``d`` is ``to_unit(mix(id * GOLDEN + draw_keys(...)[d]))``."""
    z = (days.astype(np.uint64) << np.uint64(24)) ^ np.uint64((purpose << 8) ^ channel ^ _SALT)
    return mix(mix(z) ^ np.uint64(key))


def block_rng(seed: int, stream: Stream, block: int) -> np.random.Generator:
    """The Generator of block ``block`` of a stream (e.g. debtors ``block*BLOCK .. +BLOCK``)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy=seed, spawn_key=(int(stream), block))))
