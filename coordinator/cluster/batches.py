"""The dispatcher of a continuous sync on a cluster: every batch's files become tasks of the one
job of the continuous run, instead of a job per transfer.

A batch's task ids are ``<seq>.<n>`` (``seq`` counts the job's transfers in Redis, so ids stay
unique across coordinator restarts and a late duplicate message never meets a newer task). Once
a batch is followed to its end its tasks are forgotten (`JobStore.prune_tasks`): a job that runs
for months holds the batch in flight only, and its counters (files, bytes, tasks) add up over
its life. A batch whose following failed (Redis lost) keeps its tasks: the next transfer adopts
them first, as it adopts those a stopped or killed run left (dispatch.py).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from common.cluster.jobs import JobStore
from common.cluster.schema import TaskSpec, key
from common.snapshot import Entry

from .dispatch import CeleryDispatcher, Send
from .plan import PlanLimits, plan_tasks

__all__ = ["BatchDispatcher"]


class BatchDispatcher(CeleryDispatcher):
    def __init__(self, jobs: JobStore, send: Send, job_id: str, *, limits: PlanLimits | None = None,
                 halt: threading.Event | None = None) -> None:  # fmt: skip
        super().__init__(jobs, send, limits=limits, job_id=job_id, halt=halt)
        self.job_id: str = job_id
        self._bytes_before = 0

    def _begin(self, o: Any, entries: list[Entry], adopted: set[str]) -> tuple[str, list[TaskSpec]]:
        job_key = key("job", self.job_id)
        seq = int(self.jobs.r.hincrby(job_key, "seq", 1))
        self._bytes_before = int(self.jobs.r.hget(job_key, "bytes_done") or 0)
        limits = self.limits or PlanLimits.from_options(o)
        planned = plan_tasks(self.job_id, ((e.path, e.size, e.mtime_ns) for e in entries), limits)
        tasks = self.jobs.add_tasks(
            self.job_id, [replace(t, task=f"{seq:x}.{t.task}") for t in planned]
        )
        for t in tasks:
            self.send(t)
        return self.job_id, tasks

    def _end(self, job_id: str, tasks: list[TaskSpec], error: str | None,
             job: dict[str, Any] | None = None) -> int:  # fmt: skip
        if job is None:  # not followed to its end: the next transfer adopts what is left
            return 0
        self.jobs.prune_tasks(job_id, [t.task for t in tasks])
        return max(0, int(job["bytes_done"]) - self._bytes_before)
