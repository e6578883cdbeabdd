"""One-time synchronization: scan -> compare -> plan -> transfer -> commit -> report.

The snapshot (SQLite in `<local dir>/.surge/<pair>.db` by default) records what both sides
looked like after the last sync. A push re-sync therefore stats the local tree only; the remote
tree is listed on the first run, with --mirror, and for pull and bidi. Every action that
succeeds is recorded at once, so a sync killed at any point resumes where it was: files not
recorded are examined again (and partial transfers resume), and no partial file ever carries a
final name.
"""

from __future__ import annotations

import logging
import os
import posixpath
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from common.filters import FilterError, FilterRule, compile_filters
from common.snapshot import Entry, SnapshotError, SnapshotStore, path_sort_key
from common.snapshot.brief import has_records, load_brief

from .decide import Action, Plan, plan_bidi, plan_one_way
from .dedup import plan_dedup
from .localscan import scan_local
from .metadata import MetadataPolicy
from .outcome import SyncError, SyncReport, SyncUsageError
from .record import Recorder
from .scan import SKIP_SUFFIXES, BackgroundChecksums, fill_checksums, scan_tree
from .session import (
    apply_far_filters,
    check_dirs,
    check_remote_root,
    check_snapshot_meta,
    close_far_end,
    connect,
    database_rules,
    far_rules_of,
    record_far_rules,
    sqlite_snapshot,
)
from .sides import LocalSide, RemoteSide, SideError
from .tracked import TrackedFilter

if TYPE_CHECKING:
    from ..cp.endpoint import Endpoint
    from .transfer import Dispatcher

__all__ = [
    "SyncError", "SyncReport", "SyncUsageError", "close_session", "open_session", "run_sync",
    "sync_all",
]

log = logging.getLogger("surge.sync")


def _metrics() -> ModuleType:
    """common.metrics, imported when first needed: prometheus_client takes ~30 ms to import, which
    a re-sync with nothing to do does not pay (nor update metrics no endpoint could serve)."""
    from common import metrics

    return metrics


def _metrics_loaded() -> ModuleType | None:
    return sys.modules.get("common.metrics")


def _signature_ok(root: str, signature: str | None) -> bool:
    return signature is None or os.path.exists(signature if os.path.isabs(signature) else os.path.join(root, signature))


def _remote_signature_ok(run: _Run) -> bool:
    """--remote-mount-signature is there: on this machine, or at the far end (asked only when the
    plan reads the remote tree, pull and bidi: a push deletes nothing because of it). A far end
    that cannot tell counts as missing: no deletion is propagated on its word."""
    o = run.opts
    if o.host is None:
        return _signature_ok(o.remote_dir, o.remote_mount_signature)
    if o.remote_mount_signature is None or o.direction == "push":
        return True
    sig = o.remote_mount_signature
    rel = posixpath.relpath(sig, run.remote.root) if sig.startswith("/") else sig
    return run.remote.stat(rel) is not None


class _FarEnd:
    """The endpoint a RemoteSide talks through, connected on first use (`_Run.far_end`)."""

    def __init__(self, run: _Run) -> None:
        self.run = run

    @property
    def udp_host(self) -> str:
        return self.run.far_end().udp_host

    @udp_host.setter
    def udp_host(self, value: str) -> None:
        self.run.far_end().udp_host = value

    def send(self, msg: dict[str, Any]) -> None:
        self.run.far_end().send(msg)

    def recv(self, timeout: float | None = None) -> dict[str, Any]:
        return self.run.far_end().recv(timeout)

    def close(self) -> None:
        return None  # the run closes the connection it made


