"""The continuous jobs of `surge coordinator`: one thread each, beside the one-time jobs and
outside their `--jobs` slots (a continuous job runs until cancelled: it must not hold a slot),
at most `--continuous-jobs` of them.

A continuous request stays in ``surge:coordinator:running`` while its job lives, so that a
coordinator stopped (SIGTERM) or killed resumes it when it starts again: the job keeps its id
and counters, and its first whole-tree sync finds what changed meanwhile. It leaves the list
when the job ends for good (cancelled, failed). While every one-time slot is busy, continuous
requests are still taken from ``surge:jobs:submitted`` (`take_waiting`), so a long one-time job
never holds a new continuous job back.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import redis

from common.cluster.connect import ClusterError
from common.cluster.jobs import FINAL_JOB_STATES, JobNotFound, JobStore
from common.cluster.schema import SchemaError, TaskSpec, key
from common.snapshot import SnapshotError

from ..sync.engine import SyncError, SyncReport
from ..sync.options import OptionError, parse_sync_args
from .cli import DEFAULT_CONTINUOUS_JOBS
from .continuous import ClusterContinuous
from .contjob import LagGauges
from .dispatch import FollowHalted
from .syncrun import SUBMITTED, absolute

__all__ = ["DEFAULT_CONTINUOUS_JOBS", "ContinuousJobs", "is_continuous"]

log = logging.getLogger("surge.coordinator")

WAITING_SCAN: Final = 1000  # submitted requests looked at for continuous ones, per second
# Move one given request from the submitted list to the running one, if it is still there.
_TAKE: Final = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then redis.call('LPUSH', KEYS[2], ARGV[1]) return 1 end
return 0
"""


def is_continuous(raw: bytes | str) -> bool:
    """Whether a JobRequest is a continuous one (a malformed one is not: the one-time path
    drops it with a message)."""
    try:
        return bool(json.loads(raw).get("continuous"))
    except (ValueError, AttributeError):
        return False


