"""Compare and plan, as pure functions: two listings (source and target as scanned now), the
snapshot of the last sync, and the options in; actions out. No I/O.

Decision order for one path in a one-way sync (push; pull is the mirror image):

1. Excluded by the filters: not in the listings at all, unless the snapshot records the path
   (coordinator/sync/tracked.py: a synchronized path stays tracked when its name is excluded).
2. Gone from the source but in the snapshot: delete at the target (unless --ignore-delete, or the
   source's mount signature is missing), or a rename when a new path has its inode (and mtime).
   Below a renamed directory, each path is compared with its record under the old name: what
   changed is sent, what is new is made, what is gone is deleted, in the run of the rename.
3. Unchanged since the snapshot (same kind, size, mtime; with -k none the size alone, as the
   reference says: "a size check only"): nothing, unless its permissions changed (an attribute
   update, without --ignore-mode) or --mirror finds the target missing or different (a target
   file unchanged since its own snapshot record still matches; another is compared by size and
   the -k checksum).
4. New or changed: skip when the target already has it (first sync or --mirror: same size, and
   the same checksum when -k asks for one) - "exists"; only attributes changed - "attributes";
   otherwise transfer, subject to -o (always / older / conflict).
5. --mirror: every target path the source does not have is deleted.
6. A path whose kind changed (a file that became a directory or a link, or the reverse): the
   target's entry of the old kind is removed first ("replace"), then the new one is made.

Bidirectional: a path changed on one side only goes to the other; changed on both sides is a
conflict (-o conflict: the newer wins and the older is kept as a conflict copy); deleted on one
side and unchanged on the other is deleted (with --ignore-delete: not now, and copied back by the
next run); deleted on one side and changed on the other is sent again (a change wins over a
deletion).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from common.snapshot import Entry

__all__ = ["Action", "Plan", "changed", "plan_bidi", "plan_one_way"]


@dataclass(frozen=True, slots=True)
class Action:
    """`kind`: send, mkdir, symlink, delete, rename, attrs, exists, conflict, dedup, skip, forget
    (bidi --ignore-delete: drop the snapshot record of the side `reason` names, so that the next
    run copies the path back to it, as the reference says), replace (remove the target's entry
    of another kind - a file where a directory comes, or the reverse - before the new one takes
    its name; `source` is the entry removed)."""

    kind: str
    path: str
    to_target: bool = True  # for bidi: True = local -> remote, False = remote -> local
    source: Entry | None = None  # the entry being sent / whose attributes are applied
    old_path: str | None = None  # rename: previous name; dedup: the duplicate's original
    reason: str = ""


@dataclass
class Plan:
    actions: list[Action]
    conflicts: int = 0

    def of(self, kind: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]


def changed(now: Entry, before: Entry | None, size_only: bool = False) -> bool:
    """True when `now` differs from the snapshot record `before` (stat-level comparison).
    `size_only` (-k none): "a size check only": a file whose size did not change has not changed,
    whatever its modification time."""
    if before is None or now.kind != before.kind:
        return True
    if now.kind == "dir":
        return False
    if now.kind == "link":
        return now.target != before.target
    return now.size != before.size or (not size_only and now.mtime_ns != before.mtime_ns)


def _mode_changed(now: Entry, before: Entry | None) -> bool:
    """The permissions of `now` differ from the snapshot's (links have none of their own)."""
    return before is not None and now.kind == before.kind != "link" and now.mode != before.mode


def _same_content(a: Entry, b: Entry, use_checksum: bool) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "dir":
        return True
    if a.kind == "link":
        return a.target == b.target
    if a.size != b.size:
        return False
    if use_checksum:
        return a.checksum is not None and a.checksum == b.checksum
    return True


