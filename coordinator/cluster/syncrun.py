"""`surge sync --cluster URL`: the engine with the Redis snapshot and the Celery dispatcher, and
`--detach`: a JobRequest for `surge coordinator` to run.

A JobRequest (JSON in the list ``surge:jobs:submitted``) is
``{"v", "id", "pair", "argv", "cwd", "submitted", "continuous"}``: the `surge sync` arguments
without ``--cluster``/``--detach`` (the coordinator uses its own Redis URL, so the Redis password
is never stored), the directory relative paths are taken from, the job id printed to the user,
and whether it is a continuous job (-C: it runs until cancelled, outside the one-time slots).
Passwords are refused by the options before anything is written (workers never get one).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from common.cluster.connect import ClusterError, connect
from common.cluster.jobs import JobStore, new_id
from common.cluster.schema import SCHEMA_VERSION, TaskSpec, key

from ..sync.engine import SyncReport, run_sync
from .dispatch import CeleryDispatcher

__all__ = ["SUBMITTED", "celery_sender", "job_request", "run_cluster_sync", "strip_cluster_args"]

SUBMITTED = key("jobs", "submitted")
LOCK_TTL_ENV = "SURGE_PAIR_LOCK_TTL_S"


class _CelerySender:
    """Sends a task's Celery message (JSON; only ids and the schema version travel). The app is
    built in a thread started at once and joined at the first send: importing Celery takes a
    few hundred milliseconds, spent meanwhile on scanning and on the far end's connection."""

    def __init__(self, url: str) -> None:
        self._app: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._build, args=(url,), name="surge-celery-app", daemon=True
        )
        self._thread.start()

    def _build(self, url: str) -> None:
        try:
            from workers.cluster.app import WorkerSettings, make_app

            self._app = make_app(WorkerSettings(url))
        except BaseException as exc:  # re-raised in the caller's thread at the first send
            self._error = exc

    def __call__(self, spec: TaskSpec) -> None:
        if self._app is None:
            self._thread.join()
            if self._error is not None:
                raise self._error
        from workers.cluster.app import dispatch

        dispatch(self._app, spec)


def celery_sender(url: str | None) -> Callable[[TaskSpec], None]:
    """Send a task's Celery message (JSON; only ids and the schema version travel)."""
    from common.cluster.connect import resolve_url

    return _CelerySender(resolve_url(url)[0])


def run_cluster_sync(opts: Any, *, emit: Callable[[str, str], None] | None = None, client: Any = None,
                     send: Callable[[TaskSpec], None] | None = None, job_id: str | None = None,
                     on_snapshot: Callable[[Any], None] | None = None,
                     lock_ttl_s: float | None = None) -> SyncReport:  # fmt: skip
    """One sync of the pair on the cluster. Raises ClusterError (Redis unusable) or SyncError.
    `on_snapshot` sees the opened store (the service reads its size for the metrics: opening a
    second one would wait for the pair lock); `lock_ttl_s` is how long a killed run blocks the
    pair (RedisSnapshot's default when None)."""
    from common.snapshot.redis import RedisSnapshot

    url = opts.cluster or None
    r = client if client is not None else connect(url)
    jobs = JobStore(r)
    dispatcher = CeleryDispatcher(jobs, send or celery_sender(url), job_id=job_id)

    def open_snapshot(o: Any) -> RedisSnapshot:
        snap = (
            RedisSnapshot(r, o.name)
            if lock_ttl_s is None
            else RedisSnapshot(r, o.name, lock_ttl_s=lock_ttl_s)
        )
        if on_snapshot is not None:
            on_snapshot(snap)
        return snap

    return run_sync(opts, emit=emit, open_snapshot=open_snapshot, dispatcher=dispatcher)


def lock_ttl_from_env(env: Any = None) -> float | None:
    """``SURGE_PAIR_LOCK_TTL_S``: seconds a killed coordinator blocks its pair (default 30)."""
    text = (os.environ if env is None else env).get(LOCK_TTL_ENV, "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1.0 <= value <= 3600.0:
        raise ClusterError(f"{LOCK_TTL_ENV}: {text!r} is not a number of seconds in 1..3600")
    return value


def strip_cluster_args(argv: Sequence[str]) -> list[str]:
    """`argv` without --cluster [URL] and --detach (the URL may hold the Redis password)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--detach" or arg.startswith("--cluster="):
            continue
        if arg == "--cluster":
            nxt = argv[i + 1] if i + 1 < len(argv) else "-"
            skip = not nxt.startswith("-")
            continue
        out.append(arg)
    return out


def job_request(opts: Any, argv: Sequence[str], cwd: str | None = None) -> dict[str, Any]:
    """The JobRequest of a --detach run. Raises OptionError for a token on the command line: the
    request is stored in Redis, and secrets never are (the coordinator's and the workers' own
    SURGE_TOKEN is used instead)."""
    from ..sync.options import OptionError

    if any(a in ("-W", "--token") or a.startswith(("--token=", "-W")) for a in argv):
        raise OptionError("--detach: a token (-W) on the command line would be stored in Redis; "
                          "give the coordinator and the workers SURGE_TOKEN instead")  # fmt: skip
    return {"v": SCHEMA_VERSION, "id": new_id(), "pair": opts.name, "argv": strip_cluster_args(argv),
            "cwd": cwd or os.getcwd(), "submitted": int(time.time()), "continuous": bool(opts.continuous)}  # fmt: skip


def submit(opts: Any, argv: Sequence[str]) -> str:
    """Queue the sync for `surge coordinator`; returns the job id. Raises OptionError or
    ClusterError."""
    req = job_request(opts, argv)
    r = connect(opts.cluster or None)
    r.lpush(SUBMITTED, json.dumps(req, separators=(",", ":")))
    return str(req["id"])


def absolute(opts: Any, cwd: str) -> Any:
    """The request's directories resolved against the submitter's working directory."""
    local = os.path.join(cwd, opts.local_dir)
    remote = opts.remote_dir if opts.host is not None else os.path.join(cwd, opts.remote_dir)
    return replace(opts, local_dir=local, remote_dir=remote)


__all__ += ["ClusterError", "absolute", "submit"]
