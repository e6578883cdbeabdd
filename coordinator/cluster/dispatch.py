"""The cluster's Dispatcher: the files a sync sends become a job of tasks in Redis and Celery
messages; the coordinator then follows the job by popping its per-file events and reports each
committed file through the engine's `on_file`, so status lines and the snapshot are exactly the
embedded mode's.

A file split into byte ranges is finalized here when every range has reported: the far end
commits the file with its last part; the coordinator stats it through the engine's own far-end
connection, checks size and (with -t) mtime, and (with -k sha1/md5) the digest, then records it.

A coordinator killed mid-job leaves the job `running` in Redis and its workers going on. The
next run of the pair adopts it first: it follows the old job to its end, recording every file
committed meanwhile (events wait in Redis), and sends only what is still missing, so nothing
finished is sent twice and no file is in two jobs at once. A job that makes no progress with no
worker holding a lease has its unfinished tasks sent again (a lost message is re-sent; a
duplicate is harmless: a task finishes once and leases stop two workers running it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from common.cluster.joboptions import job_options
from common.cluster.jobs import FINAL_JOB_STATES, JobNotFound, JobStore, new_id
from common.cluster.schema import SchemaError, TaskSpec, key
from common.snapshot import Entry

from ..cp.common import CopyError
from ..sync.transfer import FileDone, Progress, TransferOutcome, TransferRequest
from .plan import PlanLimits, plan_tasks

__all__ = ["CeleryDispatcher", "FollowHalted", "JobFollower"]

log = logging.getLogger("surge.cluster")

Send = Callable[[TaskSpec], None]
POLL_S = 0.25  # longest wait for events: a task that finishes wakes the follower at once
EVENTS_PER_POP = 2000
CHECK_S = 2.0  # job counters and liveness
REDIS_RETRY_S = 30.0  # a Redis that stays unreachable this long fails the job's transfer
MTIME_SLACK_NS = 2_000  # the far end sets mtimes from float seconds


class FollowHalted(BaseException):
    """The follower was told to stop now (a second SIGINT/SIGTERM): like KeyboardInterrupt, it
    unwinds through the engine's per-file handlers, whose `finally` blocks flush the records.
    The job's tasks go on on the workers; the next run adopts them."""


@dataclass
class _Split:
    count: int
    seen: set[int] = field(default_factory=set)
    failed: str | None = None
    parts: list[TaskSpec] = field(default_factory=list)


