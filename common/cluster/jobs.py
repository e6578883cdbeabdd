"""The job and task state of a cluster sync in Redis, shared by the coordinator and the workers.

The key layout is schema.py's. The coordinator writes a job and its task specs once
(`create_job`), Celery carries only ``(job_id, task_id)``, and a worker re-reads the spec, takes
the task's lease, writes its progress and finishes the task; the job counters move only in
`finish_task`, atomically and once per task, so a redelivered task that already finished counts
nothing twice. Per-file outcomes go to the job's event list for the coordinator to record.

The job's ``bytes_done`` counts finished tasks only; the bytes of running tasks are in their
records (`task_states`), which is what `surge status` adds for a live figure.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Final

from common.cluster.schema import (
    JOB_FIELDS,
    LEASE_MS,
    SCHEMA_VERSION,
    SchemaError,
    TaskSpec,
    key,
)

__all__ = ["CHUNK", "FINAL_JOB_STATES", "JobNotFound", "JobStore", "new_id"]

CHUNK: Final = 2000
"""Commands per pipeline flush: 10,000 tasks are a handful of round trips, and no single
request to Redis grows without bound."""

FINAL_JOB_STATES: Final = frozenset({"done", "failed", "cancelled"})
_INT_JOB_FIELDS: Final = frozenset(JOB_FIELDS) - {"pair", "state", "options", "error", "activity"}
_INT_TASK_FIELDS: Final = frozenset({"attempts", "bytes_done", "acked", "started", "updated"})

# Compare-and-act on a lease: only the holder may renew or release it.
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
# A task finishes once: a second finish (a redelivery after the first one finished) is a no-op,
# so the job counters never count a task twice and its per-file events are pushed once.
_FINISH = """
local prev = redis.call('HGET', KEYS[1], 'state')
if prev == 'succeeded' or prev == 'failed' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'error', ARGV[2], 'updated', ARGV[3])
if ARGV[1] == 'succeeded' then redis.call('HINCRBY', KEYS[2], 'tasks_done', 1)
else redis.call('HINCRBY', KEYS[2], 'tasks_failed', 1) end
redis.call('HINCRBY', KEYS[2], 'files_done', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'files_failed', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'bytes_done', ARGV[6])
redis.call('HSET', KEYS[2], 'updated', ARGV[3])
for i = 7, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
redis.call('DEL', KEYS[4])
redis.call('RPUSH', KEYS[4], '1')
return 1
"""


class JobNotFound(KeyError):
    """No such job (or task) in Redis: expired, deleted, or a Redis restarted without persistence."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "job not found"


