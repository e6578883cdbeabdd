"""The emulator process: moves IP packets between two TUN fds through two :class:`DirectionModel`.

Started by :class:`bench.wan.WanLink` as ``python -m bench.wan.emulator`` with the TUN fds and
a control pipe inherited. It is a thin driver: read every packet that is ready (non-blocking, in
batches), hand it to the direction's model with the read time, write every packet whose release
time has come, and sleep in ``select`` exactly until the next release (``select`` takes a
microsecond timeout; ``epoll``/``poll`` round it up to a whole millisecond, which would add up to
2 ms to each round trip).

Accuracy aids, all best effort and reported in ``statistics()["emulator"]``: SCHED_FIFO
real-time priority, pinning to one CPU, a 1 ns timer slack, ``mlockall`` and no garbage collector.

Control protocol on the pipes: the parent writes ``s\\n`` (statistics: one JSON line comes back)
or ``q\\n`` (quit). End of file on the control pipe without ``q`` means the parent died without
cleaning up: the emulator then deletes the namespaces named by ``--orphan-netns`` and exits.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import gc
import heapq
import json
import os
import select
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from bench.wan.model import DirectionModel
from bench.wan.spec import LinkSpec

__all__ = ["main"]

#: Most packets read from one TUN fd before timers are looked at again.
READ_BATCH = 64
#: Upper bounds (exclusive, microseconds) of the release-lateness histogram; last bucket is open.
LATE_BUCKETS_US = (50, 100, 250, 500, 1000, 2000)
#: Bytes of one control command or reply line, at most.
CONTROL_LINE_LIMIT = 4096


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name or "libc.so.6", use_errno=True)
    except OSError:
        return None


def tune_process(cpu: int | None, rt_priority: int) -> dict[str, Any]:
    """Apply the accuracy aids; return what was obtained (never raises)."""
    report: dict[str, Any] = {"realtime": False, "cpu": None, "mlock": False, "timerslack_ns": None}
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
            report["cpu"] = cpu
        except OSError as exc:
            report["cpu_error"] = str(exc)
    if rt_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt_priority))
            report["realtime"] = True
            report["rt_priority"] = rt_priority
        except OSError as exc:
            report["realtime_error"] = str(exc)
            try:
                os.setpriority(os.PRIO_PROCESS, 0, -20)
            except OSError:
                pass
    libc = _libc()
    if libc is not None:
        pr_set_timerslack = 29
        if libc.prctl(pr_set_timerslack, 1, 0, 0, 0) == 0:
            report["timerslack_ns"] = 1
        mcl_current, mcl_future = 1, 2
        report["mlock"] = libc.mlockall(mcl_current | mcl_future) == 0
    gc.collect()
    gc.freeze()
    gc.disable()
    return report


class _Direction:
    """Driver-side state of one direction: its model, output fd and release-timing counters."""

    __slots__ = (
        "in_fd",
        "late_hist",
        "late_max_ns",
        "late_sum_ns",
        "model",
        "name",
        "out_fd",
        "read_errors",
        "truncated",
        "write_errors",
        "written",
    )

    def __init__(self, name: str, model: DirectionModel, in_fd: int, out_fd: int) -> None:
        self.name = name
        self.model = model
        self.in_fd = in_fd
        self.out_fd = out_fd
        self.written = 0
        self.write_errors = 0
        self.read_errors = 0
        self.truncated = 0
        self.late_sum_ns = 0
        self.late_max_ns = 0
        self.late_hist = [0] * (len(LATE_BUCKETS_US) + 1)

    def statistics(self) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self.model.stats)
        data["queue_limit_bytes"] = self.model.spec.effective_queue_bytes
        data["packets_written"] = self.written
        data["write_errors"] = self.write_errors
        data["read_errors"] = self.read_errors
        data["packets_truncated"] = self.truncated
        data["release_late_mean_us"] = (
            self.late_sum_ns / self.written / 1e3 if self.written else 0.0
        )
        data["release_late_max_us"] = self.late_max_ns / 1e3
        labels = [f"<{b}us" for b in LATE_BUCKETS_US] + [f">={LATE_BUCKETS_US[-1]}us"]
        data["release_late_histogram"] = dict(zip(labels, self.late_hist))
        return data


def _late_bucket(late_ns: int) -> int:
    late_us = late_ns / 1000
    for index, bound in enumerate(LATE_BUCKETS_US):
        if late_us < bound:
            return index
    return len(LATE_BUCKETS_US)


class Emulator:
    """The event loop. ``run()`` returns True on an orderly quit, False when orphaned."""

    def __init__(
        self,
        tun_a: int,
        tun_b: int,
        ctl_fd: int,
        reply_fd: int,
        forward: DirectionModel,
        backward: DirectionModel,
        mtu: int,
        tuning: dict[str, Any],
    ) -> None:
        self.ctl_fd = ctl_fd
        self.reply_fd = reply_fd
        self.read_size = mtu + 64
        self.tuning = tuning
        self.a_to_b = _Direction("a_to_b", forward, tun_a, tun_b)
        self.b_to_a = _Direction("b_to_a", backward, tun_b, tun_a)
        self.loops = 0
        self.oversleep_max_ns = 0
        self.oversleeps_1ms = 0
        self.busy_max_ns = 0
        self.started_ns = time.monotonic_ns()
        self._ctl_buffer = b""

    def statistics(self) -> dict[str, Any]:
        return {
            "a_to_b": self.a_to_b.statistics(),
            "b_to_a": self.b_to_a.statistics(),
            "emulator": {
                **self.tuning,
                "pid": os.getpid(),
                "loops": self.loops,
                "oversleep_max_us": self.oversleep_max_ns / 1e3,
                "oversleeps_over_1ms": self.oversleeps_1ms,
                "busy_max_us": self.busy_max_ns / 1e3,
                "uptime_s": (time.monotonic_ns() - self.started_ns) / 1e9,
                "cpu_time_s": time.process_time(),
            },
        }

    def _reply(self, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj) + "\n").encode()
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.reply_fd, view)
            except BlockingIOError:
                select.select([], [self.reply_fd], [], 1.0)
                continue
            view = view[written:]

    def _control(self) -> bool | None:
        """Handle control input. Returns True (quit), False (orphaned) or None (go on)."""
        try:
            chunk = os.read(self.ctl_fd, CONTROL_LINE_LIMIT)
        except BlockingIOError:
            return None
        if not chunk:
            return False
        self._ctl_buffer += chunk
        while b"\n" in self._ctl_buffer:
            line, self._ctl_buffer = self._ctl_buffer.split(b"\n", 1)
            command = line.strip()
            if command == b"q":
                return True
            if command == b"s":
                self._reply(self.statistics())
            else:
                self._reply({"error": f"unknown command {command[:64]!r}"})
        if len(self._ctl_buffer) > CONTROL_LINE_LIMIT:
            self._ctl_buffer = b""
        return None

    def _release(self, direction: _Direction, horizon: int) -> None:
        """Write every packet of ``direction`` due at or before ``horizon``."""
        pending = direction.model.pending
        pop = (lambda: heapq.heappop(pending)[::2]) if direction.model.reorders else pending.popleft  # type: ignore[arg-type,union-attr]
        write = os.write
        out_fd = direction.out_fd
        monotonic_ns = time.monotonic_ns
        hist = direction.late_hist
        while pending and pending[0][0] <= horizon:
            release_ns, packet = pop()
            try:
                write(out_fd, packet)
            except OSError:
                direction.write_errors += 1
                continue
            direction.written += 1
            late = monotonic_ns() - release_ns
            if late > 0:
                direction.late_sum_ns += late
                direction.late_max_ns = max(direction.late_max_ns, late)
                hist[_late_bucket(late)] += 1
            else:
                hist[0] += 1

    def _read(self, direction: _Direction) -> None:
        read = os.read
        size = self.read_size
        offer = direction.model.offer
        monotonic_ns = time.monotonic_ns
        fd = direction.in_fd
        for _ in range(READ_BATCH):
            try:
                packet = read(fd, size)
            except BlockingIOError:
                return
            except OSError as exc:
                direction.read_errors += 1
                if exc.errno in (errno.EBADFD, errno.EBADF):
                    raise
                return
            if len(packet) >= size:
                direction.truncated += 1
                continue
            offer(monotonic_ns(), packet)

    def run(self) -> bool:
        ab, ba = self.a_to_b, self.b_to_a
        fd_a, fd_b, ctl = ab.in_fd, ba.in_fd, self.ctl_fd
        rlist = [fd_a, fd_b, ctl]
        monotonic_ns = time.monotonic_ns
        sel = select.select
        release = self._release
        read = self._read
        woke = monotonic_ns()
        while True:
            self.loops += 1
            now = monotonic_ns()
            deadline = None
            for direction in (ab, ba):
                pending = direction.model.pending
                if pending:
                    if pending[0][0] <= now:
                        release(direction, now)
                    if pending:
                        head = pending[0][0]
                        if deadline is None or head < deadline:
                            deadline = head
            if deadline is None:
                timeout = None
            else:
                timeout = (deadline - monotonic_ns()) / 1e9
                if timeout < 0:
                    timeout = 0.0
            busy = monotonic_ns() - woke
            if busy > self.busy_max_ns:
                self.busy_max_ns = busy
            ready = sel(rlist, (), (), timeout)[0]
            woke = monotonic_ns()
            if deadline is not None:
                oversleep = woke - deadline
                self.oversleep_max_ns = max(self.oversleep_max_ns, oversleep)
                if oversleep > 1_000_000:
                    self.oversleeps_1ms += 1
            for fd in ready:
                if fd == fd_a:
                    read(ab)
                elif fd == fd_b:
                    read(ba)
                else:
                    outcome = self._control()
                    if outcome is not None:
                        return outcome


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tun-a", type=int, required=True, help="fd of side A's TUN device")
    parser.add_argument("--tun-b", type=int, required=True, help="fd of side B's TUN device")
    parser.add_argument("--ctl", type=int, required=True, help="fd the parent writes commands to")
    parser.add_argument("--reply", type=int, required=True, help="fd replies are written to")
    parser.add_argument("--forward", required=True, help="LinkSpec of A->B as JSON")
    parser.add_argument("--backward", required=True, help="LinkSpec of B->A as JSON")
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: none)")
    parser.add_argument("--rt-priority", type=int, default=50, help="SCHED_FIFO priority, 0: off")
    parser.add_argument(
        "--orphan-netns",
        default="",
        help="comma-separated namespaces to delete if the parent dies without quitting",
    )
    parser.add_argument(
        "--pidfile", default="", help="pid file to remove if the parent dies without quitting"
    )
    return parser.parse_args(argv)


def _remove_own_pidfile(path: str) -> None:
    try:
        with open(path) as fh:
            recorded = fh.read().strip()
        if recorded == str(os.getpid()):
            os.unlink(path)
    except OSError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    forward_spec = LinkSpec.from_json(json.loads(args.forward))
    backward_spec = LinkSpec.from_json(json.loads(args.backward))
    tuning = tune_process(args.cpu, args.rt_priority)
    for fd in (args.tun_a, args.tun_b, args.ctl):
        os.set_blocking(fd, False)
    emulator = Emulator(
        args.tun_a,
        args.tun_b,
        args.ctl,
        args.reply,
        DirectionModel(forward_spec),
        DirectionModel(backward_spec),
        args.mtu,
        tuning,
    )
    emulator._reply({"ready": True, **tuning})
    orderly = emulator.run()
    os.close(args.tun_a)
    os.close(args.tun_b)
    if not orderly and args.orphan_netns:
        from bench.wan.netns import delete_netns

        if tuning["realtime"]:  # the clean-up runs `ip`: no need to hog a CPU for it
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        for name in args.orphan_netns.split(","):
            delete_netns(name)
    if not orderly and args.pidfile:
        _remove_own_pidfile(args.pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
