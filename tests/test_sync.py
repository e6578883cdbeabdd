"""`surge sync` semantics, declaratively: build both trees, run one sync, assert both listings
and the status lines. Local to local (the embedded default: local agent, UDP on loopback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.sync.engine import SyncError, SyncReport, run_sync
from coordinator.sync.options import parse_sync_args


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listing(root: Path) -> dict[str, bytes | None]:
    """path -> content (None for directories), without the snapshot directory."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".surge"]
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            out[os.path.normpath(os.path.join(rel, d))] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.normpath(os.path.join(rel, f))] = os.readlink(p).encode() if os.path.islink(p) else Path(p).read_bytes()
    return out


def write(root: Path, files: dict[str, str | bytes | None]) -> None:
    for rel, content in files.items():
        p = root / rel
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)


def sync(src: Path, dst: Path, *args: str) -> SyncReport:
    opts = parse_sync_args(["-N", "pair", "-d", str(src), "-r", str(dst), "-O", str(free_udp_port()), "-l", "1g", *args])
    return run_sync(opts)


def statuses(report: SyncReport) -> dict[str, str]:
    return dict(report.lines)


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    return src, dst


def test_push_initial_copies_everything(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"a.txt": "alpha", "d/b.bin": os.urandom(200_000), "d/e/c": "", "empty_dir": None})
    report = sync(src, dst)
    assert report.ok, report.errors
    assert listing(dst) == listing(src)
    st = statuses(report)
    assert st["a.txt"] == "SYNCHRONIZED" and st["d/b.bin"] == "SYNCHRONIZED"
    assert not list(dst.rglob("*.partial"))


def test_push_resync_without_change_transfers_nothing(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"a": "1", "b/c": "2"})
    sync(src, dst)
    report = sync(src, dst)
    assert report.ok and report.bytes_sent == 0
    assert not [s for _, s in report.lines if s == "SYNCHRONIZED"]


def test_push_sends_changes_and_deletes(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"keep": "k", "change": "v1", "gone": "g", "olddir/x": "x"})
    sync(src, dst)
    (src / "change").write_text("version 2")
    (src / "gone").unlink()
    (src / "olddir" / "x").unlink()
    (src / "olddir").rmdir()
    write(src, {"new": "n"})
    report = sync(src, dst)
    assert report.ok, report.errors
    assert listing(dst) == listing(src)
    st = statuses(report)
    assert st["change"] == "SYNCHRONIZED" and st["new"] == "SYNCHRONIZED"
    assert st["gone"] == "SYNCHRONIZED(del)" and st["olddir"] == "SYNCHRONIZED(del)"


def test_ignore_delete_keeps_target_files(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"a": "1", "b": "2"})
    sync(src, dst)
    (src / "b").unlink()
    sync(src, dst, "--ignore-delete")
    assert (dst / "b").read_text() == "2"


def test_first_sync_reports_identical_files_as_existing(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"same": "same content", "diff": "source"})
    write(dst, {"same": "same content", "diff": "target!"})
    report = sync(src, dst)
    st = statuses(report)
    assert st["same"] == "SYNCHRONIZED(exs)"
    assert st["diff"] == "SYNCHRONIZED"
    assert (dst / "diff").read_text() == "source"


def test_mirror_deletes_extra_target_files_and_restores_missing(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"a": "1", "b": "2"})
    sync(src, dst)
    write(dst, {"extra": "x"})
    (dst / "a").unlink()
    report = sync(src, dst, "--mirror")
    assert report.ok, report.errors
    assert listing(dst) == listing(src)
    assert statuses(report)["extra"] == "SYNCHRONIZED(del)"


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_mirror_leaves_files_that_match_at_the_target(trees: tuple[Path, Path], direction: str) -> None:
    """--mirror replaces only "a destination file that does not match the size or checksum of
    the source file": an unchanged file that is already the same at the target is not sent."""
    local, remote = trees
    source, target = (local, remote) if direction == "push" else (remote, local)
    write(source, {"same": "kept", "d/same2": "kept too", "edited": "source"})
    assert sync(local, remote, "-K", direction).ok
    write(target, {"edited": "target"})  # same size, different content
    report = sync(local, remote, "-K", direction, "--mirror")
    assert report.ok, report.errors
    assert statuses(report) == {"edited": "SYNCHRONIZED"}
    assert listing(target) == listing(source)
    assert statuses(sync(local, remote, "-K", direction, "--mirror")) == {}