class _Run:
    def __init__(self, opts: Any, endpoint: Endpoint | None, emit: Callable[[str, str], None] | None,
                 dispatcher: Dispatcher | None) -> None:  # fmt: skip
        self.opts = opts
        self._dispatcher = dispatcher
        self.endpoint = endpoint
        self.emit = emit
        self.report = SyncReport()
        self.local = LocalSide(opts.local_dir)
        self.remote: LocalSide | RemoteSide = (LocalSide(opts.remote_dir) if opts.host is None
                                               else RemoteSide(_FarEnd(self), opts.remote_dir))  # fmt: skip
        self.filters = TrackedFilter(compile_filters(opts.filters), self.tracked)
        self.use_far_rules([])  # (a -b directory inside a tree is hidden from the start)
        self.far_rules: list[tuple[str, str]] | None = None  # named by the far end when this run met it
        # Keys of the paths the snapshot records (both sides), loaded by _plan when the pair has
        # filters: what tracked() asks about the excluded paths while scanning and planning.
        self.known: tuple[set[bytes], ...] | None = None
        self.metadata = MetadataPolicy(opts, self.local, self.remote)
        self.old_dirs: list[str] = []  # not scanned: older than --exclude-dirs-older-than
        self.snap: SnapshotStore | None = None
        self.recorder: Recorder
        self.late_checksums: BackgroundChecksums | None = None  # computed while the files move
        self.connect: Callable[[], Endpoint] | None = None  # reaches the far end when needed
        self.factory: Callable[[Any], Endpoint] | None = None  # makes far ends (None: the default)
        self.far_cores: int | None = None  # as the far end's hello named them

    @property
    def dispatcher(self) -> Dispatcher:
        """The given dispatcher, or the embedded one, made when the first transfer needs it."""
        if self._dispatcher is None:
            from .transfer import InProcessDispatcher

            self._dispatcher = InProcessDispatcher()
        return self._dispatcher

    def greeted(self, greeting: dict[str, Any]) -> None:
        """The far end's hello: its own filter rules, recorded for the next runs."""
        self.far_rules = far_rules_of(greeting)
        cores = greeting.get("cores")
        self.far_cores = cores if isinstance(cores, int) and not isinstance(cores, bool) and cores > 0 else None
        record_far_rules(self)

    def use_far_rules(self, rules: list[tuple[str, str]]) -> None:
        """The far end's own filter rules (aspera.conf's) go before the pair's: the reference
        applies them first, and what they exclude is hidden even when the snapshot records it
        (the far end would refuse it). So does a -b database directory inside a tree."""
        own = [FilterRule(kind, pattern, "-b (the snapshot's directory)")  # type: ignore[arg-type]
               for kind, pattern in database_rules(self.opts)]  # fmt: skip
        if not own and not rules:
            self.filters = TrackedFilter(compile_filters(self.opts.filters), self.tracked)
            return
        try:
            far = [FilterRule(kind, pattern, "the far end's filters") for kind, pattern in rules]  # type: ignore[arg-type]
            hard = compile_filters((*own, *far))
        except FilterError as exc:
            raise SyncError(str(exc)) from None
        self.filters = TrackedFilter(compile_filters((*hard.rules, *self.opts.filters)), self.tracked, hard)

    def tracked(self, path: str) -> bool:
        """The snapshot records `path`: it stays synchronized even when its name is excluded
        (asked only about excluded paths; from the keys `_plan` loaded while it runs)."""
        if self.known is not None:
            key = path_sort_key(path)
            return any(key in keys for keys in self.known)
        snap = self.snap
        return snap is not None and (snap.get("local", path) is not None or snap.get("remote", path) is not None)

    def far_end(self) -> Endpoint:
        """The far-end connection, made on first use: a local pair's agent starts, and a remote
        pair's SSH session opens, only when the run needs the far end (a push re-sync with
        nothing to send never does: the snapshot stands for the remote tree). A remote
        directory is checked (or created with --create-dir) once connected."""
        if self.endpoint is None:
            assert self.connect is not None
            self.endpoint = self.connect()
            try:
                check_remote_root(self)
            except SideError as exc:
                raise SyncError(f"-r: {exc}") from None
        return self.endpoint

    # -- reporting and bookkeeping -----------------------------------------------------------
    def status(self, path: str, status: str) -> None:
        self.report.add(path, status)
        _metrics().file_handled(status)
        if self.emit is not None:
            self.emit(path, status)

    def error(self, path: str, message: str) -> None:
        self.report.errors.append((path, message))
        _metrics().file_handled("ERROR")
        if self.emit is not None:
            self.emit(path, f"ERROR: {message}")

    # -- scanning ------------------------------------------------------------------------------
    def scan_remote(self) -> dict[str, Entry]:
        if isinstance(self.remote, LocalSide):
            result = scan_tree(self.remote.root, filters=self.filters, symlinks=self.opts.symbolic_links)
            for p, m in result.errors:
                self.error(p, m)
            return result.entries
        entries = {}
        for e in self.remote.list():
            if e.path.split("/")[0] in (".surge", ".private-asp") or e.path.endswith(SKIP_SUFFIXES):
                continue
            if self.filters and self.filters.excluded(e.path, e.kind == "dir"):
                continue
            entries[e.path] = e
        return entries


