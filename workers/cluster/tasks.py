"""The Celery tasks of a Surge worker: thin adapters from a message to `executor.run_task`.

A message carries only ``(job_id, task_id)`` and ``v=SCHEMA_VERSION``. The task re-reads the
spec and the job options from Redis, runs the executor once, and maps what it raises:
LeaseBusy (another live worker runs it) and Retry (far end unreachable, session failed) are
retried later with a growing delay; Fatal, a schema mismatch or a cancelled job fail the task
in its record at once (never a retry loop). A task never waits on another task.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Final

from celery import Celery, Task

from common import __version__
from common.cluster.jobs import FINAL_JOB_STATES, JobNotFound, JobStore
from common.cluster.schema import SCHEMA_VERSION, TASK_BOOKKEEPING, TASK_TRANSFER, SchemaError
from common.metrics import TASKS_DONE  # sessions count themselves in the UDP driver

from .executor import Fatal, LeaseBusy, Retry, run_task
from .farends import FarEnds

__all__ = ["MAX_ATTEMPTS", "close_far_ends", "register", "run_message"]

log = logging.getLogger("surge.worker")

MAX_ATTEMPTS: Final = 6
"""Transient failures of one task before it is failed (delays 2, 4, 8, 16, 32 s in between)."""
MAX_DELAY_S: Final = 60


def _store(app: Celery) -> JobStore:
    """One JobStore per process, on the broker's Redis (redis-py's pool is thread-safe)."""
    store = getattr(app, "_surge_store", None)
    if store is None:
        from common.cluster.connect import connect

        settings = app.conf.surge_settings
        store = JobStore(connect(settings.url), lease_ms=settings.lease_ms)
        app._surge_store = store
    return store


def _far_ends(app: Celery) -> FarEnds:
    """The worker process's far-end connections, kept across its tasks (closed at shutdown)."""
    far: FarEnds = app._surge_far_ends
    return far


def close_far_ends(app: Celery) -> None:
    """Close the connections the worker kept (at worker shutdown; idempotent)."""
    far = getattr(app, "_surge_far_ends", None)
    if far is not None:
        far.close()


def _give_up(store: JobStore, job_id: str, task_id: str, error: str) -> str:
    """Fail a task whose files cannot be counted (no spec this worker can read): the task alone
    counts as failed, the job says why, and nothing is sent."""
    log.error("task %s of job %s failed: %s", task_id, job_id, error)
    store.finish_task(job_id, task_id, False, error, files_done=0, files_failed=0, bytes_done=0)
    TASKS_DONE.labels(outcome="failed").inc()
    return "failed"


def _delay(retries: int) -> float:
    return min(2.0 ** (retries + 1), MAX_DELAY_S) * random.uniform(0.8, 1.2)


def run_message(task: Task, job_id: str, task_id: str, v: Any) -> str:
    """The body of both Surge tasks; returns the outcome name (for the worker's log)."""
    store = _store(task.app)
    if v != SCHEMA_VERSION:
        return _give_up(store, job_id, task_id,
                        f"SchemaError: the message has schema version {v!r}; this worker (Surge {__version__}) "
                        f"speaks version {SCHEMA_VERSION}: run the same Surge version everywhere")  # fmt: skip
    try:
        spec = store.task(job_id, task_id)
        job = store.job(job_id)
    except SchemaError as exc:
        return _give_up(store, job_id, task_id, f"SchemaError: {exc}")
    except JobNotFound as exc:
        log.warning("dropping a message: %s", exc)  # the job is gone: nothing to record it in
        return "dropped"
    if job["state"] in FINAL_JOB_STATES:
        return _give_up(store, job_id, task_id, f"the job is {job['state']}")
    # The name the operator gave --hostname (Celery's node name without the surge@ we added).
    host = (task.request.hostname or "worker").removeprefix("surge@")
    worker = f"{host}:{os.getpid()}"
    settings = task.app.conf.surge_settings
    try:
        out = run_task(spec, job["options"], store, worker, host=host, far=_far_ends(task.app),
                       time_limit=settings.hard_limit)  # fmt: skip
    except LeaseBusy as exc:
        log.info("%s; retrying later", exc)
        TASKS_DONE.labels(outcome="retried").inc()
        raise task.retry(countdown=settings.lease_ms / 2000) from None
    except Retry as exc:
        if task.request.retries + 1 >= MAX_ATTEMPTS:
            return _fail_after_retries(store, spec, str(exc))
        log.warning("task %s: %s; retrying", task_id, exc)
        TASKS_DONE.labels(outcome="retried").inc()
        raise task.retry(countdown=_delay(task.request.retries)) from None
    except Fatal as exc:
        log.error("task %s failed: %s", task_id, exc)
        TASKS_DONE.labels(outcome="failed").inc()
        return "failed"
    if out is None:
        return "already finished"
    outcome = "failed" if out.files_failed else "succeeded"
    TASKS_DONE.labels(outcome=outcome).inc()
    return outcome


def _fail_after_retries(store: JobStore, spec: Any, error: str) -> str:
    message = f"gave up after {MAX_ATTEMPTS} attempts: {error}"
    log.error("task %s failed: %s", spec.task, message)
    store.finish_task(spec.job, spec.task, False, message)
    TASKS_DONE.labels(outcome="failed").inc()
    return "failed"


def register(app: Celery) -> None:
    """Register Surge's two task names on `app` (one body: the kind is in the spec), and close
    the far-end connections its tasks kept when the worker shuts down."""
    from celery.signals import worker_shutdown

    app._surge_far_ends = FarEnds()  # made here, before any thread of the pool can race for it
    worker_shutdown.connect(lambda **_: close_far_ends(app), weak=False)

    # max_retries=None: Celery does not cap retries; run_message counts transient failures itself
    # (MAX_ATTEMPTS) and waits for a busy lease as long as its holder lives.
    @app.task(
        name=TASK_TRANSFER, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None
    )
    def transfer(self: Task, job_id: str, task_id: str, v: Any = None) -> str:
        return run_message(self, job_id, task_id, v)

    @app.task(
        name=TASK_BOOKKEEPING,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=None,
    )
    def bookkeeping(self: Task, job_id: str, task_id: str, v: Any = None) -> str:
        return run_message(self, job_id, task_id, v)
