"""--clean-excluded: directories excluded by path leave the snapshot of both sides; below
directories excluded by age (--exclude-dirs-older-than) the records go, the directory's stays."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from sshd import free_udp_port

from common.snapshot import SqliteSnapshot, default_snapshot_path
from coordinator.sync.engine import SyncReport, run_sync
from coordinator.sync.options import parse_sync_args


def sync(src: Path, dst: Path, *args: str) -> SyncReport:
    opts = parse_sync_args(
        [
            "-N",
            "pair",
            "-d",
            str(src),
            "-r",
            str(dst),
            "-O",
            str(free_udp_port()),
            "-l",
            "1g",
            *args,
        ]
    )
    report = run_sync(opts)
    assert report.ok, report.errors
    return report


def records(src: Path, side: str) -> set[str]:
    snap = SqliteSnapshot(default_snapshot_path(str(src), "pair"))
    try:
        return {e.path for e in snap.iter_side(side)}
    finally:
        snap.close()


def make(src: Path) -> None:
    for d in ("keep", "logs", "logs/old"):
        (src / d).mkdir(parents=True)
    for f in ("keep/a", "logs/b", "logs/old/c"):
        (src / f).write_bytes(f.encode())


def test_clean_excluded_forgets_excluded_directories(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make(src)
    sync(src, dst, "--create-dir")
    assert "logs/old/c" in records(src, "local")
    sync(src, dst, "--exclude", "logs/")
    assert "logs/old/c" in records(src, "remote")  # excluded, but remembered without the option
    sync(src, dst, "--exclude", "logs/", "--clean-excluded")
    for side in ("local", "remote"):
        assert records(src, side) == {"keep", "keep/a"}
    assert (
        dst / "logs" / "old" / "c"
    ).read_bytes() == b"logs/old/c"  # excluded files keep their copy
    report = sync(src, dst, "--exclude", "logs/", "--clean-excluded")
    assert report.lines == []


def test_clean_excluded_with_dirs_older_than_keeps_skipping_them(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make(src)
    old = 1_000_000_000  # 2001
    for p in ("logs/old/c", "logs/old", "logs/b", "logs"):
        os.utime(src / p, (old, old))
    limit = "--exclude-dirs-older-than=1500000000"
    sync(src, dst, "--create-dir", limit)
    sync(src, dst, limit, "--clean-excluded")
    local = records(src, "local")
    assert "logs" in local and "logs/b" not in local and "logs/old/c" not in local
    assert "keep/a" in local
    report = sync(src, dst, limit, "--clean-excluded")
    assert report.lines == []  # nothing resent, nothing deleted at the target
    assert (dst / "logs" / "old" / "c").exists()