def run_sync(opts: Any, *, endpoint_factory: Callable[[Any], Endpoint] | None = None,
             emit: Callable[[str, str], None] | None = None,
             progress: Callable[[dict[str, Any]], None] | None = None,
             open_snapshot: Callable[[Any], SnapshotStore] | None = None,
             dispatcher: Dispatcher | None = None) -> SyncReport:  # fmt: skip
    """Run one synchronization of the pair `opts.name`. Raises SyncError for a problem that
    stops it; per-file problems are in the report. The snapshot store and the dispatcher
    default to the embedded ones (SQLite beside the local tree, transfers in this process);
    the cluster passes Redis and Celery ones."""
    started = time.monotonic()
    made = check_dirs(opts)
    run = _Run(opts, None, emit, dispatcher)  # the far end is reached when first needed (far_end)
    run.connect = lambda: connect(opts, endpoint_factory, run.greeted)
    run.factory = endpoint_factory
    try:
        try:
            run.snap = (open_snapshot or sqlite_snapshot)(opts)
        except SnapshotError as exc:
            raise SyncError(str(exc)) from None
        check_snapshot_meta(run, made)
        apply_far_filters(run)
        run.recorder = Recorder(run.snap)
        try:
            plan = _plan(run)
        except SideError as exc:
            raise SyncError(f"-r: {exc}") from None
        run.report.conflicts = plan.conflicts
        try:
            if plan.actions:
                from .execute import execute

                _metrics().files_planned(len(plan.actions))
                execute(run, plan, progress)
        finally:
            if run.late_checksums is not None:
                run.late_checksums.finish(wait=False)
            run.recorder.flush()
        if opts.clean_excluded:
            _clean_excluded(run)
        _finish_meta(run)
    finally:
        if run.snap is not None:
            if (metrics := _metrics_loaded()) is not None:
                metrics.sync_finished(run.snap)
            run.snap.close()
        close_far_end(run)
    run.report.elapsed = time.monotonic() - started
    return run.report


def _finish_meta(run: _Run) -> None:
    assert run.snap is not None
    run.snap.set_meta("last_sync", str(time.time()))


def _plan(run: _Run) -> Plan:
    try:
        return _scan_and_plan(run)
    finally:
        run.known = None  # the records loaded for this plan are stale after it