def test_pull_copies_remote_to_local(trees: tuple[Path, Path]) -> None:
    src, dst = trees  # pull: the "remote" (-r) is the source
    write(dst, {"r1": "remote one", "sub/r2": os.urandom(50_000)})
    report = sync(src, dst, "-K", "pull")
    assert report.ok, report.errors
    assert listing(src) == listing(dst)


def test_bidi_merges_both_sides(trees: tuple[Path, Path]) -> None:
    local, remote = trees
    write(local, {"l": "from local"})
    write(remote, {"r": "from remote"})
    report = sync(local, remote, "-K", "bidi")
    assert report.ok, report.errors
    assert listing(local) == listing(remote) == {"l": b"from local", "r": b"from remote"}
    (local / "l").write_text("changed locally")
    (remote / "r").unlink()
    sync(local, remote, "-K", "bidi")
    assert (remote / "l").read_text() == "changed locally"
    assert not (local / "r").exists()


def test_bidi_conflict_keeps_both_versions(trees: tuple[Path, Path]) -> None:
    local, remote = trees
    write(local, {"doc": "base"})
    sync(local, remote, "-K", "bidi")
    (local / "doc").write_text("local edit")
    time.sleep(0.05)
    (remote / "doc").write_text("remote edit, newer")
    report = sync(local, remote, "-K", "bidi")
    assert report.conflicts == 1
    assert (local / "doc").read_text() == "remote edit, newer" == (remote / "doc").read_text()
    kept = [p for p in local.iterdir() if p.name.startswith("doc.conflict-")]
    assert len(kept) == 1 and kept[0].read_text() == "local edit"


@pytest.mark.parametrize("edited", ["local", "remote"])
def test_bidi_sends_an_edit_that_keeps_the_size(trees: tuple[Path, Path], edited: str) -> None:
    local, remote = trees
    write(local, {"doc": "aaaa"})
    sync(local, remote, "-K", "bidi")
    changed, other = (local, remote) if edited == "local" else (remote, local)
    (changed / "doc").write_text("bbbb")
    os.utime(changed / "doc", ns=(time.time_ns(), time.time_ns() + 10**9))
    report = sync(local, remote, "-K", "bidi")
    assert report.ok, report.errors
    assert statuses(report)["doc"] == "SYNCHRONIZED"
    assert (other / "doc").read_text() == "bbbb"


def test_bidi_first_sync_of_different_files_of_one_size_is_a_conflict(trees: tuple[Path, Path]) -> None:
    local, remote = trees
    write(local, {"doc": "aaaa", "same": "ssss"})
    write(remote, {"doc": "bbbb", "same": "ssss"})
    os.utime(remote / "doc", (1_000_000_000, 1_000_000_000))  # the older
    report = sync(local, remote, "-K", "bidi")
    assert report.conflicts == 1 and statuses(report)["same"] == "SYNCHRONIZED(exs)"
    assert (local / "doc").read_text() == "aaaa" == (remote / "doc").read_text()
    kept = [p for p in remote.iterdir() if p.name.startswith("doc.conflict-")]
    assert len(kept) == 1 and kept[0].read_text() == "bbbb"


def test_exclude_filters_skip_paths(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"a.jpg": "j", "b.txt": "t", "cache/x": "c"})
    report = sync(src, dst, "--exclude", "*.jpg", "--exclude", "cache/")
    assert report.ok
    assert set(listing(dst)) == {"b.txt"}


def test_previously_synced_file_that_becomes_excluded_is_not_deleted(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"a.log": "l", "b": "b"})
    sync(src, dst)
    report = sync(src, dst, "--exclude", "*.log")
    assert report.ok
    assert (dst / "a.log").read_text() == "l"


def test_file_rename_is_a_rename_not_a_transfer(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"old.bin": os.urandom(100_000)})
    sync(src, dst, "--scan-file-rename")
    (src / "old.bin").rename(src / "new.bin")
    report = sync(src, dst, "--scan-file-rename")
    assert statuses(report)["new.bin"] == "SYNCHRONIZED(mov)"
    assert report.bytes_sent == 0
    assert listing(dst) == listing(src)


def test_directory_rename_moves_the_tree(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {f"photos/{i}.jpg": os.urandom(1000) for i in range(20)})
    sync(src, dst, "--scan-dir-rename", "--scan-file-rename")
    (src / "photos").rename(src / "pictures")
    report = sync(src, dst, "--scan-dir-rename", "--scan-file-rename")
    assert report.ok, report.errors
    assert report.bytes_sent == 0
    assert listing(dst) == listing(src)


