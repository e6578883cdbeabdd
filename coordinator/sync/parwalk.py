"""--scan-threads N: the walk of a push re-sync shared by N processes.

Python threads would take turns on the GIL (a stat is too short for another thread to use the
wait), so the helpers are forked processes: the root directory is listed here, its
subdirectories are dealt out, and each helper walks its share against the brief records of that
share (read through its own read-only connection; the pair lock stays with this process) and
sends back what changed, what is gone and its errors. A helper that fails has its share walked
here instead, so the result never depends on the helpers.

Only a process without other threads forks (a thread holding a lock at the fork would leave the
child stuck); elsewhere, and for stores other than SQLite, the walk stays in one process."""

from __future__ import annotations

import marshal
import os
import threading
from collections.abc import Callable
from typing import Any

from common.filters import Filter
from common.snapshot import Entry
from common.snapshot.brief import Brief, key_path, load_brief, load_brief_below
from common.snapshot.sqlite import BriefReader

from .walk import DirPolicy, Known, Walk, walk

__all__ = ["parallel_walk"]

_ENTRY_FIELDS = ("path", "kind", "size", "mtime_ns", "mode", "inode", "dev", "nlink", "checksum", "target",
                 "rmtime_ns", "uid", "gid", "meta")  # fmt: skip


def parallel_walk(root: str, store: Any, workers: int, filters: Filter | None,
                  symlinks: str) -> tuple[Walk, list[bytes]] | None:  # fmt: skip
    """The walk of `root` against the local records of `store` in `workers` processes, and the
    keys of the records it did not meet (gone, unless below a directory that could not be
    listed); None when it cannot share the work here (the caller walks alone)."""
    path = getattr(store, "path", None)
    if workers < 2 or not isinstance(path, str) or not hasattr(os, "fork") or threading.active_count() > 1:
        return None
    known = _Top(store)
    top = walk(root, known=known, filters=filters, symlinks=symlinks, dir_rule=lambda *_: DirPolicy.DEFER)
    shares = [top.deferred[i::workers] for i in range(workers)]
    gone = list(known.rows)

    def below(d: str) -> dict[bytes, Brief]:
        return store.brief_below("local", d)

    helpers = [(_fork(root, path, share, filters, symlinks), share) for share in shares[1:] if share]
    results = [_walk_share(root, below, shares[0], filters, symlinks)]
    for (pid, fd), share in helpers:
        got = _collect(pid, fd)
        results.append(got if got is not None else _walk_share(root, below, share, filters, symlinks))
    for w, left in results:
        _merge(top, w)
        gone.extend(left)
    return top, gone


class _Top(Known):
    """The root's children; the records below one that is a directory no longer, on demand."""

    def __init__(self, store: Any) -> None:
        super().__init__(load_brief(store, "local", children_of=""))
        self.store = store

    def forget_below(self, key: bytes) -> None:
        self.rows.update(load_brief_below(self.store, "local", key_path(key)))


def _walk_share(root: str, below: Callable[[str], dict[bytes, Brief]], share: list[str], filters: Filter | None,
                symlinks: str) -> tuple[Walk, list[bytes]]:  # fmt: skip
    """Walk each directory of `share` against the records below it; the keys of those not met."""
    out = Walk()
    left: list[bytes] = []
    for d in share:
        known = Known(below(d))
        w = walk(root, known=known, filters=filters, symlinks=symlinks, under=d)
        _merge(out, w)
        left.extend(known.rows)
    return out, left


def _merge(into: Walk, w: Walk) -> None:
    into.entries.update(w.entries)
    into.unchanged += w.unchanged
    into.errors += w.errors
    into.skipped += w.skipped
    into.unlisted += w.unlisted
    into.uncertain += w.uncertain


def _fork(root: str, db_path: str, share: list[str], filters: Filter | None, symlinks: str) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        return pid, r
    try:  # the helper: walk, send, and leave without running this process's exit handlers
        os.close(r)
        reader = BriefReader(db_path)
        walked, left = _walk_share(root, lambda d: reader.below("local", d), share, filters, symlinks)
        data = marshal.dumps(_pack(walked, left))
        with os.fdopen(w, "wb") as out:
            out.write(data)
        os._exit(0)
    except BaseException:
        os._exit(1)


def _pack(w: Walk, left: list[bytes]) -> tuple[Any, ...]:
    entries = [tuple(getattr(e, f) for f in _ENTRY_FIELDS) for e in w.entries.values()]
    return (entries, w.unchanged, w.errors, w.skipped, w.unlisted, w.uncertain, left)


def _collect(pid: int, fd: int) -> tuple[Walk, list[bytes]] | None:
    """A helper's result, or None if it failed (its share is then walked here)."""
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    try:
        entries, unchanged, errors, skipped, unlisted, uncertain, left = marshal.loads(data)
        w = Walk({e[0]: Entry(*e) for e in entries}, unchanged, [tuple(x) for x in errors],
                 [tuple(x) for x in skipped], [], list(unlisted), list(uncertain))  # fmt: skip
    except (ValueError, EOFError, TypeError):
        return None
    return w, list(left)
