"""A first sync (and --mirror) against a far end that already holds some of the files: the far
end digests its own same-size files (the `digests` operation) and what is identical is recorded
as SYNCHRONIZED(exs), not sent again, as a local pair does. Real `surge server` and system sshd."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from sshd import FarEnd, free_udp_port

from common.serverconfig import UserPolicy
from common.syncdigest import sync_digest
from coordinator.sync.engine import run_sync
from coordinator.sync.options import parse_sync_args
from workers.context import AgentContext
from workers.ops import MAX_DIGESTS, handle_op

pytest_plugins = ["sync_remote_helpers"]  # the far fixture


def sync(far: FarEnd, local: Path, *args: str) -> Any:
    opts = parse_sync_args(["-N", "seeded", "-d", str(local), "-r", far.remote("/dst"), *far.auth(),
                            "-O", str(free_udp_port()), "-l", "1g", "--create-dir", *args])  # fmt: skip
    return run_sync(opts)


def seed(src: Path, dst: Path) -> None:
    """Four files at the source; the far end holds two identical copies (one large enough for
    the sparse digest's samples), one of the same size with other bytes, and none of the last."""
    big = os.urandom(3 << 20)
    for root in (src, dst):
        (root / "d").mkdir(parents=True)
        (root / "d" / "same.txt").write_bytes(b"identical")
        (root / "big.bin").write_bytes(big)
    (src / "other.txt").write_bytes(b"from the source")
    (dst / "other.txt").write_bytes(b"at the far end!")  # same size
    (src / "new.txt").write_bytes(b"new")


def test_a_first_push_records_identical_far_files_without_sending_them(far: FarEnd, tmp_path: Path) -> None:
    assert far.docroot is not None
    src, dst = tmp_path / "src", far.docroot / "dst"
    seed(src, dst)
    inodes = {p: (dst / p).stat().st_ino for p in ("d/same.txt", "big.bin")}
    report = sync(far, src)
    assert report.ok, report.errors
    assert dict(report.lines) == {"d/same.txt": "SYNCHRONIZED(exs)", "big.bin": "SYNCHRONIZED(exs)",
                                  "other.txt": "SYNCHRONIZED", "new.txt": "SYNCHRONIZED"}  # fmt: skip
    assert {p: (dst / p).stat().st_ino for p in inodes} == inodes  # not replaced by a new copy
    assert (dst / "other.txt").read_bytes() == b"from the source"
    assert report.bytes_sent == len(b"from the source") + len(b"new")


def test_a_first_pull_records_identical_local_files_without_fetching_them(far: FarEnd, tmp_path: Path) -> None:
    assert far.docroot is not None
    here, there = tmp_path / "here", far.docroot / "dst"
    seed(there, here)  # the far end is the source now
    report = sync(far, here, "-K", "pull")
    assert report.ok, report.errors
    assert dict(report.lines) == {"d/same.txt": "SYNCHRONIZED(exs)", "big.bin": "SYNCHRONIZED(exs)",
                                  "other.txt": "SYNCHRONIZED", "new.txt": "SYNCHRONIZED"}  # fmt: skip
    assert (here / "other.txt").read_bytes() == b"from the source"


class _Replies:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, msg: dict[str, Any]) -> None:
        self.sent.append(msg)


def _digests(root: Path, **fields: Any) -> dict[str, Any]:
    chan = _Replies()
    ctx = AgentContext(user="u", policy=UserPolicy(docroot=str(root)))
    handle_op(chan, {"type": "op", "op": "digests", "path": "/", **fields}, ctx)  # type: ignore[arg-type]
    return chan.sent[0]


def test_the_digests_operation_stays_inside_the_docroot(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"data")
    (tmp_path / "secret").write_bytes(b"data")
    (root / "link").symlink_to(tmp_path / "secret")
    answer = _digests(root, paths=["d/f", "../secret", "/etc/passwd", "link", "d", "missing"], algorithm="sha1")
    assert answer["type"] == "result"
    assert answer["digests"] == [sync_digest(str(root / "d" / "f"), "sha1", 4), None, None, None, None, None]


def test_the_digests_operation_refuses_a_bad_request(tmp_path: Path) -> None:
    assert _digests(tmp_path, paths=["f"], algorithm="sha-256")["code"] == "request"
    assert _digests(tmp_path, paths=["f"] * (MAX_DIGESTS + 1), algorithm="md5")["code"] == "limit"
    assert _digests(tmp_path, algorithm="md5")["code"] == "request"  # no paths
