"""`surge coordinator --cluster URL [--metrics-port N] [--jobs N]` and
`surge status -N NAME --cluster URL [--json]`. Exit status: 0; 1 when Redis cannot be used
(unreachable, wrong password: one line, as `surge worker` and `surge sync`) or the newest job
failed; 2 for bad usage."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["cancel_main", "coordinator_main", "status_main"]

DEFAULT_CONTINUOUS_JOBS = 16  # each holds an inotify instance, a far-end connection, a pair lock
MAX_CONTINUOUS_JOBS = 1000


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, like every Surge command
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def coordinator_main(argv: Sequence[str]) -> int:
    p = _Parser(
        prog="surge coordinator", description="Run submitted cluster sync jobs (docs/CLUSTER.md)."
    )
    p.add_argument("--cluster", metavar="URL", help="Redis URL (default: $SURGE_BROKER_URL)")
    p.add_argument(
        "--metrics-port", type=int, metavar="N", help="serve Prometheus metrics on port N"
    )
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="one-time jobs run at once (default 1)")
    p.add_argument("--continuous-jobs", type=int, default=DEFAULT_CONTINUOUS_JOBS, metavar="N",
                   help=f"continuous jobs run at most, beside them (default {DEFAULT_CONTINUOUS_JOBS})")  # fmt: skip
    p.add_argument("-D", dest="debug", action="count", default=0, help="debug logging")
    a = p.parse_args(list(argv))
    if a.metrics_port is not None and not 1 <= a.metrics_port <= 65535:
        p.error(f"--metrics-port: {a.metrics_port} out of range 1..65535")
    if a.jobs < 1:
        p.error(f"--jobs: {a.jobs} must be at least 1")
    if not 1 <= a.continuous_jobs <= MAX_CONTINUOUS_JOBS:
        p.error(f"--continuous-jobs: {a.continuous_jobs} out of range 1..{MAX_CONTINUOUS_JOBS}")
    from common.cluster.connect import ClusterError, connect, redact, resolve_url
    from common.logs import configure_logging

    from .service import Coordinator
    from .syncrun import lock_ttl_from_env

    log = configure_logging("surge-coordinator", None, 10 << 20, max(a.debug, 1))
    handler = logging.StreamHandler(sys.stderr)  # a service logs to stderr (journald, kubectl logs)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    try:
        r = connect(a.cluster)
        url = resolve_url(a.cluster)[0]
        lock_ttl = lock_ttl_from_env()
    except ClusterError as exc:
        print(f"surge coordinator: error: {exc}", file=sys.stderr)
        return 1
    if a.metrics_port is not None:
        from common.metrics import serve_metrics

        serve_metrics(a.metrics_port)
    service = Coordinator(r, url, concurrency=a.jobs, lock_ttl_s=lock_ttl, continuous_jobs=a.continuous_jobs)
    for sig in (signal.SIGINT, signal.SIGTERM):  # the first stops cleanly, a second at once
        signal.signal(sig, lambda *_: service.request_stop())
    log.info("coordinator on %s, %d one-time job(s) at once, up to %d continuous", redact(url), a.jobs,
             a.continuous_jobs)  # fmt: skip
    service.serve()
    return 0


def status_main(argv: Sequence[str]) -> int:
    p = _Parser(prog="surge status", description="Progress of a pair's cluster jobs.")
    p.add_argument("-N", "--name", required=True, metavar="NAME", help="the pair (surge sync -N)")
    p.add_argument("--cluster", metavar="URL", help="Redis URL (default: $SURGE_BROKER_URL)")
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.add_argument("--limit", type=int, default=10, metavar="N", help="newest N jobs (default 10)")
    a = p.parse_args(list(argv))
    from common.cluster.connect import ClusterError, connect
    from common.cluster.jobs import JobStore

    from .status import pair_status, render

    try:
        r = connect(a.cluster)
    except ClusterError as exc:
        print(f"surge status: error: {exc}", file=sys.stderr)
        return 1
    progress = pair_status(JobStore(r), a.name, max(1, a.limit))
    print(
        json.dumps({"pair": a.name, "jobs": progress}, indent=2)
        if a.json
        else render(a.name, progress)
    )
    return 1 if progress and progress[0]["state"] == "failed" else 0


MAX_WAIT_S = 86400.0


def cancel_main(argv: Sequence[str]) -> int:
    p = _Parser(prog="surge cancel", description="Stop a pair's continuous cluster job for good.")
    p.add_argument("-N", "--name", required=True, metavar="NAME", help="the pair (surge sync -N)")
    p.add_argument("--cluster", metavar="URL", help="Redis URL (default: $SURGE_BROKER_URL)")
    p.add_argument("--job", metavar="ID", help="this job (default: the pair's newest continuous job)")
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="wait this long for it to stop (default 60; 0: do not wait)")  # fmt: skip
    a = p.parse_args(list(argv))
    if not 0 <= a.wait <= MAX_WAIT_S:
        p.error(f"--wait: {a.wait:g} out of range 0..{MAX_WAIT_S:g} seconds")
    from common.cluster.connect import ClusterError, connect

    from .cancel import CancelError, cancel_job

    try:
        print(cancel_job(connect(a.cluster), a.name, a.job, a.wait))
    except (ClusterError, CancelError) as exc:
        print(f"surge cancel: error: {exc}", file=sys.stderr)
        return 1
    return 0
