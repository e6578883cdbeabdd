"""A synchronized directory that is gone and made again (--create-dir) is not what the snapshot
describes. Before, a push re-sync into a wiped target found "nothing to do" and left it empty,
and a wiped source (with the snapshot kept elsewhere by -b) read as every file deleted and
emptied the target. Now a local pair starts over as with -x; a far end's directory made again
stops the run with a message that names -x."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sshd import FarEnd
from test_sync import free_udp_port, listing, statuses, sync, write

from coordinator.sync.engine import SyncError, run_sync
from coordinator.sync.options import parse_sync_args

pytest_plugins = ["sync_remote_helpers"]  # the far fixture


def test_a_wiped_target_is_filled_again(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, {"a": "a", "d/b": "b"})
    assert sync(src, dst, "--create-dir").ok
    shutil.rmtree(dst)
    report = sync(src, dst, "--create-dir")
    assert report.ok, report.errors
    assert statuses(report) == {"a": "SYNCHRONIZED", "d": "SYNCHRONIZED", "d/b": "SYNCHRONIZED"}
    assert listing(dst) == listing(src)


def test_a_wiped_source_with_the_snapshot_elsewhere_deletes_nothing(tmp_path: Path) -> None:
    src, dst, db = tmp_path / "src", tmp_path / "dst", tmp_path / "db"
    write(src, {"a": "a", "d/b": "b"})
    assert sync(src, dst, "--create-dir", "-b", str(db)).ok
    shutil.rmtree(src)
    report = sync(src, dst, "--create-dir", "-b", str(db))
    assert report.ok, report.errors
    assert statuses(report) == {}
    assert set(listing(dst)) == {"a", "d", "d/b"}


def test_a_far_directory_made_again_stops_the_run_and_names_x(far: FarEnd, tmp_path: Path) -> None:
    assert far.docroot is not None
    src = tmp_path / "src"
    write(src, {"a": "a", "d/b": "b"})

    def run(*extra: str) -> object:
        return run_sync(parse_sync_args(["-N", "r", "-d", str(src), "-r", far.remote("/dst"), *far.auth(),
                                         "-O", str(free_udp_port()), "-l", "1g", "--create-dir", *extra]))  # fmt: skip

    assert run().ok  # type: ignore[attr-defined]
    shutil.rmtree(far.docroot / "dst")
    write(src, {"c": "new"})
    with pytest.raises(SyncError, match=r"-r: .* was gone .* run again with -x"):
        run()
    report = run("-x")
    assert report.ok, report.errors  # type: ignore[attr-defined]
    assert set(listing(far.docroot / "dst")) == {"a", "c", "d", "d/b"}
