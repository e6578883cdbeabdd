"""Carrying out a sync plan, recording each success in the snapshot as it happens.

Phases: deletes first with --delete-before; then directories, renames, links, attribute
updates and conflict copies; then the transfers (one upload and/or one download session over
the UDP transport); then deletes (the default, like --delete-delay: deletion waits for the
transfers). `--remove-after-transfer` removes each source file once its copy is committed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common import metrics
from common.control.messages import SERVER_EXCLUDED
from common.snapshot import Entry

from ..cp.common import CopyError
from .decide import Action, Plan
from .sides import SideError
from .transfer import TransferRequest

if TYPE_CHECKING:
    from .engine import _Run

__all__ = ["execute"]

log = logging.getLogger("surge.sync")


def _attrs_entry(path: str, attrs: dict[str, Any]) -> Entry:
    return Entry(path, "file", int(attrs.get("size", 0)), int(attrs.get("mtime_ns", 0)), int(attrs.get("mode", 0)),
                 int(attrs.get("ino", 0)), int(attrs.get("dev", 0)), int(attrs.get("nlink", 1)))  # fmt: skip


def _conflict_name(path: str) -> str:
    head, ext = os.path.splitext(path)
    return f"{head}.conflict-{time.strftime('%Y%m%d-%H%M%S')}{ext}"


def execute(run: _Run, plan: Plan, progress: Callable[[dict[str, Any]], None] | None) -> None:
    o = run.opts
    local_now, remote_now = run.scanned  # type: ignore[attr-defined]
    remote_now = remote_now or {}
    deletes = [a for a in plan.actions if a.kind == "delete"]
    sends = [a for a in plan.actions if a.kind in ("send", "conflict")]
    dedups = [a for a in plan.actions if a.kind == "dedup"]
    others = [a for a in plan.actions if a.kind not in ("delete", "send", "conflict", "dedup")]

    def both(a: Action) -> tuple[Entry | None, Entry | None]:
        return local_now.get(a.path), remote_now.get(a.path)

    def target_of(a: Action) -> Any:
        return run.remote if a.to_target else run.local

    def do_delete(a: Action) -> None:
        try:
            _remove(run, a, target_of(a))
        except SideError as exc:
            run.error(a.path, str(exc))
            return
        run.status(a.path, "SYNCHRONIZED(del)")

    if o.delete_before:
        for a in deletes:
            do_delete(a)
    for a in others:
        _simple(run, a, both(a), target_of(a))
    for a in sends:
        if a.kind == "conflict":  # keep the losing version beside the winner
            loser = target_of(a)
            try:
                loser.rename(a.path, _conflict_name(a.path))
            except SideError as exc:
                run.error(a.path, f"conflict copy: {exc}")
            run.report.conflicts = max(run.report.conflicts, 1)
    up = [a for a in sends if a.to_target and a.source is not None and a.source.kind == "file"]
    down = [a for a in sends if not a.to_target and a.source is not None and a.source.kind == "file"]
    for direction, batch in ((True, up), (False, down)):
        if batch:
            _transfer(run, batch, direction, local_now, remote_now, progress)
    for a in dedups:  # after the transfers: the originals are in place
        _dedup(run, a, target_of(a))
    if not o.delete_before:
        for a in deletes:
            do_delete(a)
    _late_modes(run)


def _remove(run: _Run, a: Action, side: Any) -> None:
    """Delete `a.path` at `side` (into the --keep-dir of that side when set) and forget its
    records, a directory's with everything below it."""
    o = run.opts
    side.delete(a.path, o.keep_dir_remote if a.to_target else o.keep_dir_local)
    if a.source is not None and a.source.kind == "dir":
        run.recorder.delete_tree(a.path)
    else:
        run.recorder.pair(a.path, None, None)


