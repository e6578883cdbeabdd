"""`surge sync -C` when one of the two synchronized directories itself goes away while it runs
(removed, or a mount gone): nothing is known to be gone below a root that is not there, so no
deletion is propagated from it and nothing is written into a recreated one; the sync stops with
an error (exit status 1), as when the far end goes away."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from test_continuous import DEADLINE, Sync, listing, wait_for


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Path, Path, list[Sync]]]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_text("file")
    (src / "d").mkdir()
    (src / "d" / "g").write_text("below")
    procs: list[Sync] = []
    yield src, dst, procs
    for p in procs:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def start(tmp_path: Path, pair: tuple[Path, Path, list[Sync]], *args: str) -> Sync:
    src, dst, procs = pair
    sync = Sync(tmp_path, src, dst, "--cooloff", "1", *args)
    procs.append(sync)
    wait_for(lambda: sync.running() and listing(dst) == listing(src), "the first sync")
    return sync


def stops_with_error(sync: Sync) -> None:
    wait_for(lambda: sync.proc.poll() is not None, "the sync stops", timeout=20)
    assert sync.proc.wait(DEADLINE) == 1
    assert "vanished" in sync.stderr(), sync.stderr()


def test_bidi_remote_root_removed_deletes_nothing_locally(tmp_path: Path, pair: tuple[Path, Path, list[Sync]]) -> None:
    src, dst, _ = pair
    sync = start(tmp_path, pair, "-K", "bidi")
    before = listing(src)
    shutil.rmtree(dst)
    stops_with_error(sync)
    assert listing(src) == before
    assert not any(s == "SYNCHRONIZED(del)" for _, s in sync.lines()), sync.lines()


def test_push_source_root_removed_deletes_nothing_at_the_target(tmp_path: Path,
                                                                pair: tuple[Path, Path, list[Sync]]) -> None:  # fmt: skip
    src, dst, _ = pair
    sync = start(tmp_path, pair)
    before = listing(dst)
    shutil.rmtree(src)
    stops_with_error(sync)
    assert listing(dst) == before


def test_push_target_root_removed_is_not_recreated_half_full(tmp_path: Path,
                                                             pair: tuple[Path, Path, list[Sync]]) -> None:  # fmt: skip
    src, dst, _ = pair
    sync = start(tmp_path, pair)
    shutil.rmtree(dst)
    (src / "d" / "g").write_text("changed after the target went")
    stops_with_error(sync)
    assert not dst.exists()


def test_a_missing_mount_signature_is_reported_not_only_obeyed(tmp_path: Path,
                                                               pair: tuple[Path, Path, list[Sync]]) -> None:  # fmt: skip
    """As in a one-time sync: the deletion is not propagated, and an error line says why."""
    src, dst, _ = pair
    (src / "SIG").write_text("mounted")
    sync = start(tmp_path, pair, "--local-mount-signature", "SIG", "--sharing-retry-max", "0")
    (src / "SIG").unlink()
    (src / "f").unlink()
    # (once per batch that holds a deletion back: the two deletions may land in one batch or two)
    wait_for(lambda: sync.count("SIG", "ERROR: --local-mount-signature: missing; no deletions are propagated") >= 1,
             "the error line", timeout=20)  # fmt: skip
    assert (dst / "f").exists() and (dst / "SIG").exists()
    assert sync.stop() == 0
