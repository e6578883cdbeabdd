"""The Redis side of a continuous cluster job: its record (opened, reported about every second,
closed), the cancel flag `surge cancel` sets, and the coordinator's Prometheus gauges over its
continuous jobs.

A continuous job is a job hash (common/cluster/schema.py) with ``continuous=1``. Its state is
``running`` while a coordinator runs it; ``stopped`` when a `surge coordinator` stopped it and
will resume it (its request stays in ``surge:coordinator:running``), or when a foreground run
was interrupted (the next run of the pair closes it); ``done`` after a foreground run stopped
cleanly; ``cancelled`` or ``failed`` for good. The record's live fields (activity, changes
pending, oldest change, heartbeat) are what `surge status` shows; the counters add up over the
job's life, across restarts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

from common import metrics
from common.cluster.jobs import FINAL_JOB_STATES, JobStore
from common.cluster.schema import key

from ..continuous.loop import LoopStats

__all__ = ["COUNTED", "ContinuousRecord", "LagGauges", "counted_kind"]

COUNTED: Final = ("sent", "deleted", "moved", "errors")
"""Status lines counted in the job record: SYNCHRONIZED, (del), (mov), ERROR."""


def counted_kind(status: str) -> str | None:
    """Which counter a status line moves (None: not counted, e.g. skipped or already there)."""
    if status.startswith("ERROR"):
        return "errors"
    return {
        "SYNCHRONIZED": "sent",
        "SYNCHRONIZED(del)": "deleted",
        "SYNCHRONIZED(mov)": "moved",
    }.get(status)


class ContinuousRecord:
    """One continuous job's hash. Only the run that holds the pair lock writes it, except the
    `cancel` field (`surge cancel`)."""

    def __init__(self, jobs: JobStore, job_id: str) -> None:
        self.jobs, self.job_id = jobs, job_id
        self.key = key("job", job_id)
        self._reported: dict[str, int] = {}

    def open(self, pair: str, options: Mapping[str, Any], detached: bool) -> bool:
        """Create the job, or take it up again (a resumed coordinator). False when it must not
        run: it ended meanwhile (cancelled while its coordinator was down)."""
        r = self.jobs.r
        live = {"state": "running", "activity": "starting", "heartbeat": int(time.time()),
                "changes_pending": 0, "oldest_change_ms": 0}  # fmt: skip
        if r.exists(self.key):
            job = self.jobs.job(self.job_id)
            if job["state"] in FINAL_JOB_STATES:
                return False
            if int(job.get("cancel", 0)):  # cancelled while no coordinator ran it
                self.close("cancelled")
                return False
            r.hset(
                self.key,
                mapping={**live, "options": json.dumps(dict(options), separators=(",", ":"))},
            )
            r.sadd(key("jobs", "active"), self.job_id)
            return True
        self.jobs.create_job(pair, options, [], job_id=self.job_id, state="running")
        r.hset(self.key, mapping={**live, "continuous": 1, "detached": int(detached)})
        return True

    def report(self, stats: LoopStats, lag: float, counts: Mapping[str, int]) -> None:
        """The live fields, and the counters' growth since the last report (they add up over
        the job's runs)."""
        now = time.time()
        oldest = 0 if stats.oldest is None else int((now - lag) * 1000)
        counts = {**counts, "batches": stats.batches}
        pipe = self.jobs.r.pipeline(transaction=True)
        pipe.hset(self.key, mapping={"activity": stats.activity, "changes_pending": stats.pending,
                                     "oldest_change_ms": oldest, "heartbeat": int(now)})  # fmt: skip
        for name, value in counts.items():
            grown = value - self._reported.get(name, 0)
            if grown:
                pipe.hincrby(self.key, name, grown)
        pipe.execute()
        self._reported = dict(counts)

    def cancel_requested(self) -> bool:
        return bool(int(self.jobs.r.hget(self.key, "cancel") or 0))

    def close(self, state: str, error: str | None = None) -> None:
        """The job's state once its run ended; nothing is pending in the record any more (what
        changed meanwhile is found by the next run's first sync)."""
        self.jobs.r.hset(
            self.key, mapping={"activity": "stopped", "changes_pending": 0, "oldest_change_ms": 0}
        )
        self.jobs.set_job_state(self.job_id, state, error)


class LagGauges:
    """`surge_changes_pending` (the sum) and `surge_sync_lag_seconds` (the maximum) over the
    continuous jobs this process runs, and `surge_continuous_jobs`: a pair or a job id is never
    a label (both unbounded); `surge status` gives the figures per job."""

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def update(self, job_id: str, pending: int, lag: float) -> None:
        with self._lock:
            self._jobs[job_id] = (pending, lag)
            self._set()

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
            self._set()

    def _set(self) -> None:
        metrics.CHANGES_PENDING.set(sum(p for p, _ in self._jobs.values()))
        metrics.SYNC_LAG.set(max((lag for _, lag in self._jobs.values()), default=0.0))
        metrics.CONTINUOUS_JOBS.set(len(self._jobs))
