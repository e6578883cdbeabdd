"""--dedup (hardlink, inode, copy), ownership (-u, -j, --write-uid, --write-gid), extended
attributes and ACLs (native and metafile, per side), --store-metadata-records: local to local
through the real agent and UDP, and push to a far end over SSH."""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from sshd import FarEnd, free_udp_port, system_sshd

from common.snapshot import Entry, SqliteSnapshot, default_snapshot_path
from coordinator.sync.decide import Action, Plan
from coordinator.sync.dedup import plan_dedup
from coordinator.sync.engine import SyncReport, run_sync
from coordinator.sync.options import OptionError, parse_sync_args

ROOT = os.geteuid() == 0


def sync(src: Path, dst: Path | str, *args: str) -> SyncReport:
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
    return run_sync(opts)


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    return src, dst


def _ino(p: Path) -> int:
    return p.stat().st_ino


# -- --dedup -----------------------------------------------------------------------------------------
def test_dedup_hardlink_links_duplicates_at_the_target(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    data = os.urandom(300_000)
    (src / "a.bin").write_bytes(data)
    (src / "sub").mkdir()
    (src / "sub" / "b.bin").write_bytes(data)
    (src / "c.bin").write_bytes(os.urandom(1000))
    report = sync(src, dst, "-k", "sha1", "--dedup=hardlink")
    assert report.ok, report.errors
    lines = dict(report.lines)
    assert lines["a.bin"] == "SYNCHRONIZED" and lines["sub/b.bin"] == "SYNCHRONIZED(ddp)"
    assert _ino(dst / "a.bin") == _ino(dst / "sub" / "b.bin") != _ino(dst / "c.bin")
    assert (dst / "sub" / "b.bin").read_bytes() == data
    assert report.bytes_sent == len(data) + 1000  # the duplicate crossed no wire
    # a later duplicate is linked to the copy the target already has
    (src / "d.bin").write_bytes(data)
    report = sync(src, dst, "-k", "sha1", "--dedup")
    assert report.ok, report.errors
    assert dict(report.lines) == {"d.bin": "SYNCHRONIZED(ddp)"}
    assert _ino(dst / "d.bin") == _ino(dst / "a.bin")


def test_dedup_copy_makes_independent_copies(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    data = os.urandom(100_000)
    (src / "a").write_bytes(data)
    (src / "b").write_bytes(data)
    report = sync(src, dst, "-k", "md5", "--dedup=copy")
    assert report.ok, report.errors
    assert sorted(s for _, s in report.lines) == ["SYNCHRONIZED", "SYNCHRONIZED(ddp)"]
    assert (dst / "a").read_bytes() == (dst / "b").read_bytes() == data
    assert _ino(dst / "a") != _ino(dst / "b")


def test_dedup_inode_follows_source_hard_links_only(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    data = os.urandom(50_000)
    (src / "a").write_bytes(data)
    os.link(src / "a", src / "a-link")
    (src / "same-content").write_bytes(data)  # identical but not a link: sent on its own
    report = sync(src, dst, "-k", "sha1", "--dedup=inode")
    assert report.ok, report.errors
    assert dict(report.lines)["a-link"] == "SYNCHRONIZED(ddp)"
    assert _ino(dst / "a") == _ino(dst / "a-link") != _ino(dst / "same-content")
    assert (dst / "same-content").read_bytes() == data


def test_without_dedup_duplicates_are_all_sent(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    (src / "a").write_bytes(b"x" * 5000)
    (src / "b").write_bytes(b"x" * 5000)
    report = sync(src, dst, "-k", "sha1")
    assert set(dict(report.lines).values()) == {"SYNCHRONIZED"}
    assert _ino(dst / "a") != _ino(dst / "b")


@pytest.mark.parametrize("args, message", [
    (["--dedup", "-k", "sha1-sparse"], "--dedup: requires -k with a full checksum"),
    (["--dedup=hardlink", "-k", "sha1", "-u"], "--dedup=hardlink: cannot be used with -u"),
    (["--dedup=bogus", "-k", "sha1"], "--dedup"),
])  # fmt: skip
def test_dedup_option_errors(trees: tuple[Path, Path], args: list[str], message: str) -> None:
    src, dst = trees
    with pytest.raises(OptionError, match=message.replace("(", r"\(")):
        parse_sync_args(["-N", "p", "-d", str(src), "-r", str(dst), *args])


def _file(path: str, checksum: str, inode: int = 0, nlink: int = 1) -> Entry:
    return Entry(path, "file", 10, 1, 0o644, inode, 1, nlink, checksum)


def test_plan_dedup_is_pure_and_keeps_one_original_per_group() -> None:
    src = {p: _file(p, "sha1:aa") for p in ("x", "y", "z")} | {"w": _file("w", "sha1:bb")}
    plan = Plan([Action("send", p, source=e) for p, e in sorted(src.items())])
    out = plan_dedup(plan, "hardlink", src, {})
    kinds = {a.path: (a.kind, a.old_path) for a in out.actions}
    assert kinds == {
        "w": ("send", None),
        "x": ("send", None),
        "y": ("dedup", "x"),
        "z": ("dedup", "x"),
    }
    assert plan_dedup(plan, None, src, {}) is plan
    sparse = {"x": _file("x", "sha1s:aa"), "y": _file("y", "sha1s:aa")}
    assert all(a.kind == "send" for a in plan_dedup(Plan([Action("send", p, source=e) for p, e in sparse.items()]),
                                                    "copy", sparse, {}).actions)  # fmt: skip


# -- ownership -----------------------------------------------------------------------------------------
@pytest.mark.skipif(not ROOT, reason="-u/-j/--write-uid need root, as the reference says")
def test_preserve_uid_gid(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    (src / "owned").write_bytes(b"data")
    os.chown(src / "owned", 12345, 23456)
    (src / "plain").write_bytes(b"data2")
    os.chown(src / "plain", 12345, 23456)
    assert sync(src, dst, "-u", "-j").ok
    st = (dst / "owned").stat()
    assert (st.st_uid, st.st_gid) == (12345, 23456)
    dst2 = src.parent / "dst2"
    assert sync(src, dst2, "--create-dir", "-x").ok
    assert (dst2 / "plain").stat().st_uid == os.geteuid()  # not preserved without -u


@pytest.mark.skipif(not ROOT, reason="--write-uid needs root")
def test_write_uid_and_gid_by_name_and_number(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    (src / "f").write_bytes(b"data")
    assert sync(src, dst, "--write-uid=nobody", "--write-gid=4321").ok
    import pwd

    st = (dst / "f").stat()
    assert (st.st_uid, st.st_gid) == (pwd.getpwnam("nobody").pw_uid, 4321)


def test_unknown_write_uid_is_logged_not_an_error(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    (src / "f").write_bytes(b"data")
    report = sync(src, dst, "--write-uid=no-such-user-here")
    assert report.ok, report.errors
    assert (dst / "f").read_bytes() == b"data"


# -- extended attributes and ACLs ----------------------------------------------------------------
def _acl_blob(uid: int) -> bytes:
    """A POSIX access ACL (the kernel's xattr layout): user::rw-, user:uid:r--, group::r--,
    mask::r--, other::r--."""
    undefined = 0xFFFFFFFF
    entries = [
        (0x01, 6, undefined),
        (0x02, 4, uid),
        (0x04, 4, undefined),
        (0x10, 4, undefined),
        (0x20, 4, undefined),
    ]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def _xattrs_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.probe", b"1")
        os.removexattr(path, "user.probe")
        return True
    except OSError:
        return False


@pytest.fixture
def xtrees(trees: tuple[Path, Path]) -> tuple[Path, Path]:
    src, dst = trees
    (src / "doc.txt").write_bytes(b"hello")
    if not _xattrs_supported(src / "doc.txt"):
        pytest.fail("this file system does not support user extended attributes")
    os.setxattr(src / "doc.txt", "user.color", b"blue")
    os.setxattr(src / "doc.txt", "user.bin", bytes(range(256)))
    return src, dst


def test_preserve_xattrs_native(xtrees: tuple[Path, Path]) -> None:
    src, dst = xtrees
    assert sync(src, dst, "--preserve-xattrs=native").ok
    assert os.getxattr(dst / "doc.txt", "user.color") == b"blue"
    assert os.getxattr(dst / "doc.txt", "user.bin") == bytes(range(256))
    assert not (dst / "doc.txt.aspera-meta").exists()


def test_xattrs_not_preserved_by_default(xtrees: tuple[Path, Path]) -> None:
    src, dst = xtrees
    assert sync(src, dst).ok
    assert "user.color" not in os.listxattr(dst / "doc.txt")


def test_preserve_xattrs_metafile_and_remote_format(xtrees: tuple[Path, Path]) -> None:
    src, dst = xtrees
    report = sync(src, dst, "--preserve-xattrs=native", "--remote-preserve-xattrs=metafile")
    assert report.ok, report.errors
    meta = json.loads((dst / "doc.txt.aspera-meta").read_text())
    assert meta["version"] == 1 and meta["xattrs"]["user.color"] == "Ymx1ZQ=="
    assert "user.color" not in os.listxattr(dst / "doc.txt")
    assert "doc.txt.aspera-meta" not in dict(report.lines)  # metafiles are not files of the tree
    # pulling back into a native tree restores the attributes from the metafile
    back = src.parent / "back"
    back.mkdir()
    opts = parse_sync_args(["-N", "back", "-d", str(back), "-r", str(dst), "-O", str(free_udp_port()), "-l", "1g",
                            "-K", "pull", "--preserve-xattrs=native", "--remote-preserve-xattrs=metafile"])  # fmt: skip
    report = run_sync(opts)
    assert report.ok, report.errors
    assert os.getxattr(back / "doc.txt", "user.color") == b"blue"
    assert not (back / "doc.txt.aspera-meta").exists()


@pytest.mark.skipif(not ROOT, reason="setting another user's ACL entry needs root here")
def test_preserve_acls_metafile(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    (src / "f").write_bytes(b"secret")
    try:
        os.setxattr(src / "f", "system.posix_acl_access", _acl_blob(4242))
    except OSError as exc:
        pytest.fail(f"POSIX ACLs unavailable on this file system: {exc}")
    assert sync(src, dst, "--preserve-acls=metafile").ok
    meta = json.loads((dst / "f.aspera-meta").read_text())
    import base64

    assert base64.b64decode(meta["acls"]["system.posix_acl_access"]) == os.getxattr(
        src / "f", "system.posix_acl_access"
    )
    assert "xattrs" not in meta


def test_preserve_acls_native_is_refused_on_linux(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    with pytest.raises(OptionError, match="--preserve-acls"):
        parse_sync_args(["-N", "p", "-d", str(src), "-r", str(dst), "--preserve-acls=native"])


def test_store_metadata_records(xtrees: tuple[Path, Path]) -> None:
    src, dst = xtrees
    assert sync(src, dst, "--preserve-xattrs=native", "--store-metadata-records").ok
    snap = SqliteSnapshot(default_snapshot_path(str(src), "pair"))
    try:
        record = snap.get("local", "doc.txt")
    finally:
        snap.close()
    assert record is not None and record.meta is not None
    assert json.loads(record.meta)["xattrs"]["user.color"] == "Ymx1ZQ=="


# -- through a far end over SSH -----------------------------------------------------------------
@pytest.fixture
def far(tmp_path: Path) -> Iterator[FarEnd]:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    with system_sshd(tmp_path / "sshd", docroot=docroot) as end:
        yield end


def test_remote_dedup_owner_and_xattrs(far: FarEnd, tmp_path: Path) -> None:
    assert far.docroot is not None
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(80_000)
    (src / "a").write_bytes(data)
    (src / "b").write_bytes(data)
    os.setxattr(src / "a", "user.tag", b"v1")
    args = ["-N", "r", "-d", str(src), "-r", far.remote("/m"), *far.auth(), "-O", str(free_udp_port()), "-l", "1g",
            "--create-dir", "-k", "sha1", "--dedup=hardlink", "--preserve-xattrs=native"]  # fmt: skip
    if ROOT:
        args.append("--write-gid=4321")
    report = run_sync(parse_sync_args(args))
    assert report.ok, report.errors
    m = far.docroot / "m"
    assert (m / "b").read_bytes() == data and _ino(m / "a") == _ino(m / "b")
    assert os.getxattr(m / "a", "user.tag") == b"v1"
    if ROOT:
        assert (m / "a").stat().st_gid == 4321
