"""`surge sync`: the command line of one-time synchronization (the async command)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["main"]


_PATH_WIDTH = 40  # the path column of the per-file lines on stdout


def main(argv: Sequence[str]) -> int:
    from common.filters import FilterError

    from .options import InfoRequest, OptionError, parse_sync_args

    try:
        opts = parse_sync_args(list(argv))
    except InfoRequest as info:
        print(info.text)
        return 0
    except (OptionError, FilterError) as exc:
        print(f"surge sync: error: {exc}", file=sys.stderr)
        return 2
    if opts.cluster is not None and opts.detach:
        return _submit(opts, argv)
    emit = _emitter(opts)
    if opts.continuous:
        return _run_continuous(opts, emit)
    return _run_once(opts, emit)


def _emitter(opts: Any) -> Callable[[str, str], None]:
    """Each file's status to the log and, without -q, to stdout."""
    from common.logs import configure_logging

    log = configure_logging("surge-sync", opts.log_dir, opts.log_size, opts.debug)

    def emit(path: str, status: str) -> None:
        log.info("%s %s", path, status)
        if not opts.quiet:
            shown = path if path.startswith("/") else "/" + path  # a mount signature's path is absolute
            print(f"{shown:<{_PATH_WIDTH}} {status}", flush=True)

    return emit


def _run_continuous(opts: Any, emit: Callable[[str, str], None]) -> int:
    from ..continuous import run_continuous

    if opts.cluster is None:
        return run_continuous(opts, emit)
    from coordinator.cluster.continuous import foreground_loop

    return run_continuous(opts, emit, foreground_loop)


def _run_once(opts: Any, emit: Callable[[str, str], None]) -> int:
    """One sync, then the manifest and the summary; the exit status."""
    from common.cluster.connect import ClusterError
    from common.snapshot import SnapshotError

    from .engine import SyncError, SyncUsageError

    try:
        report = _run(opts, emit)
    except SyncUsageError as exc:  # found before anything changed
        print(f"surge sync: error: {exc}", file=sys.stderr)
        return 2
    except (ClusterError, SyncError, SnapshotError) as exc:  # Redis unusable: 1, as `surge worker`
        print(f"surge sync: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("surge sync: interrupted; the next run resumes where this one stopped", file=sys.stderr)
        return 130
    return _finish(opts, report)


def _finish(opts: Any, report: Any) -> int:
    """--file-manifest-path, the summary line (without -q) and the per-file errors."""
    if opts.file_manifest_path:
        from .manifest import write_manifest

        try:
            write_manifest(opts.file_manifest_path, opts.name, report.lines, opts.local_dir)
        except OSError as exc:
            print(f"surge sync: error: --file-manifest-path: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if not opts.quiet:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
        state = "Synchronized" if report.ok else "Failed"
        print(f"{state}: {counts or 'nothing to do'}; {len(report.errors)} error(s); "
              f"{report.conflicts} conflict(s); {report.elapsed:.2f} s", file=sys.stderr)  # fmt: skip
    for path, message in report.errors:
        print(f"surge sync: error: {path}: {message}", file=sys.stderr)
    return 0 if report.ok else 1


def _run(opts: Any, emit: Callable[[str, str], None]) -> Any:
    if opts.cluster is None:
        from .engine import run_sync

        return run_sync(opts, emit=emit)
    from coordinator.cluster.syncrun import lock_ttl_from_env, run_cluster_sync

    return run_cluster_sync(opts, emit=emit, lock_ttl_s=lock_ttl_from_env())


def _submit(opts: Any, argv: Sequence[str]) -> int:
    """--detach: queue the sync for `surge coordinator` and print the job id."""
    from common.cluster.connect import ClusterError
    from coordinator.cluster.syncrun import submit

    from .options import OptionError

    try:
        job = submit(opts, argv)
    except OptionError as exc:
        print(f"surge sync: error: {exc}", file=sys.stderr)
        return 2
    except ClusterError as exc:  # Redis unusable: exit 1, as `surge worker` and the engine
        print(f"surge sync: error: {exc}", file=sys.stderr)
        return 1
    print(job)
    return 0