@pytest.mark.parametrize("order", [[], ["--delete-before"]])
def test_directory_rename_then_its_changes_in_the_same_run(trees: tuple[Path, Path], order: list[str]) -> None:
    """The reference: "the target directory is renamed. The source directory is scanned for
    content changes, and the target directory is updated" - in that run, not the next."""
    src, dst = trees
    write(src, {"photos/same": "s", "photos/edited": "e", "photos/gone": "g", "photos/sub/deep": "d"})
    args = ["--scan-dir-rename", *order]
    sync(src, dst, *args)
    (src / "photos").rename(src / "pictures")
    write(src, {"pictures/edited": "edited, longer", "pictures/added": "a", "pictures/sub/deep": "D",
                "pictures/new/deeper/n": "n"})
    (src / "pictures" / "gone").unlink()
    report = sync(src, dst, *args)
    assert report.ok, report.errors
    assert listing(dst) == listing(src)
    st = statuses(report)
    assert st["pictures"] == "SYNCHRONIZED(mov)" and "pictures/same" not in st
    assert st["pictures/edited"] == st["pictures/added"] == st["pictures/sub/deep"] == "SYNCHRONIZED"
    assert st["pictures/new/deeper/n"] == "SYNCHRONIZED"
    assert st["photos/gone" if order else "pictures/gone"] == "SYNCHRONIZED(del)"  # deleted before the rename
    assert sync(src, dst, *args).lines == []


def test_symlinks_copied_by_default_and_skipped_on_request(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"target": "t"})
    os.symlink("target", src / "link")
    sync(src, dst)
    assert os.readlink(dst / "link") == "target"
    dst2 = dst.parent / "dst2"
    dst2.mkdir()
    opts = parse_sync_args(["-N", "other", "-d", str(src), "-r", str(dst2), "-O", str(free_udp_port()), "-n", "skip"])
    run_sync(opts)
    assert not (dst2 / "link").exists() and (dst2 / "target").exists()


def test_preserve_time(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"f": "x"})
    os.utime(src / "f", (1_000_000_000, 1_200_000_000))
    sync(src, dst, "-t")
    assert os.stat(dst / "f").st_mtime == 1_200_000_000


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_preserve_access_time(trees: tuple[Path, Path], direction: str) -> None:
    """--preserve-access-time: the destination gets the source's access time (not its mtime),
    and without -t its own modification time."""
    local, remote = trees
    source, target = (local, remote) if direction == "push" else (remote, local)
    write(source, {"f": "x"})
    os.utime(source / "f", (1_000_000_000, 1_200_000_000))
    assert sync(local, remote, "-K", direction, "--preserve-access-time").ok
    st = os.stat(target / "f")
    assert st.st_atime == 1_000_000_000 and st.st_mtime != 1_200_000_000


def test_remove_after_transfer(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"f": "x", "d/g": "y"})
    report = sync(src, dst, "--remove-after-transfer")
    assert report.ok
    assert (dst / "f").read_text() == "x" and not (src / "f").exists() and not (src / "d" / "g").exists()


def test_missing_mount_signature_propagates_no_deletion(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"a": "1", "MOUNTED": ""})
    sync(src, dst, "--local-mount-signature", str(src / "MOUNTED"))
    (src / "a").unlink()
    (src / "MOUNTED").unlink()
    report = sync(src, dst, "--local-mount-signature", str(src / "MOUNTED"))
    assert (dst / "a").exists()
    assert not report.ok


@pytest.mark.parametrize(("direction", "side"), [("pull", "remote"), ("bidi", "local"), ("bidi", "remote")])
def test_missing_mount_signature_propagates_no_deletion_from_that_side(trees: tuple[Path, Path], direction: str,
                                                                       side: str) -> None:  # fmt: skip
    """A side whose signature is missing looks empty (its mount is gone): nothing it seems to
    have deleted is deleted on the other side, and the run reports an error."""
    local, remote = trees
    unmounted = local if side == "local" else remote
    write(unmounted, {"a": "1", "MOUNTED": ""})
    option = f"--{side}-mount-signature"
    assert sync(local, remote, "-K", direction, option, "MOUNTED").ok
    (unmounted / "a").unlink()
    (unmounted / "MOUNTED").unlink()
    report = sync(local, remote, "-K", direction, option, "MOUNTED")
    other = remote if side == "local" else local
    assert (other / "a").read_text() == "1" and (other / "MOUNTED").exists()
    assert not report.ok