def _scan_and_plan(run: _Run) -> Plan:
    o, snap = run.opts, run.snap
    assert snap is not None
    recorded = has_records(snap, "local")
    # A push decides from the local records alone (--mirror: and the remote ones, to know which target
    # files are unchanged); otherwise the remote ones only say whether it is the first run.
    snap_remote = snap.load("remote") if o.direction != "push" or o.mirror or not recorded else {}
    first = not recorded and not snap_remote
    if run.filters:  # one query a side, and only paths' keys: tracked() answers from them
        run.known = (set(load_brief(snap, "local")), set(load_brief(snap, "remote")))
    # A push re-sync plans from what changed alone (localscan.py); the rest needs whole listings.
    whole = o.direction != "push" or o.mirror or bool(o.dedup) or first
    local = scan_local(o.local_dir, snap, o, run.filters, whole=whole)
    run.old_dirs = local.old_dirs
    snap_local = local.snapshot
    for p, m in local.walk.errors:
        run.error(p, m)
    for p, m in local.walk.skipped:
        log.info("skipped %s: %s", p, m)
    need_remote = o.direction != "push" or first or o.mirror
    remote = run.scan_remote() if need_remote else None
    use_checksum = o.checksum != "none"
    local_ok = _signature_ok(o.local_dir, o.local_mount_signature)
    remote_ok = _remote_signature_ok(run)
    if not local_ok:
        run.error(o.local_mount_signature, "--local-mount-signature: missing; no deletions are propagated")
    if not remote_ok:
        run.error(o.remote_mount_signature, "--remote-mount-signature: missing; no deletions are propagated")

    def excluded(path: str, is_dir: bool) -> bool:
        return bool(run.filters) and run.filters.excluded(path, is_dir)

    if use_checksum:
        _checksums(run, local.entries, snap_local, remote)
    if o.direction == "push":
        plan = plan_one_way(local.entries, remote, {p: e for p, e in snap_local.items() if not excluded(p, e.kind == "dir")},
                            overwrite=o.overwrite, mirror=o.mirror, ignore_delete=o.ignore_delete,
                            delete_before=o.delete_before, use_checksum=use_checksum,
                            file_rename=o.scan_file_rename, dir_rename=o.scan_dir_rename,
                            deletes_allowed=local_ok, excluded=excluded, size_only=o.checksum == "none", modes=not o.ignore_mode,
                            target_snapshot=snap_remote)  # fmt: skip
        plan = plan_dedup(plan, o.dedup, local.entries, snap_local)
        if o.overwrite == "older" and remote is None:
            _keep_newer_targets(run, plan)
    elif o.direction == "pull":
        assert remote is not None
        plan = plan_one_way(remote, local.entries, {p: e for p, e in snap_remote.items() if not excluded(p, e.kind == "dir")},
                            overwrite=o.overwrite, mirror=o.mirror, ignore_delete=o.ignore_delete,
                            delete_before=o.delete_before, use_checksum=use_checksum,
                            deletes_allowed=remote_ok, excluded=excluded, size_only=o.checksum == "none", modes=not o.ignore_mode,
                            target_snapshot=snap_local)  # fmt: skip
        plan = plan_dedup(plan, o.dedup, remote, snap_remote)
        plan.actions = [Action(a.kind, a.path, False, a.source, a.old_path, a.reason) for a in plan.actions]
    else:
        assert remote is not None
        plan = plan_bidi(local.entries, remote, snap_local, snap_remote, ignore_delete=o.ignore_delete,
                         delete_before=o.delete_before, use_checksum=use_checksum,
                         deletes_allowed_local=local_ok, deletes_allowed_remote=remote_ok,
                         size_only=o.checksum == "none", modes=not o.ignore_mode)  # fmt: skip
    run.scanned = (local.entries, remote)  # type: ignore[attr-defined]
    return plan


def _keep_newer_targets(run: _Run, plan: Plan) -> None:
    """-o older on a push re-sync (the target not listed: the snapshot stands for it): the files
    about to be sent are looked at where they go, and one the target has as new as the source,
    or newer, is left alone (a file changed at both ends keeps the target's newer version)."""
    sends = {a.path: a.source for a in plan.actions if a.kind == "send" and a.source is not None}
    there = run.remote.stat_many(list(sends)) if sends else {}
    kept = {p for p, e in there.items() if e.mtime_ns >= sends[p].mtime_ns}
    if kept:  # (and no "replace" removes what is kept)
        plan.actions = [Action("skip", a.path, source=a.source, reason="target not older")
                        if a.kind == "send" and a.path in kept else a
                        for a in plan.actions if not (a.path in kept and a.kind == "replace")]  # fmt: skip


def _checksums(run: _Run, local: dict[str, Entry], snap_local: dict[str, Entry], remote: dict[str, Entry] | None) -> None:
    """-k: checksums of new or changed local files, and of same-size remote files a first sync
    or --mirror compares with them (a local-to-local pair computes both here; a remote far end
    computes its own, with the `digests` operation)."""
    o = run.opts
    todo = [p for p, e in local.items() if e.kind == "file" and (p not in snap_local or
            snap_local[p].size != e.size or snap_local[p].mtime_ns != e.mtime_ns)]  # fmt: skip
    changed = set(todo)
    carry = o.direction != "push" or o.mirror or o.dedup  # else no decision looks at unchanged files' checksums
    for p, e in snap_local.items() if carry else ():  # unchanged files keep their recorded checksum
        if p in local and p not in changed and e.checksum:
            cur = local[p]
            local[p] = Entry(cur.path, cur.kind, cur.size, cur.mtime_ns, cur.mode, cur.inode, cur.dev, cur.nlink,
                             e.checksum, cur.target, cur.rmtime_ns, cur.uid, cur.gid, cur.meta)  # fmt: skip
    # renamed files are recorded before any transfer: their checksums cannot wait
    later = [] if o.dedup or o.scan_file_rename else [p for p in todo if not _decides(p, local, snap_local, remote)]
    if later:
        todo = [p for p in todo if _decides(p, local, snap_local, remote)]
        if o.direction != "pull":  # pulled files are recorded from their copies: no local checksum
            run.late_checksums = BackgroundChecksums(o.local_dir, local, later, o.checksum)
    for p, m in fill_checksums(o.local_dir, local, todo, o.checksum, o.local_checksum_threads):
        run.error(p, m)
    if remote is None:
        return
    same = [p for p in todo if p in remote and remote[p].kind == "file" and remote[p].size == local[p].size]
    if isinstance(run.remote, LocalSide):
        for p, m in fill_checksums(o.remote_dir, remote, same, o.checksum, o.remote_checksum_threads):
            run.error(p, m)
    elif same and o.checksum != "none":  # the far end digests its own files: nothing identical moves
        run.remote.fill_checksums(remote, same, o.checksum)


