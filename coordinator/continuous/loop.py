"""The continuous sync loop (-C): one open session, watchers feeding a change queue, and each
batch of paths that cooled off synchronized by the one-time engine (coordinator/sync) over the
same session.

Start: watchers first (so nothing changed during the first sync is missed), then one whole sync
(skipped with --no-scan), then the loop. Threads: the watchers' (watchdog, periodic scans, the
far end's reader) only put items into a bounded inbox; the loop alone touches the queue, the
session and the snapshot. Stop (SIGINT/SIGTERM via `request_stop`): the batch being
synchronized finishes, the snapshot is flushed and closed, the far end gets `bye`; whatever
changed meanwhile is found by the first sync of the next start.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common import metrics
from workers.watch import TreeWatcher, WatchEvent

from ..cp.endpoint import Endpoint, EndpointError
from ..sync.engine import SyncError, SyncReport, close_session, open_session, sync_all
from ..sync.sides import LocalSide, SideError
from ..sync.transfer import Dispatcher
from .core import Change, ChangeQueue, QueueConfig
from .remote import RemoteWatch
from .scope import sync_scope

__all__ = ["INBOX_MAX", "ContinuousSync", "LoopStats", "set_gauges"]

log = logging.getLogger("surge.continuous")

INBOX_MAX = 100_000  # watcher items waiting for the loop; beyond it: overflow, then a whole sync
IDLE_WAKE = 1.0  # seconds: how soon an idle loop notices a stop request
FORCE_STAT_EVERY = 1.0  # seconds between forced stats of the pending paths (--*-force-stat)

Emit = Callable[[str, str], None]


@dataclass(frozen=True)
class LoopStats:
    """What the loop is doing, published at each turn and when a batch starts (a reporter
    thread may read it at any time: it is replaced, never changed)."""

    activity: str = "starting"  # starting | scanning (a whole-tree sync) | watching | syncing
    pending: int = 0  # changes not yet synchronized: queued, and in the batch being synced
    oldest: float | None = None  # the loop's clock when the oldest of them was first seen
    batches: int = 0
    errors: int = 0

    def lag(self, now: float) -> float:
        """Age of the oldest change not yet synchronized (0 when there is none)."""
        return 0.0 if self.oldest is None else max(0.0, now - self.oldest)


def set_gauges(stats: LoopStats, now: float) -> None:
    """The embedded default: this process runs one loop, whose figures are the gauges."""
    metrics.CHANGES_PENDING.set(stats.pending)
    metrics.SYNC_LAG.set(stats.lag(now))


def _release_first_sync(run: Any) -> None:
    """Give back what the first sync of a big tree held (its listings and status lines: a few
    hundred bytes per file) before the loop idles for hours."""
    run.scanned = ({}, {})
    run.report = SyncReport()
    gc.collect()
    try:  # glibc keeps freed heap pages unless asked
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class ContinuousSync:
    def __init__(self, opts: Any, emit: Emit | None = None, *, warn: Callable[[str], None] | None = None,
                 ready: Callable[[SyncReport], None] | None = None,
                 endpoint_factory: Callable[[Any], Endpoint] | None = None,
                 clock: Callable[[], float] = time.monotonic, open_snapshot: Callable[[Any], Any] | None = None,
                 dispatcher: Dispatcher | None = None,
                 on_stats: Callable[[LoopStats, float], None] | None = set_gauges) -> None:  # fmt: skip
        """`open_snapshot` and `dispatcher` default to the embedded ones (the cluster passes
        Redis and Celery ones); `on_stats(stats, now)` sees every LoopStats published."""
        self.opts = opts
        self.emit = emit
        self.warn = warn or (lambda text: log.warning("%s", text))
        self.ready = ready
        self.factory = endpoint_factory
        self.clock = clock
        self.open_snapshot, self.dispatcher, self.on_stats = open_snapshot, dispatcher, on_stats
        self.stats = LoopStats()
        self._in_flight: list[Change] = []  # the batch being synchronized
        self.queue = ChangeQueue(QueueConfig(cooloff=opts.cooloff, cooloff_max=opts.cooloff_max,
                                             pending_max=opts.pending_max, sharing_retry_max=opts.sharing_retry_max,
                                             delete_delay=opts.delete_delay))  # fmt: skip
        self.inbox: queue.Queue[tuple[Any, ...]] = queue.Queue(INBOX_MAX)
        self._stop = threading.Event()
        self._inbox_overflow = threading.Event()
        self._watchers: list[Any] = []
        self._last_force_stat = 0.0
        self.batches = 0
        self.errors = 0

    # -- control ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the batch in progress, then stop (safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _put(self, item: tuple[Any, ...]) -> None:
        try:
            self.inbox.put_nowait(item)
        except queue.Full:
            self._inbox_overflow.set()

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> None:
        """Run until stopped. Raises SyncError when the session cannot start or the far end
        goes away."""
        run = open_session(self.opts, endpoint_factory=self.factory, emit=self.emit,
                           open_snapshot=self.open_snapshot, dispatcher=self.dispatcher)  # fmt: skip
        try:
            self._start_watchers()
            if not self.opts.no_scan:
                self._publish("scanning")
                sync_all(run)
            if self.ready is not None:
                self.ready(run.report)
            _release_first_sync(run)
            self._loop(run)
        except EndpointError as exc:
            raise SyncError(f"the far end went away: {exc}") from None
        finally:
            for watcher in self._watchers:
                watcher.stop()
            close_session(run)
            self._in_flight = []
            self._publish("stopped")

    def _start_watchers(self) -> None:
        o = self.opts
        if o.direction in ("push", "bidi"):
            self._watch_local(o.local_dir, "local", None if o.no_scan else o.scan_interval)
        if o.direction in ("pull", "bidi"):
            if o.host is None:
                self._watch_local(o.remote_dir, "remote", o.remote_scan_interval)
            else:
                remote = RemoteWatch(o, self._put, self.factory)
                self._watchers.append(remote)
                warning = remote.start()
                if warning:
                    self.warn(warning)

    def _watch_local(self, root: str, side: str, interval: float | None) -> None:
        def on_event(event: WatchEvent) -> None:
            self._put(("event", side, event))

        watcher = TreeWatcher(
            root, on_event, scan_interval=interval, intensity=self.opts.scan_intensity
        )
        self._watchers.append(watcher)
        warning = watcher.start()
        if warning:
            self.warn(warning)

    # -- the loop --------------------------------------------------------------------------
    def _loop(self, run: Any) -> None:
        while not self._stop.is_set():
            now = self.clock()
            deadline = self.queue.next_deadline()
            if deadline is not None and self._force_stat_sides():
                deadline = min(deadline, self._last_force_stat + FORCE_STAT_EVERY)
            wait = IDLE_WAKE if deadline is None else min(IDLE_WAKE, max(0.0, deadline - now))
            resync = self._drain(wait)
            if self._stop.is_set():
                return
            now = self.clock()
            self._force_stat(run, now)
            if resync or self.queue.take_overflow():
                self._resync(run)
            batch = self.queue.pop_due(now)
            for change in batch.expired:
                self._error(
                    change.path,
                    f"still changing after --cooloff-max {self.opts.cooloff_max} s; skipped",
                )
            if batch.ready:
                self._sync_batch(run, batch.ready)
            self._publish("watching")

    def _drain(self, wait: float) -> bool:
        """Move the inbox into the queue (waiting up to `wait` s for the first item); True when
        events were lost and a whole sync is due."""
        resync = False
        try:
            item = self.inbox.get(timeout=wait) if wait > 0 else self.inbox.get_nowait()
            while True:
                resync |= self._take(item)
                item = self.inbox.get_nowait()
        except queue.Empty:
            pass
        if self._inbox_overflow.is_set():
            self._inbox_overflow.clear()
            resync = True
        return resync

    def _take(self, item: tuple[Any, ...]) -> bool:
        now = self.clock()
        if item[0] == "fatal":
            raise SyncError(str(item[1]))
        if item[0] == "overflow":
            return True
        _, side, (op, path, new, tree) = item
        if op == "move" and new is not None:
            self.queue.note_move(side, path, new, now, tree=tree)
        else:
            self.queue.note(side, path, now, tree=tree, gone=op == "gone")
        return False

    def _resync(self, run: Any) -> None:
        """Events were dropped (--pending-max, or a full buffer): a whole sync finds them."""
        if self.opts.no_scan:
            self.warn("changes were dropped (--pending-max reached) and --no-scan forbids the scan "
                      "that would find them; they are synchronized on the next change or start")  # fmt: skip
            return
        self.warn(
            f"more than --pending-max {self.opts.pending_max} changes pending: synchronizing the whole tree"
        )
        run.report = SyncReport()
        self._publish("scanning")
        sync_all(run)
        self.errors += len(run.report.errors)

    def _sync_batch(self, run: Any, ready: list[Change]) -> None:
        scope: dict[str, bool] = {}
        for change in ready:
            scope[change.path] = scope.get(change.path, False) or change.tree
        failures: list[tuple[str, str]] = []
        run.report = SyncReport()
        run.emit = lambda path, status: failures.append((path, status)) if status.startswith("ERROR") else (
            self.emit(path, status) if self.emit else None)  # fmt: skip
        self._check_roots(run)
        started = self.clock()
        self._in_flight = ready
        self._publish("syncing")
        try:
            sync_scope(run, scope, self._reported(ready))
        except (SideError, SyncError) as exc:
            failures.append(("/", f"ERROR: {exc}"))
        finally:
            run.emit = self.emit
            self._in_flight = []
        self.batches += 1
        lag = max(started - c.first for c in ready)
        log.info("batch %d: %d change(s), %d path(s), oldest %.2f s old, %.2f s", self.batches, len(ready), len(scope),
                 lag, self.clock() - started)  # fmt: skip
        self._retry_failures(ready, failures)

    def _check_roots(self, run: Any) -> None:
        """Both directories must still be there: nothing is known to be gone below a root that
        is not (removed, or its mount gone), so its disappearance is not propagated as deletions,
        nor is what it no longer holds left missing in a recreated one. Raises SyncError."""
        o = self.opts
        for side, where in ((run.local, o.local_dir), (run.remote, f"{o.host}:{o.remote_dir}" if o.host else o.remote_dir)):
            if isinstance(side, LocalSide):
                there = os.path.isdir(side.root)
            else:
                try:
                    there = side.op("stat", "")["attrs"].get("type") == "dir"
                except SideError:
                    there = False
            if not there:
                raise SyncError(f"{where}: the directory vanished; nothing was synchronized from or into it")

    def _reported(self, ready: list[Change]) -> dict[str, list[tuple[str, bool]]]:
        """The watched sides (push: local; pull: remote; bidi: both) and their changes."""
        direction = self.opts.direction
        sides = (
            ("local", "remote")
            if direction == "bidi"
            else ("local",)
            if direction == "push"
            else ("remote",)
        )
        return {side: [(c.path, c.tree) for c in ready if c.side == side] for side in sides}

    def _retry_failures(self, ready: list[Change], failures: list[tuple[str, str]]) -> None:
        """A failed path is tried again after a cooloff (a file in use, or changed while it was
        being sent), up to --sharing-retry-max times; then its error is reported."""
        now = self.clock()
        retried: set[tuple[str, str]] = set()
        for path, status in failures:
            covering = [c for c in ready if path in ("/", c.path) or path.startswith(c.path + "/") or
                        c.path.startswith(path + "/")] or ready  # fmt: skip
            again = [c for c in covering if c.key in retried or self.queue.retry(c, now)]
            retried.update(c.key for c in again)
            if not again:
                self._error(path, status.removeprefix("ERROR: "))

    def _error(self, path: str, message: str) -> None:
        self.errors += 1
        if self.emit is not None:
            self.emit(path, f"ERROR: {message}")

    def _force_stat_sides(self) -> set[str]:
        o = self.opts
        return {
            s for s, on in (("local", o.local_force_stat), ("remote", o.remote_force_stat)) if on
        }

    def _force_stat(self, run: Any, now: float) -> None:
        """--local-force-stat / --remote-force-stat: stat the pending paths every second, so a
        write that raised no notification still restarts their cooloff."""
        sides = self._force_stat_sides()
        if not sides or now - self._last_force_stat < FORCE_STAT_EVERY:
            return
        self._last_force_stat = now
        for change in self.queue.pending():
            if change.side in sides and not change.tree:
                entry = (run.local if change.side == "local" else run.remote).stat(change.path)
                self.queue.observe(
                    change, None if entry is None else (entry.size, entry.mtime_ns), now
                )

    def _publish(self, activity: str) -> None:
        """Replace `stats`: the queued changes and those of the batch being synchronized (a
        batch on a cluster may take long: its changes are still pending, and age)."""
        waiting = self.queue.pending() + self._in_flight
        oldest = min((c.first for c in waiting), default=None)
        self.stats = LoopStats(activity, len(waiting), oldest, self.batches, self.errors)
        if self.on_stats is not None:
            self.on_stats(self.stats, self.clock())
