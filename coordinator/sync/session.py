"""Opening and closing a pair, for :mod:`coordinator.sync.engine`: the checks made before anything
changes (directories, --keep-dir-*, the snapshot's record of the pair), the far-end connection
and its goodbye, the default snapshot store.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from common.snapshot import SnapshotStore, SqliteSnapshot, default_snapshot_path
from common.snapshot.brief import has_records

from .keepdirs import keep_dir_problem
from .outcome import SyncError, SyncUsageError
from .sides import RemoteSide, SideError

if TYPE_CHECKING:
    from ..cp.endpoint import Endpoint
    from .engine import _Run

log = logging.getLogger("surge.sync")

__all__ = [
    "apply_far_filters", "check_dirs", "check_remote_root", "check_snapshot_meta", "close_far_end", "connect",
    "database_rules", "far_rules_of", "record_far_rules", "sqlite_snapshot",
]


def sqlite_snapshot(opts: Any) -> SnapshotStore:
    return SqliteSnapshot(default_snapshot_path(opts.local_dir, opts.name, opts.local_db_dir))


def check_dirs(opts: Any) -> list[str]:
    """Check (or, with --create-dir, make) the local directories; returns the options of those
    made (a pair's snapshot no longer describes a directory that had to be made again)."""
    made = []
    for option, path, local in (("-d", opts.local_dir, True), ("-r", opts.remote_dir, opts.host is None)):
        if not local:
            continue
        if not os.path.isdir(path):
            if os.path.exists(path):
                raise SyncUsageError(f"{option}: {path!r} is not a directory")
            if not opts.create_dir:
                raise SyncUsageError(f"{option}: directory {path!r} does not exist (use --create-dir to create it)")
            os.makedirs(path, exist_ok=True)
            made.append(option)
    if opts.host is None:
        a, b = os.path.realpath(opts.local_dir), os.path.realpath(opts.remote_dir)
        if a == b or b.startswith(a + os.sep) or a.startswith(b + os.sep):
            raise SyncUsageError("-r: the remote directory must not be inside the local directory (or the reverse)")
    for option, keep in (("--keep-dir-local", opts.keep_dir_local), ("--keep-dir-remote", opts.keep_dir_remote if opts.host is None else None)):
        if keep and not os.path.isdir(keep):
            raise SyncUsageError(f"{option}: directory {keep!r} does not exist (it is not created for you)")
        problem = keep and keep_dir_problem(option, keep, opts.local_dir if option == "--keep-dir-local" else opts.remote_dir,
                                            opts.filters)  # fmt: skip
        if problem:
            raise SyncUsageError(problem)

    return made

def connect(opts: Any, factory: Callable[[Any], Endpoint] | None,
            on_hello: Callable[[dict[str, Any]], None] | None = None) -> Endpoint:  # fmt: skip
    from ..cp.common import CopyError
    from .transfer import connect_far_end

    try:
        return connect_far_end(opts, factory, on_hello)
    except CopyError as exc:
        raise SyncError(str(exc)) from None


def database_rules(opts: Any) -> list[tuple[str, str]]:
    """Exclude rules for a -b database directory inside a synchronized tree (the default `.surge`
    is skipped by name): its files are never synchronized as files of their own."""
    if opts.local_db_dir is None:
        return []
    db = os.path.realpath(opts.local_db_dir)
    rules = []
    for root in (opts.local_dir, opts.remote_dir if opts.host is None else None):
        if root is None:
            continue
        rel = os.path.relpath(db, os.path.realpath(root))
        if rel == os.curdir:  # the pair's own files at the top: PAIR.db, -wal, -shm, .lock
            rules.append(("exclude", "/" + _glob_quoted(opts.name + ".db") + "*"))
        elif rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            rules.append(("exclude", "/" + _glob_quoted(rel.replace(os.sep, "/")) + "/"))
    return rules


def _glob_quoted(text: str) -> str:
    """`text` as a filter pattern that matches it literally (backslash quotes, docs/FILTERS.md)."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)


def far_rules_of(greeting: dict[str, Any]) -> list[tuple[str, str]]:
    """The far end's own filter rules from its hello (none from a far end that names none)."""
    rules = greeting.get("filters") or []
    try:
        out = [(str(kind), str(pattern)) for kind, pattern in rules]
    except (TypeError, ValueError):
        raise SyncError(f"the far end sent malformed filter rules: {rules!r}") from None
    if any(kind not in ("include", "exclude") for kind, _ in out):
        raise SyncError(f"the far end sent malformed filter rules: {rules!r}")
    return out


def apply_far_filters(run: _Run) -> None:
    """Put the far end's own filter rules (aspera.conf's) before the pair's for this run: as the
    far end named them when this run met it, else as recorded at the last meeting; a pair that
    never met its far end meets it now. A change is recorded for the next runs (a run that
    planned before meeting the far end keeps its plan; the far end refuses what its rules hide)."""
    assert run.snap is not None
    stored = run.snap.get_meta("far_filters")
    if run.far_rules is None and stored is None:
        run.far_end()  # its hello names them (greeted)
    if run.far_rules is not None:
        rules = run.far_rules
        record_far_rules(run)
    else:
        assert stored is not None
        rules = [(str(k), str(p)) for k, p in json.loads(stored)]
    run.use_far_rules(rules)


def record_far_rules(run: _Run) -> None:
    """Record the rules the far end named, when they are not what the snapshot holds."""
    if run.snap is None or run.far_rules is None:
        return
    text = json.dumps(run.far_rules)
    if run.snap.get_meta("far_filters") != text:
        run.snap.set_meta("far_filters", text)


def check_remote_root(run: _Run) -> None:
    """A remote directory must exist (or be created with --create-dir) inside the docroot."""
    if not isinstance(run.remote, RemoteSide):
        return
    try:
        run.remote.op("stat", "")
    except SideError:
        if not run.opts.create_dir:
            raise SyncUsageError(f"-r: directory {run.opts.remote_dir!r} does not exist (use --create-dir to create it)") from None
        run.remote.mkdir("")
        if run.snap is not None and (has_records(run.snap, "local") or has_records(run.snap, "remote")):
            raise SyncError(f"-r: directory {run.opts.remote_dir!r} was gone (made again, empty), but the snapshot still "
                            "describes what it held: nothing more is done; run again with -x to synchronize everything") from None


def check_snapshot_meta(run: _Run, made: Sequence[str] = ()) -> None:
    """Reset (-x), and check and record what the pair keeps of its first run; `made`: the
    directories check_dirs had to make, which the snapshot no longer describes (the pair starts
    over, as with -x: a -d made again empty would otherwise read as every file deleted)."""
    o, snap = run.opts, run.snap
    assert snap is not None
    stale = bool(made) and (has_records(snap, "local") or has_records(snap, "remote"))
    if stale:
        log.warning("%s made again: the snapshot of pair %s described it; starting over as with -x",
                    " and ".join(made), o.name)
    if o.reset or stale:
        snap.reset()
    where = f"{o.host or ''}:{o.remote_dir}" if o.host else os.path.realpath(o.remote_dir)
    previous = snap.get_meta("remote")
    if previous is not None and previous != where and not o.ignore_remote_host_sync_name:
        raise SyncUsageError(f"-r: this pair was synchronized with {previous!r}, not {where!r} "
                        "(use -x to start over, or --ignore_remote_host_sync_name)")  # fmt: skip
    edot = snap.get_meta("exclude_dirs_older_than")
    given = o.exclude_dirs_older_than_text
    if (edot or None) != (given or None) and has_records(snap, "local"):
        raise SyncUsageError("--exclude-dirs-older-than: every run of a pair must use the same value as the first "
                        f"(first run: {edot or 'not given'}, now: {given or 'not given'})")  # fmt: skip
    current = {"remote": previous, "exclude_dirs_older_than": edot, "checksum": snap.get_meta("checksum")}
    for key, value in (("remote", where), ("exclude_dirs_older_than", given), ("checksum", o.checksum)):
        if current[key] != value:  # only what changed: each write is a transaction
            snap.set_meta(key, value)


def close_far_end(run: _Run) -> None:
    if run.endpoint is None:
        return
    from ..cp.endpoint import close_politely

    close_politely(run.endpoint)
