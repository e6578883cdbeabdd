"""Session metrics from the `surge agent` processes of a `surge server` to the server itself.

`surge server` runs one agent process per SSH session, so the UDP sessions (and their
statistics) live in the agents while Prometheus scrapes the server. Each agent writes its
sessions' meter events (common.metrics.SessionMeter: start, update every 0.25 s, finish) as
JSON lines to a pipe the server passes it (`--metrics-fd`); the server replays them into
meters of its own, so its registry counts every agent's sessions live.

Why a pipe and not prometheus_client's multiprocess mode: that mode needs an environment
variable set before the first import in every process, leaves mmap files per pid to clean up,
and supports neither Info metrics nor "latest value" gauges across processes. A pipe is one
descriptor per agent, and when an agent dies its pipe reaches end of file, so the server ends
that agent's open sessions as failed (surge_sessions_active never leaks).

Events carry cumulative statistics, so an agent drops an update when the pipe is full (the
next one carries everything): a slow server never slows a transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
from collections.abc import Mapping
from typing import BinaryIO

from common import metrics

__all__ = ["PipeRelay", "RelayReceiver", "open_relay", "relay_from", "relay_to"]

_MAX_LINE = select.PIPE_BUF  # a write up to this size is atomic: lines never interleave
_FINISH_WAIT = 5.0  # seconds a start or finish event may wait for room in the pipe
_MAX_OPEN = 256  # sessions one agent may have open at once (a bound on the server's memory)


class PipeRelay:
    """The agent's end: writes events to the pipe `fd`, without ever blocking on an update."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd: int | None = fd

    def __call__(self, event: dict[str, object]) -> None:
        fd = self.fd
        line = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        if fd is None or len(line) > _MAX_LINE:
            return
        try:
            try:
                os.write(fd, line)
            except BlockingIOError:
                if event.get("ev") == "update":
                    return
                poller = select.poll()
                poller.register(fd, select.POLLOUT)
                if poller.poll(_FINISH_WAIT * 1000):
                    os.write(fd, line)
        except OSError:  # the server is gone (EPIPE): stop relaying
            self.fd = None
            with contextlib.suppress(OSError):
                os.close(fd)


def relay_to(fd: int) -> None:
    """In an agent: forward every session's events to the server through pipe `fd`."""
    metrics.set_relay(PipeRelay(fd))


class RelayReceiver:
    """The server's end for one agent: replays its events into this process's meters."""

    def __init__(self) -> None:
        self._open: dict[int, metrics.SessionMeter] = {}

    def feed(self, line: bytes) -> None:
        """Apply one event line; a malformed one is ignored (the agent is ours, but a bug in it
        must not take the server down)."""
        try:
            event = json.loads(line)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        key, kind, stats = event.get("id"), event.get("ev"), event.get("stats")
        if not isinstance(key, int) or not isinstance(stats, Mapping):
            return
        if kind == "start" and event.get("dir") in ("send", "recv") and key not in self._open:
            if len(self._open) < _MAX_OPEN:
                active = event.get("active") is not False
                self._open[key] = metrics.SessionMeter(str(event["dir"]), stats, active=active)
        elif kind == "update" and key in self._open:
            self._open[key].update(stats)
        elif kind == "finish" and key in self._open:
            self._open.pop(key).finish(stats, ok=event.get("ok") is True)

    def close(self) -> None:
        """The agent is gone: its sessions still open failed."""
        for meter in self._open.values():
            meter.finish({}, ok=False)
        self._open.clear()


def open_relay() -> tuple[BinaryIO, int]:
    """A pipe for one agent: (the read end for `relay_from`, the write end for `--metrics-fd`).
    The read end is a file object, so it is closed even if `relay_from` never runs."""
    rfd, wfd = os.pipe()
    return os.fdopen(rfd, "rb", buffering=0), wfd


async def relay_from(pipe: BinaryIO) -> None:
    """In the server: replay the events an agent writes to `pipe` (a read end) until the agent
    closes it (exits); closes `pipe`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_MAX_LINE * 2)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    receiver = RelayReceiver()
    try:
        while line := await reader.readline():
            receiver.feed(line)
    except ValueError:  # a line past the limit: not ours; stop listening to this agent
        pass
    finally:
        receiver.close()
        with contextlib.suppress(RuntimeError):
            transport.close()
