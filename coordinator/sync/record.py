"""Batched snapshot updates: one SQLite transaction per thousand changes (or per second), not per
file. Each path keeps only its last state in the buffer, so ordering inside a batch cannot
matter; tree operations flush first. A crash loses at most the last second of records: those
files are examined again on the next run, never lost."""

from __future__ import annotations

import time

from common.snapshot import Entry, SnapshotStore

__all__ = ["Recorder"]


class Recorder:
    def __init__(self, snap: SnapshotStore, max_ops: int = 1000, max_age: float = 1.0) -> None:
        self.snap = snap
        self.max_ops = max_ops
        self.max_age = max_age
        self._pending: dict[str, dict[str, Entry | None]] = {"local": {}, "remote": {}}
        self._since = time.monotonic()

    def put(self, side: str, entry: Entry | None, path: str | None = None) -> None:
        """Record `entry` for its path (None with `path`: the path is gone)."""
        key = entry.path if entry is not None else path
        assert key is not None
        self._pending[side][key] = entry
        self._maybe_flush()

    def pair(self, path: str, local: Entry | None, remote: Entry | None) -> None:
        self.put("local", local, path)
        self.put("remote", remote, path)

    def delete_tree(self, path: str) -> None:
        self.flush()
        for side in ("local", "remote"):
            self.snap.apply(side, deletes=[path], delete_trees=[path])

    def rename_tree(self, old: str, new: str) -> None:
        self.flush()
        for side in ("local", "remote"):
            self.snap.rename_tree(side, old, new)

    def _maybe_flush(self) -> None:
        if sum(map(len, self._pending.values())) >= self.max_ops or time.monotonic() - self._since > self.max_age:
            self.flush()

    def flush(self) -> None:
        for side, changes in self._pending.items():
            if changes:
                self.snap.apply(side, [e for e in changes.values() if e is not None],
                                [p for p, e in changes.items() if e is None])  # fmt: skip
                changes.clear()
        self._since = time.monotonic()
