"""Watching a synchronized tree for changes: file-system notifications (watchdog: inotify on
Linux) and, with a scan interval, periodic scans that compare the tree with the previous scan.
Used on both ends of a continuous sync: by the client for its own tree, and by `surge agent`
for the `watch` request (the far end of a pull or bidi reports the changes of its tree).

A watcher reports events, not decisions: `("change", path, None, tree)`,
`("gone", path, None, tree)` and `("move", old, new, tree)`, with paths relative to the root;
`tree` says the whole subtree is concerned (a directory appeared, went or moved). It skips
what the sync skips (the snapshot directory, partial and resume files, names with line breaks
or backslashes); filters are the client's business.

When the kernel runs out of inotify watches, the watcher says so (naming
fs.inotify.max_user_watches) and carries on with periodic scans only.
"""

from __future__ import annotations

import errno
import os
import queue
import stat
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "DEFAULT_FALLBACK_SCAN",
    "INTENSITY_PAUSE",
    "TreeWatcher",
    "WatchEvent",
    "handle_watch",
    "scan_signatures",
]

WatchEvent = tuple[str, str, "str | None", bool]  # (op, path, new path of a move, tree)

# What the scanner skips (coordinator.sync.scan; a test keeps the two equal): importing it would
# bring the snapshot stores, Redis client included, into every agent.
SKIP_SUFFIXES = (
    ".partial",
    ".aspx",
    ".surge-tmp",
    ".partial.parts",
    ".partial.lock",
    ".aspera-meta",
)
DB_DIRS = (".surge", ".private-asp")
DEFAULT_FALLBACK_SCAN = 60.0  # seconds between scans when notifications are unavailable
# -H: pause after each directory of a periodic scan (vhigh: "continuously scanning without rest")
INTENSITY_PAUSE = {"vlow": 0.02, "low": 0.005, "medium": 0.001, "high": 0.0002, "vhigh": 0.0}
WATCH_BATCH = 1000  # events per `changes` message of the watch request
WATCH_LINGER = 0.05  # seconds the agent waits for more events before sending a batch
WATCH_QUEUE_MAX = 100_000  # events buffered between the watcher threads and the agent's sender

Sig = tuple[str, int, int, int]  # (kind, size, mtime_ns, inode)


def skipped(rel: str) -> bool:
    """Paths a sync never looks at."""
    if not rel or rel.split("/", 1)[0] in DB_DIRS:
        return True
    name = rel.rsplit("/", 1)[-1]
    return name.endswith(SKIP_SUFFIXES) or any(c in rel for c in "\n\r\\")


def _sig(st: os.stat_result) -> Sig | None:
    if stat.S_ISDIR(st.st_mode):
        return ("dir", 0, 0, st.st_ino)
    if stat.S_ISLNK(st.st_mode):
        return ("link", 0, st.st_mtime_ns, st.st_ino)
    if stat.S_ISREG(st.st_mode):
        return ("file", st.st_size, st.st_mtime_ns, st.st_ino)
    return None


def scan_signatures(
    root: str, pause: float = 0.0, stop: threading.Event | None = None
) -> dict[str, Sig]:
    """(kind, size, mtime, inode) of every path under `root`, pausing `pause` s per directory."""
    out: dict[str, Sig] = {}
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
                children = list(it)
        except OSError:
            continue
        for de in children:
            rel = f"{rel_dir}/{de.name}" if rel_dir else de.name
            if skipped(rel):
                continue
            try:
                sig = _sig(de.stat(follow_symlinks=False))
            except OSError:
                continue
            if sig is not None:
                out[rel] = sig
                if sig[0] == "dir":
                    stack.append(rel)
        if pause and stop is not None and stop.wait(pause):
            break
    return out


