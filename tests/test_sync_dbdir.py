"""-b inside a synchronized tree: the snapshot's directory (or, at the top of the tree, the pair's
own database files) is never synchronized as files of its own — before, its database, `-wal`,
`-shm` and lock went to the far end on every run, and a bidi sync could write the far copy back
over the live database."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_sync import listing, statuses, sync, write


@pytest.mark.parametrize("direction", ["push", "bidi"])
def test_a_database_directory_inside_the_tree_is_not_synchronized(tmp_path: Path, direction: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"a": "a", "db[1]/keep.txt": "user data beside it"})
    dst.mkdir()
    db = src / "meta" / "snap"
    for _ in range(2):
        report = sync(src, dst, "-K", direction, "-b", str(db))
        assert report.ok, report.errors
    assert (db / "pair.db").exists()
    assert set(listing(dst)) == {"a", "db[1]", "db[1]/keep.txt", "meta"}  # meta/snap stays behind
    assert sync(src, dst, "-K", direction, "-b", str(db)).lines == []


def test_a_database_at_the_top_of_the_tree_hides_only_the_pairs_files(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"a": "a", "other.db": "a user's database"})
    dst.mkdir()
    report = sync(src, dst, "-b", str(src))
    assert report.ok, report.errors
    assert (src / "pair.db").exists()
    assert statuses(report) == {"a": "SYNCHRONIZED", "other.db": "SYNCHRONIZED"}
    assert set(listing(dst)) == {"a", "other.db"}
