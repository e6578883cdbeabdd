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

import itertools
import threading
from collections.abc import Callable, Mapping
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
    "STAT_KEYS",
    "TASK_OUTCOMES",
    "TASK_STATES",
    "MetricsPortError",
    "SessionMeter",
    "exposition",
    "file_handled",
    "files_planned",
    "parse_metrics_port",
    "record_receiver",
    "record_sender",
    "serve_metrics",
    "set_relay",
    "sync_finished",
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
QUEUE_DELAY: Final = Gauge("surge_queue_delay_seconds",
                           "Queueing delay of the latest session, as its receiver measured it (senders learn it from feedback)",
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
FAR_ENDS: Final = Counter("surge_worker_far_end_connections", "Far-end connections of a worker's tasks: opened, "
                          "reused from an earlier task, or found dead when kept and replaced", ["how"],
                          registry=REGISTRY)  # fmt: skip
QUEUE_MESSAGES: Final = Gauge("surge_queue_messages", "Messages waiting in a broker queue", ["queue"],
                              registry=REGISTRY)  # fmt: skip
JOBS_ACTIVE: Final = Gauge(
    "surge_jobs_active", "Sync jobs the coordinator is running", registry=REGISTRY
)
CONTINUOUS_JOBS: Final = Gauge("surge_continuous_jobs",
                                "Continuous sync jobs this process runs (their lag and pending changes are the max and sum)",
                                registry=REGISTRY)  # fmt: skip

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
for _how in ("opened", "reused", "dead"):
    FAR_ENDS.labels(how=_how)
for _queue in QUEUES:
    QUEUE_MESSAGES.labels(queue=_queue)

_lock = threading.Lock()
_ids = itertools.count(1)

# What each direction's cumulative statistics feed: counters advance by the growth of a field,
# gauges take its latest value ("positive": 0 means "not measured yet" and is not shown).
_COUNTED: Final = {"send": (("bytes_sent", SENT_BYTES), ("bytes_retransmitted", RETRANSMITTED_BYTES)),
                   "recv": (("bytes_received", RECEIVED_BYTES),)}  # fmt: skip
_GAUGED: Final = {"send": (("srtt", RTT, True), ("loss", LOSS, False), ("rate_rate", TRANSFER_RATE, True),
                           ("rate_queue_delay", QUEUE_DELAY, False)),
                  "recv": (("srtt", RTT, True), ("sender_rate", TRANSFER_RATE, True),
                           ("queue_delay", QUEUE_DELAY, False))}  # fmt: skip
STAT_KEYS: Final = frozenset({"drops"} | {k for d in _COUNTED.values() for k, _ in d}
                             | {k for d in _GAUGED.values() for k, _, _ in d})  # fmt: skip

Relay = Callable[[dict[str, object]], None]
_relay: Relay | None = None


def set_relay(relay: Relay | None) -> None:
    """Also hand every session event to `relay` (an agent forwards them to its server)."""
    global _relay
    _relay = relay


class SessionMeter:
    """Live accounting of one UDP session from its cumulative `statistics()`.

    Counters advance by what each field gained since the previous update, so a scrape during a
    long transfer shows its progress and nothing is counted twice; the `baseline` (statistics
    at the start: data a resumed session already had) is not counted. Creating an active meter
    counts the session in `surge_sessions_active` until `finish` (which acts once)."""

    def __init__(self, direction: str, baseline: Mapping[str, object] | None = None, *,
                 active: bool = True) -> None:  # fmt: skip
        if direction not in _COUNTED:
            raise ValueError(f"direction must be 'send' or 'recv', not {direction!r}")
        self.direction = direction
        self.id = next(_ids)
        self._seen: dict[str, float] = {}
        self._active = active
        self._finished = False
        with _lock:
            self._absorb(baseline or {}, count=False)
            if active:
                SESSIONS_ACTIVE.inc()
        self._forward("start", baseline or {}, active=active)

    def update(self, stats: Mapping[str, object]) -> None:
        with _lock:
            self._absorb(stats, count=True)
        self._forward("update", stats)

    def finish(self, stats: Mapping[str, object], *, ok: bool) -> None:
        if self._finished:
            return
        self._finished = True
        with _lock:
            self._absorb(stats, count=True)
            SESSIONS.labels(outcome="succeeded" if ok else "failed").inc()
            if self._active:
                SESSIONS_ACTIVE.dec()
        self._forward("finish", stats, ok=ok)

    def _absorb(self, stats: Mapping[str, object], *, count: bool) -> None:
        for key, counter in _COUNTED[self.direction]:
            self._advance(key, counter, stats.get(key), count)
        drops = stats.get("drops")
        if isinstance(drops, Mapping):
            for reason in DROP_REASONS:
                dropped = DATAGRAMS_DROPPED.labels(reason=reason)
                self._advance("drops." + reason, dropped, drops.get(reason), count)
        if count:
            for key, gauge, positive in _GAUGED[self.direction]:
                value = stats.get(key)
                if isinstance(value, int | float) and (value > 0 or (value == 0 and not positive)):
                    gauge.set(min(value, 1.0) if gauge is LOSS else value)

    def _advance(self, key: str, counter: Counter, value: object, count: bool) -> None:
        if not isinstance(value, int | float) or value < 0:
            return  # absent (a report without this field) or nonsense: no change
        seen = self._seen.get(key, 0.0)
        if value > seen:
            if count:
                counter.inc(value - seen)
            self._seen[key] = float(value)

    def _forward(self, event: str, stats: Mapping[str, object], **extra: object) -> None:
        relay = _relay
        if relay is not None:
            relay({"id": self.id, "dir": self.direction, "ev": event,
                   "stats": {k: v for k, v in stats.items() if k in STAT_KEYS}, **extra})  # fmt: skip


def record_sender(
    stats: Mapping[str, object], *, ok: bool, meter: SessionMeter | None = None
) -> None:
    """Account the end of a sending session from `SenderSession.statistics()`: what `meter`
    has not counted yet (everything without one) and the outcome. The UDP driver
    (common/transport/udp.py) does this for every session it runs: its callers must not."""
    (meter or SessionMeter("send", active=False)).finish(stats, ok=ok)


def record_receiver(
    stats: Mapping[str, object], *, ok: bool, meter: SessionMeter | None = None
) -> None:
    """Account the end of a receiving session from `ReceiverSession.statistics()` (as
    `record_sender`)."""
    (meter or SessionMeter("recv", active=False)).finish(stats, ok=ok)


# -- sync bookkeeping ------------------------------------------------------------------------------
_pending = 0


def files_planned(count: int) -> None:
    """A sync planned `count` actions; each `file_handled` takes one off `surge_files_pending`."""
    global _pending
    with _lock:
        _pending = max(count, 0)
        FILES_PENDING.set(_pending)


def file_handled(status: str) -> None:
    """Count one file by its async status line word: SYNCHRONIZED (and (mov), (ddp)) is synced,
    (skp) and (exs) skipped, (del) deleted, anything starting with ERROR failed."""
    global _pending
    if status.startswith("ERROR"):
        state = "failed"
    elif status.endswith(("(skp)", "(exs)")):
        state = "skipped"
    elif status.endswith("(del)"):
        state = "deleted"
    else:
        state = "synced"
    with _lock:
        FILES.labels(state=state).inc()
        _pending = max(_pending - 1, 0)
        FILES_PENDING.set(_pending)


def sync_finished(snapshot: object) -> None:
    """After a sync (finished or not): nothing pending; the snapshot's size and record count."""
    from common.snapshot import SnapshotError

    files_planned(0)
    try:
        size = snapshot.size_bytes()  # type: ignore[attr-defined]
        entries = snapshot.count("local") + snapshot.count("remote")  # type: ignore[attr-defined]
    except (SnapshotError, OSError):
        return  # a broken snapshot is the sync's error to report, not the metrics'
    SNAPSHOT_SIZE.set(size)
    SNAPSHOT_ENTRIES.set(entries)


# -- the endpoint --------------------------------------------------------------------------------
class MetricsPortError(OSError):
    """The metrics endpoint cannot listen (the message names --metrics-port)."""


def parse_metrics_port(text: str) -> int:
    """The value of --metrics-port: a TCP port 1-65535 (ValueError naming the option)."""
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"--metrics-port: not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"--metrics-port: {port} is out of range (1-65535)")
    return port


def serve_metrics(port: int, addr: str = "0.0.0.0") -> object:
    """Expose REGISTRY on http://addr:port/metrics (a daemon thread); returns the server so that
    tests can shut it down. Port 0 is refused by the callers' option checks (parse_metrics_port),
    not here. A port in use (or an address not ours) raises MetricsPortError."""
    try:
        server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    except OSError as exc:
        raise MetricsPortError(
            f"--metrics-port {port}: cannot listen on {addr}: {exc.strerror or exc}"
        ) from None
    return server


def exposition() -> bytes:
    """The text exposition of REGISTRY (for tests and `surge status --metrics`)."""
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY)
