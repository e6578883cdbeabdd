"""``--transfer-threads=N[:SIZE]`` in the embedded mode: the files of one transfer (one direction
of a plan) in size classes, each class's files spread over its N threads, the threads running at
once as separate UDP sessions, each over its own far-end connection.

Rules (docs/SYNC.md, "Transfer threads"):

* **Classes.** Sorted by their size bound, the unbounded one last, whatever the order of the
  options. A file goes to the class of the smallest bound at or above its size (the reference's
  example: ``--transfer-threads=2:128 --transfer-threads=6`` sends the files of at most 128 bytes
  over 2 threads, all others over 6). Without an unbounded class, a file larger than every bound
  goes to one session (the default without the option).
* **Threads of a class.** Its files are spread over at most N lanes, one session each: largest
  file first to the lane with the fewest bytes so far (then the fewest files, then the first).
  A lane keeps its files in the order of the plan (path order). Empty lanes are dropped.
* **Cores.** At most as many sessions run at once as the lower of this machine's and the far
  end's CPU cores (the far end names its own in its hello; one that does not is not held to).
  Lanes beyond that wait for a free session, taken in turn from each class (the first lane of
  every class, then the second...), so every class starts at once.
* **Rate.** ``-l`` and ``-m`` are divided by the number of sessions that run at once: together
  they keep to the pair's rates. Session ``k`` asks for UDP port ``-O + k`` (a far end without a
  port range of its own, such as a system sshd's ``surge agent``, binds the port it is asked).
* **Failures.** A session that fails ends its thread (its connection may be out of step); its
  files not yet reported are reported as errors, one per file, and its unstarted lanes go to the
  other threads. What the other sessions committed is reported and recorded as it happens. An
  error raised by the run's callbacks (the snapshot) stops every thread and is raised again here.

Every thread is joined before :func:`transfer_in_threads` returns (parwalk.py forks only when
the process has no other thread). The callbacks run under one lock: the run's recorder, status
lines and report are not thread-safe.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from common.control.messages import available_cores
from common.snapshot import Entry
from common.units import Rate

from ..cp.endpoint import Endpoint, close_politely

__all__ = ["Lane", "SendLane", "assign", "lane_options", "plan_lanes", "session_count", "size_classes",
           "transfer_in_threads"]  # fmt: skip

log = logging.getLogger("surge.sync")

Group = tuple[int, int | None]  # (threads, size bound or None), as --transfer-threads gives them
Lane = list[Entry]  # the files of one session, in plan order
FileDone = Callable[[str, dict[str, Any]], None]
Progress = Callable[[dict[str, Any]], None]
# (session options, endpoint, files, on_file, progress) -> (wire bytes, [(path, error)])
SendLane = Callable[[Any, Endpoint, Lane, FileDone, Progress | None], tuple[int, list[tuple[str, str]]]]


# -- the plan: pure functions ----------------------------------------------------------------------
def size_classes(groups: Sequence[Group]) -> list[Group]:
    """The classes in the order a file is matched against them: by bound, the unbounded last (one
    thread when no group is unbounded)."""
    classes = sorted(groups, key=lambda g: (g[1] is None, g[1] or 0))
    if not classes or classes[-1][1] is not None:
        classes.append((1, None))
    return classes


def _spread(entries: Sequence[Entry], threads: int) -> list[Lane]:
    """`entries` over at most `threads` lanes, bytes balanced, each lane in the entries' order."""
    count = min(threads, len(entries))
    members: list[list[int]] = [[] for _ in range(count)]
    loads = [(0, 0, k) for k in range(count)]  # (bytes, files, lane): a heap
    for i in sorted(range(len(entries)), key=lambda i: -entries[i].size):  # stable: ties in order
        size, files, k = heapq.heappop(loads)
        members[k].append(i)
        heapq.heappush(loads, (size + entries[i].size, files + 1, k))
    return [[entries[i] for i in sorted(m)] for m in members]


def assign(entries: Sequence[Entry], groups: Sequence[Group]) -> list[list[Lane]]:
    """The lanes of each class of :func:`size_classes` (an empty list for a class without files)."""
    classes = size_classes(groups)
    members: list[list[Entry]] = [[] for _ in classes]
    for e in entries:
        k = next(k for k, (_, bound) in enumerate(classes) if bound is None or e.size <= bound)
        members[k].append(e)
    return [_spread(files, threads) for (threads, _), files in zip(classes, members)]


def plan_lanes(entries: Sequence[Entry], groups: Sequence[Group]) -> list[Lane]:
    """Every lane of :func:`assign`, in the order they start: in turn from each class."""
    per_class = assign(entries, groups)
    depth = max((len(lanes) for lanes in per_class), default=0)
    return [lanes[i] for i in range(depth) for lanes in per_class if i < len(lanes)]


def session_count(lanes: int, far_cores: int | None, cores: int | None = None) -> int:
    """How many sessions run at once: one per lane, at most the lower of both ends' cores."""
    cap = available_cores() if cores is None else cores
    if isinstance(far_cores, int) and far_cores > 0:
        cap = min(cap, far_cores)
    return max(1, min(lanes, cap))


