"""The reference's overwrite policies (`-o always|older|conflict`) for one-way syncs, local to
local and to a `surge server`: `always` replaces what changed at the source; `older` replaces a
target file only when it is older than the source — on a first sync (the target is listed) and on
a re-sync, where the snapshot stands for the target and the files about to be sent are looked
at where they go (before, a target made newer since the last sync was overwritten)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_sync import free_udp_port, statuses, sync, write

sys.path.insert(0, os.path.dirname(__file__))
from sshd import FarEnd, surge_server

from coordinator.sync.engine import SyncReport, run_sync
from coordinator.sync.options import parse_sync_args

OLD, NEW = 1_000_000_000, 1_500_000_000  # seconds since the epoch: 2001, 2017


def stamp(path: Path, seconds: int) -> None:
    os.utime(path, (seconds, seconds))


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"f": "first", "g": "first"})
    dst.mkdir()
    return src, dst


def test_always_replaces_a_changed_source_file_whatever_the_target_holds(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    assert sync(src, dst, "-t").ok
    write(src, {"f": "source change"})
    stamp(src / "f", OLD)
    write(dst, {"f": "target change"})
    stamp(dst / "f", NEW)
    report = sync(src, dst, "-t")
    assert statuses(report) == {"f": "SYNCHRONIZED"}
    assert (dst / "f").read_text() == "source change"


def test_older_on_a_first_sync_replaces_only_older_target_files(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    stamp(src / "f", OLD + 10)
    stamp(src / "g", OLD + 10)
    write(dst, {"f": "newer at the target", "g": "older at the target"})
    stamp(dst / "f", OLD + 20)
    stamp(dst / "g", OLD)
    report = sync(src, dst, "-t", "-o", "older")
    assert statuses(report) == {"f": "SYNCHRONIZED(skp)", "g": "SYNCHRONIZED"}
    assert (dst / "f").read_text() == "newer at the target" and (dst / "g").read_text() == "first"


def test_older_on_a_resync_keeps_a_target_file_made_newer_since(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    assert sync(src, dst, "-t", "-o", "older").ok
    write(src, {"f": "source change, dated old", "g": "source change, dated new"})
    stamp(src / "f", OLD)
    stamp(src / "g", NEW + 10)
    write(dst, {"f": "target change", "g": "target change"})
    stamp(dst / "f", NEW)
    stamp(dst / "g", NEW)
    report = sync(src, dst, "-t", "-o", "older")
    assert statuses(report) == {"f": "SYNCHRONIZED(skp)", "g": "SYNCHRONIZED"}
    assert (dst / "f").read_text() == "target change"
    assert (dst / "g").read_text() == "source change, dated new"


def test_older_keeps_a_newer_target_entry_of_another_kind(trees: tuple[Path, Path]) -> None:
    """A file at the source where the target now has a newer directory: kept, not replaced."""
    src, dst = trees
    assert sync(src, dst, "-t", "-o", "older").ok
    write(src, {"f": "changed"})
    stamp(src / "f", OLD)
    (dst / "f").unlink()
    write(dst, {"f/inside": "target's"})
    stamp(dst / "f", NEW)
    report = sync(src, dst, "-t", "-o", "older")
    assert statuses(report) == {"f": "SYNCHRONIZED(skp)"}
    assert (dst / "f" / "inside").read_text() == "target's"


@pytest.fixture
def far(tmp_path: Path) -> Iterator[FarEnd]:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    with surge_server(tmp_path / "server", docroot=docroot) as end:
        yield end


def test_older_on_a_resync_to_a_server_looks_at_the_far_files(far: FarEnd, tmp_path: Path) -> None:
    assert far.docroot is not None
    src, there = tmp_path / "src", far.docroot / "dst"
    write(src, {f"f{i}": "first" for i in range(3)})
    for i in range(3):
        stamp(src / f"f{i}", OLD)  # and so at the far end after the first run (-t)

    def run() -> SyncReport:
        return run_sync(parse_sync_args(["-N", "o", "-d", str(src), "-r", far.remote("/dst"), *far.auth(),
                                         "-O", str(free_udp_port()), "-l", "1g", "--create-dir", "-t",
                                         "-o", "older"]))  # fmt: skip

    assert run().ok
    for i in range(3):
        write(src, {f"f{i}": f"source {i}"})
        stamp(src / f"f{i}", NEW + 10)
    write(there, {"f1": "target 1"})
    stamp(there / "f1", NEW + 20)
    report = run()
    assert statuses(report) == {"f0": "SYNCHRONIZED", "f1": "SYNCHRONIZED(skp)", "f2": "SYNCHRONIZED"}
    assert [(there / f"f{i}").read_text() for i in range(3)] == ["source 0", "target 1", "source 2"]
