"""Scan a synchronized tree into snapshot entries (the walk itself is walk.py), and the -k
checksums: only where a decision needs them, or in a thread while the files move."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from common.filters import Filter
from common.snapshot import Entry
from common.syncdigest import sync_digest

from .walk import SKIP_SUFFIXES, walk

__all__ = ["SKIP_SUFFIXES", "BackgroundChecksums", "ScanResult", "entry_from_attrs", "fill_checksums", "scan_tree"]


@dataclass
class ScanResult:
    entries: dict[str, Entry] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def scan_tree(root: str, *, filters: Filter | None = None, symlinks: str = "copy", extra_skip: Iterable[str] = (),
              under: str = "") -> ScanResult:  # fmt: skip
    """Every entry of the tree under `root` (paths relative to it; only below the directory
    `under` when given)."""
    w = walk(root, filters=filters, symlinks=symlinks, extra_skip=extra_skip, under=under)
    return ScanResult(w.entries, w.errors, w.skipped)


def fill_checksums(root: str, entries: dict[str, Entry], paths: Iterable[str], algo: str,
                   threads: int = 4) -> list[tuple[str, str]]:  # fmt: skip
    """Compute the -k checksum of `paths` (files) in place; returns (path, error) pairs. Each
    thread takes a share of the files (a task per file costs more than a small file's digest)."""
    if algo == "none":
        return []
    todo = [p for p in paths if p in entries and entries[p].kind == "file" and entries[p].checksum is None]
    errors: list[tuple[str, str]] = []
    if not todo:
        return errors
    from concurrent.futures import ThreadPoolExecutor

    def share(part: list[str]) -> list[tuple[str, str | None, str | None]]:
        out: list[tuple[str, str | None, str | None]] = []
        for p in part:
            try:
                out.append((p, sync_digest(os.path.join(root, p), algo, entries[p].size), None))
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
                digest = sync_digest(os.path.join(self.root, p), self.algo, e.size, e.mtime_ns)
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
