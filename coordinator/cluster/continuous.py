"""Continuous sync on a cluster: `surge sync -C --cluster URL` in the foreground, and the
continuous jobs `surge coordinator` runs (docs/CLUSTER.md, docs/CONTINUOUS.md).

The coordinator's process watches the local tree and queues the changes exactly as the embedded
`-C` does (coordinator/continuous); what differs is behind the loop's two interfaces: the Redis
snapshot store, and the BatchDispatcher (batches.py), through which the files of each cooled-off
batch become tasks of the job that the workers run. Bookkeeping (mkdir, rename, delete) is the
coordinator's, over its own control connection, as in the one-time cluster sync. A reporter
thread writes the job's live fields to Redis about every second (what `surge status` shows),
sets the gauges, and turns a `surge cancel` into a clean stop.

Stopping: `request_stop` lets the batch in flight finish (its files are recorded), then the
session closes; `halt` stops following at once: the batch's tasks go on on the workers and the
next run of the pair adopts them. The job's states are contjob.py's.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from common.cluster.connect import ClusterError, connect
from common.cluster.joboptions import JobOptionsError, job_options
from common.cluster.jobs import JobStore, new_id
from common.cluster.schema import SchemaError, TaskSpec
from common.snapshot import SnapshotError

from ..continuous.loop import ContinuousSync
from ..cp.common import CopyError
from ..sync.engine import SyncError, SyncReport
from .batches import BatchDispatcher
from .contjob import COUNTED, ContinuousRecord, LagGauges, counted_kind

__all__ = ["REPORT_EVERY_S", "ClusterContinuous", "foreground_loop"]

log = logging.getLogger("surge.cluster.continuous")

REPORT_EVERY_S = 1.0  # the job's live fields in Redis, the gauges, the cancel flag

Emit = Callable[[str, str], None]


class ClusterContinuous:
    """One continuous job: `run` until stopped, cancelled or failed. It offers what
    coordinator/continuous/cli.py's `run_continuous` drives (request_stop, stopping, batches,
    errors)."""

    def __init__(self, opts: Any, client: Any, send: Callable[[TaskSpec], None], *,
                 job_id: str | None = None, detached: bool = False, emit: Emit | None = None,
                 warn: Callable[[str], None] | None = None, ready: Callable[[SyncReport], None] | None = None,
                 lock_ttl_s: float | None = None, gauges: LagGauges | None = None,
                 on_snapshot: Callable[[Any], None] | None = None) -> None:  # fmt: skip
        self.opts = opts
        self.jobs = JobStore(client)
        self.job_id = job_id or new_id()
        self.detached = detached  # run by `surge coordinator`, which resumes it
        self.record = ContinuousRecord(self.jobs, self.job_id)
        self.gauges = gauges or LagGauges()
        self.counts = dict.fromkeys(COUNTED, 0)  # written by the loop thread only
        self.cancelled = False
        self.state: str | None = None  # the job's state once `run` returned
        self._halt = threading.Event()
        self._done = threading.Event()
        self._emit_to = emit

        def open_snapshot(o: Any) -> Any:
            from common.snapshot.redis import RedisSnapshot

            snap = (
                RedisSnapshot(client, o.name)
                if lock_ttl_s is None
                else RedisSnapshot(client, o.name, lock_ttl_s=lock_ttl_s)
            )
            if on_snapshot is not None:
                on_snapshot(snap)
            return snap

        dispatcher = BatchDispatcher(self.jobs, send, self.job_id, halt=self._halt)
        self.loop = ContinuousSync(opts, self._emit, warn=warn, ready=ready, open_snapshot=open_snapshot,
                                   dispatcher=dispatcher, on_stats=None)  # fmt: skip

    # -- what run_continuous drives ------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the batch in flight, then stop (safe from a signal handler)."""
        self.loop.request_stop()

    def halt(self) -> None:
        """Stop now: the batch in flight is left to the workers (the next run adopts it)."""
        self._halt.set()
        self.loop.request_stop()

    @property
    def stopping(self) -> bool:
        return self.loop.stopping

    @property
    def batches(self) -> int:
        return self.loop.batches

    @property
    def errors(self) -> int:
        return self.loop.errors

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> None:
        """Raises SyncError when the job failed (the record says why), KeyboardInterrupt or
        FollowHalted when stopped at once (the job stays open for the next run)."""
        try:
            if not self.record.open(self.opts.name, job_options(self.opts), self.detached):
                self.state = str(self.jobs.job(self.job_id)["state"])
                return
        except (redis.RedisError, SchemaError, JobOptionsError) as exc:
            raise SyncError(f"continuous job {self.job_id}: {exc}") from None
        reporter = threading.Thread(
            target=self._reporting, name="surge-continuous-report", daemon=True
        )
        reporter.start()
        state, error = "stopped", None
        try:
            self.loop.run()
            state = "cancelled" if self.cancelled else "stopped" if self.detached else "done"
        except SyncError as exc:
            state, error = "failed", str(exc)
            raise
        except (SnapshotError, CopyError, ClusterError) as exc:
            state, error = "failed", str(exc)
            raise SyncError(error) from None
        except redis.RedisError as exc:
            state, error = "failed", f"lost Redis: {exc}"
            raise SyncError(error) from None
        finally:
            self._done.set()
            reporter.join()
            self.gauges.remove(self.job_id)
            self.state = state
            self._close(state, error)

    def _close(self, state: str, error: str | None) -> None:
        try:
            self.report()
            self.record.close(state, error)
        except redis.RedisError as exc:
            log.warning(
                "continuous job %s: its final state (%s) not recorded: %s", self.job_id, state, exc
            )

    def _emit(self, path: str, status: str) -> None:
        kind = counted_kind(status)
        if kind is not None:
            self.counts[kind] += 1
        if self._emit_to is not None:
            self._emit_to(path, status)

    def _reporting(self) -> None:
        while True:
            try:
                self.report()
            except redis.RedisError as exc:  # a Redis outage: the loop's own calls report it
                log.warning("continuous job %s: status not written: %s", self.job_id, exc)
            if self._done.wait(REPORT_EVERY_S):
                return

    def report(self) -> None:
        """The loop's figures to the gauges and the job record; a cancel request stops it."""
        stats = self.loop.stats
        lag = stats.lag(time.monotonic())  # the loop's default clock
        if not self._done.is_set():
            self.gauges.update(self.job_id, stats.pending, lag)
        self.record.report(stats, lag, self.counts)
        if not self.cancelled and self.record.cancel_requested():
            log.info(
                "continuous job %s: cancelled; stopping after the batch in flight", self.job_id
            )
            self.cancelled = True
            self.loop.request_stop()


def foreground_loop(opts: Any, emit: Emit, warn: Callable[[str], None],
                    ready: Callable[[SyncReport], None]) -> ClusterContinuous:  # fmt: skip
    """The loop of `surge sync -C --cluster URL`. Raises SyncError when Redis cannot be used."""
    from .syncrun import celery_sender, lock_ttl_from_env

    try:
        client = connect(opts.cluster or None)
        lock_ttl = lock_ttl_from_env()
        send = celery_sender(opts.cluster or None)
    except ClusterError as exc:
        raise SyncError(str(exc)) from None
    job = ClusterContinuous(
        opts, client, send, emit=emit, warn=warn, ready=ready, lock_ttl_s=lock_ttl
    )
    if not opts.quiet:
        print(f"surge sync: continuous job {job.job_id} (surge status -N {opts.name} --cluster URL)",
              file=sys.stderr, flush=True)  # fmt: skip
    return job