def _simple(run: _Run, a: Action, now: tuple[Entry | None, Entry | None], side: Any) -> None:
    o = run.opts
    rec = run.recorder
    local, remote = now
    try:
        if a.kind in ("mkdir", "symlink"):
            if a.kind == "mkdir":
                side.mkdir(a.path)
            else:
                assert a.source is not None and a.source.target is not None
                side.symlink(a.path, a.source.target)
            made = _same_mode(run, side, a.path, a.source, side.stat(a.path))
            rec.pair(a.path, *((local, made) if a.to_target else (made, remote)))
            run.status(a.path, "SYNCHRONIZED")
        elif a.kind == "rename":
            assert a.old_path is not None
            side.rename(a.old_path, a.path)
            if a.source is not None and a.source.kind == "dir":
                rec.rename_tree(a.old_path, a.path)
            else:
                rec.pair(a.old_path, None, None)
            moved = side.stat(a.path)
            rec.pair(a.path, *((local, moved) if a.to_target else (moved, remote)))
            run.status(a.path, "SYNCHRONIZED(mov)")
        elif a.kind == "attrs":
            assert a.source is not None
            side.set_attrs(a.path, a.source.mtime_ns if o.preserve_mtime else None,
                           None if o.ignore_mode else a.source.mode)  # fmt: skip
            updated = side.stat(a.path)
            rec.pair(a.path, *((local, updated) if a.to_target else (updated, remote)))
            run.status(a.path, "SYNCHRONIZED(mov)")
        elif a.kind == "exists":
            if o.direction != "bidi" and a.source is not None and a.source.kind == "file":
                there = _same_mode(run, side, a.path, a.source, remote if a.to_target else local)
                local, remote = (local, there) if a.to_target else (there, remote)
            if local is not None:
                rec.put("local", local)
            if remote is not None:
                rec.put("remote", remote)
            if a.source is not None and a.source.kind != "dir":
                run.status(a.path, "SYNCHRONIZED(exs)")
        elif a.kind == "skip":
            run.status(a.path, "SYNCHRONIZED(skp)")
        elif a.kind == "replace":  # the entry of the old kind goes; the make action follows
            _remove(run, a, side)
        elif a.kind == "forget":  # bidi --ignore-delete: the next run sees the path as new there
            rec.put(a.reason, None, a.path)
    except SideError as exc:
        run.error(a.path, str(exc))


def _transfer(run: _Run, batch: list[Action], upload: bool, local_now: dict[str, Entry],
              remote_now: dict[str, Entry], progress: Callable[[dict[str, Any]], None] | None) -> None:  # fmt: skip
    o = run.opts
    rec = run.recorder
    entries = [a.source for a in batch if a.source is not None]

    committed: list[tuple[str, Entry]] = []  # what the far end committed, for _after_commit
    unsummed: dict[str, Entry] = {}  # recorded before their checksum was ready

    def on_file(path: str, event: dict[str, Any]) -> None:
        status = event.get("status")
        if status == "failed":
            run.error(path, str(event.get("error", "transfer failed")))
            return
        if status != "done":
            if event.get("reason") == SERVER_EXCLUDED:  # rules the far end named after this run planned
                log.info("%s: not sent: %s", path, SERVER_EXCLUDED)
            else:
                run.status(path, "SYNCHRONIZED(skp)")
            return
        made = _attrs_entry(path, event.get("attrs", {}))
        source = (local_now if upload else remote_now).get(path)
        rec.pair(path, *((source, made) if upload else (made, source)))
        if upload and source is not None and source.checksum is None and run.late_checksums is not None \
                and not o.remove_after_transfer:  # fmt: skip
            unsummed[path] = source  # its checksum is still being computed
        committed.append((path, made))
        run.report.bytes_sent += made.size
        metrics.SYNCED_BYTES.inc(made.size)
        run.status(path, "SYNCHRONIZED")

    endpoint = run.far_end()  # greeted first: the far end's hello names its cores
    request = TransferRequest(o, endpoint, entries, upload, run.remote if upload else run.local, rec.flush,
                              factory=run.factory, far_cores=run.far_cores)  # fmt: skip
    try:
        outcome = run.dispatcher.transfer(request, on_file, progress)
    except CopyError as exc:
        run.error("/", f"transfer failed: {exc}")
        if upload:
            _late_checksums(run, local_now, unsummed, wait=False)
        return
    finally:  # far-end operations wait for the transfer: its control channel is busy until then
        _after_commit(run, committed, upload, local_now, remote_now, unsummed)
    if upload:
        _late_checksums(run, local_now, unsummed)
    run.report.wire_bytes += outcome.wire_bytes
    for path, message in outcome.errors:
        run.error(path, message)


