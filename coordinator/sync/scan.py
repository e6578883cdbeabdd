"""Scan a synchronized tree into snapshot entries: stat only, checksums only where a decision
needs them. Skips names with line breaks or backslashes (as the reference says), partial and
resume files, the snapshot directory, and everything the filters exclude. With
--exclude-dirs-older-than or --assume-no-mods, directories the snapshot says are unchanged are
not entered: their records are carried over from the snapshot."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from common.checksums import sparse_digest
from common.filters import Filter
from common.snapshot import Entry

__all__ = ["SKIP_SUFFIXES", "BackgroundChecksums", "ScanResult", "entry_from_attrs", "fill_checksums", "scan_tree"]

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


_WHOLE = 256 * 4096  # up to this size, common.checksums.sparse_digest's samples cover the whole file


def _small_sparse_digest(fd: int, size: int) -> str:
    """sparse_digest(fd, size) for a file of at most _WHOLE bytes (its 4 KiB samples then tile
    the file), from one read instead of one per sample."""
    data = os.pread(fd, size, 0)
    if len(data) != size:
        raise OSError(f"file shorter than expected at offset {len(data)}")
    h = hashlib.sha256(size.to_bytes(8, "big"))
    for pos in range(0, size, 4096):
        h.update(pos.to_bytes(8, "big") + data[pos : pos + 4096])
    return h.hexdigest()


def _digest(path: str, algo: str, size: int, mtime_ns: int | None = None) -> str | None:
    """The -k checksum of a file; None when `mtime_ns` is given and the file no longer has that
    size and modification time (it changed since it was scanned)."""
    base = algo.split("-")[0]
    fd = os.open(path, os.O_RDONLY)
    try:
        if algo.endswith("-sparse"):
            digest = f"{base}s:" + (_small_sparse_digest(fd, size) if size <= _WHOLE else sparse_digest(fd, size))
        else:
            h = hashlib.new(base)
            pos = 0
            while data := os.pread(fd, 1 << 20, pos):
                h.update(data)
                pos += len(data)
            digest = f"{base}:" + h.hexdigest()
        if mtime_ns is not None:
            st = os.fstat(fd)
            if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                return None
        return digest
    finally:
        os.close(fd)


def fill_checksums(root: str, entries: dict[str, Entry], paths: Iterable[str], algo: str,
                   threads: int = 4) -> list[tuple[str, str]]:  # fmt: skip
    """Compute the -k checksum of `paths` (files) in place; returns (path, error) pairs. Each
    thread takes a share of the files (a task per file costs more than a small file's digest)."""
    if algo == "none":
        return []
    todo = [p for p in paths if p in entries and entries[p].kind == "file" and entries[p].checksum is None]
    errors: list[tuple[str, str]] = []

    def share(part: list[str]) -> list[tuple[str, str | None, str | None]]:
        out: list[tuple[str, str | None, str | None]] = []
        for p in part:
            try:
                out.append((p, _digest(os.path.join(root, p), algo, entries[p].size), None))
            except OSError as exc:
                out.append((p, None, exc.strerror or str(exc)))
        return out

    n = max(1, min(threads, len(todo)))
    with ThreadPoolExecutor(max_workers=n) as pool:
        for part in pool.map(share, [todo[i::n] for i in range(n)]):
            for p, digest, err in part:
                if err is not None:
                    errors.append((p, err))
                else:
                    entries[p] = dataclasses.replace(entries[p], checksum=digest)
    return errors


class BackgroundChecksums:
    """Checksums no decision waits for (the files a first sync sends), computed in a thread while
    they are transferred: each replaces its entry in `entries` when ready, so the snapshot
    records it. A file changed since its scan gets none (the next run computes it)."""

    def __init__(self, root: str, entries: dict[str, Entry], paths: Iterable[str], algo: str) -> None:
        self.root, self.entries, self.algo = root, entries, algo
        self._paths = sorted(paths)  # the order the transfer sends them in
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="surge-checksums", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for p in self._paths:
            if self._stop.is_set():
                return
            e = self.entries.get(p)
            if e is None or e.kind != "file" or e.checksum is not None:
                continue
            try:
                digest = _digest(os.path.join(self.root, p), self.algo, e.size, e.mtime_ns)
            except OSError:
                continue  # gone or unreadable: the transfer reports it
            if digest is not None:
                self.entries[p] = dataclasses.replace(e, checksum=digest)

    def finish(self, wait: bool = True) -> None:
        """Wait for the rest (or, with `wait` False, stop computing)."""
        if not wait:
            self._stop.set()
        self._thread.join()


def entry_from_attrs(path: str, a: Mapping[str, object]) -> Entry:
    """An entry from the attributes of a far end's `list`/`stat` answer."""
    kind = str(a.get("type", "file"))
    return Entry(path, kind if kind in ("file", "dir", "link") else "file", int(a.get("size", 0)) if kind == "file" else 0,  # type: ignore[call-overload]
                 int(a.get("mtime_ns", 0)), int(a.get("mode", 0)), int(a.get("ino", 0)), int(a.get("dev", 0)),  # type: ignore[call-overload]
                 int(a.get("nlink", 1)), None, a.get("target") if isinstance(a.get("target"), str) else None,  # type: ignore[call-overload,arg-type]
                 0, int(a.get("uid", -1)), int(a.get("gid", -1)))  # type: ignore[call-overload]