def _order(actions: list[Action], delete_before: bool) -> list[Action]:
    """Directories and renames first, in path order (a parent is made before what is renamed
    into it, a renamed directory before the new directories in it), then transfers and
    attribute updates; deletes (children before parents) last, or first with --delete-before."""
    rank = {"replace": -1, "mkdir": 0, "rename": 0}
    rest = sorted((a for a in actions if a.kind != "delete"), key=lambda a: (rank.get(a.kind, 2), a.path))
    deletes = sorted((a for a in actions if a.kind == "delete"), key=lambda a: a.path, reverse=True)
    return deletes + rest if delete_before else rest + deletes


def plan_one_way(source: Mapping[str, Entry], target: Mapping[str, Entry] | None, snapshot: Mapping[str, Entry],
                 *, overwrite: str = "always", mirror: bool = False, ignore_delete: bool = False,
                 delete_before: bool = False, use_checksum: bool = False, file_rename: bool = False,
                 dir_rename: bool = False, deletes_allowed: bool = True,
                 excluded: Callable[[str, bool], bool] | None = None, size_only: bool = False,
                 modes: bool = False, target_snapshot: Mapping[str, Entry] | None = None) -> Plan:  # fmt: skip
    """`target` is None when the target was not scanned (a re-sync without --mirror: the
    snapshot stands for it). `modes` (without --ignore-mode): a change of permissions alone is
    an attribute update. `target_snapshot`: the snapshot records of the target side, with which
    --mirror recognizes a target file that has not changed since the last sync."""
    actions: list[Action] = []
    gone = {p: e for p, e in snapshot.items() if p not in source}
    by_inode = _rename_sources(gone, file_rename, dir_rename)
    renamed_dirs: list[tuple[str, str]] = []  # (old, new)
    gone_below: dict[str, Entry] = {}  # gone from a renamed directory: deleted where they are then
    for path in sorted(source):
        now = source[path]
        before = snapshot.get(path)
        was = _moved_along(path, renamed_dirs)
        if was is not None:  # its directory was renamed: compared with its record there
            before = snapshot.get(was)
            if before is None or changed(now, before, size_only) or (modes and _mode_changed(now, before)):
                actions += _one_way_path(path, now, before, None, overwrite=overwrite, mirror=False,
                                         use_checksum=use_checksum, size_only=size_only, modes=modes)
            continue
        old = _renamed_from(now, snapshot, by_inode) if before is None and by_inode else None
        if old is not None:
            actions.append(Action("rename", path, source=now, old_path=old))
            gone.pop(old, None)
            if now.kind == "dir":
                renamed_dirs.append((old, path))
                for p in list(gone):
                    if p.startswith(old + "/"):
                        e = gone.pop(p)
                        if path + p[len(old):] not in source:  # gone from it: deletes run before
                            gone_below[p if delete_before else path + p[len(old):]] = e  # or after the rename
            continue
        actions += _one_way_path(path, now, before, target, overwrite=overwrite, mirror=mirror,
                                 use_checksum=use_checksum, size_only=size_only, modes=modes,
                                 target_before=(target_snapshot or {}).get(path))
    if deletes_allowed and not ignore_delete:
        actions += [Action("delete", path, source=e) for path, e in gone.items()
                    if target is None or path in target]
        actions += [Action("delete", path, source=e) for path, e in gone_below.items()]
    if mirror and target is not None:
        actions += _mirror_deletes(source, target, gone, renamed_dirs, excluded)
    return Plan(_order(_collapse_deletes(actions), delete_before))


def _moved_along(path: str, renamed_dirs: list[tuple[str, str]]) -> str | None:
    """The path that `path`, below a directory renamed in this plan, had before the rename."""
    for old, new in renamed_dirs:
        if path.startswith(new + "/"):
            return old + path[len(new):]
    return None


def _rename_sources(gone: Mapping[str, Entry], file_rename: bool, dir_rename: bool) -> dict[tuple[int, int], str]:
    """The paths gone since the snapshot that a new path may be a rename of, by (dev, inode):
    files with one link (--scan-file-rename) and directories (--scan-dir-rename)."""
    by_inode: dict[tuple[int, int], str] = {}
    if file_rename or dir_rename:
        for p, e in gone.items():
            if (e.kind == "file" and file_rename and e.nlink <= 1) or (e.kind == "dir" and dir_rename):
                by_inode[(e.dev, e.inode)] = p
    return by_inode


