"""One batch of changes through the one-time engine. The changed paths (and the subtrees of new,
gone or moved directories) are listed on the sides that matter and the snapshot is read for the
same paths; the engine's planners and executor do the rest, exactly as for a whole tree.

Two phases: renames first (a path that is new on one side with the inode of a path gone from
it is renamed at the other end, not sent again), then, over the snapshot as the renames left
it, the ordinary plan: so a file changed inside a renamed directory is still sent.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from typing import Any

from common.snapshot import Entry
from workers.watch import skipped

from ..sync.decide import Action, Plan, changed, plan_bidi, plan_one_way
from ..sync.engine import _checksums, _remote_signature_ok, _signature_ok
from ..sync.execute import execute
from ..sync.scan import scan_tree
from ..sync.sides import LocalSide

__all__ = ["find_renames", "sync_scope", "unannounced"]

Scope = Mapping[str, bool]  # path -> the whole subtree is concerned
Reported = Mapping[str, list[tuple[str, bool]]]  # watched side -> its (path, tree) changes


def _under(path: str, tops: Iterable[str]) -> bool:
    return any(path == t or path.startswith(t + "/") for t in tops)


def _local_entry(root: str, rel: str, symlinks: str) -> Entry | None:
    full = os.path.join(root, *rel.split("/"))
    try:
        st = os.lstat(full)
        target = None
        if stat.S_ISLNK(st.st_mode):
            if symlinks == "skip":
                return None
            if symlinks == "follow":
                st = os.stat(full)
            else:
                target = os.readlink(full)
    except OSError:
        return None
    if target is not None:
        kind = "link"
    elif stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
    else:
        return None  # sockets, devices, fifos: not synchronized
    return Entry(rel, kind, st.st_size if kind == "file" else 0, st.st_mtime_ns, stat.S_IMODE(st.st_mode),
                 st.st_ino, st.st_dev, st.st_nlink, None, target, 0, st.st_uid, st.st_gid)  # fmt: skip


def list_scope(run: Any, side: Any, scope: Scope, snap: Mapping[str, Entry]) -> dict[str, Entry]:
    """What `side` holds now at the scope's paths: each path, and below a directory that is a
    tree change or new to the snapshot."""
    o, filters = run.opts, run.filters
    out: dict[str, Entry] = {}
    for path, tree in scope.items():
        if skipped(path) or (
            filters and filters.excluded(path, False) and filters.excluded(path, True)
        ):
            continue
        if isinstance(side, LocalSide):
            entry = _local_entry(side.root, path, o.symbolic_links)
        else:
            entry = side.stat(path)
        if entry is None or (filters and filters.excluded(path, entry.kind == "dir")):
            continue
        out[path] = entry
        before = snap.get(path)
        if entry.kind == "dir" and (tree or before is None or before.kind != "dir"):
            out.update(_list_below(run, side, path))
    return out


def _list_below(run: Any, side: Any, path: str) -> dict[str, Entry]:
    if isinstance(side, LocalSide):
        return scan_tree(
            side.root, filters=run.filters, symlinks=run.opts.symbolic_links, under=path
        ).entries
    from ..sync.scan import entry_from_attrs

    out = {}
    for a in side.op("list", path)["entries"]:
        rel = f"{path}/{a['path']}"
        if not skipped(rel) and not (
            run.filters and run.filters.excluded(rel, a.get("type") == "dir")
        ):
            out[rel] = entry_from_attrs(rel, a)
    return out


def snapshot_scope(run: Any, which: str, scope: Scope) -> dict[str, Entry]:
    """The snapshot's records for the scope's paths, with the subtrees of directories."""
    out: dict[str, Entry] = {}
    for path in scope:
        before = run.snap.get(which, path)
        if before is None:
            continue
        out[path] = before
        if before.kind == "dir":
            out.update((e.path, e) for e in run.snap.iter_side(which, path))
    return out


def find_renames(source: Mapping[str, Entry], snap_source: Mapping[str, Entry], target: Mapping[str, Entry] | None,
                 snap_target: Mapping[str, Entry], to_target: bool) -> list[Action]:  # fmt: skip
    """Paths new on the source side whose inode (and, for files, mtime) is that of a path gone
    from it, where the other side still has the old path as synchronized (`target` None: not
    listed, the snapshot stands for it). Pure; a renamed directory covers what is below it."""
    gone = {(e.dev, e.inode): p for p, e in snap_source.items()
            if p not in source and (e.kind == "dir" or e.nlink <= 1)}  # fmt: skip
    actions: list[Action] = []
    done: list[str] = []
    for path in sorted(source):
        now = source[path]
        old = gone.get((now.dev, now.inode))
        if path in snap_source or old is None or _under(path, done) or _under(old, done):
            continue
        before = snap_source[old]
        if before.kind != now.kind or (now.kind != "dir" and before.mtime_ns != now.mtime_ns):
            continue
        there, recorded = (target.get(old) if target is not None else None), snap_target.get(old)
        if recorded is None or (target is not None and (there is None or changed(there, recorded))):
            continue
        if target is not None and path in target:
            continue
        actions.append(
            Action("rename", path, to_target, source=now, old_path=old, reason="renamed")
        )
        if now.kind == "dir":
            done += [path, old]
    return actions


def sync_scope(run: Any, scope: Scope, reported: Reported | None = None) -> None:
    """Synchronize the scope's paths over the open session `run` (status lines and errors go
    to `run.report`). `reported`: per watched side, the (path, tree) changes behind the scope;
    see `unannounced`."""
    reported = reported if reported is not None else {}
    snaps, local, remote = _gather(run, scope, reported)
    renames = []
    if run.opts.direction != "pull":
        renames += find_renames(local, snaps["local"], remote, snaps["remote"], True)
    if run.opts.direction != "push":
        assert remote is not None
        renames += find_renames(remote, snaps["remote"], local, snaps["local"], False)
    if renames:
        try:
            execute(run, Plan(renames), None)
        finally:
            run.recorder.flush()
        snaps, local, remote = _gather(run, scope, reported)
    plan = _plan(run, local, remote, snaps["local"], snaps["remote"])
    run.report.conflicts += plan.conflicts
    try:
        execute(run, plan, None)
    finally:
        run.recorder.flush()


def unannounced(
    now: dict[str, Entry], snap: Mapping[str, Entry], changes: list[tuple[str, bool]]
) -> None:
    """A watched side that no longer has a recorded path, while none of its own changes in the
    batch says so, is in the middle of a change whose event is still on its way (a rename
    while our copy of the file echoes back): until that event comes, the path counts as
    unchanged there, so that it is not deleted at the other end. Pure; fills `now` in place."""
    for path, before in snap.items():
        announced = any(path == p or (tree and path.startswith(p + "/")) for p, tree in changes)
        if path not in now and not announced:
            now[path] = before


def _gather(
    run: Any, scope: Scope, reported: Reported
) -> tuple[dict[str, dict[str, Entry]], dict[str, Entry], dict[str, Entry] | None]:
    """The snapshot records and the current listings of the scope (the remote side is not
    listed for a push: the snapshot stands for it, as in a one-time push re-sync)."""
    snaps = {w: snapshot_scope(run, w, scope) for w in ("local", "remote")}
    local = list_scope(run, run.local, scope, snaps["local"])
    remote = (
        list_scope(run, run.remote, scope, snaps["remote"])
        if run.opts.direction != "push"
        else None
    )
    for side, now in (("local", local), ("remote", remote)):
        if now is not None and side in reported:
            unannounced(now, snaps[side], reported[side])
    run.scanned = (local, remote or {})
    return snaps, local, remote


def _plan(run: Any, local: dict[str, Entry], remote: dict[str, Entry] | None, snap_local: dict[str, Entry],
          snap_remote: dict[str, Entry]) -> Plan:  # fmt: skip
    o = run.opts
    use_checksum = o.checksum != "none"
    local_ok = _signature_ok(o.local_dir, o.local_mount_signature)
    remote_ok = _remote_signature_ok(run)
    if not local_ok:  # as the one-time engine says it (coordinator/sync/engine.py)
        run.error(o.local_mount_signature, "--local-mount-signature: missing; no deletions are propagated")
    if not remote_ok:
        run.error(o.remote_mount_signature, "--remote-mount-signature: missing; no deletions are propagated")
    if use_checksum:
        _checksums(run, local, snap_local, remote if o.direction != "push" else None)

    def kept(snap: dict[str, Entry]) -> dict[str, Entry]:
        return {
            p: e
            for p, e in snap.items()
            if not (run.filters and run.filters.excluded(p, e.kind == "dir"))
        }

    common = {"overwrite": o.overwrite, "ignore_delete": o.ignore_delete, "delete_before": o.delete_before,
              "use_checksum": use_checksum, "size_only": o.checksum == "none",
              "modes": not o.ignore_mode}  # fmt: skip
    if o.direction == "push":
        return plan_one_way(local, None, kept(snap_local), deletes_allowed=local_ok, **common)
    assert remote is not None
    if o.direction == "pull":
        plan = plan_one_way(remote, local, kept(snap_remote), deletes_allowed=remote_ok, **common)
        plan.actions = [
            Action(a.kind, a.path, False, a.source, a.old_path, a.reason) for a in plan.actions
        ]
        return plan
    return plan_bidi(local, remote, snap_local, snap_remote, ignore_delete=o.ignore_delete,
                     delete_before=o.delete_before, use_checksum=use_checksum,
                     deletes_allowed_local=local_ok, deletes_allowed_remote=remote_ok,
                     size_only=o.checksum == "none", modes=not o.ignore_mode)  # fmt: skip
