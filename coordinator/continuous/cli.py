"""`surge sync -C`: the continuous loop behind the sync command line, with signal handling
(the first SIGINT/SIGTERM stops cleanly, a second one interrupts the transfer in progress, which
stays resumable) and the Prometheus endpoint (--metrics-port)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["run_continuous"]


def run_continuous(opts: Any, emit: Callable[[str, str], None], make_loop: Callable[..., Any] | None = None) -> int:
    """Exit status: 0 after a clean stop, 1 when the sync could not go on, 130 when a second
    signal interrupted a transfer. `make_loop(opts, emit, warn, ready)` builds the loop (the
    cluster's, coordinator/cluster/continuous.py); default: the embedded ContinuousSync."""
    from common.metrics import MetricsPortError, serve_metrics

    from ..sync.engine import SyncError, SyncReport, SyncUsageError
    from .loop import ContinuousSync

    def warn(text: str) -> None:
        print(f"surge sync: warning: {text}", file=sys.stderr, flush=True)

    if opts.metrics_port is not None:
        try:
            serve_metrics(opts.metrics_port, "127.0.0.1")
        except MetricsPortError as exc:
            print(f"surge sync: error: {exc}", file=sys.stderr)
            return 1

    def ready(report: SyncReport) -> None:
        if not opts.quiet:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
            print(f"Synchronized: {counts or 'nothing to do'}; {len(report.errors)} error(s); watching for changes",
                  file=sys.stderr, flush=True)  # fmt: skip

    try:
        loop = ContinuousSync(opts, emit, warn=warn, ready=ready) if make_loop is None else make_loop(opts, emit, warn, ready)
    except SyncError as exc:
        print(f"surge sync: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SyncUsageError) else 1
    previous = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if loop.stopping:  # second signal: stop now; a partial file stays resumable
            raise KeyboardInterrupt
        loop.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        loop.run()
    except SyncError as exc:
        print(f"surge sync: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SyncUsageError) else 1
    except KeyboardInterrupt:
        print(
            "surge sync: interrupted; the next run resumes where this one stopped", file=sys.stderr
        )
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"surge sync: stopped after {loop.batches} batch(es), {loop.errors} error(s); the next start "
          "picks up what changes meanwhile", file=sys.stderr)  # fmt: skip
    return 0