def lane_options(opts: Any, sessions: int, k: int) -> Any:
    """The options of session `k` of `sessions` running at once: its share of -l and -m, and
    UDP port -O + k."""
    if sessions == 1:
        return opts

    def share(rate: Rate) -> Rate:
        return Rate(bits_per_second=max(1.0, float(rate.resolve(0)) / sessions))

    return dataclasses.replace(opts, target_rate=share(opts.target_rate), min_rate=share(opts.min_rate),
                               udp_port=min(opts.udp_port + k, 65535))  # fmt: skip


# -- running the lanes -----------------------------------------------------------------------------
class _Lanes:
    """The lanes not started yet and what the sessions reported, behind the callbacks' lock."""

    def __init__(self, lanes: list[Lane], on_file: FileDone, progress: Progress | None) -> None:
        self.lock = threading.Lock()
        self.todo = deque(lanes)
        self.stop = threading.Event()
        self.wire = 0
        self.errors: list[tuple[str, str]] = []
        self.fatal: BaseException | None = None  # raised by a callback: stops every thread, raised again
        self._on_file, self._progress = on_file, progress

    def take(self) -> Lane | None:
        with self.lock:
            return None if self.stop.is_set() or not self.todo else self.todo.popleft()

    def reporter(self, reported: set[str]) -> FileDone:
        def on_file(path: str, event: dict[str, Any]) -> None:
            with self.lock:
                reported.add(path)
                self._call(self._on_file, path, event)

        return on_file

    def progress(self) -> Progress | None:
        if self._progress is None:
            return None
        report = self._progress

        def progress(stats: dict[str, Any]) -> None:
            with self.lock:
                self._call(report, stats)

        return progress

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        """The run's callback (lock held). What it raises (the snapshot cannot be written...)
        is the run's problem, not a session's: kept for the caller, and no new lane starts."""
        try:
            callback(*args)
        except BaseException as exc:
            if self.fatal is None:
                self.fatal = exc
            self.stop.set()
            raise

    def failed(self, lane: Lane, reported: set[str], message: str) -> None:
        with self.lock:
            self.errors.extend((e.path, message) for e in lane if e.path not in reported)


def _worker(lanes: _Lanes, send: SendLane, opts: Any, endpoint: Endpoint | None,
            connect: Callable[[Any], Endpoint]) -> None:  # fmt: skip
    """One thread: its own connection (`endpoint`, else one it opens and closes), lanes until
    none is left or its session fails."""
    own = endpoint is None
    try:
        if endpoint is None:
            endpoint = connect(opts)
    except Exception as exc:  # the other threads take its lanes
        log.warning("--transfer-threads: one more connection to the far end failed: %s", exc)
        return
    try:
        while (lane := lanes.take()) is not None:
            reported: set[str] = set()
            try:
                wire, errors = send(opts, endpoint, lane, lanes.reporter(reported), lanes.progress())
            except Exception as exc:  # reported per file; the other sessions go on
                lanes.failed(lane, reported, f"transfer failed: {exc}")
                return
            with lanes.lock:
                lanes.wire += wire
                lanes.errors.extend(errors)
    finally:
        if own:
            close_politely(endpoint)


def transfer_in_threads(opts: Any, endpoint: Endpoint, plan: list[Lane], *, send: SendLane,
                        connect: Callable[[Any], Endpoint], on_file: FileDone, progress: Progress | None,
                        far_cores: int | None = None) -> tuple[int, list[tuple[str, str]]]:  # fmt: skip
    """Send the lanes of :func:`plan_lanes`, as many sessions at once as :func:`session_count`
    allows, the first over `endpoint` (the run's), the others over connections `connect(session
    options)` opens; returns (wire bytes, [(path, error)]). One session at once runs here."""
    sessions = session_count(len(plan), far_cores)
    if sessions < len(plan):
        log.info("--transfer-threads: %d lanes, %d sessions at once (CPU cores)", len(plan), sessions)
    lanes = _Lanes(plan, on_file, progress)
    if sessions == 1:
        _worker(lanes, send, opts, endpoint, connect)
    else:
        _run_threads(lanes, [(lanes, send, lane_options(opts, sessions, k), endpoint if k == 0 else None, connect)
                             for k in range(sessions)])  # fmt: skip
    if lanes.fatal is not None:
        raise lanes.fatal
    for lane in lanes.todo:  # every session failed before these started
        lanes.failed(lane, set(), "not sent: no transfer session left")
    return lanes.wire, lanes.errors


def _run_threads(lanes: _Lanes, work: list[tuple[Any, ...]]) -> None:
    """One thread per item of `work` (the arguments of :func:`_worker`), all joined here."""
    threads = [threading.Thread(target=_worker, args=args, name=f"surge-transfer-{k}", daemon=True)
               for k, args in enumerate(work)]  # fmt: skip
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:  # interrupted: no new lane starts; the running sessions end first
        lanes.stop.set()
        for t in threads:
            t.join()
        raise
