"""Scan a synchronized tree into snapshot entries: stat only, checksums only where a decision
needs them. Skips names with line breaks or backslashes (as the reference says), partial and
resume files, the snapshot directory, and everything the filters exclude. With
--exclude-dirs-older-than or --assume-no-mods, directories the snapshot says are unchanged are
not entered: their records are carried over from the snapshot."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from common.checksums import sparse_digest
from common.filters import Filter
from common.snapshot import Entry

__all__ = ["SKIP_SUFFIXES", "ScanResult", "entry_from_attrs", "fill_checksums", "scan_tree"]

# Transfer state, temporary names, and metadata files (--preserve-xattrs=metafile) are never
# synchronized as files of their own.
SKIP_SUFFIXES = (".partial", ".aspx", ".surge-tmp", ".partial.parts", ".partial.lock", ".aspera-meta")
_DB_DIRS = (".surge", ".private-asp")


@dataclass
class ScanResult:
    entries: dict[str, Entry] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reused_dirs: int = 0  # directories not entered (snapshot carried over)


def _entry(path: str, st: os.stat_result, kind: str, target: str | None = None) -> Entry:
    return Entry(path, kind, st.st_size if kind == "file" else 0, st.st_mtime_ns, stat.S_IMODE(st.st_mode),
                 st.st_ino, st.st_dev, st.st_nlink, None, target, 0, st.st_uid, st.st_gid)  # fmt: skip


def scan_tree(root: str, *, filters: Filter | None = None, symlinks: str = "copy",
              skip_dir: Callable[[str, os.stat_result], bool] | None = None,
              snapshot: Mapping[str, Entry] | None = None, extra_skip: Iterable[str] = (),
              under: str = "") -> ScanResult:  # fmt: skip
    """Entries of the tree under `root` (paths relative to it; only below the directory `under`
    when given). `skip_dir(path, stat)` says a directory may be taken from `snapshot` without
    entering it."""
    result = ScanResult()
    skip_names = set(extra_skip)
    stack = [under]
    while stack:
        rel_dir = stack.pop()
        full_dir = os.path.join(root, rel_dir) if rel_dir else root
        try:
            with os.scandir(full_dir) as it:
                children = list(it)
        except OSError as exc:
            result.errors.append((rel_dir or ".", exc.strerror or str(exc)))
            continue
        for de in children:
            name = de.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not rel_dir and (name in _DB_DIRS or name in skip_names):
                continue
            if "\n" in name or "\r" in name or "\\" in name:
                result.skipped.append((rel, "name contains a line break or backslash"))
                continue
            if name.endswith(SKIP_SUFFIXES):
                continue
            try:
                st = de.stat(follow_symlinks=False)
            except OSError as exc:
                result.errors.append((rel, exc.strerror or str(exc)))
                continue
            target = None
            if stat.S_ISLNK(st.st_mode):
                if symlinks == "skip":
                    continue
                if symlinks == "follow":
                    try:
                        st = os.stat(de.path)
                    except OSError:
                        result.errors.append((rel, "broken symbolic link"))
                        continue
                else:
                    target = os.readlink(de.path)
            if target is not None:
                kind = "link"
            elif stat.S_ISDIR(st.st_mode):
                kind = "dir"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
            else:
                result.skipped.append((rel, "special file"))
                continue
            if filters and filters.excluded_entry(rel, kind == "dir"):
                continue
            result.entries[rel] = _entry(rel, st, kind, target)
            if kind == "dir":
                if skip_dir is not None and snapshot is not None and rel in snapshot and skip_dir(rel, st):
                    result.reused_dirs += 1
                    prefix = rel + "/"
                    for p, e in snapshot.items():
                        if p.startswith(prefix):
                            result.entries[p] = e
                else:
                    stack.append(rel)
    return result


def _digest(path: str, algo: str, size: int) -> str:
    base = algo.split("-")[0]
    if algo.endswith("-sparse"):
        with open(path, "rb") as f:
            return f"{base}s:" + sparse_digest(f.fileno(), size)
    h = hashlib.new(base)
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return f"{base}:" + h.hexdigest()


def fill_checksums(root: str, entries: dict[str, Entry], paths: Iterable[str], algo: str,
                   threads: int = 4) -> list[tuple[str, str]]:  # fmt: skip
    """Compute the -k checksum of `paths` (files) in place; returns (path, error) pairs."""
    if algo == "none":
        return []
    todo = [p for p in paths if p in entries and entries[p].kind == "file" and entries[p].checksum is None]
    errors: list[tuple[str, str]] = []

    def one(p: str) -> tuple[str, str | None, str | None]:
        try:
            return p, _digest(os.path.join(root, p), algo, entries[p].size), None
        except OSError as exc:
            return p, None, exc.strerror or str(exc)

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for p, digest, err in pool.map(one, todo):
            if err is not None:
                errors.append((p, err))
            else:
                e = entries[p]
                entries[p] = Entry(e.path, e.kind, e.size, e.mtime_ns, e.mode, e.inode, e.dev, e.nlink, digest,
                                   e.target, e.rmtime_ns, e.uid, e.gid, e.meta)  # fmt: skip
    return errors


def entry_from_attrs(path: str, a: Mapping[str, object]) -> Entry:
    """An entry from the attributes of a far end's `list`/`stat` answer."""
    kind = str(a.get("type", "file"))
    return Entry(path, kind if kind in ("file", "dir", "link") else "file", int(a.get("size", 0)) if kind == "file" else 0,  # type: ignore[call-overload]
                 int(a.get("mtime_ns", 0)), int(a.get("mode", 0)), int(a.get("ino", 0)), int(a.get("dev", 0)),  # type: ignore[call-overload]
                 int(a.get("nlink", 1)), None, a.get("target") if isinstance(a.get("target"), str) else None,  # type: ignore[call-overload,arg-type]
                 0, int(a.get("uid", -1)), int(a.get("gid", -1)))  # type: ignore[call-overload]
