"""Prometheus metrics of every Surge process (worker, coordinator, server/agent, sync).

One registry per process holds every metric Surge exposes, so that the names below are the whole
contract with the Grafana dashboard (helm/ and docker-compose use the same JSON) and with the
operators' alerts. Names follow the Prometheus conventions: the `surge_` prefix, base units
(bytes, seconds), `_total` for counters, and labels only from small fixed sets (never a path, a
job id or a host name: those are unbounded).

A process that was not asked for `--metrics-port` still updates these objects; they cost a lock
and an add each, and nothing reads them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
    disable_created_metrics,
    start_http_server,
)

from common import __version__

__all__ = [
    "DROP_REASONS",
    "FILE_STATES",
    "QUEUES",
    "REGISTRY",
    "TASK_OUTCOMES",
    "TASK_STATES",
    "exposition",
    "record_receiver",
    "record_sender",
    "serve_metrics",
]

disable_created_metrics()  # the *_created series double the exposition and no panel uses them
REGISTRY: Final = CollectorRegistry(auto_describe=True)

# The fixed label sets (a value outside them is a bug, not a new series).
DROP_REASONS: Final = ("malformed", "version", "foreign_session", "authentication", "replay",
                       "unexpected_type", "out_of_range")  # fmt: skip
TASK_STATES: Final = ("pending", "running", "succeeded", "failed")
TASK_OUTCOMES: Final = ("succeeded", "failed", "retried")
FILE_STATES: Final = ("synced", "skipped", "deleted", "failed")
QUEUES: Final = ("small", "large", "bookkeeping")

BUILD_INFO: Final = Info("surge_build", "Version of the Surge process", registry=REGISTRY)
BUILD_INFO.info({"version": __version__})

# -- transport (any process that runs a UDP session: worker, agent/server, sync, cp) ---------------
SENT_BYTES: Final = Counter("surge_sent_bytes", "File data sent over UDP, retransmissions included",
                            unit="bytes", registry=REGISTRY)  # fmt: skip
RECEIVED_BYTES: Final = Counter("surge_received_bytes", "New file data received over UDP (duplicates excluded)",
                                unit="bytes", registry=REGISTRY)  # fmt: skip
RETRANSMITTED_BYTES: Final = Counter("surge_retransmitted_bytes", "File data sent again after a loss",
                                     unit="bytes", registry=REGISTRY)  # fmt: skip
DATAGRAMS_DROPPED: Final = Counter("surge_datagrams_dropped", "Received datagrams dropped, by reason",
                                   ["reason"], registry=REGISTRY)  # fmt: skip
SESSIONS_ACTIVE: Final = Gauge(
    "surge_sessions_active", "UDP transfer sessions running now", registry=REGISTRY
)
SESSIONS: Final = Counter("surge_sessions", "UDP transfer sessions finished, by outcome", ["outcome"],
                          registry=REGISTRY)  # fmt: skip
TRANSFER_RATE: Final = Gauge("surge_transfer_rate_bytes_per_second",
                             "Sending rate chosen by the rate controller of the latest session", registry=REGISTRY)  # fmt: skip
RTT: Final = Gauge(
    "surge_rtt_seconds", "Smoothed round-trip time of the latest session", registry=REGISTRY
)
LOSS: Final = Gauge(
    "surge_loss_ratio", "Estimated datagram loss (0-1) of the latest session", registry=REGISTRY
)
QUEUE_DELAY: Final = Gauge("surge_queue_delay_seconds", "Queueing delay the latest receiving session measured",
                           registry=REGISTRY)  # fmt: skip

# -- sync (coordinator, embedded sync, workers) -------------------------------------------------
FILES: Final = Counter("surge_files", "Files handled, by final state", ["state"], registry=REGISTRY)
FILES_PENDING: Final = Gauge(
    "surge_files_pending", "Files planned and not yet handled", registry=REGISTRY
)
SYNCED_BYTES: Final = Counter("surge_synced_bytes", "Size of the files committed at their destination",
                              unit="bytes", registry=REGISTRY)  # fmt: skip
SNAPSHOT_SIZE: Final = Gauge("surge_snapshot_size_bytes", "Storage used by the snapshot of the current pair",
                             registry=REGISTRY)  # fmt: skip
SNAPSHOT_ENTRIES: Final = Gauge("surge_snapshot_entries", "Records in the snapshot of the current pair",
                                registry=REGISTRY)  # fmt: skip
SYNC_LAG: Final = Gauge("surge_sync_lag_seconds", "Continuous sync: age of the oldest change not yet synchronized",
                        registry=REGISTRY)  # fmt: skip
CHANGES_PENDING: Final = Gauge("surge_changes_pending", "Continuous sync: changes seen and not yet synchronized",
                               registry=REGISTRY)  # fmt: skip

# -- cluster (coordinator and workers) -----------------------------------------------------------
TASKS: Final = Gauge(
    "surge_tasks", "Tasks of the coordinator's jobs, by state", ["state"], registry=REGISTRY
)
TASKS_DONE: Final = Counter(
    "surge_worker_tasks", "Tasks a worker ran, by outcome", ["outcome"], registry=REGISTRY
)
QUEUE_MESSAGES: Final = Gauge("surge_queue_messages", "Messages waiting in a broker queue", ["queue"],
                              registry=REGISTRY)  # fmt: skip
JOBS_ACTIVE: Final = Gauge(
    "surge_jobs_active", "Sync jobs the coordinator is running", registry=REGISTRY
)

for _reason in DROP_REASONS:  # every series exists from the start, at 0
    DATAGRAMS_DROPPED.labels(reason=_reason)
for _outcome in ("succeeded", "failed"):
    SESSIONS.labels(outcome=_outcome)
for _state in FILE_STATES:
    FILES.labels(state=_state)
for _state in TASK_STATES:
    TASKS.labels(state=_state)
for _outcome in TASK_OUTCOMES:
    TASKS_DONE.labels(outcome=_outcome)
for _queue in QUEUES:
    QUEUE_MESSAGES.labels(queue=_queue)

_lock = threading.Lock()


def _drops(drops: object) -> None:
    if isinstance(drops, Mapping):
        for reason, n in drops.items():
            if reason in DROP_REASONS and isinstance(n, int) and n > 0:
                DATAGRAMS_DROPPED.labels(reason=reason).inc(n)


def record_sender(stats: Mapping[str, object], *, ok: bool) -> None:
    """Account a finished sending session from `SenderSession.statistics()`."""
    with _lock:
        SENT_BYTES.inc(_num(stats.get("bytes_sent")))
        RETRANSMITTED_BYTES.inc(_num(stats.get("bytes_retransmitted")))
        RTT.set(_num(stats.get("srtt")))
        LOSS.set(min(max(_num(stats.get("loss")), 0.0), 1.0))
        rate = stats.get("rate_rate")
        if isinstance(rate, int | float):
            TRANSFER_RATE.set(rate)
        _drops(stats.get("drops"))
        SESSIONS.labels(outcome="succeeded" if ok else "failed").inc()


def record_receiver(stats: Mapping[str, object], *, ok: bool) -> None:
    """Account a finished receiving session from `ReceiverSession.statistics()`."""
    with _lock:
        RECEIVED_BYTES.inc(_num(stats.get("bytes_received")))
        QUEUE_DELAY.set(_num(stats.get("queue_delay")))
        _drops(stats.get("drops"))
        SESSIONS.labels(outcome="succeeded" if ok else "failed").inc()


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) and value >= 0 else 0.0


def serve_metrics(port: int, addr: str = "0.0.0.0") -> object:
    """Expose REGISTRY on http://addr:port/metrics (a daemon thread); returns the server so that
    tests can shut it down. Port 0 is refused by the callers' option checks, not here."""
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return server


def exposition() -> bytes:
    """The text exposition of REGISTRY (for tests and `surge status --metrics`)."""
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY)
