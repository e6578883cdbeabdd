"""The contract between the coordinator and the workers of a cluster, in one place.

A job is one run of `surge sync --cluster URL` (or one job of `surge coordinator`): the files a
sync plan sends, cut into tasks. A task is JSON-safe, names everything it needs (paths, sizes,
mtimes, a byte range) and is idempotent: running it twice is harmless, and a redelivered range
task resumes from the acknowledged prefix recorded in Redis. Celery carries only
``(job_id, task_id)``; the worker re-reads the task and the job from Redis, so a message never
holds a secret and a worker of another version is detected by ``SCHEMA_VERSION``.

Redis keys (all under ``surge:``; ``{pair}`` is the -N name, ids are short hex strings):

==================================  =====  ==================================================
key                                 type   contents
==================================  =====  ==================================================
surge:job:{job}                     hash   JOB_FIELDS
surge:job:{job}:tasks               hash   task id -> TaskSpec JSON (written once)
surge:job:{job}:task:{task}         hash   TASK_FIELDS (progress, written by the worker)
surge:job:{job}:events              list   JSON per file committed or failed (the coordinator
                                           pops them to record the snapshot and print lines)
surge:job:{job}:workers             hash   worker -> bytes, of the tasks a continuous job
                                           pruned (its finished batches leave no task keys)
surge:job:{job}:wake                list   one token, pushed when a task finishes (the
                                           coordinator blocks on it instead of polling)
surge:lease:{job}:{task}            str    worker id, SET NX PX LEASE_MS, renewed while running
surge:pair:{pair}:jobs              list   job ids of the pair, newest first
surge:jobs:active                   set    job ids not finished
surge:jobs:submitted                list   JobRequest JSON for `surge coordinator` to run
surge:snap:{pair}:...               -      the Redis snapshot store (common/snapshot/redis.py)
==================================  =====  ==================================================
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final

__all__ = [
    "JOB_FIELDS",
    "LEASE_MS",
    "QUEUE_BOOKKEEPING",
    "QUEUE_LARGE",
    "QUEUE_SMALL",
    "SCHEMA_VERSION",
    "TASK_BOOKKEEPING",
    "TASK_FIELDS",
    "TASK_TRANSFER",
    "FileRef",
    "RangeRef",
    "SchemaError",
    "TaskSpec",
    "key",
]

SCHEMA_VERSION: Final = 1
"""Bumped whenever TaskSpec, the job fields or the key layout change incompatibly."""

# Celery: one task name per kind of work, one queue per size class (DESIGN: --transfer-threads
# size classes map to queues, so small-file batches never wait behind a 100 GB range).
TASK_TRANSFER: Final = "surge.transfer"  # args: (job_id, task_id); kwargs: {"v": SCHEMA_VERSION}
TASK_BOOKKEEPING: Final = (
    "surge.bookkeeping"  # args: (job_id, task_id): far-end mkdir/delete/rename batches
)
QUEUE_SMALL: Final = "surge.small"
QUEUE_LARGE: Final = "surge.large"
QUEUE_BOOKKEEPING: Final = "surge.bookkeeping"

LEASE_MS: Final = 60_000
"""A worker holds a task's lease while it runs and renews it every LEASE_MS/3; a lease that
expires (the worker died) lets the redelivered task run elsewhere."""

JOB_FIELDS: Final = (
    "v",  # SCHEMA_VERSION of the coordinator that wrote the job
    "pair",  # -N
    "state",  # planning | running | done | failed | cancelled
    "created", "updated",  # unix seconds
    "options",  # JSON: the sync options a worker needs (no passwords; key paths and token only)
    "files_total", "bytes_total", "files_done", "bytes_done", "files_failed",
    "tasks_total", "tasks_done", "tasks_failed",
    "error",  # why the job failed
    # continuous jobs (surge sync -C --cluster) only; absent (0) for one-time jobs
    "continuous",  # 1
    "detached",  # 1: run by `surge coordinator`, which resumes it when it restarts
    "activity",  # starting | scanning | watching | syncing | stopped
    "changes_pending",  # changes seen and not yet synchronized
    "oldest_change_ms",  # unix ms when the oldest of them was seen (0: none)
    "heartbeat",  # unix seconds of the coordinator's last report (about every second)
    "batches", "sent", "deleted", "moved", "errors",  # batches run; status lines by kind
    "seq",  # transfers dispatched so far: a task id is "<seq in hex>.<n>", unique in the job
    "cancel",  # 1: `surge cancel` asked the job to stop
)  # fmt: skip

TASK_FIELDS: Final = (
    "state",  # pending | running | succeeded | failed
    "worker",  # Celery hostname of the worker that ran it last
    "attempts",  # deliveries so far
    "bytes_done",  # file bytes the far end acknowledged in this task
    "acked",  # range tasks: length of the acknowledged prefix of the range (resume point)
    "started", "updated",  # unix seconds
    "error",
)  # fmt: skip


class SchemaError(Exception):
    """A task or job written by another version of Surge (the message says both versions)."""


def key(*parts: object) -> str:
    """``key("job", j, "task", t)`` -> ``"surge:job:<j>:task:<t>"``."""
    return "surge:" + ":".join(str(p) for p in parts)


@dataclass(frozen=True)
class FileRef:
    path: str  # relative to the job's local root, '/'-separated
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class RangeRef:
    """Bytes [start, start+length) of one file split into `count` ranges (the `index`-th)."""

    path: str
    size: int  # of the whole file
    mtime_ns: int
    index: int
    count: int
    start: int
    length: int


@dataclass(frozen=True)
class TaskSpec:
    job: str
    task: str
    kind: str  # "batch" (small files) | "range" (part of a large file) | "ops" (bookkeeping)
    queue: str
    files: tuple[FileRef, ...] = ()
    range: RangeRef | None = None
    ops: tuple[dict[str, Any], ...] = ()
    v: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        # By hand: dataclasses.asdict recurses into and copies every FileRef, which made writing
        # a job's batches a tenth of the coordinator's CPU on small files. Same JSON.
        d = {"job": self.job, "task": self.task, "kind": self.kind, "queue": self.queue,
             "files": [{"path": f.path, "size": f.size, "mtime_ns": f.mtime_ns} for f in self.files],
             "range": None if self.range is None else asdict(self.range), "ops": [dict(o) for o in self.ops],
             "v": self.v, "extra": dict(self.extra)}  # fmt: skip
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskSpec:
        d = json.loads(text)
        if d.get("v") != SCHEMA_VERSION:
            raise SchemaError(f"task {d.get('task')!r} of job {d.get('job')!r} has schema version {d.get('v')!r}; "
                              f"this Surge speaks version {SCHEMA_VERSION} (run the same Surge version everywhere)")  # fmt: skip
        rng = d.get("range")
        return cls(job=d["job"], task=d["task"], kind=d["kind"], queue=d["queue"],
                   files=tuple(FileRef(**f) for f in d.get("files", ())),
                   range=RangeRef(**rng) if rng else None, ops=tuple(d.get("ops", ())),
                   extra=dict(d.get("extra", {})))  # fmt: skip
