"""`surge sync`: the command line of one-time synchronization (the async command)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    from common.filters import FilterError
    from common.logs import configure_logging

    from .engine import SyncError, run_sync
    from .options import InfoRequest, OptionError, parse_sync_args

    try:
        opts = parse_sync_args(list(argv))
    except InfoRequest as info:
        print(info.text)
        return 0
    except (OptionError, FilterError) as exc:
        print(f"surge sync: error: {exc}", file=sys.stderr)
        return 2
    log = configure_logging("surge-sync", opts.log_dir, opts.log_size, opts.debug)
    width = 40

    def emit(path: str, status: str) -> None:
        log.info("%s %s", path, status)
        if not opts.quiet:
            print(f"{'/' + path:<{width}} {status}", flush=True)

    if opts.continuous:
        from ..continuous import run_continuous

        return run_continuous(opts, emit)
    try:
        report = run_sync(opts, emit=emit)
    except SyncError as exc:
        print(f"surge sync: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("surge sync: interrupted; the next run resumes where this one stopped", file=sys.stderr)
        return 130
    if not opts.quiet:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
        state = "Synchronized" if report.ok else "Failed"
        print(f"{state}: {counts or 'nothing to do'}; {len(report.errors)} error(s); "
              f"{report.conflicts} conflict(s); {report.elapsed:.2f} s", file=sys.stderr)  # fmt: skip
    for path, message in report.errors:
        print(f"surge sync: error: {path}: {message}", file=sys.stderr)
    return 0 if report.ok else 1
