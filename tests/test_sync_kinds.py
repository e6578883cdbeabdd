"""A path that changes kind between syncs (a file becomes a directory or a link, and back): the
target's entry of the old kind is removed before the new one takes its name, in every
direction, locally and at a `surge server`; the plan says so before anything runs."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from sshd import free_udp_port, surge_server

from common.snapshot import Entry
from coordinator.sync.decide import plan_bidi, plan_one_way
from coordinator.sync.engine import SyncReport, run_sync
from coordinator.sync.options import parse_sync_args


def entry(path: str, kind: str, size: int = 0, mtime: int = 1, target: str | None = None) -> Entry:
    return Entry(path, kind, size, mtime, 0o755 if kind == "dir" else 0o644, 0, 0, 1, None, target)


def sync(src: Path | str, dst: Path | str, *args: str) -> SyncReport:
    opts = parse_sync_args(["-N", "kinds", "-d", str(src), "-r", str(dst), "-O", str(free_udp_port()), "-l", "1g",
                            "--create-dir", *args])  # fmt: skip
    return run_sync(opts)


def shape(root: Path) -> dict[str, object]:
    """Every entry below `root` (the .surge store aside): a link's target, a file's bytes, a dir."""
    out: dict[str, object] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".surge"]
        for name in dirs + files:
            full = Path(dirpath, name)
            rel = str(full.relative_to(root))
            if full.is_symlink():
                out[rel] = ("link", os.readlink(full))
                dirs[:] = [d for d in dirs if d != name]
            elif full.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = full.read_bytes()
    return out


def become(root: Path, rel: str, kind: str, data: bytes = b"") -> None:
    """Replace whatever `rel` is with a new entry of `kind`."""
    p = root / rel
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.is_dir():
        shutil.rmtree(p)
    if kind == "file":
        p.write_bytes(data)
    elif kind == "dir":
        (p / "inside").mkdir(parents=True)
        (p / "inside" / "f").write_bytes(data)
    else:
        os.symlink("elsewhere", p)


# -- the plan ------------------------------------------------------------------------------------


def test_plan_removes_the_old_kind_first_and_its_contents_with_it() -> None:
    snapshot = {"x": entry("x", "dir"), "x/f": entry("x/f", "file", 5)}
    source = {"x": entry("x", "file", 3, mtime=2)}
    plan = plan_one_way(source, None, snapshot)
    assert [(a.kind, a.path, a.source.kind if a.source else None) for a in plan.actions] == [
        ("replace", "x", "dir"), ("send", "x", "file")]  # x/f goes with x: no delete of its own
    # File -> directory, judged from the scanned target this time (a first sync onto a file).
    plan = plan_one_way({"x": entry("x", "dir"), "x/f": entry("x/f", "file", 1)}, {"x": entry("x", "file", 9)}, {})
    assert [(a.kind, a.path) for a in plan.actions] == [("replace", "x"), ("mkdir", "x"), ("send", "x/f")]


def test_plan_leaves_a_kind_alone_when_the_target_lacks_the_path() -> None:
    # Scanned target without the path: nothing to remove, whatever the snapshot recorded.
    plan = plan_one_way({"x": entry("x", "dir")}, {}, {"x": entry("x", "file", 3)})
    assert [a.kind for a in plan.actions] == ["mkdir"]


def test_bidi_plan_replaces_on_the_side_that_did_not_change() -> None:
    before = {"x": entry("x", "file", 3)}
    plan = plan_bidi({"x": entry("x", "link", target="t")}, dict(before), dict(before), dict(before))
    assert [(a.kind, a.path, a.to_target) for a in plan.actions] == [("replace", "x", True), ("symlink", "x", True)]


# -- end to end ----------------------------------------------------------------------------------


@pytest.mark.parametrize("first,second", [("file", "dir"), ("file", "link"), ("dir", "link"), ("dir", "file")])
def test_push_follows_a_change_of_kind_and_back(tmp_path: Path, first: str, second: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "keep").write_bytes(b"untouched")
    for step, kind in enumerate((first, second, first)):
        become(src, "x", kind, b"v%d" % step)
        report = sync(src, dst)
        assert report.ok, report.errors
        assert shape(dst) == shape(src), (step, kind)
        if step:
            assert "keep" not in dict(report.lines) and "x" in dict(report.lines)  # nothing else resent


def test_pull_follows_a_change_of_kind(tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    remote.mkdir()
    become(remote, "x", "file", b"one")
    assert sync(local, remote, "-K", "pull").ok
    become(remote, "x", "dir", b"two")
    report = sync(local, remote, "-K", "pull")
    assert report.ok, report.errors
    assert shape(local) == shape(remote)


def test_bidi_follows_a_change_of_kind_on_either_side(tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    local.mkdir()
    become(local, "x", "file", b"one")
    become(local, "y", "dir", b"two")
    assert sync(local, remote, "-K", "bidi").ok
    become(local, "x", "dir", b"three")
    become(remote, "y", "file", b"four")
    report = sync(local, remote, "-K", "bidi")
    assert report.ok, report.errors
    assert report.conflicts == 0
    assert shape(local) == shape(remote)
    assert shape(local)["y"] == b"four" and shape(local)["x/inside/f"] == b"three"


def test_mirror_replaces_a_target_entry_of_another_kind(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    become(src, "x", "file", b"data")
    assert sync(src, dst).ok
    become(dst, "x", "dir", b"stray")  # changed behind the sync's back
    report = sync(src, dst, "--mirror")
    assert report.ok, report.errors
    assert shape(dst) == shape(src)


def test_a_surge_server_follows_a_change_of_kind(tmp_path: Path) -> None:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    with surge_server(tmp_path / "server", docroot=docroot) as far:
        for step, kind in enumerate(("file", "dir", "link", "file")):
            become(src, "x", kind, b"v%d" % step)
            opts = parse_sync_args(["-N", "kinds", "-d", str(src), "-r", far.remote("/m"), *far.auth(),
                                    "-O", str(free_udp_port()), "-l", "1g", "--create-dir"])  # fmt: skip
            report = run_sync(opts)
            assert report.ok, (kind, report.errors)
            assert shape(docroot / "m") == shape(src), kind


def test_the_replaced_entry_goes_to_keep_dir_remote(tmp_path: Path) -> None:
    src, dst, keep = tmp_path / "src", tmp_path / "dst", tmp_path / "keep"
    src.mkdir()
    keep.mkdir()
    become(src, "x", "file", b"old version")
    assert sync(src, dst).ok
    become(src, "x", "dir", b"new")
    report = sync(src, dst, "--keep-dir-remote", str(keep))
    assert report.ok, report.errors
    assert shape(dst) == shape(src)
    assert (keep / "x").read_bytes() == b"old version"  # kept, not lost


def test_bidi_plan_keeps_a_directory_deleted_on_one_side_with_a_file_changed_below_on_the_other() -> None:
    """A change wins over a deletion (as for a file): the directory is not deleted at the side
    whose file changed, it is made again at the side that deleted it, with the changed file; the
    unchanged files below go."""
    before = {"d": entry("d", "dir"), "d/e": entry("d/e", "dir"), "d/e/h": entry("d/e/h", "file", 3),
              "d/k": entry("d/k", "file", 3)}  # fmt: skip
    remote = {**before, "d/e/h": entry("d/e/h", "file", 5, mtime=2)}
    plan = plan_bidi({}, remote, dict(before), dict(before))
    assert sorted((a.kind, a.path, a.to_target) for a in plan.actions) == [
        ("delete", "d/k", True), ("mkdir", "d", False), ("mkdir", "d/e", False), ("send", "d/e/h", False)]
    flipped = plan_bidi(remote, {}, dict(before), dict(before))
    assert sorted((a.kind, a.path, a.to_target) for a in flipped.actions) == [
        ("delete", "d/k", False), ("mkdir", "d", True), ("mkdir", "d/e", True), ("send", "d/e/h", True)]


def test_bidi_directory_deleted_here_file_changed_there_is_not_lost(tmp_path: Path) -> None:
    local, remote = tmp_path / "local", tmp_path / "remote"
    (local / "d").mkdir(parents=True)
    (local / "d" / "h").write_bytes(b"one")
    (local / "d" / "k").write_bytes(b"kept?")
    assert sync(local, remote, "-K", "bidi").ok
    shutil.rmtree(local / "d")
    (remote / "d" / "h").write_bytes(b"changed there")
    report = sync(local, remote, "-K", "bidi")
    assert report.ok, report.errors
    assert shape(local) == shape(remote) == {"d": "dir", "d/h": b"changed there"}