def test_keep_dir_remote_receives_deleted_files(trees: tuple[Path, Path], tmp_path: Path) -> None:
    src, dst = trees
    keep = tmp_path / "attic"
    keep.mkdir()
    write(src, {"old": "o"})
    sync(src, dst)
    (src / "old").unlink()
    sync(src, dst, "--keep-dir-remote", str(keep))
    assert (keep / "old").read_text() == "o" and not (dst / "old").exists()


def test_missing_directory_without_create_dir_changes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    with pytest.raises(SyncError, match="--create-dir"):
        sync(src, tmp_path / "nope")
    assert not (tmp_path / "nope").exists()
    report = sync(src, tmp_path / "nope", "--create-dir")
    assert report.ok and (tmp_path / "nope" / "f").read_text() == "x"


def test_reset_forgets_the_snapshot(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"a": "1"})
    sync(src, dst)
    (dst / "a").unlink()
    assert not (dst / "a").exists()
    sync(src, dst)  # the snapshot says a is synchronized: a push re-sync does not look
    assert not (dst / "a").exists()
    sync(src, dst, "-x")
    assert (dst / "a").read_text() == "1"


def test_cli_status_lines_and_exit_code(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {"one": "1"})
    res = subprocess.run([sys.executable, "-m", "coordinator.cli", "sync", "-N", "cli", "-d", str(src), "-r", str(dst),
                          "-O", str(free_udp_port())], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert any(line.startswith("/one") and line.rstrip().endswith("SYNCHRONIZED") for line in res.stdout.splitlines())


@pytest.mark.parametrize(("args", "needle"), [
    (["-N", "bad name!", "-d", "a", "-r", "b"], "-N"),
    (["-N", "p", "-d", "a", "-r", "b", "--exclude", "[abc"], "--exclude"),
    (["-N", "p", "-d", "a", "-r", "b", "-K", "bidi", "--mirror"], "--mirror"),
])  # fmt: skip
def test_bad_input_is_a_one_line_error_with_exit_2(args: list[str], needle: str) -> None:
    res = subprocess.run([sys.executable, "-m", "coordinator.cli", "sync", *args], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


def _sync_process(src: Path, dst: Path, port: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "coordinator.cli", "sync", "-N", "crash", "-d", str(src), "-r", str(dst),
                             "-O", str(port), "-q", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.kill()
    for pid in children:
        try:
            os.kill(int(pid), 9)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def _no_partial_under_final_names(src: Path, dst: Path) -> None:
    for p in dst.rglob("*"):
        if p.is_file() and not p.name.endswith((".partial", ".aspx")) and ".surge" not in p.parts:
            rel = p.relative_to(dst)
            assert p.read_bytes() == (src / rel).read_bytes(), f"{rel} is visible but not complete"


def test_kill_9_during_a_large_file_then_rerun_sends_only_the_rest(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    size = 8_000_000
    write(src, {"big.bin": os.urandom(size)})
    proc = _sync_process(src, dst, free_udp_port(), "-l", "12m")
    deadline = time.monotonic() + 30
    while not (dst / "big.bin.aspx").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (dst / "big.bin.aspx").exists(), "no resume state written"
    _kill_tree(proc)
    assert not (dst / "big.bin").exists()
    report = sync(src, dst)
    assert report.ok, report.errors
    assert listing(dst) == listing(src)
    assert report.bytes_sent == size
    assert 0 < report.wire_bytes < 0.9 * size, f"the rerun sent {report.wire_bytes} of {size} bytes"
    assert not list(dst.rglob("*.partial")) and not list(dst.rglob("*.aspx"))


def test_kill_9_during_a_large_tree_then_rerun_completes(trees: tuple[Path, Path]) -> None:
    src, dst = trees
    write(src, {f"d{i % 10}/f{i:04}": os.urandom(20_000) for i in range(600)})
    proc = _sync_process(src, dst, free_udp_port(), "-l", "20m")
    deadline = time.monotonic() + 30
    while len(list(dst.rglob("f*"))) < 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    _kill_tree(proc)
    _no_partial_under_final_names(src, dst)
    report = sync(src, dst, "-l", "1g")
    assert report.ok, report.errors
    assert listing(dst) == listing(src)
    sent = [p for p, s in report.lines if s == "SYNCHRONIZED"]
    assert 0 < len(sent) < 600, f"the rerun sent {len(sent)} files: it should skip what the first run committed"
