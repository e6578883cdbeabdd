"""The remote tree is listed in pages streamed by the far end, so a pull or bidi sync of a tree
of any size works (one control message is bounded by the frame limit)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from sshd import FarEnd, free_udp_port, system_sshd

from coordinator.sync.engine import run_sync
from coordinator.sync.options import parse_sync_args
from coordinator.sync.sides import RemoteSide


@pytest.fixture
def far(tmp_path: Path) -> Iterator[FarEnd]:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    with system_sshd(tmp_path / "sshd", docroot=docroot) as end:
        yield end


def test_pull_of_a_tree_listed_in_many_pages(far: FarEnd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert far.docroot is not None
    remote = far.docroot / "tree"
    for i in range(45):
        (remote / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (remote / f"d{i % 4}" / f"f{i}").write_bytes(os.urandom(100 + i))
    monkeypatch.setattr(RemoteSide, "PAGE", 7)  # 49 entries: 8 messages
    local = tmp_path / "local"
    opts = parse_sync_args(["-N", "pages", "-d", str(local), "-r", far.remote("/tree"), *far.auth(), "--create-dir",
                            "-K", "pull", "-O", str(free_udp_port()), "-l", "1g"])  # fmt: skip
    report = run_sync(opts)
    assert report.ok, report.errors
    got = {str(p.relative_to(local)): p.read_bytes() for p in local.rglob("f*") if p.is_file()}
    want = {str(p.relative_to(remote)): p.read_bytes() for p in remote.rglob("f*") if p.is_file()}
    assert got == want and len(got) == 45
