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

__all__ = ["coordinator_main", "status_main"]


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
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="jobs run at once (default 1)")
    p.add_argument("-D", dest="debug", action="count", default=0, help="debug logging")
    a = p.parse_args(list(argv))
    if a.metrics_port is not None and not 1 <= a.metrics_port <= 65535:
        p.error(f"--metrics-port: {a.metrics_port} out of range 1..65535")
    if a.jobs < 1:
        p.error(f"--jobs: {a.jobs} must be at least 1")
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
    service = Coordinator(r, url, concurrency=a.jobs, lock_ttl_s=lock_ttl)
    signal.signal(signal.SIGTERM, lambda *_: service.stop.set())
    log.info("coordinator on %s, %d job(s) at once", redact(url), a.jobs)
    try:
        service.serve()
    except KeyboardInterrupt:
        service.stop.set()
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