def _renamed_from(now: Entry, snapshot: Mapping[str, Entry], by_inode: Mapping[tuple[int, int], str]) -> str | None:
    """The gone path `now` was renamed from: the same inode and kind, and for a file the same mtime."""
    old = by_inode.get((now.dev, now.inode))
    old_entry = snapshot.get(old) if old else None
    if old and old_entry is not None and old_entry.kind == now.kind and (
            now.kind == "dir" or old_entry.mtime_ns == now.mtime_ns):  # fmt: skip
        return old
    return None


def _one_way_path(path: str, now: Entry, before: Entry | None, target: Mapping[str, Entry] | None, *,
                  overwrite: str, mirror: bool, use_checksum: bool, size_only: bool, modes: bool,
                  target_before: Entry | None = None) -> list[Action]:  # fmt: skip
    """Steps 3 and 4 of the decision order for a path the source has and did not rename.
    `target_before`: the snapshot's record of the target's entry."""
    there = target.get(path) if target is not None else None
    recorded = before if target is None else None  # an unscanned target as the snapshot saw it
    if not changed(now, before, size_only):
        if modes and _mode_changed(now, before):
            return [Action("attrs", path, source=now, reason="permissions changed")]
        if mirror and target is not None and (there is None or not (
                (target_before is not None and not changed(there, target_before, size_only))
                or _same_content(now, there, use_checksum))):  # fmt: skip
            return _made(now, path, there, recorded)
        return []
    if now.kind == "dir":
        if there is None or there.kind != "dir":
            return _made(now, path, there, recorded)
        return [Action("exists", path, source=now)]
    if there is not None and _same_content(now, there, use_checksum):
        return [Action("exists", path, source=now, reason="identical at the target")]
    if before is not None and now.kind == "file" and before.kind == "file" and now.size == before.size \
            and use_checksum and now.checksum is not None and now.checksum == before.checksum:
        return [Action("attrs", path, source=now, reason="attributes changed")]
    if overwrite == "older" and there is not None and there.mtime_ns >= now.mtime_ns:
        return [Action("skip", path, source=now, reason="target not older")]
    return _made(now, path, there, recorded)


def _mirror_deletes(source: Mapping[str, Entry], target: Mapping[str, Entry], gone: Mapping[str, Entry],
                    renamed_dirs: list[tuple[str, str]], excluded: Callable[[str, bool], bool] | None) -> list[Action]:  # fmt: skip
    """Step 5, --mirror: the target paths the source does not have, except the excluded ones,
    those step 2 handles and those inside a renamed directory."""
    actions = []
    for path, e in target.items():
        if path in source or path in gone or (excluded and excluded(path, e.kind == "dir")):
            continue
        if not any(path.startswith(new + "/") or path == new for _, new in renamed_dirs):
            actions.append(Action("delete", path, source=e, reason="not at the source (--mirror)"))
    return actions


def _make(entry: Entry, path: str, to_target: bool = True) -> Action:
    if entry.kind == "dir":
        return Action("mkdir", path, to_target, source=entry)
    if entry.kind == "link":
        return Action("symlink", path, to_target, source=entry)
    return Action("send", path, to_target, source=entry)


def _made(now: Entry, path: str, there: Entry | None, before: Entry | None, to_target: bool = True) -> list[Action]:
    """The action making `now` at the target, after a "replace" when the target holds (as
    scanned, or as the snapshot last saw it when it was not scanned) an entry of another kind."""
    old = there if there is not None else before
    make = _make(now, path, to_target)
    if old is None or old.kind == now.kind:
        return [make]
    return [Action("replace", path, to_target, source=old, reason=f"a {old.kind} becomes a {now.kind}"), make]