def _decides(path: str, local: dict[str, Entry], snap_local: dict[str, Entry], remote: dict[str, Entry] | None) -> bool:
    """Whether the plan compares this new or changed file's checksum with another: a same-size
    file at the target, or a same-size snapshot record (content unchanged: attributes only)."""
    size = local[path].size
    for other in (remote.get(path) if remote is not None else None, snap_local.get(path)):
        if other is not None and other.kind == "file" and other.size == size:
            return True
    return False


def _clean_excluded(run: _Run) -> None:
    """--clean-excluded: forget directories excluded by path, and what lies below directories
    excluded by age (their own record stays, so that later runs still skip them)."""
    snap = run.snap
    assert snap is not None
    for side in ("local", "remote"):
        gone = [e.path for e in snap.iter_side(side) if e.kind == "dir" and run.filters
                and run.filters.base.excluded(e.path, True)]  # fmt: skip
        for old in run.old_dirs:
            keep = snap.get(side, old)
            snap.apply(side, delete_trees=[old], upserts=[keep] if keep is not None else [])
        if gone:
            snap.apply(side, delete_trees=gone)


# -- one session, several plans (the continuous loop) ----------------------------------------------
def open_session(opts: Any, *, endpoint_factory: Callable[[Any], Endpoint] | None = None,
                 emit: Callable[[str, str], None] | None = None,
                 open_snapshot: Callable[[Any], SnapshotStore] | None = None,
                 dispatcher: Dispatcher | None = None) -> _Run:  # fmt: skip
    """The pair opened as `run_sync` opens it (directories checked, far end connected, snapshot
    open and checked), for a caller that runs several plans over it; `close_session` ends it."""
    made = check_dirs(opts)
    greeting: dict[str, Any] = {}
    endpoint = connect(opts, endpoint_factory, greeting.update)
    run = _Run(opts, endpoint, emit, dispatcher)
    run.factory = endpoint_factory
    try:
        run.snap = (open_snapshot or sqlite_snapshot)(opts)
        check_snapshot_meta(run, made)
        run.greeted(greeting)
        apply_far_filters(run)
        run.recorder = Recorder(run.snap)
        check_remote_root(run)
    except SnapshotError as exc:
        close_session(run)
        raise SyncError(str(exc)) from None
    except SideError as exc:
        close_session(run)
        raise SyncError(f"-r: {exc}") from None
    except BaseException:
        close_session(run)
        raise
    return run


def sync_all(run: _Run, progress: Callable[[dict[str, Any]], None] | None = None) -> None:
    """One whole synchronization (scan both trees as `run_sync` does) over an open session."""
    from .execute import execute

    try:
        plan = _plan(run)
    except SideError as exc:
        raise SyncError(f"-r: {exc}") from None
    run.report.conflicts += plan.conflicts
    _metrics().files_planned(len(plan.actions))
    try:
        execute(run, plan, progress)
    finally:
        run.recorder.flush()
    if run.opts.clean_excluded:
        _clean_excluded(run)
    _finish_meta(run)


def close_session(run: _Run) -> None:
    if run.snap is not None:
        try:
            run.recorder.flush()
        except AttributeError:  # closed before the recorder existed
            pass
        _metrics().sync_finished(run.snap)
        run.snap.close()
        run.snap = None
    close_far_end(run)

