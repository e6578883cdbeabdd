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


def test_remote_udp_port_in_use_is_named(far: FarEnd, tmp_path: Path) -> None:
    """A far end run by sshd binds the client's -O; when it is taken the error names it (only
    the embedded local far end falls back to another port)."""
    import socket
    import subprocess

    f = tmp_path / "f"
    f.write_text("data")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "coordinator.cli", "cp", *far.auth(), "-O", str(port), str(f),
                              far.remote("/")], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 1
    assert "-O" in res.stderr and str(port) in res.stderr
    assert far.docroot is not None and not (far.docroot / "f").exists()


def test_pull_with_remove_after_transfer_deletes_remote_sources(far: FarEnd, tmp_path: Path) -> None:
    """Far-end operations that follow a transfer (removing sources, attributes) wait for its end:
    they share its control channel."""
    assert far.docroot is not None
    remote = far.docroot / "out"
    remote.mkdir()
    for i in range(5):
        (remote / f"f{i}").write_bytes(os.urandom(3000))
    want = {p.name: p.read_bytes() for p in remote.iterdir()}
    local = tmp_path / "in"
    opts = parse_sync_args(["-N", "rat", "-d", str(local), "-r", far.remote("/out"), *far.auth(), "--create-dir",
                            "-K", "pull", "--remove-after-transfer", "-O", str(free_udp_port()), "-l", "1g"])  # fmt: skip
    report = run_sync(opts)
    assert report.ok, report.errors
    assert {p.name: p.read_bytes() for p in local.iterdir() if p.is_file()} == want
    assert list(remote.iterdir()) == []