def diff_signatures(before: dict[str, Sig], after: dict[str, Sig]) -> list[WatchEvent]:
    """Events that turn the scan `before` into the scan `after` (a directory whose inode
    changed, or that is new or gone, is a tree event that covers what is below it)."""
    events: list[WatchEvent] = []
    trees: list[str] = []

    def covered(path: str) -> bool:
        return any(path.startswith(t + "/") for t in trees)

    for path in sorted(after):
        new, old = after[path], before.get(path)
        if (
            new == old
            or (old is not None and new[0] == "dir" == old[0] and new[3] == old[3])
            or covered(path)
        ):
            continue
        is_tree = new[0] == "dir" or (old is not None and old[0] == "dir")
        events.append(("change", path, None, is_tree))
        if is_tree:
            trees.append(path)
    for path in sorted(set(before) - set(after)):
        if not covered(path):
            events.append(("gone", path, None, before[path][0] == "dir"))
            if before[path][0] == "dir":
                trees.append(path)
    return events


def _inotify_fds() -> set[int]:
    """This process's inotify descriptors (Linux; empty elsewhere)."""
    out = set()
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                    out.add(int(fd))
            except OSError:
                continue
    except OSError:
        pass
    return out


def _watch_count(fd: int) -> int:
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fh:
            return sum(1 for line in fh if line.startswith("inotify wd:"))
    except OSError:
        return 0


def _count_dirs(root: str) -> int:
    return 1 + sum(len(dirs) for _, dirs, _ in os.walk(root))


class TreeWatcher:
    """Notifications and periodic scans of one tree, reported to `on_event` from the watcher's
    threads. `start()` returns a warning when notifications are unavailable."""

    def __init__(self, root: str, on_event: Callable[[WatchEvent], None], *, notifications: bool = True,
                 scan_interval: float | None = None, intensity: str = "medium") -> None:  # fmt: skip
        self.root = os.path.realpath(root)
        self.on_event = on_event
        self.notifications = notifications
        self.scan_interval = scan_interval
        self.pause = INTENSITY_PAUSE[intensity]
        self._stop = threading.Event()
        self._observer: Any = None
        self._scanner: threading.Thread | None = None

    def start(self) -> str | None:
        warning = None
        if self.notifications:
            try:
                self._start_observer()
            except OSError as exc:
                self.notifications = False
                warning = self._limit_message(exc)
                if self.scan_interval is None:
                    self.scan_interval = DEFAULT_FALLBACK_SCAN
        if (
            self.scan_interval is not None
        ):  # the first scan before returning: no gap before the caller's sync
            first = scan_signatures(self.root, self.pause, self._stop)
            self._scanner = threading.Thread(
                target=self._scan_loop, args=(first,), name="surge-scan", daemon=True
            )
            self._scanner.start()
        return warning

    def _limit_message(self, exc: OSError) -> str:
        every = self.scan_interval or DEFAULT_FALLBACK_SCAN
        if exc.errno in (errno.ENOSPC, errno.EMFILE):
            what = "watches" if exc.errno == errno.ENOSPC else "instances"
            return (f"{self.root}: out of inotify {what} (raise fs.inotify.max_user_watches and "
                    f"fs.inotify.max_user_instances with sysctl); continuing with periodic scans "
                    f"only, every {every:g} s")  # fmt: skip
        return f"{self.root}: file-system notifications unavailable ({exc}); periodic scans only, every {every:g} s"

    def _start_observer(self) -> None:
        from watchdog import events as ev
        from watchdog.observers import Observer

        wanted = [ev.FileCreatedEvent, ev.FileModifiedEvent, ev.FileDeletedEvent, ev.FileMovedEvent,
                  ev.FileClosedEvent, ev.FileAttribEvent, ev.DirCreatedEvent, ev.DirDeletedEvent,
                  ev.DirMovedEvent]  # fmt: skip
        handler = ev.FileSystemEventHandler()
        handler.dispatch = self._dispatch  # type: ignore[method-assign]
        before = _inotify_fds()
        observer = Observer()
        observer.schedule(handler, self.root, recursive=True, event_filter=wanted)
        observer.daemon = True
        observer.start()
        self._observer = observer
        # watchdog skips the subdirectories it could not watch without a word: count the watches
        mine = _inotify_fds() - before
        if mine and sum(map(_watch_count, mine)) < _count_dirs(self.root):
            observer.stop()
            self._observer = None
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    def _rel(self, path: Any) -> str | None:
        path = os.fsdecode(path)
        if not path.startswith(self.root + os.sep):
            return None
        rel = path[len(self.root) + 1 :].replace(os.sep, "/")
        return None if skipped(rel) else rel

    def _dispatch(self, event: Any) -> None:
        kind = event.event_type
        rel = self._rel(event.src_path)
        is_dir = bool(event.is_directory)
        if kind == "moved":
            new = self._rel(event.dest_path)
            if rel is not None and new is not None:
                self.on_event(("move", rel, new, is_dir))
            elif new is not None:  # moved in from a skipped name (a partial file put in place)
                self.on_event(("change", new, None, is_dir))
            elif rel is not None:
                self.on_event(("gone", rel, None, is_dir))
        elif rel is not None:
            self.on_event(
                (
                    "gone" if kind == "deleted" else "change",
                    rel,
                    None,
                    is_dir and kind != "modified",
                )
            )

    def _scan_loop(self, before: dict[str, Sig]) -> None:
        assert self.scan_interval is not None
        while not self._stop.is_set():
            if self._stop.wait(self.scan_interval):
                return
            after = scan_signatures(self.root, self.pause, self._stop)
            if self._stop.is_set():
                return
            for event in diff_signatures(before, after):
                self.on_event(event)
            before = after

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._scanner is not None:
            self._scanner.join(timeout=5)


