"""The transfer executor of a cluster worker: plain functions, no Celery in sight.

`run_task` is the one entry point a Celery task calls: it takes the task's lease (renewed by a
thread while it runs), marks the task running, runs the batch, range or bookkeeping work against
the far end, and finishes the task with its per-file events in one atomic step. Redelivery is
harmless: a finished task is not run again, a batch skips the files the far end already has
identical (same size and full SHA-256), and a range resumes after the prefix the far end
acknowledged, recorded in the task record every ~0.5 s while sending.

Errors are sorted by what should happen next: `Retry` (the far end or the network failed: run
the task again later) or `Fatal` (bad options, bad path, another schema: retrying cannot help).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from redis.exceptions import RedisError

from common.cluster.jobs import JobStore
from common.cluster.schema import FileRef, TaskSpec
from coordinator.cp.common import CopyError
from coordinator.cp.endpoint import Endpoint, EndpointError
from coordinator.cp.sources import SourceFile
from coordinator.sync.sides import RemoteSide, SideError
from coordinator.sync.transfer import source_atime, upload_sources

from .farends import FarEnds, far_end
from .ops import run_ops
from .outcome import (
    DEADLINE,
    Fatal,
    LeaseBusy,
    Outcome,
    Retry,
    event,
    local_change,
    options_of,
    remote_attrs,
    throttled,
)  # fmt: skip

__all__ = ["Fatal", "LeaseBusy", "Outcome", "Retry", "run_batch", "run_range", "run_task"]

log = logging.getLogger("surge.worker")


def run_batch(spec: TaskSpec, job_options: dict[str, Any], store: JobStore, worker: str,
              far: FarEnds | None = None) -> Outcome:  # fmt: skip
    """Send the small files of a batch task in one upload session; one event per file."""
    opts = options_of(job_options)
    out = Outcome()
    todo: list[FileRef] = []
    for f in spec.files:
        why = local_change(opts.local_dir, f.path, f.size, f.mtime_ns)
        if why:
            out.events.append(event(spec.task, f.path, "failed", error=why))
        else:
            todo.append(f)
    if not todo:
        return out
    files = [SourceFile(os.path.join(opts.local_dir, f.path), f.path, f.size, f.mtime_ns / 1e9,
                        source_atime(os.path.join(opts.local_dir, f.path), f.mtime_ns / 1e9, opts.preserve_atime))
             for f in todo]  # fmt: skip
    seen: dict[str, dict[str, Any]] = {}

    def on_file(f: SourceFile, msg: dict[str, Any]) -> None:
        seen[f.rel] = msg

    def progress(stats: dict[str, Any]) -> None:
        store.progress(spec.job, spec.task, int(stats.get("bytes_acked", 0)))

    with far_end(opts, far) as endpoint:
        # overwrite "diff" + resume 3: the far end compares same-size files by full SHA-256 and
        # the identical ones are skipped, so a redelivered batch resends nothing it committed.
        result = _upload(
            opts, endpoint, files, on_file, throttled(progress), overwrite="diff", resume=3
        )
        out.sender = dict(result.stats.get("sender", {}))
        side = RemoteSide(endpoint, opts.remote_dir)
        for f in todo:
            msg = seen.get(f.path, {"status": "failed", "error": "no answer from the far end"})
            out.events.append(_file_event(spec.task, f, msg, side))
    return out


def _file_event(task: str, f: FileRef, msg: dict[str, Any], side: RemoteSide) -> dict[str, Any]:
    status = msg.get("status")
    if status == "done":
        return event(task, f.path, "done", f.size, msg.get("attrs"))
    if status == "skipped" and not msg.get("error"):
        attrs = remote_attrs(side, f.path)  # identical at the far end: record what is there
        if attrs is not None and attrs["size"] == f.size:
            return event(task, f.path, "done", f.size, attrs)
    why = msg.get("error") or msg.get("reason") or "not sent"
    return event(task, f.path, "failed", error=f"far end: {why}")


def _upload(opts: Any, endpoint: Endpoint, files: list[SourceFile], on_file: Any, progress: Any,
            **overrides: Any) -> Any:  # fmt: skip
    try:
        return upload_sources(opts, endpoint, files, local_root=opts.local_dir, remote_root=opts.remote_dir,
                              on_file=on_file, progress=progress, **overrides)  # fmt: skip
    except CopyError as exc:
        raise Retry(f"transfer failed: {exc}") from None


def run_range(spec: TaskSpec, job_options: dict[str, Any], store: JobStore, worker: str,
              far: FarEnds | None = None) -> Outcome:  # fmt: skip
    """Send bytes [start+acked, start+length) of one large file as part `index` of `count`; the
    far end's session that completes the set commits the file. Event "done" when this part
    completed the file, "part" otherwise."""
    r = spec.range
    if r is None:
        raise Fatal(f"task {spec.task!r} is a range task without a range")
    opts = options_of(job_options)
    why = local_change(opts.local_dir, r.path, r.size, r.mtime_ns)
    if why:
        return Outcome([event(spec.task, r.path, "failed", error=why)])
    acked = min(max(int(store.task_state(spec.job, spec.task).get("acked") or 0), 0), r.length)
    with far_end(opts, far) as endpoint:
        side = RemoteSide(endpoint, opts.remote_dir)
        if acked >= r.length:
            done = _assembled(side, r.path, r.size)
            if done is not None:
                return Outcome([event(spec.task, r.path, "done", r.length, done)])
            acked = r.length - 1  # resend the last byte so that the far end records the part
        if acked:
            log.info("task %s: resuming %s at byte %d of the range", spec.task, r.path, acked)
        where = os.path.join(opts.local_dir, r.path)
        part = SourceFile(where, r.path, r.length - acked, r.mtime_ns / 1e9,
                          source_atime(where, r.mtime_ns / 1e9, opts.preserve_atime),
                          start=r.start + acked, part=(r.index, r.count, r.size))  # fmt: skip
        seen: dict[str, Any] = {}

        def progress(stats: dict[str, Any]) -> None:
            prefix = acked + int(stats.get("bytes_acked", 0))
            store.progress(spec.job, spec.task, prefix, acked=prefix)

        result = _upload(
            opts, endpoint, [part], lambda f, msg: seen.update(msg), throttled(progress)
        )
        progress(result.stats.get("sender", {}))
    out = Outcome(sender=dict(result.stats.get("sender", {})))
    if seen.get("status") != "done":
        raise Fatal(
            f"far end: {seen.get('error') or seen.get('reason') or 'the part was not written'}"
        )
    if seen.get("assembled"):
        out.events.append(event(spec.task, r.path, "done", r.length, seen.get("attrs")))
    else:
        out.events.append(event(spec.task, r.path, "part", r.length))
    return out


def _assembled(side: RemoteSide, path: str, size: int) -> dict[str, Any] | None:
    """The far end's attributes of a split file already assembled (no partial left), or None."""
    attrs = remote_attrs(side, path)
    if attrs is None or attrs["size"] != size or side.stat(path + ".partial") is not None:
        return None
    return attrs