class ContinuousJobs:
    def __init__(self, client: Any, url: str | None, running_key: str, *, limit: int,
                 send: Callable[[TaskSpec], None] | None, lock_ttl_s: float | None,
                 on_snapshot: Callable[[Any], None] | None = None) -> None:  # fmt: skip
        self.r, self.url, self.running_key = client, url, running_key
        self.jobs = JobStore(client)
        self.limit = limit
        self.send, self.lock_ttl_s, self.on_snapshot = send, lock_ttl_s, on_snapshot
        self.gauges = LagGauges()
        self.stopping = threading.Event()
        self._take = client.register_script(_TAKE)
        self._lock = threading.Lock()
        self._jobs: dict[str, ClusterContinuous] = {}
        self._pairs: dict[str, str] = {}  # job id -> pair, from the request on
        self._threads: list[threading.Thread] = []
        self._next_scan = 0.0

    # -- the service's calls -------------------------------------------------------------------
    def start(self, raw: bytes | str) -> None:
        thread = threading.Thread(target=self._run_request, args=(raw,), name="surge-continuous", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def take_waiting(self) -> None:
        """Start the continuous requests waiting in the submitted list (about once a second)."""
        if time.monotonic() < self._next_scan:
            return
        self._next_scan = time.monotonic() + 1.0
        for raw in self.r.lrange(SUBMITTED, -WAITING_SCAN, -1):
            if is_continuous(raw) and self._take(keys=[SUBMITTED, self.running_key], args=[raw]):
                self.start(raw)

    def runs_pair(self, pair: str) -> str | None:
        """The id of this coordinator's continuous job of `pair`, if it runs one."""
        with self._lock:
            return next((j for j, p in self._pairs.items() if p == pair), None)

    def stop_all(self) -> None:
        """Each job finishes its batch in flight and stops (it resumes with the next start)."""
        self.stopping.set()
        with self._lock:
            for job in self._jobs.values():
                job.request_stop()

    def halt_all(self) -> None:
        """Each job stops now; its batch in flight goes on on the workers (adopted later)."""
        self.stopping.set()
        with self._lock:
            for job in self._jobs.values():
                job.halt()

    def alive(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._threads)

    def join(self) -> None:
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join()

    # -- one job -------------------------------------------------------------------------------
    def _run_request(self, raw: bytes | str) -> None:
        try:
            req = json.loads(raw)
            job_id, pair = str(req["id"]), str(req["pair"])
        except (ValueError, KeyError, TypeError):
            log.error("dropped a malformed job request")
            self.r.lrem(self.running_key, 1, raw)
            return
        refusal = self._admit(job_id, pair)
        if refusal:
            self._fail(job_id, pair, refusal)
            self.r.lrem(self.running_key, 1, raw)
            return
        try:
            while self.r.exists(key("snap", pair, "lock")) and not self.stopping.is_set():
                self.stopping.wait(0.5)  # a killed run's pair lock expires within its TTL
            ended = self._run(req, job_id, pair)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.error("continuous job %s: lost Redis (%s); it resumes when the coordinator restarts",
                      job_id, exc)  # fmt: skip
            ended = False
        except Exception as exc:  # a bug must not leave the request running for ever
            log.exception("continuous job %s: internal error", job_id)
            self._fail(job_id, pair, f"coordinator internal error: {exc!r}")
            ended = True
        finally:
            with self._lock:
                self._jobs.pop(job_id, None)
                self._pairs.pop(job_id, None)
        if ended:
            self.r.lrem(self.running_key, 1, raw)

    def _admit(self, job_id: str, pair: str) -> str | None:
        with self._lock:
            other = next((j for j, p in self._pairs.items() if p == pair), None)
            if other is not None:
                return f"pair {pair!r} already has continuous job {other} on this coordinator"
            if len(self._pairs) >= self.limit:
                return (f"this coordinator already runs --continuous-jobs {self.limit} continuous jobs; "
                        "start it with a higher --continuous-jobs, or another coordinator")  # fmt: skip
            self._pairs[job_id] = pair
        return None

    def _run(self, req: dict[str, Any], job_id: str, pair: str) -> bool:
        """Run the job; True when it ended for good (its request leaves the running list)."""
        if self.stopping.is_set():
            return False
        try:
            opts = absolute(parse_sync_args([*req["argv"], "--cluster", self.url or ""]), str(req.get("cwd", "/")))
        except OptionError as exc:
            self._fail(job_id, pair, str(exc))
            return True
        from .syncrun import celery_sender

        job = ClusterContinuous(opts, self.r, self.send or celery_sender(self.url), job_id=job_id, detached=True,
                                emit=lambda p, s: self._line(job_id, p, s), warn=lambda t: log.warning("job %s: %s", job_id, t),
                                ready=lambda rep: self._ready(job_id, rep), lock_ttl_s=self.lock_ttl_s,
                                gauges=self.gauges, on_snapshot=self.on_snapshot)  # fmt: skip
        with self._lock:
            if self.stopping.is_set():
                return False
            self._jobs[job_id] = job
        log.info("continuous job %s of %s: starting", job_id, pair)
        try:
            job.run()
        except FollowHalted:
            log.info("continuous job %s: stopped at once; its batch in flight goes on", job_id)
            return False
        except (SyncError, SnapshotError, ClusterError) as exc:
            log.error("continuous job %s: failed: %s", job_id, exc)
        log.info("continuous job %s of %s: %s", job_id, pair, job.state)
        return job.state in FINAL_JOB_STATES

    def _fail(self, job_id: str, pair: str, error: str) -> None:
        log.error("continuous job %s of %s: %s", job_id, pair, error)
        try:
            if not self.r.exists(key("job", job_id)):
                self.jobs.create_job(pair, {"name": pair}, [], job_id=job_id, state="failed")
                self.r.hset(key("job", job_id), "continuous", 1)
            self.jobs.set_job_state(job_id, "failed", error)
        except (redis.RedisError, JobNotFound, SchemaError) as exc:
            log.error("continuous job %s: not marked failed: %s", job_id, exc)

    @staticmethod
    def _line(job_id: str, path: str, status: str) -> None:
        if status.startswith("ERROR"):
            log.warning("job %s: %s %s", job_id, path, status)
        else:
            log.debug("job %s: %s %s", job_id, path, status)

    @staticmethod
    def _ready(job_id: str, report: SyncReport) -> None:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
        log.info("continuous job %s: first sync done (%s; %d error(s)); watching", job_id,
                 counts or "nothing to do", len(report.errors))  # fmt: skip