def handle_watch(chan: Any, msg: dict[str, Any], ctx: Any) -> int:
    """The `watch` request: report the changes of a tree in `changes` messages until the client
    sends `bye` or goes away. The channel is the watch's alone from here on."""
    from common.paths import PathError

    from .context import Refused

    try:
        ctx.authorize("pull", [str(msg.get("path", ""))])
        root = ctx.resolve(str(msg.get("path", "")))
        if not os.path.isdir(root):
            raise Refused("path", f"watch: {msg.get('path')}: not a directory")
        interval = float(msg["scan_interval"]) if msg.get("scan_interval") else None
        intensity = str(msg.get("intensity", "medium"))
        if intensity not in INTENSITY_PAUSE or (interval is not None and interval <= 0):
            raise Refused("request", "watch: bad scan interval or intensity")
    except (Refused, PathError) as exc:
        return chan.refuse(getattr(exc, "code", "path"), str(exc))
    events: queue.Queue[WatchEvent | None] = queue.Queue(WATCH_QUEUE_MAX)
    overflow = threading.Event()

    def on_event(event: WatchEvent) -> None:
        try:
            events.put_nowait(event)
        except queue.Full:
            overflow.set()

    watcher = TreeWatcher(root, on_event,
                          scan_interval=interval, intensity=intensity)  # fmt: skip
    warning = watcher.start()
    chan.send({"type": "watching", "notifications": watcher.notifications, "warning": warning})
    threading.Thread(
        target=_wait_for_bye, args=(chan, events), name="surge-watch-bye", daemon=True
    ).start()
    try:
        return _stream(chan, events, overflow)
    finally:
        watcher.stop()


def _wait_for_bye(chan: Any, events: queue.Queue[WatchEvent | None]) -> None:
    try:
        while chan.recv()["type"] != "bye":
            pass
    except Exception:
        pass
    events.put(None)


def _stream(chan: Any, events: queue.Queue[WatchEvent | None], overflow: threading.Event) -> int:
    while True:
        first = events.get()
        if first is None:
            return 0
        batch = [first]
        try:
            while len(batch) < WATCH_BATCH:
                item = events.get(timeout=WATCH_LINGER)
                if item is None:
                    events.put(None)
                    break
                batch.append(item)
        except queue.Empty:
            pass
        lost = overflow.is_set()  # the client then synchronizes the whole tree
        overflow.clear()
        try:
            chan.send({"type": "changes", "events": [list(e) for e in batch], "overflow": lost})
        except OSError:
            return 0
