"""Planning: the files a sync sends -> the tasks of a cluster job. Pure functions, no I/O.

Rules (DESIGN: plan):

* Small files travel in batches of at most ``batch_files`` files and ``batch_bytes`` bytes (a
  task costs a Celery round trip, a control session and a UDP session: batching amortizes
  them). A file larger than ``batch_bytes`` below the split threshold is a batch of its own.
* A file at or above ``threshold`` (``--multi-session-threshold``; 0: never) is cut into byte
  ranges, one task each, so several workers send it at once. A range is about ``threshold``
  bytes (the size the user deems worth a session of its own), at least two ranges, at most
  ``max_parts`` (128, the far end's limit), and short enough to finish within ``task_seconds``
  at the session rate ``-l`` (workers/cluster/app.py's TASK_TARGET_SECONDS, well inside the
  broker's visibility timeout: a task that outlives it is delivered a second time). Ranges
  start on ``ALIGN`` boundaries.
* Size classes (``--transfer-threads=N[:SIZE]``): a file of at most the smallest SIZE given
  (without the option: ``batch_bytes``) goes to the small-file queue, everything else and every
  range to the large-file queue, so small batches never wait behind a 100 GB range. N is the
  concurrency of the workers serving that queue (``surge worker --queues small --concurrency N``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from common.cluster.schema import QUEUE_LARGE, QUEUE_SMALL, FileRef, RangeRef, TaskSpec

__all__ = ["ALIGN", "MAX_PARTS", "PlanLimits", "plan_tasks", "range_layout"]

MAX_PARTS = 128
ALIGN = 64 << 10  # ranges start on block boundaries of the far end's writes
DEFAULT_TASK_SECONDS = 1800.0  # workers/cluster/app.py TASK_TARGET_SECONDS (no Celery import here)


@dataclass(frozen=True)
class PlanLimits:
    batch_files: int = 500
    batch_bytes: int = 64 << 20
    threshold: int = 0  # --multi-session-threshold; 0: no file is split
    rate_bps: float = 10e6  # -l, bits per second, of one session
    task_seconds: float = DEFAULT_TASK_SECONDS
    max_parts: int = MAX_PARTS
    small_bound: int | None = None  # smallest --transfer-threads SIZE; None: batch_bytes

    def __post_init__(self) -> None:
        if self.batch_files < 1 or self.batch_bytes < 1 or self.max_parts < 1 or self.threshold < 0:
            raise ValueError(f"plan limits out of range: {self!r}")

    @property
    def range_time_cap(self) -> int:
        """Most bytes a range may hold to finish within `task_seconds` at the session rate."""
        return max(ALIGN, int(self.rate_bps / 8 * self.task_seconds))

    @classmethod
    def from_options(cls, opts: object, task_seconds: float = DEFAULT_TASK_SECONDS) -> PlanLimits:
        bounds = [b for _, b in getattr(opts, "transfer_threads", ()) if b is not None]
        return cls(threshold=int(getattr(opts, "multi_session_threshold", 0) or 0),
                   rate_bps=float(opts.target_rate.resolve(0)),  # type: ignore[attr-defined]
                   task_seconds=task_seconds, small_bound=min(bounds) if bounds else None)  # fmt: skip


def range_layout(size: int, limits: PlanLimits) -> list[tuple[int, int]]:
    """(start, length) of each range of a file of `size` bytes that is split."""
    target = max(limits.threshold, ALIGN)
    parts = max(2, -(-size // target), -(-size // limits.range_time_cap))
    parts = min(parts, limits.max_parts, max(1, -(-size // ALIGN)))
    length = -(-size // parts)
    length = -(-length // ALIGN) * ALIGN  # aligned up: the count can only shrink
    starts = range(0, size, length) if size else range(1)
    return [(s, min(length, size - s)) for s in starts]


class _Batcher:
    def __init__(self, job: str, limits: PlanLimits, tasks: list[TaskSpec]) -> None:
        self.job, self.limits, self.tasks = job, limits, tasks
        self.open: dict[str, tuple[list[FileRef], int]] = {}

    def add(self, queue: str, ref: FileRef) -> None:
        files, size = self.open.get(queue, ([], 0))
        lim = self.limits
        if files and (len(files) >= lim.batch_files or size + ref.size > lim.batch_bytes):
            self.close(queue)
            files, size = [], 0
        files.append(ref)
        self.open[queue] = (files, size + ref.size)

    def close(self, queue: str) -> None:
        files, _ = self.open.pop(queue, ([], 0))
        if files:
            task = format(len(self.tasks), "x")
            self.tasks.append(TaskSpec(self.job, task, "batch", queue, files=tuple(files)))

    def close_all(self) -> None:
        for queue in list(self.open):
            self.close(queue)


def plan_tasks(
    job: str, files: Iterable[tuple[str, int, int]], limits: PlanLimits
) -> list[TaskSpec]:
    """Tasks for `files`, given as (path, size, mtime_ns) in the order to send them. Task ids
    are the tasks' positions in hex."""
    tasks: list[TaskSpec] = []
    batcher = _Batcher(job, limits, tasks)
    small_bound = limits.batch_bytes if limits.small_bound is None else limits.small_bound
    threshold = limits.threshold
    for path, size, mtime_ns in files:
        if threshold and size >= threshold:
            _ranges(job, path, size, mtime_ns, limits, tasks)
        else:
            batcher.add(
                QUEUE_SMALL if size <= small_bound else QUEUE_LARGE, FileRef(path, size, mtime_ns)
            )
    batcher.close_all()
    return tasks


def _ranges(
    job: str, path: str, size: int, mtime_ns: int, limits: PlanLimits, tasks: list[TaskSpec]
) -> None:
    layout = range_layout(size, limits)
    for index, (start, length) in enumerate(layout):
        ref = RangeRef(path, size, mtime_ns, index, len(layout), start, length)
        tasks.append(TaskSpec(job, format(len(tasks), "x"), "range", QUEUE_LARGE, range=ref))


def files_of(tasks: Sequence[TaskSpec]) -> dict[str, list[TaskSpec]]:
    """Path -> the tasks that carry it (one batch, or every range of a split file)."""
    out: dict[str, list[TaskSpec]] = {}
    for t in tasks:
        if t.range is not None:
            out.setdefault(t.range.path, []).append(t)
        for f in t.files:
            out.setdefault(f.path, []).append(t)
    return out


__all__ += ["files_of"]
