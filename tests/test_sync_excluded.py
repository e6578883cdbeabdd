"""The reference's "Semantics" table of the filtering pages (003/004): with --exclude FILE3,
excluded new files are invisible to the sync, but files already synchronized stay tracked even
when they have, or get, the excluded name. One test per row and column, local to local."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_sync import listing, statuses, sync, write

Event = Callable[[Path], None]


def mv(a: str, b: str) -> Event:
    return lambda root: os.rename(root / a, root / b)


def rm(a: str) -> Event:
    return lambda root: os.remove(root / a)


def cp(a: str, b: str) -> Event:
    return lambda root: shutil.copyfile(root / a, root / b)


def run(tmp_path: Path, event: Event, excluded_from_the_start: bool) -> tuple[dict[str, bytes | None], dict[str, str]]:
    """FILE3 and FILE4 synchronized (FILE3 only when it was not excluded yet), then `event`
    here, then a sync with --exclude FILE3: (the peer's files, the status lines)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    write(src, {"FILE3": "three", "FILE4": "four"})
    first = sync(src, dst, *(["--exclude", "FILE3"] if excluded_from_the_start else []))
    assert first.ok
    event(src)
    report = sync(src, dst, "--exclude", "FILE3")
    assert report.ok
    return listing(dst), statuses(report)


def test_previously_synced_mv_file4_file3_is_mv_file4_file3_on_the_peer(tmp_path: Path) -> None:
    peer, lines = run(tmp_path, mv("FILE4", "FILE3"), excluded_from_the_start=False)
    assert peer == {"FILE3": b"four"}
    assert lines == {"FILE3": "SYNCHRONIZED", "FILE4": "SYNCHRONIZED(del)"}


def test_previously_synced_rm_file3_is_rm_file3_on_the_peer(tmp_path: Path) -> None:
    peer, lines = run(tmp_path, rm("FILE3"), excluded_from_the_start=False)
    assert peer == {"FILE4": b"four"}
    assert lines == {"FILE3": "SYNCHRONIZED(del)"}


def test_previously_synced_cp_file4_file3_is_cp_file4_file3_on_the_peer(tmp_path: Path) -> None:
    peer, lines = run(tmp_path, cp("FILE4", "FILE3"), excluded_from_the_start=False)
    assert peer == {"FILE3": b"four", "FILE4": b"four"}
    assert lines == {"FILE3": "SYNCHRONIZED"}


def test_previously_synced_mv_file3_file4_is_mv_file3_file4_on_the_peer(tmp_path: Path) -> None:
    peer, lines = run(tmp_path, mv("FILE3", "FILE4"), excluded_from_the_start=False)
    assert peer == {"FILE4": b"three"}
    assert lines == {"FILE3": "SYNCHRONIZED(del)", "FILE4": "SYNCHRONIZED"}


def test_clean_start_mv_file4_file3_is_rm_file4_on_the_peer(tmp_path: Path) -> None:
    peer, lines = run(tmp_path, mv("FILE4", "FILE3"), excluded_from_the_start=True)
    assert peer == {}
    assert lines == {"FILE4": "SYNCHRONIZED(del)"}


def test_clean_start_rm_file3_is_ignored(tmp_path: Path) -> None:
    peer, lines = run(tmp_path, rm("FILE3"), excluded_from_the_start=True)
    assert peer == {"FILE4": b"four"}
    assert lines == {}


def test_clean_start_cp_file4_file3_is_ignored(tmp_path: Path) -> None:
    peer, lines = run(tmp_path, cp("FILE4", "FILE3"), excluded_from_the_start=True)
    assert peer == {"FILE4": b"four"}
    assert lines == {}


def test_clean_start_mv_file3_file4_is_a_new_file4(tmp_path: Path) -> None:
    peer, lines = run(tmp_path, mv("FILE3", "FILE4"), excluded_from_the_start=True)
    assert peer == {"FILE4": b"three"}
    assert lines == {"FILE4": "SYNCHRONIZED"}


def test_a_tracked_file_inside_a_directory_that_becomes_excluded_stays_tracked(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"cache/old": "old", "keep": "k"})
    dst.mkdir()
    assert sync(src, dst).ok
    (src / "cache" / "old").write_text("changed")
    (src / "cache" / "new").write_text("new: never synchronized, so invisible")
    report = sync(src, dst, "--exclude", "cache/")
    assert report.ok
    assert listing(dst) == {"cache": None, "cache/old": b"changed", "keep": b"k"}
    (src / "cache" / "old").unlink()
    assert sync(src, dst, "--exclude", "cache/").ok
    assert listing(dst) == {"cache": None, "keep": b"k"}


@pytest.mark.parametrize("direction", ["pull", "bidi"])
def test_the_rule_holds_in_every_direction(tmp_path: Path, direction: str) -> None:
    """pull: the remote tree is the source; bidi: a tracked excluded file changed on one side."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    write(dst, {"FILE3": "three", "FILE4": "four"})
    assert sync(src, dst, "-K", direction).ok
    (dst / "FILE3").write_text("changed there")
    report = sync(src, dst, "-K", direction, "--exclude", "FILE3")
    assert report.ok
    assert (src / "FILE3").read_text() == "changed there"
    (dst / "FILE3").unlink()
    assert sync(src, dst, "-K", direction, "--exclude", "FILE3").ok
    assert not (src / "FILE3").exists()