def new_id() -> str:
    """A short random hex id for a job."""
    return secrets.token_hex(6)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(raw: Mapping[Any, Any], ints: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in raw.items():
        name, text = _s(k), _s(v)
        out[name] = int(text) if name in ints and text.lstrip("-").isdigit() else text
    return out


def _spec_totals(tasks: Iterable[TaskSpec]) -> tuple[int, int]:
    """(files, bytes) a list of tasks sends; a file split into ranges counts once."""
    files = nbytes = 0
    for t in tasks:
        files += len(t.files)
        nbytes += sum(f.size for f in t.files)
        if t.range is not None:
            files += t.range.index == 0
            nbytes += t.range.length
    return files, nbytes


class JobStore:
    """Jobs and tasks of a cluster in one Redis (a `redis.Redis` client, bytes or str replies)."""

    def __init__(self, redis: Any, lease_ms: int = LEASE_MS) -> None:
        self.r = redis
        self.lease_ms = lease_ms
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._finish = redis.register_script(_FINISH)

    # -- jobs ----------------------------------------------------------------------------------
    def create_job(
        self,
        pair: str,
        options: Mapping[str, Any],
        tasks: list[TaskSpec],
        job_id: str | None = None,
        state: str = "running",
    ) -> str:
        """Write a job, its task specs (their ``job`` set to the job id) and pending task records;
        list it under the pair (newest first) and in the active set. Returns the job id."""
        job_id = job_id or new_id()
        now = int(time.time())
        fields: dict[str, Any] = {
            "v": SCHEMA_VERSION, "pair": pair, "state": state, "created": now, "updated": now,
            "options": json.dumps(dict(options), separators=(",", ":")),
            "files_total": 0, "bytes_total": 0, "files_done": 0, "bytes_done": 0,
            "files_failed": 0, "tasks_total": 0, "tasks_done": 0, "tasks_failed": 0, "error": "",
        }  # fmt: skip
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(key("job", job_id), mapping=fields)
        pipe.lpush(key("pair", pair, "jobs"), job_id)
        pipe.sadd(key("jobs", "active"), job_id)
        pipe.execute()
        self.add_tasks(job_id, tasks)
        return job_id

    def add_tasks(self, job_id: str, tasks: list[TaskSpec]) -> list[TaskSpec]:
        """Add task specs and pending records to a job and raise its totals. Returns the specs as
        stored (``job`` set to `job_id`)."""
        specs = [t if t.job == job_id else replace(t, job=job_id) for t in tasks]
        pipe = self.r.pipeline(transaction=False)
        for i in range(0, len(specs), CHUNK):
            chunk = specs[i : i + CHUNK]
            pipe.hset(key("job", job_id, "tasks"), mapping={t.task: t.to_json() for t in chunk})
            for t in chunk:
                pipe.hset(
                    key("job", job_id, "task", t.task), mapping={"state": "pending", "attempts": 0}
                )
            pipe.execute()
        files, nbytes = _spec_totals(specs)
        pipe.hincrby(key("job", job_id), "tasks_total", len(specs))
        pipe.hincrby(key("job", job_id), "files_total", files)
        pipe.hincrby(key("job", job_id), "bytes_total", nbytes)
        pipe.execute()
        return specs

    def job(self, job_id: str) -> dict[str, Any]:
        """The job hash, numbers as ints and ``options`` as a dict. Raises JobNotFound, or
        SchemaError for a job another Surge version wrote."""
        raw = self.r.hgetall(key("job", job_id))
        if not raw:
            raise JobNotFound(f"job {job_id!r} is not in Redis")
        job = _decode(raw, _INT_JOB_FIELDS)
        if job.get("v") != SCHEMA_VERSION:
            raise SchemaError(f"job {job_id!r} has schema version {job.get('v')!r}; this Surge "
                              f"speaks version {SCHEMA_VERSION} (run the same Surge version everywhere)")  # fmt: skip
        job["options"] = json.loads(job.get("options") or "{}")
        job["id"] = job_id
        return job

    def jobs_of_pair(self, pair: str) -> list[str]:
        """Job ids of a pair, newest first."""
        return [_s(j) for j in self.r.lrange(key("pair", pair, "jobs"), 0, -1)]

    def active_jobs(self) -> list[str]:
        return sorted(_s(j) for j in self.r.smembers(key("jobs", "active")))

    def set_job_state(self, job_id: str, state: str, error: str | None = None) -> None:
        """Set the job's state (and error); a final state takes it out of the active set."""
        pipe = self.r.pipeline(transaction=True)
        fields: dict[str, Any] = {"state": state, "updated": int(time.time())}
        if error is not None:
            fields["error"] = error
        pipe.hset(key("job", job_id), mapping=fields)
        if state in FINAL_JOB_STATES:
            pipe.srem(key("jobs", "active"), job_id)
        pipe.execute()

    def finish_job(self, job_id: str, error: str | None = None) -> str:
        """Close a job: ``failed`` if an error is given or a task failed, else ``done``.
        Returns the final state."""
        failed = int(self.r.hget(key("job", job_id), "tasks_failed") or 0)
        state = "failed" if error or failed else "done"
        if state == "failed" and not error:
            error = f"{failed} task(s) failed"
        self.set_job_state(job_id, state, error)
        return state

    def prune_tasks(self, job_id: str, task_ids: list[str]) -> None:
        """Forget finished tasks of a continuous job (specs, records, leases), so that a job
        that runs for months holds only its batch in flight; the bytes each worker sent move
        to the job's ``workers`` hash first (what `surge status` shows per worker)."""
        states = self.task_states_of(job_id, task_ids)
        sizes = self.r.hmget(key("job", job_id, "tasks"), task_ids) if task_ids else []
        per_worker: dict[str, int] = {}
        for tid, raw in zip(task_ids, sizes):
            st = states.get(tid, {})
            if raw is None or not st.get("worker"):
                continue
            spec = TaskSpec.from_json(raw)
            whole = spec.range.length if spec.range else sum(f.size for f in spec.files)
            n = whole if st.get("state") == "succeeded" else int(st.get("bytes_done", 0))
            per_worker[str(st["worker"])] = per_worker.get(str(st["worker"]), 0) + n
        pipe = self.r.pipeline(transaction=True)
        for worker, n in per_worker.items():
            pipe.hincrby(key("job", job_id, "workers"), worker, n)
        for i in range(0, len(task_ids), CHUNK):
            chunk = task_ids[i : i + CHUNK]
            pipe.hdel(key("job", job_id, "tasks"), *chunk)
            pipe.delete(*(key("job", job_id, "task", t) for t in chunk))
            pipe.delete(*(key("lease", job_id, t) for t in chunk))
        pipe.execute()

    def worker_bytes(self, job_id: str) -> dict[str, int]:
        """Bytes per worker of the tasks `prune_tasks` forgot."""
        raw = self.r.hgetall(key("job", job_id, "workers"))
        return {_s(w): int(n) for w, n in raw.items()}

    # -- tasks ---------------------------------------------------------------------------------
    def task(self, job_id: str, task_id: str) -> TaskSpec:
        """The task's spec. Raises JobNotFound, or SchemaError for another Surge version."""
        raw = self.r.hget(key("job", job_id, "tasks"), task_id)
        if raw is None:
            raise JobNotFound(f"task {task_id!r} of job {job_id!r} is not in Redis")
        return TaskSpec.from_json(raw)

    def task_ids(self, job_id: str) -> list[str]:
        return sorted(_s(t) for t in self.r.hkeys(key("job", job_id, "tasks")))

    def task_state(self, job_id: str, task_id: str) -> dict[str, Any]:
        """The task record (TASK_FIELDS present so far; numbers as ints); {} if none."""
        return _decode(self.r.hgetall(key("job", job_id, "task", task_id)), _INT_TASK_FIELDS)

    def task_states(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Every task record of a job, by task id (pipelined)."""
        return self.task_states_of(job_id, self.task_ids(job_id))

    def task_states_of(self, job_id: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The records of the given tasks of a job, by task id (pipelined)."""
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            pipe = self.r.pipeline(transaction=False)
            for t in chunk:
                pipe.hgetall(key("job", job_id, "task", t))
            for t, raw in zip(chunk, pipe.execute()):
                out[t] = _decode(raw, _INT_TASK_FIELDS)
        return out

    def start_task(self, job_id: str, task_id: str, worker: str) -> dict[str, Any]:
        """Mark a task running on `worker` and count the delivery. Returns the record as it was
        (its ``acked`` is where a redelivered range resumes)."""
        tkey = key("job", job_id, "task", task_id)
        now = int(time.time())
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(tkey)
        pipe.hset(
            tkey, mapping={"state": "running", "worker": worker, "started": now, "updated": now}
        )
        pipe.hincrby(tkey, "attempts", 1)
        before = pipe.execute()[0]
        return _decode(before, _INT_TASK_FIELDS)

    def progress(
        self, job_id: str, task_id: str, bytes_done: int, acked: int | None = None
    ) -> None:
        """Record the bytes the far end acknowledged in this task (and, for a range, the length
        of the acknowledged prefix: the resume point)."""
        fields: dict[str, Any] = {"bytes_done": bytes_done, "updated": int(time.time())}
        if acked is not None:
            fields["acked"] = acked
        self.r.hset(key("job", job_id, "task", task_id), mapping=fields)

    def finish_task(
        self,
        job_id: str,
        task_id: str,
        ok: bool,
        error: str | None = None,
        *,
        files_done: int | None = None,
        files_failed: int | None = None,
        bytes_done: int | None = None,
        events: Iterable[Mapping[str, Any]] = (),
    ) -> bool:
        """Finish a task once: its state, the job's counters and its per-file `events` in one
        atomic step. The counts default to the whole task (ok) or nothing sent (failed).
        Returns False (and changes nothing) if it had already finished."""
        if files_done is None or files_failed is None or bytes_done is None:
            spec = self.task(job_id, task_id)
            files, nbytes = _spec_totals([spec])
            if spec.range is not None:
                files = 1  # whether this part completed the file is the caller's to say
            files_done = (files if ok else 0) if files_done is None else files_done
            files_failed = (0 if ok else files) if files_failed is None else files_failed
            bytes_done = (nbytes if ok else 0) if bytes_done is None else bytes_done
        state = "succeeded" if ok else "failed"
        keys = [
            key("job", job_id, "task", task_id),
            key("job", job_id),
            key("job", job_id, "events"),
            key("job", job_id, "wake"),
        ]
        args = [state, error or "", int(time.time()), files_done, files_failed, bytes_done]
        args += [json.dumps(dict(e), separators=(",", ":")) for e in events]
        return bool(self._finish(keys=keys, args=args))

    def retry_task(self, job_id: str, task_id: str, error: str) -> None:
        """Put a task that failed transiently back to pending, with the reason (it runs again)."""
        fields = {"state": "pending", "error": error, "updated": int(time.time())}
        self.r.hset(key("job", job_id, "task", task_id), mapping=fields)

    # -- leases --------------------------------------------------------------------------------
    def acquire_lease(self, job_id: str, task_id: str, worker: str) -> bool:
        """Take the task's lease for `worker` (True), or see it held by another (False). The same
        worker id taking it again succeeds and refreshes it."""
        lkey = key("lease", job_id, task_id)
        if self.r.set(lkey, worker, nx=True, px=self.lease_ms):
            return True
        return bool(self._renew(keys=[lkey], args=[worker, self.lease_ms]))

    def renew_lease(self, job_id: str, task_id: str, worker: str) -> bool:
        """Extend the lease if `worker` still holds it; False if it expired or moved on."""
        return bool(self._renew(keys=[key("lease", job_id, task_id)], args=[worker, self.lease_ms]))

    def release_lease(self, job_id: str, task_id: str, worker: str) -> None:
        """Drop the lease if `worker` holds it (never another worker's)."""
        self._release(keys=[key("lease", job_id, task_id)], args=[worker])

    def lease_holder(self, job_id: str, task_id: str) -> str | None:
        holder = self.r.get(key("lease", job_id, task_id))
        return None if holder is None else _s(holder)

    # -- events --------------------------------------------------------------------------------
    def push_event(self, job_id: str, event: Mapping[str, Any]) -> None:
        """Append one per-file outcome: ``{"task", "path", "status": "done"|"part"|"failed",
        "attrs", "bytes", "error"}``."""
        self.push_events(job_id, [event])

    def push_events(self, job_id: str, events: Iterable[Mapping[str, Any]]) -> None:
        payload = [json.dumps(dict(e), separators=(",", ":")) for e in events]
        if payload:
            self.r.rpush(key("job", job_id, "events"), *payload)

    def wait_events(self, job_id: str, timeout: float) -> None:
        """Block until a task of the job finishes or `timeout` seconds pass: a follower that
        found no events sleeps here rather than polling (one LPOP-able token per finish)."""
        self.r.blpop([key("job", job_id, "wake")], timeout=timeout)

    def pop_events(self, job_id: str, max_n: int = 1000) -> list[dict[str, Any]]:
        """Take up to `max_n` events, oldest first (atomically: no event is read twice)."""
        ekey = key("job", job_id, "events")
        pipe = self.r.pipeline(transaction=True)
        pipe.lrange(ekey, 0, max_n - 1)
        pipe.ltrim(ekey, max_n, -1)
        raw = pipe.execute()[0]
        return [json.loads(e) for e in raw]