class JobFollower:
    """Follows one job to its end: pops events, finalizes split files, re-sends lost tasks."""

    def __init__(self, jobs: JobStore, job_id: str, tasks: list[TaskSpec], send: Send, *,
                 on_done: Callable[[str, dict[str, Any], TaskSpec], None],
                 on_failed: Callable[[str, str], None],
                 stat: Callable[[str], Entry | None], verify_digest: Callable[[str, Entry], str | None] | None = None,
                 flush: Callable[[], None] | None = None, stall_s: float = 60.0,
                 halt: threading.Event | None = None) -> None:  # fmt: skip
        self.jobs, self.job_id, self.send = jobs, job_id, send
        self.halt = halt
        self.tasks = {t.task: t for t in tasks}
        self.on_done, self.on_failed, self.stat = on_done, on_failed, stat
        self.verify_digest = verify_digest
        self.stall_s = stall_s
        self.flush = flush
        self._events_key = key("job", job_id, "events")
        self.resolved: set[str] = set()
        self.splits: dict[str, _Split] = {}
        for t in tasks:
            if t.range is not None:
                self.splits.setdefault(t.range.path, _Split(t.range.count)).parts.append(t)
        self._options: dict[str, Any] | None = None
        self.outstanding = {f.path for t in tasks for f in t.files} | set(self.splits)

    def run(self) -> dict[str, Any]:
        """Follow until every task finished and every event is handled; returns the job hash."""
        last_check = last_change = time.monotonic()
        fingerprint: tuple[Any, ...] = ()
        while True:
            if self.halt is not None and self.halt.is_set():
                raise FollowHalted(f"stopped following job {self.job_id}; its tasks go on")
            events = self._call(self._peek)
            for ev in events:
                self._event(ev)
            if events:  # recorded before they leave Redis: a kill here replays, never loses them
                if self.flush is not None:
                    self.flush()
                self._call(self.jobs.r.ltrim, self._events_key, len(events), -1)
            now = time.monotonic()
            if events:
                last_change = now
                if now - last_check < CHECK_S:
                    continue
            job, last_check = self._job(), now
            if job["tasks_done"] + job["tasks_failed"] >= job["tasks_total"]:
                if not self._call(self.jobs.r.llen, self._events_key):
                    self._leftovers()
                    return job
                continue
            fp = (job["tasks_done"], job["tasks_failed"], job["bytes_done"])
            if fp != fingerprint:
                fingerprint, last_change = fp, now
            elif now - last_change > self.stall_s and not self._leased():
                self._resend()
                last_change = now
            if not events:  # woken by the next task that finishes, or POLL_S at most
                self._call(self.jobs.wait_events, self.job_id, POLL_S)

    # -- events --------------------------------------------------------------------------------
    def _peek(self) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.jobs.r.lrange(self._events_key, 0, EVENTS_PER_POP - 1)]

    def _event(self, ev: dict[str, Any]) -> None:
        path, status = str(ev.get("path", "")), ev.get("status")
        spec = self.tasks.get(str(ev.get("task")))
        if spec is None or path in self.resolved or path not in self.outstanding:
            return  # another job's, or a redelivered task's repeat
        if spec.range is None:
            if status == "failed":
                self._fail(path, str(ev.get("error") or "transfer failed"))
            elif status == "done":
                self._resolve(path)
                self.on_done(path, dict(ev.get("attrs") or {}), spec)
            return
        split = self.splits[path]
        if status == "failed":
            split.failed = str(ev.get("error") or "transfer failed")
        else:
            split.seen.add(spec.range.index)
        if split.failed:
            self._fail(path, f"part {spec.range.index + 1}/{split.count}: {split.failed}")
        elif len(split.seen) == split.count:
            self._finalize(path, spec)

    def _finalize(self, path: str, spec: TaskSpec) -> None:
        assert spec.range is not None
        got = self.stat(path)
        rng = spec.range
        if got is None or got.kind != "file" or got.size != rng.size:
            what = "missing" if got is None else f"{got.size} bytes, expected {rng.size}"
            self._fail(path, f"split file not committed at the far end ({what})")
            return
        options = self.jobs_options
        if options.get("preserve_mtime") and abs(got.mtime_ns - rng.mtime_ns) > MTIME_SLACK_NS:
            self._fail(path, "split file committed with the wrong modification time")
            return
        problem = self.verify_digest(path, got) if self.verify_digest is not None else None
        if problem:
            self._fail(path, problem)
            return
        self._resolve(path)
        attrs = {"size": got.size, "mtime_ns": got.mtime_ns, "mode": got.mode, "ino": got.inode,
                 "dev": got.dev, "nlink": got.nlink}  # fmt: skip
        self.on_done(path, attrs, spec)

    @property
    def jobs_options(self) -> dict[str, Any]:
        if self._options is None:
            self._options = dict(self._job().get("options", {}))
        return self._options

    def _resolve(self, path: str) -> None:
        self.resolved.add(path)
        self.outstanding.discard(path)

    def _fail(self, path: str, message: str) -> None:
        self._resolve(path)
        self.on_failed(path, message)

    def _leftovers(self) -> None:
        """Files of failed tasks (and any file no event was reported for) become errors."""
        if not self.outstanding:
            return
        states = self._call(self.jobs.task_states, self.job_id)
        for path, split in self.splits.items():  # parts whose events a dead coordinator took
            if path in self.outstanding and all(
                states.get(t.task, {}).get("state") == "succeeded" for t in split.parts
            ):
                self._finalize(path, split.parts[0])
        for t in self.tasks.values():
            paths = [t.range.path] if t.range is not None else [f.path for f in t.files]
            st = states.get(t.task, {})
            why = st.get("error") or (
                "task failed" if st.get("state") == "failed" else "no outcome reported"
            )
            for p in paths:
                if p in self.outstanding:
                    self._fail(p, str(why))

    # -- Redis -----------------------------------------------------------------------------------
    def _job(self) -> dict[str, Any]:
        try:
            return self._call(self.jobs.job, self.job_id)
        except JobNotFound:
            raise CopyError(f"job {self.job_id} vanished from Redis (restarted without persistence?); "
                            "no partial file was committed: run the sync again") from None  # fmt: skip
        except SchemaError as exc:
            raise CopyError(str(exc)) from None

    def _leased(self) -> bool:
        return any(
            True
            for _ in self._call(
                self.jobs.r.scan_iter, match=key("lease", self.job_id, "*"), count=1000
            )
        )

    def _resend(self) -> None:
        states = self._call(self.jobs.task_states, self.job_id)
        lost = [
            t
            for tid, t in self.tasks.items()
            if states.get(tid, {}).get("state") in (None, "pending", "running")
        ]
        log.warning(
            "job %s: no progress and no worker holds a lease; sending %d task(s) again",
            self.job_id,
            len(lost),
        )
        for t in lost:
            self.send(t)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Ride out a short Redis outage (a restart); a long one fails the transfer clearly."""
        deadline = time.monotonic() + REDIS_RETRY_S
        while True:
            try:
                return fn(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise CopyError(f"lost Redis for {REDIS_RETRY_S:g} s while following job {self.job_id}: "
                                    f"{exc}; run the sync again to resume") from None  # fmt: skip
                time.sleep(0.5)


class CeleryDispatcher:
    """Sends a sync's files through the cluster (see the module doc): one job per transfer.
    `halt` set makes the follower stop at once (FollowHalted), leaving the job to the workers.
    The continuous sync's dispatcher (batches.py) keeps one job for all its batches instead,
    through the `_begin` and `_end` hooks."""

    def __init__(self, jobs: JobStore, send: Send, *, limits: PlanLimits | None = None,
                 job_id: str | None = None, halt: threading.Event | None = None) -> None:  # fmt: skip
        self.jobs, self.send, self.limits = jobs, send, limits
        self.job_id = job_id
        self.halt = halt

    def transfer(
        self, request: TransferRequest, on_file: FileDone, progress: Progress | None
    ) -> TransferOutcome:
        o = request.opts
        outcome = TransferOutcome()
        wanted = {e.path: e for e in request.entries}

        def done(path: str, attrs: dict[str, Any], spec: TaskSpec) -> None:
            src = wanted.get(path)
            ref = spec.range or next((f for f in spec.files if f.path == path), None)
            if src is None or ref is None or (ref.size, ref.mtime_ns) != (src.size, src.mtime_ns):
                return  # an adopted job's file this run does not send (or sends anew: it changed)
            del wanted[path]
            on_file(path, {"status": "done", "attrs": attrs})

        def failed(path: str, message: str) -> None:
            if wanted.pop(path, None) is not None:
                outcome.errors.append((path, message))

        digest = _digest_check(o, request.destination, dict(wanted))

        def follower(job_id: str, tasks: list[TaskSpec], on_failed: Callable[[str, str], None]) -> JobFollower:
            return JobFollower(self.jobs, job_id, tasks, self.send, on_done=done, on_failed=on_failed,
                               stat=request.destination.stat, verify_digest=digest, flush=request.flush,
                               halt=self.halt)  # fmt: skip

        adopted = set()
        for old in self._orphans(o.name):
            log.info("job %s of %s was left running: following it first", old, o.name)
            specs = self._specs(old)
            outcome.wire_bytes += self._settle(old, follower(old, specs, lambda p, m: None).run(), specs)
            adopted.add(old)
        if not wanted:
            return outcome
        job_id, tasks = self._begin(o, list(wanted.values()), adopted)
        try:
            job = follower(job_id, tasks, failed).run()
        except CopyError as exc:
            self._end(job_id, tasks, str(exc))
            raise
        outcome.wire_bytes += self._end(job_id, tasks, None, job)
        return outcome

    def _begin(self, o: Any, entries: list[Entry], adopted: set[str]) -> tuple[str, list[TaskSpec]]:
        """The job of this transfer and its tasks, written and sent."""
        # A job id given for this run that was adopted above is done: what is left is a new job.
        job_id = self.job_id if self.job_id and self.job_id not in adopted else new_id()
        return job_id, self._start(job_id, o, entries)

    def _end(self, job_id: str, tasks: list[TaskSpec], error: str | None,
             job: dict[str, Any] | None = None) -> int:  # fmt: skip
        """Close the job after its follower returned (or failed: `error`); the bytes it sent."""
        self._close(job_id, error)
        return int(job["bytes_done"]) if job is not None else 0

    def _settle(self, old: str, job: dict[str, Any], specs: list[TaskSpec]) -> int:
        """An adopted job, followed to its end. A one-time job (or a continuous one whose
        foreground run died) is closed; a continuous job that `surge coordinator` runs (or this
        run's own) stays open for it, and only the adopted tasks are forgotten."""
        if not job.get("continuous"):
            self.jobs.finish_job(old)
            return int(job["bytes_done"])
        self.jobs.prune_tasks(old, [t.task for t in specs])
        if not job.get("detached") and old != self.job_id:
            self.jobs.set_job_state(old, "done")
        return 0

    def _start(self, job_id: str, o: Any, entries: list[Entry]) -> list[TaskSpec]:
        """Plan, write the job and its tasks to Redis, then send one message per task."""
        limits = self.limits or PlanLimits.from_options(o)
        tasks = plan_tasks(job_id, ((e.path, e.size, e.mtime_ns) for e in entries), limits)
        options = job_options(o)
        if self.jobs.r.exists(key("job", job_id)):  # submitted through `surge coordinator`
            text = json.dumps(options, separators=(",", ":"))
            self.jobs.r.hset(key("job", job_id), "options", text)
            self.jobs.add_tasks(job_id, tasks)
            self.jobs.set_job_state(job_id, "running")
        else:
            self.jobs.create_job(o.name, options, tasks, job_id=job_id)
        for t in tasks:
            self.send(t)
        return tasks

    def _close(self, job_id: str, error: str | None) -> None:
        try:
            self.jobs.finish_job(job_id, error)
        except (redis.RedisError, JobNotFound):
            pass  # Redis is gone: the error already says so

    def _orphans(self, pair: str) -> list[str]:
        out = []
        for j in self.jobs.jobs_of_pair(pair):
            try:
                job = self.jobs.job(j)
            except (JobNotFound, SchemaError):
                continue
            # This run's own job id is adopted too if a killed coordinator left it tasks.
            if job["state"] not in FINAL_JOB_STATES and (
                j != self.job_id or self.jobs.r.hlen(key("job", j, "tasks"))
            ):
                out.append(j)
        return out

    def _specs(self, job_id: str) -> list[TaskSpec]:
        raw = self.jobs.r.hgetall(key("job", job_id, "tasks"))
        return [TaskSpec.from_json(v) for v in raw.values()]


def _digest_check(
    opts: Any, destination: Any, sources: dict[str, Entry]
) -> Callable[[str, Entry], str | None] | None:
    """-k sha1/md5: a split file's digest at the far end must be the source's."""
    if opts.checksum not in ("sha1", "md5"):
        return None

    def check(path: str, got: Entry) -> str | None:
        src = sources.get(path)
        if src is None or not src.checksum:
            return None
        if hasattr(destination, "op"):
            theirs = destination.op("checksum", path, algorithm=opts.checksum).get("digest")
        else:
            from common.checksums import file_digest

            theirs = file_digest(f"{destination.root}/{path}", opts.checksum)
        ours = src.checksum.rsplit(":", 1)[-1]  # the scan's "sha1:<hex>"
        if theirs == ours:
            return None
        return f"split file's {opts.checksum} at the far end {str(theirs)[:12]}... is not the source's {ours[:12]}..."

    return check
