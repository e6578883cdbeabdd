"""`surge status -N NAME --cluster URL`: per-job progress of a pair, read from Redis.

Bytes done count finished tasks (the job's counter) plus what running tasks report so far; the
rate is bytes over the job's age (over its run time once it ended); the ETA is what remains at
that rate. Per-worker bytes come from the task records (the worker that ran each task last).
"""

from __future__ import annotations

import time
from typing import Any

from common.cluster.jobs import FINAL_JOB_STATES, JobNotFound, JobStore
from common.cluster.schema import SchemaError, TaskSpec, key
from common.units import format_bytes

__all__ = ["job_progress", "pair_status", "render"]


def job_progress(jobs: JobStore, job_id: str, now: float | None = None) -> dict[str, Any]:
    job = jobs.job(job_id)
    states = jobs.task_states(job_id)
    running = sum(
        int(s.get("bytes_done", 0)) for s in states.values() if s.get("state") == "running"
    )
    per_worker = _per_worker(jobs, job_id, states)
    by_state: dict[str, int] = {}
    for s in states.values():
        by_state[str(s.get("state", "pending"))] = (
            by_state.get(str(s.get("state", "pending")), 0) + 1
        )
    done_bytes = min(job["bytes_total"], job["bytes_done"] + running)
    final = job["state"] in FINAL_JOB_STATES
    end = job["updated"] if final else (now or time.time())
    age = max(1e-3, end - job["created"])
    rate = done_bytes / age
    left = job["bytes_total"] - done_bytes
    eta = None if final or rate <= 0 else left / rate
    return {"job": job_id, "state": job["state"], "files_done": job["files_done"], "files_total": job["files_total"],
            "files_failed": job["files_failed"], "bytes_done": done_bytes, "bytes_total": job["bytes_total"],
            "rate_bytes_per_second": rate, "eta_seconds": eta, "tasks": by_state,
            "workers": dict(sorted(per_worker.items())), "error": job.get("error") or None,
            "created": job["created"]}  # fmt: skip


def _per_worker(jobs: JobStore, job_id: str, states: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Bytes per worker: the whole task for a finished one (a batch's record holds no byte
    count), what it reported so far for a running one."""
    sizes = {}
    for tid, raw in jobs.r.hgetall(key("job", job_id, "tasks")).items():
        spec = TaskSpec.from_json(raw)
        sizes[tid.decode() if isinstance(tid, bytes) else tid] = (
            spec.range.length if spec.range else sum(f.size for f in spec.files)
        )
    out: dict[str, int] = {}
    for tid, st in states.items():
        worker = st.get("worker")
        if worker:
            n = (
                sizes.get(tid, 0)
                if st.get("state") == "succeeded"
                else int(st.get("bytes_done", 0))
            )
            out[worker] = out.get(worker, 0) + n
    return out


def pair_status(jobs: JobStore, pair: str, limit: int = 10) -> list[dict[str, Any]]:
    """Progress of the pair's newest `limit` jobs, newest first (unreadable jobs are skipped)."""
    out = []
    for j in jobs.jobs_of_pair(pair)[:limit]:
        try:
            out.append(job_progress(jobs, j))
        except (JobNotFound, SchemaError):
            continue
    return out


def render(pair: str, progress: list[dict[str, Any]]) -> str:
    if not progress:
        return f"{pair}: no cluster jobs"
    lines = []
    for p in progress:
        eta = "-" if p["eta_seconds"] is None else f"{p['eta_seconds']:.0f} s"
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p["created"]))
        lines.append(f"job {p['job']} ({created}) {p['state']}: files {p['files_done']}/{p['files_total']} "
                     f"({p['files_failed']} failed), {format_bytes(p['bytes_done'])}/{format_bytes(p['bytes_total'])}, "
                     f"{format_bytes(int(p['rate_bytes_per_second']))}/s, ETA {eta}")  # fmt: skip
        for worker, n in p["workers"].items():
            lines.append(f"  worker {worker}: {format_bytes(n)}")
        if p["error"]:
            lines.append(f"  error: {p['error']}")
    return "\n".join(lines)