@contextmanager
def _lease(store: JobStore, spec: TaskSpec, worker: str) -> Iterator[None]:
    """Hold the task's lease while the block runs, renewed every third of its lifetime."""
    if not store.acquire_lease(spec.job, spec.task, worker):
        raise LeaseBusy(f"task {spec.task} is running on {store.lease_holder(spec.job, spec.task)}")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(store.lease_ms / 3000):
            try:
                held = store.renew_lease(spec.job, spec.task, worker)
            except RedisError as exc:
                held, why = False, str(exc)
            else:
                why = "expired"
            if not held:  # the work is idempotent: finish it; a second runner only repeats it
                log.warning("task %s: could not renew its lease (%s)", spec.task, why)

    thread = threading.Thread(target=renew, name=f"surge-lease-{spec.task}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            store.release_lease(spec.job, spec.task, worker)
        except RedisError as exc:  # it expires by itself; do not hide the task's own outcome
            log.warning("task %s: could not release its lease: %s", spec.task, exc)


RUNNERS: dict[str, Callable[..., Outcome]] = {
    "batch": run_batch,
    "range": run_range,
    "ops": run_ops,
}


def run_task(spec: TaskSpec, job_options: dict[str, Any], store: JobStore, worker: str, *,
             host: str = "", far: FarEnds | None = None, time_limit: float | None = None) -> Outcome | None:  # fmt: skip
    """Run one task under its lease and finish it (events and job counters in one atomic step).
    `far` keeps far-end connections across tasks (None: one for this task alone). Returns None
    when the task had already finished (a redelivery). Raises LeaseBusy, Retry
    (the task record says why; the caller retries or gives up) or Fatal (the task is failed)."""
    runner = RUNNERS.get(spec.kind)
    if runner is None:
        _fail(store, spec, f"unknown task kind {spec.kind!r}")
        raise Fatal(f"unknown task kind {spec.kind!r}")
    with _lease(store, spec, worker):
        before = store.task_state(spec.job, spec.task)
        if before.get("state") in ("succeeded", "failed"):
            return None
        store.start_task(spec.job, spec.task, host or worker)
        token = DEADLINE.set(None if time_limit is None else time.monotonic() + time_limit)
        try:
            out = runner(spec, job_options, store, worker, far)
        except Fatal as exc:
            _fail(store, spec, str(exc))
            raise
        except (Retry, SideError, EndpointError, TimeoutError, OSError) as exc:
            store.retry_task(spec.job, spec.task, str(exc))
            raise Retry(str(exc)) from None
        finally:
            DEADLINE.reset(token)
        error = None
        if out.files_failed:
            first = next(e for e in out.events if e["status"] == "failed")
            error = f"{out.files_failed} file(s) failed; first: {first['path']}: {first['error']}"
        store.finish_task(spec.job, spec.task, not out.files_failed, error, files_done=out.files_done,
                          files_failed=out.files_failed, bytes_done=out.bytes_done, events=out.events)  # fmt: skip
        return out


def _fail(store: JobStore, spec: TaskSpec, error: str) -> None:
    store.finish_task(spec.job, spec.task, False, error)
