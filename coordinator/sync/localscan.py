"""The local side of a sync: walk the tree against the snapshot's records and hand the plan what
it compares.

A push re-sync (no --mirror, no --dedup) needs only what changed: the walk compares each file's
stat with its brief record and builds entries for new and changed paths alone, and the plan gets
the records of those paths and of the gone ones. Every other case (a first sync, pull, bidi,
--mirror, --dedup) gets the whole tree and the whole snapshot.

--assume-no-mods and --exclude-dirs-older-than start from the records of directories only: a
directory left unlisted costs a stat, and the records of a listed one are read when it is listed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from common.filters import Filter
from common.snapshot import Entry, SnapshotStore
from common.snapshot.brief import DIR, Brief, key_path, load_brief, load_brief_below

from .parwalk import parallel_walk
from .walk import DirPolicy, DirRule, Known, Walk, walk

__all__ = ["LocalScan", "SnapshotDirs", "dir_rule", "scan_local"]

# Past this many changed or gone paths, one load of every record beats a query per path.
_POINT_READS = 2000


class SnapshotDirs(Known):
    """The snapshot's directories up front; the other records of a directory read when the walk
    lists it (`load_children`), so unlisted directories cost no records at all."""

    def __init__(self, store: SnapshotStore, side: str, *, load_children: bool = True) -> None:
        self.store, self.side, self.load_children = store, side, load_children
        self.dirs = load_brief(store, side, dirs_only=True)
        super().__init__(dict(self.dirs))
        self._below: dict[bytes, list[bytes]] | None = None

    def enter(self, key: bytes) -> None:
        if self.load_children:
            for k, b in load_brief(self.store, self.side, children_of=key_path(key)).items():
                if b[1] != DIR:  # directories are there already (or were met and taken)
                    self.rows[k] = b

    def forget_below(self, key: bytes) -> None:
        self.rows.update(load_brief_below(self.store, self.side, key_path(key)))

    def subdirs(self, key: bytes) -> list[bytes]:
        return self._index().get(key, [])

    def drop_tree(self, key: bytes) -> None:
        for name in self._index().get(key, []):
            below = key + b"\x00" + name
            self.rows.pop(below, None)
            self.drop_tree(below)

    def _index(self) -> dict[bytes, list[bytes]]:
        if self._below is None:
            self._below = {}
            for k in self.dirs:
                parent, _, name = k.rpartition(b"\x00")
                self._below.setdefault(parent, []).append(name)
        return self._below


def dir_rule(opts: Any, dirs: dict[bytes, Brief], old_dirs: list[str]) -> DirRule | None:
    """--exclude-dirs-older-than: a directory the snapshot has and whose mtime is older than the
    limit is not entered (it goes to `old_dirs`); --assume-no-mods: one whose mtime is the
    recorded one is not listed. The snapshot keeps no recursive mtime (rmtime_ns stays 0), so a
    directory's own mtime decides."""
    limit, same = opts.exclude_dirs_older_than, opts.assume_no_mods
    if limit is None and not same:
        return None

    def rule(path: str, key: bytes, st: os.stat_result) -> DirPolicy:
        before = dirs.get(key)
        if before is None or before[1] != DIR:
            return DirPolicy.LIST
        if limit is not None and st.st_mtime_ns / 1e9 < limit:
            old_dirs.append(path)
            return DirPolicy.REUSE_TREE
        if same and st.st_mtime_ns == before[3]:
            return DirPolicy.REUSE_FILES
        return DirPolicy.LIST

    return rule


@dataclass
class LocalScan:
    entries: dict[str, Entry]  # the local tree as the plan sees it (only what changed, unless whole)
    snapshot: dict[str, Entry]  # the local records the plan needs
    whole: bool  # entries and snapshot are complete (else: the changes, and their records)
    walk: Walk
    old_dirs: list[str] = field(default_factory=list)


def scan_local(root: str, store: SnapshotStore, opts: Any, filters: Filter | None, *, whole: bool) -> LocalScan:
    """Walk `root` against the local records of `store`; `whole`: the plan needs every entry and
    every record (see the module docstring)."""
    old_dirs: list[str] = []
    by_dirs = opts.exclude_dirs_older_than is not None or opts.assume_no_mods
    known: Known | None
    if by_dirs:
        dirs = SnapshotDirs(store, "local", load_children=not whole)
        known, rule = dirs, dir_rule(opts, dirs.dirs, old_dirs)
    else:
        shared = None if whole else parallel_walk(root, store, opts.scan_threads, filters, opts.symbolic_links)
        if shared is not None:
            w, left = shared
            return _delta(store, w, [key_path(k) for k in left], True, old_dirs)
        known = None if whole else Known(load_brief(store, "local"))
        rule = None
    w = walk(root, known=known, emit_unchanged=whole, filters=filters, symlinks=opts.symbolic_links, dir_rule=rule)
    if whole:
        records = store.load("local")
        return LocalScan(_with_kept(w, records), records, True, w, old_dirs)
    assert known is not None
    return _delta(store, w, [key_path(k) for k in known.rows], by_dirs, old_dirs)


def _delta(store: SnapshotStore, w: Walk, gone: list[str], whole_trees: bool, old_dirs: list[str]) -> LocalScan:
    """What a push re-sync plans from: the changed entries, and the records of those and of the
    gone paths (not those below what could not be examined: unknown is not gone)."""
    unsure = w.uncertain + w.unlisted
    if unsure and gone:
        if "" in unsure:  # the root could not be listed: nothing is known to be gone
            gone = []
        tops = tuple(p + "/" for p in unsure)
        gone = [p for p in gone if p not in unsure and not p.startswith(tops)]
    return LocalScan(w.entries, _records(store, list(w.entries), gone, whole_trees), False, w, old_dirs)


def _with_kept(w: Walk, records: dict[str, Entry]) -> dict[str, Entry]:
    """The walk's entries plus the records of what it did not look at, taken as unchanged: below
    directories not listed or not entered, and paths it could not examine."""
    entries = dict(w.entries)
    exact = set(w.uncertain)
    trees = {p for p, how in w.reused if how == DirPolicy.REUSE_TREE} | set(w.unlisted) | exact
    files_of = {p for p, how in w.reused if how == DirPolicy.REUSE_FILES}
    if not trees and not files_of:
        return entries
    everything = "" in trees
    tops = tuple(p + "/" for p in trees)
    for p, e in records.items():
        if p in entries:
            continue
        if everything or p in exact or p.startswith(tops) or (e.kind != "dir" and p.rpartition("/")[0] in files_of):
            entries[p] = e
    return entries


def _records(store: SnapshotStore, changed: list[str], gone: list[str], whole_trees: bool) -> dict[str, Entry]:
    """The records of the changed paths and of the gone ones (with everything below a gone
    directory, which a walk that listed only its parent did not meet)."""
    if len(changed) + len(gone) > _POINT_READS:
        every = store.load("local")
        out = {p: every[p] for p in changed if p in every}
        exact, tops = set(gone), tuple(p + "/" for p in gone)
        out.update((p, e) for p, e in every.items() if p in exact or p.startswith(tops))
        return out
    out = {}
    for p in changed:
        e = store.get("local", p)
        if e is not None:
            out[p] = e
    for p in gone:
        e = store.get("local", p)
        if e is None or p in out:
            continue
        out[p] = e
        if e.kind == "dir" and whole_trees:
            out.update((b.path, b) for b in store.iter_side("local", p))
    return out
