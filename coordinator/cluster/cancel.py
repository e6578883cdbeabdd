"""`surge cancel -N NAME --cluster URL [--job ID] [--wait SECONDS]`: stop a continuous job for
good. Exit status: 0 once it is cancelled (or the request was taken back before it started, or
with --wait 0 once asked); 1 when there is no such job, Redis cannot be used, or it is still
finishing its batch after --wait seconds; 2 for bad usage.

The job's `cancel` field is set; the coordinator running it sees it within about a second,
lets the batch in flight finish (its files are recorded) and closes the job `cancelled`. A job
no coordinator runs now (stopped, or its coordinator silent for STALE_S) is closed at once; a
coordinator that resumes it later finds it closed and drops it. A request still waiting in
``surge:jobs:submitted`` is taken back.
"""

from __future__ import annotations

import json
import time
from typing import Any

from common.cluster.jobs import FINAL_JOB_STATES, JobNotFound, JobStore
from common.cluster.schema import SchemaError, key

from .contjob import ContinuousRecord
from .status import STALE_S
from .syncrun import SUBMITTED

__all__ = ["CancelError", "cancel_job"]

POLL_S = 0.2


class CancelError(Exception):
    """Nothing to cancel, or not cancelled in time (one line)."""


def cancel_job(r: Any, pair: str, job_id: str | None, wait_s: float) -> str:
    """Cancel the pair's continuous job (the newest not ended, or `job_id`); returns what
    happened, one line. Raises CancelError."""
    jobs = JobStore(r)
    waiting = _take_back(r, pair, job_id)
    if waiting is not None:
        jobs.create_job(pair, {"name": pair}, [], job_id=waiting, state="planning")
        r.hset(key("job", waiting), "continuous", 1)
        jobs.set_job_state(waiting, "cancelled", "cancelled before it started")
        return f"job {waiting}: cancelled before it started"
    job = _target(jobs, pair, job_id)
    if job["state"] in FINAL_JOB_STATES:
        return f"job {job['id']}: already {job['state']}"
    r.hset(key("job", job["id"]), "cancel", 1)
    silent = time.time() - int(job.get("heartbeat", 0)) > STALE_S
    if job["state"] != "running" or silent:  # no coordinator runs it now: close it here
        ContinuousRecord(jobs, job["id"]).close("cancelled")
        return f"job {job['id']}: cancelled"
    if wait_s <= 0:
        return f"job {job['id']}: cancel requested; it stops after its batch in flight"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        state = jobs.job(job["id"])["state"]
        if state in FINAL_JOB_STATES:
            return f"job {job['id']}: {state}"
        time.sleep(POLL_S)
    raise CancelError(f"job {job['id']}: cancel requested, still finishing its batch in flight after "
                      f"--wait {wait_s:g} s (surge status -N {pair} shows when it ends)")  # fmt: skip


def _take_back(r: Any, pair: str, job_id: str | None) -> str | None:
    """A continuous request of the pair still waiting for a coordinator, removed; its id."""
    for raw in r.lrange(SUBMITTED, 0, -1):
        try:
            req = json.loads(raw)
        except ValueError:
            continue
        mine = req.get("pair") == pair and req.get("continuous") and job_id in (None, req.get("id"))
        if mine and r.lrem(SUBMITTED, 1, raw):
            return str(req["id"])
    return None


def _target(jobs: JobStore, pair: str, job_id: str | None) -> dict[str, Any]:
    if job_id is not None:
        try:
            job = jobs.job(job_id)
        except (JobNotFound, SchemaError) as exc:
            raise CancelError(str(exc)) from None
        if job["pair"] != pair:
            raise CancelError(f"--job: job {job_id} is of pair {job['pair']!r}, not {pair!r}")
        if not job.get("continuous"):
            raise CancelError(f"--job: job {job_id} is a one-time job: it ends by itself "
                              "(surge cancel stops continuous jobs)")  # fmt: skip
        return job
    for j in jobs.jobs_of_pair(pair):
        try:
            job = jobs.job(j)
        except (JobNotFound, SchemaError):
            continue
        if job.get("continuous") and job["state"] not in FINAL_JOB_STATES:
            return job
    raise CancelError(f"pair {pair!r} has no continuous job to cancel")
