"""`surge coordinator`: the long-lived service that runs submitted sync jobs on the cluster.

Requests arrive in ``surge:jobs:submitted`` (`surge sync ... --cluster URL --detach`). A request
is moved atomically (BLMOVE) to ``surge:coordinator:running`` while it runs and removed when
it ends, so a coordinator killed mid-job finds it there on restart and runs it again: the sync
resumes from the Redis snapshot and adopts the job's unfinished tasks (dispatch.py), so nothing
finished is sent twice. Up to `concurrency` one-time jobs run at once, one thread each;
continuous jobs (`surge sync -C ... --detach`) run beside them, outside those slots
(contservice.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis

from common import metrics
from common.cluster.connect import ClusterError
from common.cluster.jobs import FINAL_JOB_STATES, JobNotFound, JobStore
from common.cluster.schema import QUEUE_BOOKKEEPING, QUEUE_LARGE, QUEUE_SMALL, SCHEMA_VERSION, key
from common.snapshot import SnapshotError

from ..sync.engine import SyncError
from ..sync.options import OptionError, parse_sync_args
from .contservice import DEFAULT_CONTINUOUS_JOBS, ContinuousJobs, is_continuous
from .syncrun import SUBMITTED, absolute, run_cluster_sync

__all__ = ["RUNNING", "Coordinator"]

log = logging.getLogger("surge.coordinator")

RUNNING = key("coordinator", "running")
QUEUE_LABELS = {QUEUE_SMALL: "small", QUEUE_LARGE: "large", QUEUE_BOOKKEEPING: "bookkeeping"}
METRICS_EVERY_S = 5.0


class Coordinator:
    def __init__(self, client: Any, url: str | None, *, concurrency: int = 1, send: Any = None,
                 lock_ttl_s: float | None = None, continuous_jobs: int = DEFAULT_CONTINUOUS_JOBS) -> None:  # fmt: skip
        self.r = client
        self.url = url  # the service's own Redis URL: jobs never carry one
        self.jobs = JobStore(client)
        self.concurrency = max(1, concurrency)
        self.send = send
        self.lock_ttl_s = lock_ttl_s
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.halted = threading.Event()  # a second signal: stop now, leave work to the workers
        self._snapshot: Any = None  # the store of the newest job (its size is a metric)
        self.continuous = ContinuousJobs(client, url, RUNNING, limit=continuous_jobs, send=send, lock_ttl_s=lock_ttl_s,
                                         on_snapshot=lambda snap: setattr(self, "_snapshot", snap))  # fmt: skip

    def request_stop(self) -> None:
        """First signal: one-time jobs run to their end, continuous ones finish their batch;
        a second one: stop now (each job's work in flight goes on on the workers and is
        adopted by the next start). Safe from a signal handler."""
        if self.stop.is_set():
            self.halted.set()
        self.stop.set()

    def serve(self) -> None:
        """Resume requests a killed coordinator left running, then take new ones until stopped."""
        for raw in self.r.lrange(RUNNING, 0, -1):
            log.info("resuming a job left running by a previous coordinator")
            self._start(raw)
        next_metrics = 0.0
        while not self.stop.is_set():
            self._threads = [t for t in self._threads if t.is_alive()]
            if time.monotonic() >= next_metrics:
                next_metrics = time.monotonic() + METRICS_EVERY_S
                try:
                    self.update_metrics()
                except redis.RedisError as exc:
                    log.warning("metrics not updated: %s", exc)
            if len(self._threads) >= self.concurrency:
                self.continuous.take_waiting()
                self.stop.wait(0.2)
                continue
            try:
                raw = self.r.blmove(SUBMITTED, RUNNING, 1, "RIGHT", "LEFT")
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("Redis unreachable (%s); trying again", exc)
                self.stop.wait(1.0)
                continue
            if raw is not None:
                self._start(raw)
        self._wind_down()

    def _wind_down(self) -> None:
        """Continuous jobs stop after their batch in flight (at once after a second signal);
        one-time jobs run to their end unless a second signal comes (their requests stay in
        the running list: the next start adopts their tasks)."""
        self.continuous.stop_all()
        while not self.halted.is_set() and (
            any(t.is_alive() for t in self._threads) or self.continuous.alive()
        ):
            self.halted.wait(0.2)
        if self.halted.is_set():
            self.continuous.halt_all()
            self.continuous.join()

    def _start(self, raw: bytes | str) -> None:
        if is_continuous(raw):
            self.continuous.start(raw)
            return
        t = threading.Thread(target=self._run_request, args=(raw,), name="surge-job", daemon=True)
        self._threads.append(t)
        t.start()

    def _run_request(self, raw: bytes | str) -> None:
        try:
            req = json.loads(raw)
            job_id, pair = str(req["id"]), str(req["pair"])
        except (ValueError, KeyError, TypeError):
            log.error("dropped a malformed job request")
            self.r.lrem(RUNNING, 1, raw)
            return
        other = self.continuous.runs_pair(pair)
        if other is not None:
            self._refuse(job_id, pair, f"pair {pair!r} is kept in step by continuous job {other} "
                         "(surge cancel it first to run a one-time sync)")  # fmt: skip
            self.r.lrem(RUNNING, 1, raw)
            return
        while self.r.exists(key("snap", pair, "lock")) and not self.stop.is_set():
            self.stop.wait(0.5)  # a killed run's pair lock expires within its TTL
        if self.stop.is_set():
            return  # the request stays in RUNNING for the next coordinator
        try:
            self._run(req, job_id, pair)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.error(
                "job %s: lost Redis (%s); it resumes when the coordinator restarts", job_id, exc
            )
            return  # the request stays in RUNNING
        except Exception as exc:  # a bug must not leave the request running for ever
            log.exception("job %s: internal error", job_id)
            self.jobs.set_job_state(job_id, "failed", f"coordinator internal error: {exc!r}")
        self.r.lrem(RUNNING, 1, raw)

    def _run(self, req: dict[str, Any], job_id: str, pair: str) -> None:
        if not self.r.exists(key("job", job_id)):
            self.jobs.create_job(
                pair,
                {"name": pair},
                [],
                job_id=job_id,
                state="planning",
            )
        elif self.jobs.job(job_id)["state"] in FINAL_JOB_STATES:
            return
        error = None
        try:
            if req.get("v") != SCHEMA_VERSION:
                raise OptionError(
                    f"request of schema version {req.get('v')!r}; this is {SCHEMA_VERSION}"
                )
            opts = absolute(
                parse_sync_args([*req["argv"], "--cluster", self.url or ""]),
                str(req.get("cwd", "/")),
            )
            report = run_cluster_sync(opts, client=self.r, send=self.send, job_id=job_id,
                                      on_snapshot=lambda snap: setattr(self, "_snapshot", snap),
                                      lock_ttl_s=self.lock_ttl_s)  # fmt: skip
            if not report.ok:
                error = f"{len(report.errors)} error(s); first: {': '.join(report.errors[0])}"
            log.info("job %s of %s: %s", job_id, pair, report.counts)
        except (OptionError, SyncError, SnapshotError, ClusterError) as exc:
            error = str(exc)
        try:
            self.jobs.finish_job(job_id, error)
        except JobNotFound:
            pass

    def _refuse(self, job_id: str, pair: str, error: str) -> None:
        log.error("job %s of %s: %s", job_id, pair, error)
        if not self.r.exists(key("job", job_id)):
            self.jobs.create_job(pair, {"name": pair}, [], job_id=job_id, state="planning")
        self.jobs.set_job_state(job_id, "failed", error)

    def update_metrics(self) -> None:
        """surge_jobs_active, surge_tasks{state}, surge_files_pending, surge_queue_messages{queue},
        surge_snapshot_* (of the newest active job's pair)."""
        active = self.jobs.active_jobs()
        metrics.JOBS_ACTIVE.set(len(active))
        counts = dict.fromkeys(metrics.TASK_STATES, 0)
        pending = 0
        for j in active:
            try:
                job = self.jobs.job(j)
            except (JobNotFound, ValueError):
                continue
            pending += max(0, job["files_total"] - job["files_done"] - job["files_failed"])
            for st in self.jobs.task_states(j).values():
                if st.get("state") in counts:
                    counts[st["state"]] += 1
        for state, n in counts.items():
            metrics.TASKS.labels(state=state).set(n)
        metrics.FILES_PENDING.set(pending)
        for queue, label in QUEUE_LABELS.items():
            metrics.QUEUE_MESSAGES.labels(queue=label).set(self.r.llen(queue))
        snap = self._snapshot
        if snap is not None:
            try:
                metrics.SNAPSHOT_SIZE.set(snap.size_bytes())
                metrics.SNAPSHOT_ENTRIES.set(snap.count("local") + snap.count("remote"))
            except (SnapshotError, redis.RedisError):
                pass  # closed with its job: keep the last figures
