"""The SQLite snapshot file: the pair lock, damaged and foreign files, newer schemas and other
pairs, closed stores, the default snapshot path, and 100k entries (Redis:
tests/test_snapshot_redis.py)."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from common.snapshot import (
    Entry,
    SnapshotError,
    SnapshotStore,
    SqliteSnapshot,
    default_snapshot_path,
)

sys.path.insert(0, os.path.dirname(__file__))
from snapshot_helpers import StoreKind, entry, paths_of

pytest_plugins = ["snapshot_helpers"]  # its fixtures


# -- locking, damage, foreign files --------------------------------------------------------------


def test_a_second_store_on_the_same_pair_is_refused(db_path: str) -> None:
    first = SqliteSnapshot(db_path, "pair")
    try:
        with pytest.raises(SnapshotError) as info:
            SqliteSnapshot(db_path, "pair")
        message = str(info.value)
        assert "another sync of this pair is running" in message
        assert db_path + ".lock" in message and f"pid {os.getpid()}" in message
        first.apply("local", [entry("still-works")])
    finally:
        first.close()
    with SqliteSnapshot(db_path, "pair") as second:  # released on close
        assert second.get("local", "still-works") is not None


def test_garbage_file_is_reported_and_rebuild_recovers(db_path: str) -> None:
    Path(db_path).write_bytes(os.urandom(8192))
    with pytest.raises(SnapshotError) as info:
        SqliteSnapshot(db_path, "pair")
    assert db_path in str(info.value) and "corrupt" in str(info.value)
    assert "-x" in str(info.value)
    # The failed open released the lock, and -x (rebuild) starts afresh.
    with SqliteSnapshot(db_path, "pair", rebuild=True) as store:
        assert store.load("local") == {}
        store.apply("local", [entry("a")])
        assert store.count("local") == 1


def test_damaged_pages_are_reported_as_corrupt(db_path: str) -> None:
    with SqliteSnapshot(db_path, "pair") as store:
        store.apply("local", [entry(f"dir/{i:05d}", checksum="cd" * 32) for i in range(3000)])
    data = bytearray(Path(db_path).read_bytes())
    page = 4096
    for offset in range(2 * page, len(data), page):  # keep the header and the schema page
        data[offset : offset + page] = b"\xa5" * page
    Path(db_path).write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match=r"corrupt.*-x"), SqliteSnapshot(db_path, "pair") as s:
        s.load("local")


def test_foreign_sqlite_database_is_refused_untouched(db_path: str) -> None:
    with sqlite3.connect(db_path) as other:
        other.execute("CREATE TABLE photos (name TEXT)")
    before = Path(db_path).read_bytes()
    with pytest.raises(SnapshotError, match="not a Surge snapshot"):
        SqliteSnapshot(db_path)
    assert Path(db_path).read_bytes() == before
    assert not Path(db_path + "-wal").exists()


def test_newer_schema_is_refused(db_path: str) -> None:
    SqliteSnapshot(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE store_info SET value = '99' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(SnapshotError, match=r"newer Surge \(schema 99, this one reads up to 1\)"):
        SqliteSnapshot(db_path)


def test_a_database_of_another_pair_is_refused(db_path: str) -> None:
    SqliteSnapshot(db_path, "photos").close()
    with pytest.raises(SnapshotError, match=r"belongs to sync pair 'photos', not 'music'"):
        SqliteSnapshot(db_path, "music")
    SqliteSnapshot(db_path).close()  # no pair given: no check
    SqliteSnapshot(db_path, "photos").close()
    with SqliteSnapshot(db_path, "music", rebuild=True):
        pass
    SqliteSnapshot(db_path, "music").close()


def test_a_closed_store_says_so(kind: StoreKind) -> None:
    store = kind.open()
    store.close()
    store.close()  # idempotent
    with pytest.raises(SnapshotError, match="closed"):
        store.load("local")


def test_default_snapshot_path(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    path = default_snapshot_path(str(root), "nightly", None)
    assert path == str(root / ".surge" / "nightly.db")
    assert (root / ".surge").is_dir()
    elsewhere = default_snapshot_path(str(root), "nightly", str(tmp_path / "db" / "local"))
    assert elsewhere == str(tmp_path / "db" / "local" / "nightly.db")
    assert (tmp_path / "db" / "local").is_dir()
    for bad in ("", "a/b", "..", "x\x00"):
        with pytest.raises(ValueError):
            default_snapshot_path(str(root), bad, None)


# -- scale ---------------------------------------------------------------------------------------


def test_100k_entries_apply_and_load(db_path: str) -> None:
    """SQLite only: bench/redis_memory.py loads 100k into Redis, tests/test_snapshot_redis.py
    20k with the real bucket sizes."""
    with SqliteSnapshot(db_path, "pair") as store:
        _load_100k(store)


def _load_100k(store: SnapshotStore) -> None:
    entries = [
        Entry(f"d{i // 1000}/s{i // 100 % 10}/f{i}.dat", "file", i, i * 1000, 0o644, i + 1, 2049,
              checksum=f"{i:064x}")
        for i in range(100_000)
    ]  # fmt: skip
    t0 = time.perf_counter()
    store.apply("local", entries)
    t1 = time.perf_counter()
    loaded = store.load("local")
    t2 = time.perf_counter()
    subtree = paths_of(store, prefix="d42")
    t3 = time.perf_counter()
    print(
        f"\nsnapshot 100k: apply {t1 - t0:.2f} s, load {t2 - t1:.2f} s, iter one tree of"
        f" {len(subtree)} in {(t3 - t2) * 1000:.1f} ms, {store.size_bytes() / 1e6:.1f} MB"
    )
    assert len(loaded) == 100_000 and loaded[entries[-1].path] == entries[-1]
    assert len(subtree) == 1000
    assert t2 - t0 < 10
