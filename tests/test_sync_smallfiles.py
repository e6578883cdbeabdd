"""Per-file work a sync of many small files avoids, without changing what it records: -k
checksums of new files on a first sync (no decision needs them, so they are computed while the
files move, yet every one lands in the snapshot, and a later touch-only change is still an
attribute update, not a resend), and the far end of a local pair (started only to transfer)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.checksums import sparse_digest
from common.snapshot import SqliteSnapshot, default_snapshot_path
from coordinator.sync import scan
from coordinator.sync.engine import run_sync
from coordinator.sync.options import parse_sync_args
from coordinator.sync.scan import fill_checksums, scan_tree


def _sync(src: Path, dst: Path, *args: str) -> dict[str, str]:
    report = run_sync(
        parse_sync_args(
            ["-N", "pair", "-d", str(src), "-r", str(dst), "-l", "1g", "--create-dir", *args]
        )
    )
    assert report.ok, report.errors
    return dict(report.lines)


def _tree(src: Path, n: int) -> dict[str, bytes]:
    files = {}
    for i in range(n):
        rel = f"d{i % 4}/f{i:03d}"
        data = os.urandom(1 + i * 97)
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
        files[rel] = data
    return files


def _recorded(src: Path) -> dict[str, str | None]:
    snap = SqliteSnapshot(default_snapshot_path(str(src), "pair", None))
    try:
        return {p: e.checksum for p, e in snap.load("local").items() if e.kind == "file"}
    finally:
        snap.close()


@pytest.mark.parametrize("algo", ["sha1", "sha1-sparse"])
@pytest.mark.parametrize("late", [False, True])
def test_first_sync_records_every_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, algo: str, late: bool
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _tree(src, 200)
    if late:  # the checksums are ready only after every file was committed
        real = scan.sync_digest
        started = time.monotonic()

        def slow(*args: Any) -> Any:
            time.sleep(max(0.0, started + 1.0 - time.monotonic()))
            return real(*args)

        monkeypatch.setattr(scan, "sync_digest", slow)
    _sync(src, dst, "-k", algo)
    recorded = _recorded(src)
    assert set(recorded) == set(files)
    if algo == "sha1":
        assert recorded == {p: "sha1:" + hashlib.sha1(d).hexdigest() for p, d in files.items()}
    else:  # the same digests a scan computes up front
        entries = scan_tree(str(src)).entries
        assert fill_checksums(str(src), entries, list(files), algo) == []
        assert recorded == {p: entries[p].checksum for p in files}
    for p, d in files.items():
        assert (dst / p).read_bytes() == d


def test_touch_after_first_sync_is_an_attribute_update(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _tree(src, 50)
    _sync(src, dst, "-t")
    touched = "d1/f005"
    before = os.stat(src / touched)
    os.utime(src / touched, ns=(before.st_atime_ns, before.st_mtime_ns + 5_000_000_000))
    lines = _sync(src, dst, "-t")
    assert lines == {touched: "SYNCHRONIZED(mov)"}
    assert (dst / touched).read_bytes() == files[touched]
    assert os.stat(dst / touched).st_mtime_ns == before.st_mtime_ns + 5_000_000_000


def test_file_changed_after_scan_gets_no_stale_checksum(tmp_path: Path) -> None:
    """A checksum computed in the background belongs to the scanned state or to nothing."""
    from coordinator.sync.scan import BackgroundChecksums

    src = tmp_path / "src"
    files = _tree(src, 20)
    entries = scan_tree(str(src)).entries
    changed = "d0/f004"
    (src / changed).write_bytes(b"new content, new size")
    bg = BackgroundChecksums(str(src), entries, list(files), "sha1")
    bg.finish()
    assert entries[changed].checksum is None
    assert all(
        entries[p].checksum == "sha1:" + hashlib.sha1(d).hexdigest()
        for p, d in files.items()
        if p != changed
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(size=st.one_of(st.integers(0, 3 * 4096 + 1), st.integers(256 * 4096 - 2, 256 * 4096 + 2)))
def test_sparse_checksum_equals_the_transfer_digest(tmp_path: Path, size: int) -> None:
    """sha1-sparse of a file is common.checksums.sparse_digest, whichever way it is read."""
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    entries = scan_tree(str(tmp_path)).entries
    assert fill_checksums(str(tmp_path), entries, ["f"], "sha1-sparse") == []
    with open(tmp_path / "f", "rb") as fh:
        assert entries["f"].checksum == "sha1s:" + sparse_digest(fh.fileno(), size)


def test_local_resync_with_nothing_to_send_starts_no_far_end(tmp_path: Path) -> None:
    from coordinator.cp.endpoint import LocalAgent

    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _tree(src, 30)
    started: list[int] = []

    def factory(_opts: Any) -> Any:
        started.append(1)
        return LocalAgent()

    def run() -> dict[str, str]:
        opts = parse_sync_args(
            ["-N", "pair", "-d", str(src), "-r", str(dst), "-l", "1g", "--create-dir"]
        )
        report = run_sync(opts, endpoint_factory=factory)
        assert report.ok, report.errors
        return dict(report.lines)

    assert set(run()) >= set(files) and len(started) == 1
    assert run() == {} and len(started) == 1  # nothing to do: no agent
    (src / "d0" / "new").write_bytes(b"n")
    assert run() == {"d0/new": "SYNCHRONIZED"} and len(started) == 2
    assert (dst / "d0" / "new").read_bytes() == b"n"
