"""The declared debtor state (sim.state): what is derived from the declaration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from policies.schema import NEVER_DAYS, ViewBatch
from sim import load_scenario
from sim.state import VIEW_COLUMNS, DebtorState, Status
from sim.world import World


def test_allocation_follows_the_declaration():
    s = DebtorState.allocate(5)
    for name, c in DebtorState.columns():
        a = getattr(s, name)
        assert a.shape == (5, *c.shape) and a.dtype == np.dtype(c.dtype), name
        assert (a == c.initial).all(), name
    assert (s.status == Status.WAITING).all() and (s.last_contact == -NEVER_DAYS).all() and (s.disc == 1.0).all()


def test_a_new_debtor_resets_the_slot_but_keeps_epochs_and_serials():
    s = DebtorState.allocate(3)
    s.outstanding[:] = 10.0
    s.promise_serial[:] = 4
    s.plan_serial[:] = 2
    s.opted_out[1, 2] = True
    s.ring[1, 3, 4] = 1
    s.reset(np.array([1]))
    assert s.outstanding.tolist() == [10.0, 0.0, 10.0]
    assert s.epoch.tolist() == [0, 1, 0]
    assert s.promise_serial.tolist() == [4, 4, 4] and s.plan_serial.tolist() == [2, 2, 2]
    assert not s.opted_out[1].any() and not s.ring[1].any()


def test_a_checkpoint_restores_the_state_and_refuses_a_wrong_one():
    w = World(load_scenario("default"), 50, 1, mode="episodic")
    for _ in range(20):
        w.step(np.zeros((50, 4), dtype=np.int64) + np.array([1, 0, 0, 0]))
    snap = w.state.snapshot()
    back = DebtorState.restore(snap)
    for name, _ in DebtorState.columns():
        np.testing.assert_array_equal(getattr(back, name), getattr(w.state, name))
    snap["outstanding"][:] = -1  # a copy: the world is untouched
    assert (w.state.outstanding >= 0).all()
    bad = dict(snap)
    del bad["fatigue"]
    with pytest.raises(ValueError, match=r"missing columns \['fatigue'\]"):
        DebtorState.restore(bad)
    bad = dict(snap, fatigue=snap["fatigue"].astype(np.float32))
    with pytest.raises(ValueError, match="fatigue: expected shape"):
        DebtorState.restore(bad)


def test_every_view_field_comes_from_a_column_or_is_derived_once():
    direct = {v for _, v in VIEW_COLUMNS}
    assert direct <= {f.name for f in dataclasses.fields(ViewBatch)}
    w = World(load_scenario("default"), 4, 0, mode="episodic")
    v = w.views()
    for name, view in VIEW_COLUMNS:
        assert getattr(v, view) is getattr(w.state, name)  # the column itself, not a copy
