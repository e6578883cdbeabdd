"""What the executor's task kinds share: the error classes that say what happens next and the
outcome of a task (its per-file events). The far-end session of a task is farends.py's."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from common.cluster.joboptions import JobOptionsError, sync_options
from coordinator.sync.sides import RemoteSide

__all__ = ["DEADLINE", "PROGRESS_EVERY", "Fatal", "LeaseBusy", "Outcome", "Retry", "event", "local_change",
           "options_of", "remote_attrs", "throttled"]  # fmt: skip

PROGRESS_EVERY = 0.5  # seconds between progress writes (the resume point of a range)
DEADLINE: ContextVar[float | None] = ContextVar("surge_task_deadline", default=None)
"""time.monotonic() after which the running task gives up (its time limit; set by run_task)."""


class Retry(Exception):
    """Transient: the far end is unreachable or the session failed; run the task again later."""


class Fatal(Exception):
    """Retrying cannot help (bad options, bad path, another schema): the task fails."""


class LeaseBusy(Exception):
    """Another live worker holds the task's lease: try again later, do not run it twice."""


@dataclass
class Outcome:
    events: list[dict[str, Any]] = field(default_factory=list)
    sender: dict[str, Any] = field(default_factory=dict)  # statistics of the UDP session

    @property
    def files_done(self) -> int:
        return sum(e["status"] == "done" for e in self.events)

    @property
    def files_failed(self) -> int:
        return sum(e["status"] == "failed" for e in self.events)

    @property
    def bytes_done(self) -> int:
        return sum(int(e.get("bytes") or 0) for e in self.events if e["status"] != "failed")


def event(task: str, path: str, status: str, nbytes: int = 0, attrs: dict[str, Any] | None = None,
           error: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"task": task, "path": path, "status": status, "attrs": attrs or {}, "bytes": nbytes,
            "error": error}  # fmt: skip


def local_change(root: str, path: str, size: int, mtime_ns: int) -> str | None:
    """Why the shared storage no longer holds the planned version of a file (None: it does)."""
    try:
        st = os.stat(os.path.join(root, path))
    except OSError as exc:
        return f"cannot read the source: {exc.strerror or exc}"
    if st.st_size != size or st.st_mtime_ns != mtime_ns:
        return "the source changed since planning (the next sync sends it)"
    return None


def remote_attrs(side: RemoteSide, path: str) -> dict[str, Any] | None:
    e = side.stat(path)
    if e is None:
        return None
    return {"size": e.size, "mtime_ns": e.mtime_ns, "mode": e.mode, "ino": e.inode, "dev": e.dev,
            "nlink": e.nlink}  # fmt: skip


def throttled(fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """A session progress callback calling `fn` every PROGRESS_EVERY seconds, which also ends
    the session (raising Retry: a range resumes) once the task's time limit has passed."""
    last = [0.0]
    deadline = DEADLINE.get()

    def tick(stats: dict[str, Any]) -> None:
        now = time.monotonic()
        if deadline is not None and now > deadline:
            raise Retry("the task ran past its time limit (it resumes where it stopped)")
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            fn(stats)

    return tick


def options_of(job_options: dict[str, Any]) -> Any:
    try:
        return sync_options(job_options)
    except JobOptionsError as exc:
        raise Fatal(str(exc)) from None
