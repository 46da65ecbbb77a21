"""atomic_write (temp file + rename) and the columnar event Ledger's Parquet round trip."""

from __future__ import annotations

import os
import stat

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from policies.fileio import atomic_write
from sim.ledger import COLUMNS, EVENT_NAMES, Event, Ledger


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Boom(RuntimeError):
    pass


# ---------------------------------------------------------------------------------- atomic_write


def test_atomic_write_creates_the_file_with_the_content(tmp_path):
    target = tmp_path / "out.txt"
    result = atomic_write(target, lambda p: p.write_text("hello\n"))
    assert result == target
    assert target.read_text() == "hello\n"


def test_atomic_write_creates_missing_parent_directories(tmp_path):
    target = tmp_path / "a" / "b" / "out.bin"
    atomic_write(str(target), lambda p: p.write_bytes(b"\x00\x01"))
    assert target.read_bytes() == b"\x00\x01"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_write_gives_normal_permissions_from_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        target = atomic_write(tmp_path / "out.txt", lambda p: p.write_text("x"))
    finally:
        os.umask(old)
    mode = stat.S_IMODE(target.stat().st_mode)
    assert mode == 0o666 & ~umask
    if umask == 0o022:
        assert mode != 0o600  # not mkstemp's private mode
        assert mode & stat.S_IROTH


def test_atomic_write_permissions_match_a_plainly_created_file(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    target = atomic_write(tmp_path / "atomic.txt", lambda p: p.write_text("x"))
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~current_umask()


def test_atomic_write_replaces_an_existing_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write(target, lambda p: p.write_text("new"))
    assert target.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


@pytest.mark.parametrize("exc", [Boom("disk full"), KeyboardInterrupt()])
def test_atomic_write_failure_leaves_existing_file_unchanged_and_no_temp_file(tmp_path, exc):
    target = tmp_path / "result.bin"
    original = bytes(range(256)) * 4
    target.write_bytes(original)
    mtime = target.stat().st_mtime_ns

    def half_write(p):
        p.write_bytes(b"partial garbage")
        raise exc

    with pytest.raises(type(exc)):
        atomic_write(target, half_write)
    assert target.read_bytes() == original
    assert target.stat().st_mtime_ns == mtime
    assert sorted(os.listdir(tmp_path)) == ["result.bin"]


def test_atomic_write_failure_without_existing_file_creates_nothing(tmp_path):
    with pytest.raises(Boom):
        atomic_write(tmp_path / "new.txt", lambda p: (_ for _ in ()).throw(Boom()))
    assert os.listdir(tmp_path) == []


def test_atomic_write_temp_file_is_beside_the_target_and_hidden(tmp_path):
    seen = []
    atomic_write(tmp_path / "out.txt", lambda p: (seen.append(p), p.write_text("x")))
    (tmp,) = seen
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(".out.txt.") and tmp.name.endswith(".tmp")
    assert not tmp.exists()


# ---------------------------------------------------------------------------------- Ledger


def filled_ledger() -> Ledger:
    led = Ledger()
    # deliberately out of time order
    led.add(3000.0, np.array([4, 5]), Event.PAYMENT, channel=1, amount=np.array([10.5, 20.0]))
    led.add(100.0, np.array([1, 2, 3]), Event.CONTACT, channel=np.array([1, 2, 6]), detail=np.array([0, 5, 15]))
    led.add(1500.0, np.array([2]), Event.BLOCKED, channel=6, detail=4)
    led.add(100.0, np.array([7]), Event.OPT_OUT, channel=1)
    led.add(2000.0, np.array([], dtype=np.int64), Event.COMPLAINT)  # empty: records nothing
    return led


def test_ledger_len_counts_rows(tmp_path):
    assert len(filled_ledger()) == 7


def test_ledger_parquet_round_trip(tmp_path):
    led = filled_ledger()
    path = led.write_parquet(tmp_path / "sub" / "events.parquet")
    table = pq.read_table(path)
    assert table.num_rows == 7
    assert set(COLUMNS) <= set(table.column_names)
    assert pa.types.is_dictionary(table.schema.field("event").type)
    t = table.to_pydict()
    assert t["time_min"] == sorted(t["time_min"])
    # a stable sort: equal times keep insertion order
    assert t["event"] == ["contact", "contact", "contact", "opt_out", "blocked", "payment", "payment"]
    assert t["debtor"] == [1, 2, 3, 7, 2, 4, 5]
    assert t["channel"] == [1, 2, 6, 1, 6, 1, 1]
    assert t["detail"] == [0, 5, 15, 0, 4, 0, 0]
    assert t["amount_eur"][-2:] == pytest.approx([10.5, 20.0])
    assert t["day"] == [int(x // 1440) for x in t["time_min"]] == [0, 0, 0, 0, 1, 2, 2]


def test_ledger_parquet_event_dictionary_is_the_event_names(tmp_path):
    path = filled_ledger().write_parquet(tmp_path / "events.parquet")
    chunk = pq.read_table(path).column("event").combine_chunks()
    assert chunk.dictionary.to_pylist() == list(EVENT_NAMES)
    assert chunk.indices.to_pylist() == [Event.CONTACT] * 3 + [Event.OPT_OUT, Event.BLOCKED] + [Event.PAYMENT] * 2


def test_ledger_columns_match_what_was_added():
    cols = filled_ledger().columns()
    assert set(cols) == set(COLUMNS)
    assert all(len(c) == 7 for c in cols.values())
    assert (np.diff(cols["time_min"]) >= 0).all()
    assert cols["event"].tolist() == [Event.CONTACT] * 3 + [Event.OPT_OUT, Event.BLOCKED] + [Event.PAYMENT] * 2


def test_empty_ledger_writes_an_empty_table(tmp_path):
    table = pq.read_table(Ledger().write_parquet(tmp_path / "empty.parquet"))
    assert table.num_rows == 0
    assert set(COLUMNS) <= set(table.column_names)


def test_disabled_ledger_records_nothing(tmp_path):
    led = Ledger(enabled=False)
    led.add(10.0, np.array([1, 2, 3]), Event.CONTACT, channel=1)
    led.add(20.0, np.array([4]), Event.PAYMENT, amount=5.0)
    assert len(led) == 0
    assert all(n == 0 for n in led.counts().values())
    assert all(len(c) == 0 for c in led.columns().values())
    assert pq.read_table(led.write_parquet(tmp_path / "off.parquet")).num_rows == 0


def test_counts_sum_rows_per_event():
    led = Ledger()
    led.add(1.0, np.arange(3), Event.CONTACT)
    led.add(2.0, np.arange(2), Event.PAYMENT, amount=1.0)
    led.add(3.0, np.arange(4), Event.CONTACT)
    counts = led.counts()
    assert set(counts) == set(EVENT_NAMES)
    assert counts["contact"] == 7
    assert counts["payment"] == 2
    assert sum(counts.values()) == len(led) == 9
    assert all(counts[name] == 0 for name in EVENT_NAMES if name not in ("contact", "payment"))


def test_failed_parquet_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "events.parquet"
    filled_ledger().write_parquet(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise Boom("writer crashed")

    monkeypatch.setattr(pq, "write_table", broken)
    led = Ledger()
    led.add(5.0, np.array([9]), Event.SOLD, amount=100.0)
    with pytest.raises(Boom):
        led.write_parquet(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["events.parquet"]