def _after_commit(run: _Run, committed: list[tuple[str, Entry]], upload: bool, local_now: dict[str, Entry],
                  remote_now: dict[str, Entry], unsummed: dict[str, Entry]) -> None:  # fmt: skip
    """Owner and attributes of the files a transfer committed, then --remove-after-transfer."""
    rec = run.recorder
    for path, made in committed:
        before = (local_now if upload else remote_now).get(path)
        moded = _same_mode(run, run.remote if upload else run.local, path, before, made)
        source = _with_metadata(run, path, before, upload)
        if source is not before or moded is not made:
            rec.pair(path, *((source, moded) if upload else (moded, source)))
            if path in unsummed and source is not None:
                unsummed[path] = source  # the late checksum keeps the attributes
        if run.opts.remove_after_transfer:
            source_side = run.local if upload else run.remote
            try:
                source_side.delete(path)
                rec.put("local" if upload else "remote", None, path)
            except SideError as exc:
                run.error(path, f"--remove-after-transfer: {exc}")


def _same_mode(run: _Run, side: Any, path: str, source: Entry | None, made: Entry | None) -> Entry | None:
    """Without --ignore-mode, give `made` (what the destination now holds) the permissions of
    `source`; returns its record. A file written with the mode its source has costs nothing. A
    directory its owner may not write or enter gets its mode after the transfers (`late`)."""
    if run.opts.ignore_mode or source is None or made is None or source.kind == "link" or made.mode == source.mode:
        return made
    mode = source.mode
    if source.kind == "dir" and mode & 0o300 != 0o300:
        late: list[tuple[Any, str, int]] = run.__dict__.setdefault("late_modes", [])
        late.append((side, path, mode))
        mode |= 0o300
    try:
        side.set_attrs(path, None, mode)
    except SideError as exc:
        run.error(path, str(exc))
        return made
    return dataclasses.replace(made, mode=source.mode)


def _late_modes(run: _Run) -> None:
    """The modes of directories their owner may not write or enter, deepest first."""
    for side, path, mode in sorted(run.__dict__.pop("late_modes", []), key=lambda item: item[1], reverse=True):
        try:
            side.set_attrs(path, None, mode)
        except SideError as exc:
            run.error(path, str(exc))


def _late_checksums(run: _Run, local_now: dict[str, Entry], recorded: dict[str, Entry], wait: bool = True) -> None:
    """Record the checksums that were not ready when their files were committed."""
    if run.late_checksums is None:
        return
    run.late_checksums.finish(wait)
    for path, entry in recorded.items():
        now = local_now.get(path)
        if now is not None and now.checksum is not None and now.mtime_ns == entry.mtime_ns:
            run.recorder.put("local", dataclasses.replace(entry, checksum=now.checksum))


def _with_metadata(run: _Run, path: str, source: Entry | None, upload: bool) -> Entry | None:
    """Owner and attributes to the destination (metadata.py); the source record, with its
    attributes in `meta` under --store-metadata-records."""
    policy = run.metadata
    if source is None or not policy.active:
        return source
    src, dest = (run.local, run.remote) if upload else (run.remote, run.local)
    try:
        meta = policy.apply(src, dest, path, source)
    except SideError as exc:
        run.error(path, str(exc))
        return source
    return dataclasses.replace(source, meta=meta) if meta is not None else source


def _dedup(run: _Run, a: Action, side: Any) -> None:
    """--dedup: link or copy the already synchronized original at the target."""
    assert a.old_path is not None and a.source is not None
    if any(p == a.old_path for p, _ in run.report.errors):
        run.error(a.path, f"--dedup: its original {a.old_path} did not synchronize; it is sent next time")
        return
    try:
        if run.opts.dedup == "copy":
            side.copy(a.old_path, a.path)
        else:
            side.link(a.old_path, a.path)
        made = side.stat(a.path)
    except SideError as exc:
        run.error(a.path, f"--dedup: {exc}")
        return
    upload = side is run.remote
    source = _with_metadata(run, a.path, a.source, upload)
    run.recorder.pair(a.path, *((source, made) if upload else (made, source)))
    run.status(a.path, "SYNCHRONIZED(ddp)")
