"""`surge sync` to a remote far end: `surge server` and a system sshd running `surge agent`,
push and pull, changes and deletions, over real SSH and UDP on loopback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from sshd import FarEnd, free_udp_port

from coordinator.sync.engine import SyncError, run_sync
from coordinator.sync.options import parse_sync_args

pytest_plugins = ["sync_remote_helpers"]  # the far fixture


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".surge" not in p.parts}  # fmt: skip


def sync(far: FarEnd, local: Path, remote: str, *args: str) -> object:
    opts = parse_sync_args(["-N", "remote", "-d", str(local), "-r", far.remote(remote), *far.auth(),
                            "-O", str(free_udp_port()), "-l", "1g", *args])  # fmt: skip
    return run_sync(opts)


def test_push_then_changes_then_pull(far: FarEnd, tmp_path: Path) -> None:
    assert far.docroot is not None
    src = tmp_path / "src"
    for i in range(30):
        (src / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 3}" / f"f{i}").write_bytes(os.urandom(1000 + i * 100))
    (src / "big").write_bytes(os.urandom(3_000_000))
    report = sync(far, src, "/mirror", "--create-dir")
    assert report.ok, report.errors  # type: ignore[attr-defined]
    assert tree(far.docroot / "mirror") == tree(src)
    (src / "d0" / "f0").write_bytes(b"changed")
    (src / "d1" / "f1").unlink()
    report = sync(far, src, "/mirror")
    assert report.ok, report.errors  # type: ignore[attr-defined]
    assert tree(far.docroot / "mirror") == tree(src)
    statuses = dict(report.lines)  # type: ignore[attr-defined]
    assert statuses == {"d0/f0": "SYNCHRONIZED", "d1/f1": "SYNCHRONIZED(del)"}
    back = tmp_path / "back"
    back.mkdir()
    opts = parse_sync_args(["-N", "back", "-d", str(back), "-r", far.remote("/mirror"), *far.auth(),
                            "-O", str(free_udp_port()), "-l", "1g", "-K", "pull"])  # fmt: skip
    report = run_sync(opts)
    assert report.ok, report.errors
    assert tree(back) == tree(src)


def test_remote_path_outside_the_docroot_is_refused(far: FarEnd, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    with pytest.raises(SyncError, match=r"escapes|outside"):
        sync(far, src, "/../outside", "--create-dir")
    assert not (tmp_path / "outside").exists()


def test_a_push_resync_with_nothing_to_do_does_not_connect(far: FarEnd, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The snapshot stands for the remote tree: no SSH session for a re-sync that sends nothing;
    one, checking the remote directory first, as soon as something is to be sent."""
    from coordinator.sync import transfer

    assert far.docroot is not None
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"one")
    connects = []
    real = transfer.connect_far_end

    def counting(*args: object, **kw: object) -> object:
        connects.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(transfer, "connect_far_end", counting)

    def run(*args: str) -> object:
        opts = parse_sync_args(["-N", "lazy", "-d", str(src), "-r", far.remote("/lazy"), *far.auth(),
                                "-O", str(free_udp_port()), "-l", "1g", *args])  # fmt: skip
        return run_sync(opts)

    assert run("--create-dir").ok  # type: ignore[attr-defined]
    assert len(connects) == 1
    assert run().lines == []  # type: ignore[attr-defined]
    assert len(connects) == 1
    (src / "d" / "g").write_bytes(b"two")
    assert dict(run().lines) == {"d/g": "SYNCHRONIZED"}  # type: ignore[attr-defined]
    assert len(connects) == 2 and (far.docroot / "lazy" / "d" / "g").read_bytes() == b"two"


def test_a_missing_remote_mount_signature_on_a_far_end_stops_its_deletions(far: FarEnd, tmp_path: Path) -> None:
    """--remote-mount-signature is looked for at the far end (relative to the remote directory):
    when it is missing, a pull deletes nothing of what the remote side seems to have lost."""
    assert far.docroot is not None
    remote = far.docroot / "data"
    remote.mkdir()
    (remote / "a").write_text("1")
    (remote / "MOUNTED").write_text("")
    local = tmp_path / "local"
    local.mkdir()
    assert sync(far, local, "/data", "-K", "pull", "--remote-mount-signature", "MOUNTED").ok  # type: ignore[attr-defined]
    (remote / "a").unlink()
    (remote / "MOUNTED").unlink()
    report = sync(far, local, "/data", "-K", "pull", "--remote-mount-signature", "MOUNTED")
    assert (local / "a").read_text() == "1"
    assert not report.ok  # type: ignore[attr-defined]
