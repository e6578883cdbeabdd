"""`surge worker`: a Celery worker with Surge's app, on the cluster's Redis.

    surge worker --cluster redis://:PASS@redis:6379/0 [--metrics-port 9101] [--concurrency 2]
                 [--queues small,large,bookkeeping] [--hostname NAME] [-L DIR] [-D]

Defaults: every queue, one task at a time in one process (`solo` pool); `--concurrency N` runs N
tasks in threads of the same process (the UDP sessions spend their time in the kernel and in
the cipher, both outside the GIL), so one metrics registry sees every task and a killed process
loses nothing that Redis does not redeliver. Checked before the worker starts, each a one-line
error: option values (exit 2), the Redis URL, reachability and password (exit 1).

Test knobs (environment, not options): SURGE_VISIBILITY_TIMEOUT (seconds) and SURGE_LEASE_MS
shorten the broker's redelivery delay and the task lease.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from common.cluster.schema import LEASE_MS, QUEUE_BOOKKEEPING, QUEUE_LARGE, QUEUE_SMALL

__all__ = ["WorkerOptions", "parse_worker_args", "worker_main"]

QUEUES: Final = {"small": QUEUE_SMALL, "large": QUEUE_LARGE, "bookkeeping": QUEUE_BOOKKEEPING}
MAX_CONCURRENCY: Final = 64


class UsageError(Exception):
    """A bad option value (the message names the option)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


@dataclass(frozen=True)
class WorkerOptions:
    cluster: str | None
    metrics_port: int | None
    concurrency: int
    queues: tuple[str, ...]
    hostname: str
    log_dir: str | None
    debug: int
    visibility_timeout: int | None
    lease_ms: int


def _parser() -> _Parser:
    p = _Parser(prog="surge worker", description="A Celery worker of a Surge cluster: it runs the transfer tasks "
                "of `surge sync --cluster` jobs from the shared local directory to the far end.")  # fmt: skip
    p.add_argument(
        "--cluster", metavar="URL", help="Redis URL of the cluster (default: $SURGE_BROKER_URL)"
    )
    p.add_argument("--metrics-port", metavar="N", help="serve Prometheus metrics on this TCP port")
    p.add_argument("--concurrency", metavar="N", default="1", help="tasks run at once (default 1)")
    p.add_argument("--queues", metavar="LIST", default="small,large,bookkeeping",
                   help="queues to take tasks from: small, large, bookkeeping (default: all)")  # fmt: skip
    p.add_argument(
        "--hostname",
        metavar="NAME",
        help="worker name; surge@ is prefixed when it has no @ (default: surge@<host name>)",
    )
    p.add_argument(
        "-L", dest="log_dir", metavar="DIR", help="write the worker's log to DIR/surge-worker.log"
    )
    p.add_argument("-D", dest="debug", action="count", default=0, help="debug logging")
    return p


def _int(option: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise UsageError(f"{option}: {value} out of range {low}..{high}")
    return value


def parse_worker_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> WorkerOptions:
    """Parse and check `surge worker` arguments. Raises UsageError naming the option."""
    env = os.environ if env is None else env
    ns = _parser().parse_args(list(argv))
    queues = []
    for name in (q.strip() for q in ns.queues.split(",")):
        full = QUEUES.get(name.removeprefix("surge."))
        if full is None:
            raise UsageError(
                f"--queues: unknown queue {name!r}: expected small, large or bookkeeping"
            )
        queues.append(full)
    hostname = ns.hostname or socket.gethostname()
    if "@" not in hostname:
        hostname = f"surge@{hostname}"  # Celery's node name form (it would prefix "celery@")
    if not hostname.strip() or any(c.isspace() for c in hostname):
        raise UsageError("--hostname: must be non-empty and contain no spaces")
    vt = env.get("SURGE_VISIBILITY_TIMEOUT")
    return WorkerOptions(
        cluster=ns.cluster,
        metrics_port=None if ns.metrics_port is None else _int("--metrics-port", ns.metrics_port, 1, 65535),
        concurrency=_int("--concurrency", ns.concurrency, 1, MAX_CONCURRENCY),
        queues=tuple(dict.fromkeys(queues)),
        hostname=hostname,
        log_dir=ns.log_dir,
        debug=ns.debug,
        visibility_timeout=None if vt is None else _int("SURGE_VISIBILITY_TIMEOUT", vt, 1, 7 * 86400),
        lease_ms=_int("SURGE_LEASE_MS", env.get("SURGE_LEASE_MS", str(LEASE_MS)), 100, 3_600_000),
    )  # fmt: skip


def _celery_argv(o: WorkerOptions) -> list[str]:
    argv = ["worker", "--pool", "solo" if o.concurrency == 1 else "threads", "--concurrency", str(o.concurrency),
            "--queues", ",".join(o.queues), "--hostname", o.hostname, "--loglevel", "DEBUG" if o.debug else "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
    if o.log_dir:
        argv += ["--logfile", os.path.join(o.log_dir, "surge-worker.log")]
    return argv


def worker_main(argv: list[str]) -> int:
    """`surge worker`: 0 after a clean shutdown, 1 when Redis cannot be used, 2 for bad usage."""
    if any(a in ("-h", "--help") for a in argv):
        _parser().print_help()
        return 0
    try:
        opts = parse_worker_args(argv)
    except UsageError as exc:
        print(f"surge worker: error: {exc}", file=sys.stderr)
        return 2
    from common.cluster.connect import ClusterError, connect, redact, resolve_url

    try:
        url, _source = resolve_url(opts.cluster)
        connect(opts.cluster).close()  # one clear line now, not a retry loop inside Celery
    except ClusterError as exc:
        print(f"surge worker: error: {exc}", file=sys.stderr)
        return 1
    if opts.log_dir:
        try:
            os.makedirs(opts.log_dir, exist_ok=True)
        except OSError as exc:
            print(
                f"surge worker: error: -L: cannot create {opts.log_dir!r}: {exc.strerror}",
                file=sys.stderr,
            )
            return 2
    return _run(opts, url, redact(url))


def _run(opts: WorkerOptions, url: str, shown: str) -> int:
    import logging

    from .app import VISIBILITY_TIMEOUT_S, WorkerSettings, make_app

    # Surge's records go through the root logger that Celery sets up (stderr, or -L's file).
    logging.getLogger("surge").setLevel(logging.DEBUG if opts.debug >= 2 else logging.INFO)
    # The upload code logs a line per file at INFO: in a worker that is a line per file sent
    # (and a tenth of its CPU on small files); the task records and events say it already.
    logging.getLogger("surge.cp").setLevel(logging.DEBUG if opts.debug else logging.WARNING)
    if opts.metrics_port is not None:
        from common.metrics import serve_metrics

        try:
            serve_metrics(opts.metrics_port)
        except OSError as exc:
            print(
                f"surge worker: error: --metrics-port: {opts.metrics_port}: {exc.strerror}",
                file=sys.stderr,
            )
            return 2
    settings = WorkerSettings(url, visibility_timeout=opts.visibility_timeout or VISIBILITY_TIMEOUT_S,
                              lease_ms=opts.lease_ms)  # fmt: skip
    app = make_app(settings)
    print(f"surge worker {opts.hostname}: {shown}, queues {','.join(opts.queues)}, concurrency {opts.concurrency}",
          file=sys.stderr, flush=True)  # fmt: skip
    try:
        app.worker_main(_celery_argv(opts))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0