def _collapse_deletes(actions: list[Action]) -> list[Action]:
    """A deleted (or replaced) directory takes its contents with it: drop the deletes below it."""
    dirs = sorted(a.path for a in actions
                  if a.kind in ("delete", "replace") and a.source is not None and a.source.kind == "dir")
    if not dirs:
        return actions
    out = []
    for a in actions:
        if a.kind == "delete" and any(a.path.startswith(d + "/") for d in dirs):
            continue
        out.append(a)
    return out


def _keep_changed_dirs(actions: list[Action]) -> list[Action]:
    """Bidi: a directory deleted on one side while something below it was made or changed on the
    other is not deleted there (a change wins over a deletion, as for a file): it is made again
    on the side that deleted it, and only its unchanged contents go."""
    made = [a for a in actions if a.kind in ("send", "mkdir", "symlink", "replace", "conflict")]
    out = []
    for a in actions:
        if a.kind == "delete" and a.source is not None and a.source.kind == "dir":
            below = a.path + "/"
            if any(m.path.startswith(below) and m.to_target != a.to_target for m in made):
                out.append(_make(a.source, a.path, not a.to_target))
                continue
        out.append(a)
    return out


def plan_bidi(local: Mapping[str, Entry], remote: Mapping[str, Entry], snap_local: Mapping[str, Entry],
              snap_remote: Mapping[str, Entry], *, ignore_delete: bool = False, delete_before: bool = False,
              use_checksum: bool = False, deletes_allowed_local: bool = True,
              deletes_allowed_remote: bool = True, size_only: bool = False, modes: bool = False) -> Plan:  # fmt: skip
    """`deletes_allowed_local` (`_remote`): what is gone from the local (remote) side is deleted
    on the other one; False when that side's mount signature is missing (its mount may be gone)."""
    actions: list[Action] = []
    conflicts = 0
    for path in sorted(set(local) | set(remote) | set(snap_local) | set(snap_remote)):
        lnow, rnow = local.get(path), remote.get(path)
        lbefore, rbefore = snap_local.get(path), snap_remote.get(path)
        lchg = lnow is not None and changed(lnow, lbefore, size_only)
        rchg = rnow is not None and changed(rnow, rbefore, size_only)
        lgone = lnow is None and lbefore is not None
        rgone = rnow is None and rbefore is not None
        if lnow is not None and rnow is not None:
            if not lchg and not rchg:
                lmode, rmode = modes and _mode_changed(lnow, lbefore), modes and _mode_changed(rnow, rbefore)
                if lmode != rmode:  # permissions changed on one side only
                    actions.append(Action("attrs", path, lmode, source=lnow if lmode else rnow,
                                          reason="permissions changed"))  # fmt: skip
                continue
            if _same_content(lnow, rnow, use_checksum):
                actions.append(Action("exists", path, source=lnow))
                continue
            if lchg and rchg:
                newer_local = lnow.mtime_ns >= rnow.mtime_ns
                conflicts += 1
                actions.append(Action("conflict", path, newer_local, source=lnow if newer_local else rnow,
                                      reason="changed on both sides; the newer wins, the older is kept"))  # fmt: skip
                continue
            actions += _made(lnow, path, rnow, None, True) if lchg else _made(rnow, path, lnow, None, False)
        elif lnow is not None:
            if rgone and not lchg:
                if deletes_allowed_remote and not ignore_delete:
                    actions.append(Action("delete", path, False, source=lnow, reason="deleted on the remote side"))
                elif deletes_allowed_remote:  # --ignore-delete: recopied by the next run
                    actions.append(Action("forget", path, source=lnow, reason="remote"))
            else:
                actions.append(_make(lnow, path, True))
        elif rnow is not None:
            if lgone and not rchg:
                if deletes_allowed_local and not ignore_delete:
                    actions.append(Action("delete", path, True, source=rnow, reason="deleted on the local side"))
                elif deletes_allowed_local:  # --ignore-delete: recopied by the next run
                    actions.append(Action("forget", path, source=rnow, reason="local"))
            else:
                actions.append(_make(rnow, path, False))
    return Plan(_order(_collapse_deletes(_keep_changed_dirs(actions)), delete_before), conflicts)
