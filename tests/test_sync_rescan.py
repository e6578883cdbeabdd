"""The re-scan of a synchronized tree (coordinator/sync/walk.py, localscan.py, parwalk.py): a
push re-sync plans from the changed paths alone, in one process or several (--scan-threads), and
must plan exactly what the whole listing would; the directory rules of --assume-no-mods and
--exclude-dirs-older-than; errors lose nothing."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from common.filters import FilterRule, compile_filters
from common.snapshot import SqliteSnapshot
from coordinator.sync import walk as walk_mod
from coordinator.sync.decide import plan_one_way
from coordinator.sync.engine import SyncReport, run_sync
from coordinator.sync.localscan import scan_local
from coordinator.sync.options import parse_sync_args
from coordinator.sync.scan import scan_tree


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sync(src: Path, dst: Path, *args: str) -> SyncReport:
    opts = parse_sync_args(["-N", "pair", "-d", str(src), "-r", str(dst), "-O", str(free_udp_port()), "-l", "1g",
                            "--create-dir", *args])  # fmt: skip
    return run_sync(opts)


def write(root: Path, rel: str, data: bytes = b"x") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_fifo():
        p.unlink()  # writing would wait for a reader
    p.write_bytes(data)
    return p


def set_mtime(p: Path, ns: int) -> None:
    os.utime(p, ns=(ns, ns), follow_symlinks=False)


# -- the delta plan is the whole plan ------------------------------------------------------------


def _tree(root: Path, rng: random.Random) -> None:
    for i in range(40):
        d = rng.choice(["", "a", "a/b", "a/b/c", "d", "d/e", "f"])
        write(root, f"{d}/f{i}" if d else f"f{i}", rng.randbytes(rng.randint(0, 30)))
    (root / "empty").mkdir()
    os.symlink("a/f1", root / "ln")


def _mutate(root: Path, rng: random.Random) -> None:
    """1 to 8 random changes, each to a random file or, for a few kinds, a random directory
    (with none, or no file to change, a new file)."""
    for _ in range(rng.randint(1, 8)):
        every = sorted(root.rglob("*"))
        files = [str(p.relative_to(root)) for p in every if p.is_file() and not p.is_symlink()]
        dirs = [str(p.relative_to(root)) for p in every if p.is_dir() and not p.is_symlink()]
        what = rng.randrange(14)
        f = rng.choice(files) if files else None
        p = root / f if f else None
        if p is None or not os.path.lexists(p) or not p.is_file():
            what = 0
        if what == 0 or f is None:  # f is None only if what is 0
            write(root, f"{rng.choice([*dirs, ''])}/new{rng.randrange(1000)}".lstrip("/"), b"new")
        elif what in (7, 8, 12) and dirs:
            _change_dir(root / rng.choice(dirs), what)
        else:
            _change_file(root, f, what, rng)


def _change_file(root: Path, f: str, what: int, rng: random.Random) -> None:
    """Change ``what`` (1-6, 9-11) to the file ``f``; any other ``what`` replaces it by a FIFO."""
    p = root / f
    if what == 1:
        p.unlink()
    elif what == 2:
        p.write_bytes(p.read_bytes() + b"+")
    elif what == 3:
        st = p.stat()
        set_mtime(p, st.st_mtime_ns + 1_000_000_000)
    elif what == 4:  # same size, mtime put back: not a change for the snapshot rule
        st = p.stat()
        data = p.read_bytes()
        p.write_bytes(bytes(reversed(data)))
        set_mtime(p, st.st_mtime_ns)
    elif what == 5:
        p.rename(p.with_name(p.name + "-moved"))
    elif what == 6:
        p.unlink()
        p.mkdir()
        write(p, "inside")
    elif what == 9:
        write(root, f"{os.path.dirname(f)}/skip.partial".lstrip("/"))
        write(root, "bad\nname")
    elif what == 10:
        link = root / "ln"
        if os.path.lexists(link):
            link.unlink()
        os.symlink(rng.choice(["a", "nowhere", "a/f2"]), link)
    elif what == 11:
        write(root, f"{os.path.dirname(f)}/x.tmp".lstrip("/"), b"excluded")
    else:
        p.unlink()
        os.mkfifo(p)


def _change_dir(d: Path, what: int) -> None:
    """Change ``what`` to the directory ``d``: 7 renames it, 8 replaces it by a file, 12 by
    something a sync skips (a FIFO)."""
    if what == 7:
        if d.is_dir() and d.name != "empty":
            d.rename(d.with_name(d.name + "-renamed"))
    elif what == 8:
        if d.is_dir():
            _remove_tree(d)
            d.touch()  # a directory replaced by a file
    elif d.is_dir() and not d.is_symlink():  # 12: a directory replaced by something a sync skips
        _remove_tree(d)
        os.mkfifo(d)


def _remove_tree(d: Path) -> None:
    """Remove the directory ``d`` and everything in it (links not followed)."""
    for q in sorted(d.rglob("*"), reverse=True):
        q.unlink() if not q.is_dir() or q.is_symlink() else q.rmdir()
    d.rmdir()


class _ProtocolOnly:
    """A store with the SnapshotStore methods alone (as the Redis store): the scan's generic
    fallbacks for brief records."""

    def __init__(self, store: SqliteSnapshot) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        if name in ("load", "get", "iter_side", "count"):
            return getattr(self.store, name)
        raise AttributeError(name)


class _Opts:
    symbolic_links = "copy"

    def __init__(self, scan_threads: int = 1, assume_no_mods: bool = False,
                 exclude_dirs_older_than: float | None = None) -> None:  # fmt: skip
        self.scan_threads = scan_threads
        self.assume_no_mods = assume_no_mods
        self.exclude_dirs_older_than = exclude_dirs_older_than


@pytest.mark.parametrize("seed", range(40))
def test_the_delta_plan_of_a_push_resync_is_the_whole_plan(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = tmp_path / "src"
    _tree(root, rng)
    filters = compile_filters([FilterRule("exclude", "*.tmp")]) if seed % 2 else None
    snap = SqliteSnapshot(str(tmp_path / "snap.db"))
    try:
        snap.apply("local", scan_tree(str(root), filters=filters).entries.values())
        _mutate(root, rng)
        renames = {"file_rename": bool(seed % 3), "dir_rename": bool(seed % 5)}

        def plan(whole: bool, threads: int = 1, **dirs: Any) -> list[Any]:
            local = scan_local(str(root), snap, _Opts(threads, **dirs), filters, whole=whole)
            snapshot = {p: e for p, e in local.snapshot.items() if not (filters and filters.excluded(p, e.kind == "dir"))}
            return plan_one_way(local.entries, None, snapshot, excluded=filters.excluded if filters else None,
                                **renames).actions  # fmt: skip

        assert plan(False) == plan(True)
        assert plan(False, threads=3) == plan(True)  # --scan-threads: the walk shared by processes
        # The directory rules read records lazily; the whole listing carries them: same plan.
        rules = ({}, {"assume_no_mods": True}, {"exclude_dirs_older_than": time.time() + 5},
                 {"exclude_dirs_older_than": 1.0, "assume_no_mods": True})  # fmt: skip
        for rule in rules:
            assert plan(False, **rule) == plan(True, **rule), rule
        store, snap = snap, _ProtocolOnly(snap)  # type: ignore[assignment]
        for rule in rules:  # a store without brief records of its own (the Redis one)
            assert plan(False, threads=3, **rule) == plan(True, **rule), rule
        snap = store
    finally:
        snap.close()


# -- end to end ----------------------------------------------------------------------------------


def test_a_file_changed_in_place_with_its_size_and_mtime_kept_is_not_resent(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    p = write(src, "d/f", b"one")
    assert sync(src, dst).ok
    mtime = p.stat().st_mtime_ns
    p.write_bytes(b"two")
    set_mtime(p, mtime)
    assert sync(src, dst).lines == []  # the snapshot rule: same size and mtime is unchanged
    p.write_bytes(b"three")
    assert dict(sync(src, dst).lines) == {"d/f": "SYNCHRONIZED"}
    assert (dst / "d/f").read_bytes() == b"three"


def test_assume_no_mods_finds_a_new_file_below_an_unchanged_directory(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, "a/b/f")
    assert sync(src, dst).ok
    write(src, "a/b/g", b"new")  # a/b's mtime changes; a's does not
    report = sync(src, dst, "--assume-no-mods")
    assert dict(report.lines) == {"a/b/g": "SYNCHRONIZED"}
    assert (dst / "a/b/g").read_bytes() == b"new"
    (src / "a/b/f").unlink()
    assert dict(sync(src, dst, "--assume-no-mods").lines) == {"a/b/f": "SYNCHRONIZED(del)"}
    assert not (dst / "a/b/f").exists()


def test_assume_no_mods_does_not_look_at_files_of_an_unchanged_directory(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    p = write(src, "a/f", b"one")
    assert sync(src, dst).ok
    p.write_bytes(b"changed")  # the directory's mtime stays
    assert sync(src, dst, "--assume-no-mods").lines == []
    assert dict(sync(src, dst).lines) == {"a/f": "SYNCHRONIZED"}  # a plain re-sync sees it


def test_assume_no_mods_lists_a_directory_once_its_mtime_changes(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    p = write(src, "a/f", b"one")
    assert sync(src, dst).ok
    p.write_bytes(b"changed")
    write(src, "a/g")  # now a's mtime changed: it is listed, and f with it
    assert dict(sync(src, dst, "--assume-no-mods").lines) == {"a/f": "SYNCHRONIZED", "a/g": "SYNCHRONIZED"}


def test_exclude_dirs_older_than_does_not_enter_old_directories(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    old = 1_000_000_000
    for rel in ("old/sub/f", "new/f"):
        write(src, rel)
    for rel in ("old/sub/f", "old/sub", "old"):
        set_mtime(src / rel, old * 10**9)
    limit = "--exclude-dirs-older-than=1500000000"
    assert sync(src, dst, limit).ok
    p = src / "old/sub/f"
    p.write_bytes(b"changed")  # below an old directory: not looked at
    set_mtime(p, old * 10**9)
    write(src, "new/g")
    assert dict(sync(src, dst, limit).lines) == {"new/g": "SYNCHRONIZED"}
    write(src, "old/h")  # old's mtime is now recent: it is entered again
    assert dict(sync(src, dst, limit).lines) == {"old/h": "SYNCHRONIZED"}


def test_a_directory_that_cannot_be_listed_is_an_error_and_deletes_nothing(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, "a/f")
    write(src, "b/g")
    assert sync(src, dst).ok
    real = os.listdir
    blocked = os.fsencode(src / "a")

    def listdir(path: Any) -> Any:
        if os.fsencode(path) == blocked:
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(walk_mod.os, "listdir", listdir)
    for args in ((), ("--mirror",)):
        report = sync(src, dst, *args)
        assert report.errors == [("a", "Permission denied")]
        assert (dst / "a/f").exists()
        assert "SYNCHRONIZED(del)" not in dict(report.lines).values()


def test_a_file_replaced_by_a_directory_and_back(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, "x", b"file")
    assert sync(src, dst).ok
    (src / "x").unlink()
    write(src, "x/inside", b"in")
    assert sync(src, dst).ok
    assert (dst / "x/inside").read_bytes() == b"in"
    (src / "x/inside").unlink()
    (src / "x").rmdir()
    write(src, "x", b"file again")
    assert sync(src, dst).ok
    assert (dst / "x").read_bytes() == b"file again"


def test_a_file_moved_out_of_a_deleted_directory_is_a_rename(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    write(src, "gone/deep/f", os.urandom(5000))
    assert sync(src, dst).ok
    time.sleep(0.01)
    os.rename(src / "gone/deep/f", src / "f")
    (src / "gone/deep").rmdir()
    (src / "gone").rmdir()
    report = sync(src, dst, "--scan-file-rename")
    assert dict(report.lines) == {"f": "SYNCHRONIZED(mov)", "gone": "SYNCHRONIZED(del)"}
    assert (dst / "f").exists() and not (dst / "gone").exists()
