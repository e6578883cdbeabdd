"""Brief records (common/snapshot/brief.py): SqliteSnapshot.brief answers what the generic
reading from entries answers, for all records, directories only and the children of any
directory (including records below a path recorded as a file, which the stretches between
subdirectories must still filter out); the directory index is added to older snapshots."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.snapshot import Entry, SqliteSnapshot
from common.snapshot.brief import brief_of, has_records, load_brief


class _Generic:
    """The same store seen only through iter_side and count (what a Redis store offers)."""

    def __init__(self, store: SqliteSnapshot) -> None:
        self.store = store

    def iter_side(self, side: str, prefix: str = ""):  # type: ignore[no-untyped-def]
        return self.store.iter_side(side, prefix)

    def count(self, side: str) -> int:
        return self.store.count(side)


def _entries(rng: random.Random) -> list[Entry]:
    names = ["a", "a!", "a.b", "b", "a0", "z", "é", "x\udcff"]
    out: dict[str, Entry] = {}
    for _ in range(rng.randint(0, 60)):
        parts = [rng.choice(names) for _ in range(rng.randint(1, 4))]
        for depth in range(1, len(parts)):
            d = "/".join(parts[:depth])
            if d not in out:
                out[d] = Entry(d, "dir", 0, rng.randint(0, 9), 0o755, 1, 1)
        p = "/".join(parts)
        kind = rng.choice(["file", "file", "dir", "link"])
        out.setdefault(p, Entry(p, kind, rng.randint(0, 99) if kind == "file" else 0, rng.randint(0, 9), 0o644, 2, 1,
                                target="t\udcfe" if kind == "link" else None))  # fmt: skip
    return list(out.values())


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6))
def test_brief_matches_the_generic_reading(tmp_path_factory: pytest.TempPathFactory, seed: int) -> None:
    rng = random.Random(seed)
    store = SqliteSnapshot(str(tmp_path_factory.mktemp("b") / "s.db"))
    try:
        entries = _entries(rng)
        store.apply("local", entries)
        store.apply("remote", entries[: len(entries) // 2])
        generic = _Generic(store)
        for side in ("local", "remote"):
            assert load_brief(store, side) == load_brief(generic, side) == {
                b[0]: b for b in map(brief_of, store.iter_side(side))}  # fmt: skip
            assert load_brief(store, side, dirs_only=True) == load_brief(generic, side, dirs_only=True)
            for d in ["", *(e.path for e in entries)]:
                assert load_brief(store, side, children_of=d) == load_brief(generic, side, children_of=d), d
                assert load_brief(store, side, children_of=d, dirs_only=True) == \
                    load_brief(generic, side, children_of=d, dirs_only=True)  # fmt: skip
            assert has_records(store, side) == has_records(generic, side) == bool(store.count(side))
    finally:
        store.close()


def test_children_below_a_path_recorded_as_a_file_are_not_children(tmp_path: Path) -> None:
    with SqliteSnapshot(str(tmp_path / "s.db")) as store:
        store.apply("local", [Entry("d", "dir", 0, 1, 0o755, 1, 1), Entry("d/f", "file", 1, 1, 0o644, 2, 1),
                              Entry("d/f/x", "file", 1, 1, 0o644, 3, 1), Entry("d/s", "dir", 0, 1, 0o755, 4, 1),
                              Entry("d/s/y", "file", 1, 1, 0o644, 5, 1), Entry("d/t", "file", 1, 1, 0o644, 6, 1)])  # fmt: skip
        assert set(store.brief("local", children_of="d")) == {b"d\x00f", b"d\x00s", b"d\x00t"}
        assert set(store.brief("local", children_of="")) == {b"d"}
        assert set(store.brief("local", dirs_only=True)) == {b"d", b"d\x00s"}


def test_an_older_snapshot_gets_the_directory_index(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    with SqliteSnapshot(path) as store:
        store.apply("local", [Entry("d", "dir", 0, 1, 0o755, 1, 1)])
    db = sqlite3.connect(path)
    db.execute("DROP INDEX entries_dirs")
    db.commit()
    db.close()
    with SqliteSnapshot(path) as store:
        assert store.brief("local", dirs_only=True) == {b"d": (b"d", 1, 0, 1, None, 0o755)}
    db = sqlite3.connect(path)
    assert db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'entries_dirs'").fetchone()
    db.close()
