"""The Celery app of a Surge cluster: the broker and result backend in one Redis, JSON only,
late acknowledgement, reject on worker loss, prefetch 1, time limits, one queue per size class.

Timing: a Redis broker hands an unacknowledged message to another worker once it has been out
for `visibility_timeout`, so that must be longer than any task runs, or a task still running
would be delivered twice (the task's lease stops the second copy from sending, but it waits).
Tasks are sized to finish well inside it: the coordinator cuts large files into ranges of at
most TASK_TARGET_SECONDS at the job's `-l` rate (and batches by count and bytes), the hard time
limit (HARD_LIMIT_S) stops a stuck task long before the visibility timeout, and a worker killed
mid-task has its message redelivered after the timeout, where the range resumes from the prefix
recorded in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from celery import Celery

from common.cluster.schema import (
    LEASE_MS,
    QUEUE_BOOKKEEPING,
    QUEUE_LARGE,
    QUEUE_SMALL,
    SCHEMA_VERSION,
    TASK_BOOKKEEPING,
    TASK_TRANSFER,
    TaskSpec,
)

__all__ = [
    "HARD_LIMIT_S",
    "SOFT_LIMIT_S",
    "TASK_TARGET_SECONDS",
    "VISIBILITY_TIMEOUT_S",
    "WorkerSettings",
    "dispatch",
    "make_app",
]

TASK_TARGET_SECONDS: Final = 30 * 60
"""What the coordinator aims at for one task at the job's rate (ranges and batches)."""
HARD_LIMIT_S: Final = 3 * 3600
"""A task running this long is killed (6x the target: a slow link, not a stuck one, is allowed)."""
SOFT_LIMIT_S: Final = HARD_LIMIT_S - 300
"""Raises SoftTimeLimitExceeded inside the task first: it records why and gives up cleanly."""
VISIBILITY_TIMEOUT_S: Final = 4 * 3600
"""Longer than the hard limit, so a live task is never delivered twice by the broker."""


@dataclass(frozen=True)
class WorkerSettings:
    """What an entry point decides for the app (tests shorten the timeouts and the lease)."""

    url: str
    visibility_timeout: int = VISIBILITY_TIMEOUT_S
    lease_ms: int = LEASE_MS

    @property
    def hard_limit(self) -> int:
        """The task time limit, always inside the visibility timeout."""
        return min(HARD_LIMIT_S, max(self.visibility_timeout * 3 // 4, 1))


def make_app(settings: WorkerSettings) -> Celery:
    """A Celery app bound to the cluster's Redis with Surge's tasks registered."""
    app = Celery("surge", broker=settings.url, backend=settings.url, set_as_current=True)
    # kombu sweeps for messages out longer than the visibility timeout every interval*throttle
    # seconds (100 s by default): a short timeout needs a matching sweep to mean anything.
    sweep = max(1, min(10, settings.visibility_timeout // 3))
    transport = {"visibility_timeout": settings.visibility_timeout, "unacked_restore_interval": sweep,
                 "unacked_restore_throttle": 1 if settings.visibility_timeout < 300 else 10}  # fmt: skip
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],  # never pickle: a message must not be able to run code
        result_accept_content=["json"],
        task_acks_late=True,  # acknowledged when done: a worker that dies loses nothing
        task_reject_on_worker_lost=True,  # ... and its message goes back to the queue
        worker_prefetch_multiplier=1,  # one message at a time: long tasks do not hoard work
        task_ignore_result=True,  # progress and outcome live in the job's Redis records
        # Enforced by the prefork pool only; Surge runs solo/threads (one process, one metrics
        # registry), so the executor enforces the same limit itself (workers/cluster/executor.py).
        task_time_limit=settings.hard_limit,
        task_soft_time_limit=max(settings.hard_limit - 300, settings.hard_limit * 9 // 10),
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_default_queue=QUEUE_SMALL,
        task_routes={TASK_BOOKKEEPING: {"queue": QUEUE_BOOKKEEPING}, TASK_TRANSFER: {"queue": QUEUE_SMALL}},
        worker_send_task_events=False,
    )  # fmt: skip
    app.conf.surge_settings = settings
    from .tasks import register

    register(app)
    return app


def dispatch(app: Celery, spec: TaskSpec, **options: Any) -> Any:
    """Queue one task: bookkeeping to its queue, transfers to the queue named in the spec (so a
    small-file batch never waits behind a 100 GB range). Only ids travel in the message."""
    name = TASK_BOOKKEEPING if spec.kind == "ops" else TASK_TRANSFER
    queue = QUEUE_BOOKKEEPING if spec.kind == "ops" else spec.queue
    if queue not in (QUEUE_SMALL, QUEUE_LARGE, QUEUE_BOOKKEEPING):
        raise ValueError(f"task {spec.task!r}: unknown queue {queue!r}")
    return app.send_task(
        name, args=[spec.job, spec.task], kwargs={"v": SCHEMA_VERSION}, queue=queue, **options
    )
