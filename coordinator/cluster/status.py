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

__all__ = ["STALE_S", "job_progress", "pair_status", "render"]

STALE_S = 10.0  # a continuous job's coordinator not heard from for longer is called so


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
    out = {"job": job_id, "state": job["state"], "files_done": job["files_done"], "files_total": job["files_total"],
           "files_failed": job["files_failed"], "bytes_done": done_bytes, "bytes_total": job["bytes_total"],
           "rate_bytes_per_second": rate, "eta_seconds": eta, "tasks": by_state,
           "workers": dict(sorted(per_worker.items())), "error": job.get("error") or None,
           "created": job["created"], "continuous": bool(job.get("continuous"))}  # fmt: skip
    if out["continuous"]:
        for worker, n in jobs.worker_bytes(job_id).items():  # its finished batches' tasks
            per_worker[worker] = per_worker.get(worker, 0) + n
        out.update(_continuous(job, now or time.time()), eta_seconds=None, workers=dict(sorted(per_worker.items())))
    return out


def _continuous(job: dict[str, Any], now: float) -> dict[str, Any]:
    """A continuous job's live figures: lag is the age of the oldest change not synchronized yet
    (it keeps growing while no coordinator runs the job); `coordinator_seen_seconds_ago` says
    how fresh the figures are (the coordinator reports about every second)."""
    pending, oldest = int(job.get("changes_pending", 0)), int(job.get("oldest_change_ms", 0))
    final = job["state"] in FINAL_JOB_STATES
    beat = int(job.get("heartbeat", 0))
    return {"activity": job.get("activity") or "starting", "changes_pending": 0 if final else pending,
            "lag_seconds": max(0.0, now - oldest / 1000) if pending and oldest and not final else 0.0,
            "coordinator_seen_seconds_ago": None if final or not beat else max(0.0, now - beat),
            "batches": int(job.get("batches", 0)), "deleted": int(job.get("deleted", 0)),
            "moved": int(job.get("moved", 0)), "errors": int(job.get("errors", 0)),
            "cancel_requested": bool(int(job.get("cancel", 0))), "detached": bool(job.get("detached"))}  # fmt: skip


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
        if p.get("continuous"):
            lines += _render_continuous(p)
            continue
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


def _render_continuous(p: dict[str, Any]) -> list[str]:
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p["created"]))
    head = f"job {p['job']} ({created}) {p['state']}, continuous"
    if p["state"] == "running":
        head += f", {p['activity']}: {p['changes_pending']} change(s) pending, lag {p['lag_seconds']:.1f} s"
    elif p["state"] == "stopped":
        head += " (resumes when a coordinator starts)" if p["detached"] else " (interrupted)"
    lines = [f"{head}; {p['files_done']} file(s) sent ({format_bytes(p['bytes_done'])}), {p['deleted']} deleted, "
             f"{p['moved']} moved, {p['errors']} error(s) ({p['files_failed']} failed transfer(s)); "
             f"{p['batches']} batch(es)"]  # fmt: skip
    lines += [f"  worker {worker}: {format_bytes(n)}" for worker, n in p["workers"].items()]
    seen = p["coordinator_seen_seconds_ago"]
    if seen is not None and seen > STALE_S:
        lines.append(f"  coordinator last heard from {seen:.0f} s ago (not running it now?)")
    if p["cancel_requested"] and p["state"] == "running":
        lines.append("  cancel requested: stops after its batch in flight")
    if p["error"]:
        lines.append(f"  error: {p['error']}")
    return lines
