"""A worker's far-end connections, kept from one task to the next.

Opening a far end costs an SSH handshake, the start of a `surge agent` and its `hello`: 0.3-0.5 s
on a loaded machine, as long as sending a whole 500-file batch. So a worker process keeps the
connection a task used once the task has ended cleanly, and hands it to its next task for the
same far end (same host, user, port, keys, token and UDP ports). Before a kept connection is
reused, one `stat` round trip checks it: a far end that restarted or dropped the session while it
sat idle is closed and replaced before the task starts, so the task never sees it. A task that
raised closes its connection (the channel may still hold the rest of an aborted session). Idle
connections are closed after IDLE_S, and all of them when the worker stops (`close`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Final

from coordinator.cp.common import CopyError
from coordinator.cp.endpoint import CommandEndpoint, Endpoint, EndpointError, close_politely
from coordinator.sync.transfer import connect_far_end, copy_options

from .outcome import Retry

__all__ = [
    "IDLE_S",
    "MAX_IDLE",
    "PORT_SPAN",
    "Connect",
    "FarEnds",
    "cluster_endpoint",
    "far_end",
    "far_end_key",
]

log = logging.getLogger("surge.worker")

Connect = Callable[[Any], Endpoint]
IDLE_S: Final = 60.0
"""A connection idle this long is closed: its agent at the far end is not held for nothing."""
MAX_IDLE: Final = 8
"""Idle connections kept per far end (a worker needs one per task it runs at once)."""
PING_TIMEOUT_S: Final = 10.0
PORT_SPAN: Final = 64
"""UDP ports from the job's -O up that the far end may choose from: the sessions of several
workers reach one far end host at once, and each needs its own port there."""


def cluster_endpoint(opts: Any) -> Endpoint:
    """The far end of a worker's session: `surge agent --udp-ports O-O+63`, on this machine for
    a local remote directory, else over SSH (key or token only: workers never get a password)."""
    ports = f"{opts.udp_port}-{min(opts.udp_port + PORT_SPAN - 1, 65535)}"
    if opts.host is None:
        env = dict(os.environ, SURGE_AGENT_BIND="127.0.0.1")
        argv = [sys.executable, "-m", "workers.agent", "--udp-ports", ports]
        return CommandEndpoint(argv, "127.0.0.1", env=env)
    from coordinator.cp.client import default_endpoint
    from coordinator.cp.remote import Route

    copts = replace(
        copy_options(opts, opts.local_dir, opts.remote_dir),
        remote_command=f"surge agent --udp-ports {ports}",
    )
    return default_endpoint(
        copts, Route("push", opts.host, opts.user, (opts.local_dir,), opts.remote_dir)
    )


def far_end_key(opts: Any) -> tuple[Any, ...]:
    """What makes two jobs' far ends one connection: where it goes and how it authenticates (the
    token only as a digest: the key may show up in a debugger or a log line)."""
    token = hashlib.sha256(opts.token.encode()).hexdigest() if opts.token else None
    return (
        opts.host,
        opts.user,
        opts.ssh_port,
        tuple(opts.keys),
        opts.check_sshfp,
        opts.udp_port,
        token,
    )


def _alive(endpoint: Endpoint, root: str) -> bool:
    """One `stat` round trip: any answer to it (a result, or an error such as a missing root)
    shows the channel alive and in step; silence, an end of channel or a stray message do not."""
    try:
        endpoint.send({"type": "op", "op": "stat", "path": root})
        msg = endpoint.recv(PING_TIMEOUT_S)
    except (EndpointError, TimeoutError):
        return False
    return msg.get("type") == "error" or (msg.get("type") == "result" and msg.get("op") == "stat")


class FarEnds:
    """Opens the far ends of a worker's tasks and, with `keep`, keeps them for the next task.
    Thread-safe: each task gets a connection of its own (the threads pool runs several)."""

    def __init__(self, connect: Connect | None = None, *, keep: bool = True, idle_s: float = IDLE_S,
                 max_idle: int = MAX_IDLE) -> None:  # fmt: skip
        self._connect = connect or cluster_endpoint
        self.keep, self.idle_s, self.max_idle = keep, idle_s, max_idle
        self._idle: dict[tuple[Any, ...], list[tuple[float, Endpoint]]] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reaper: threading.Thread | None = None
        self.opened = self.reused = self.dead = 0

    @contextmanager
    def session(self, opts: Any) -> Iterator[Endpoint]:
        """A greeted far end for one task: a kept one that answers, else a new one. Raises Retry
        when none can be opened."""
        key = far_end_key(opts)
        endpoint = self._take(key, opts.remote_dir) or self._open(opts)
        clean = False
        try:
            yield endpoint
            clean = True
        finally:
            if not (clean and self._give(key, endpoint)):
                close_politely(endpoint)

    def _open(self, opts: Any) -> Endpoint:
        from common.metrics import FAR_ENDS

        try:
            endpoint = connect_far_end(opts, self._connect)
        except CopyError as exc:
            raise Retry(f"far end unreachable: {exc}") from None
        with self._lock:
            self.opened += 1
        FAR_ENDS.labels(how="opened").inc()
        return endpoint

    def _take(self, key: tuple[Any, ...], root: str) -> Endpoint | None:
        from common.metrics import FAR_ENDS

        while True:
            with self._lock:
                kept = self._idle.get(key)
                if not kept:
                    return None
                since, endpoint = kept.pop()  # the most recently used: the likeliest alive
            if time.monotonic() - since > self.idle_s:  # expired; the reaper had not got to it
                close_politely(endpoint)
                continue
            if _alive(endpoint, root):
                with self._lock:
                    self.reused += 1
                FAR_ENDS.labels(how="reused").inc()
                return endpoint
            log.info("a kept far-end connection did not answer; opening a new one")
            with self._lock:
                self.dead += 1
            FAR_ENDS.labels(how="dead").inc()
            close_politely(endpoint)

    def _give(self, key: tuple[Any, ...], endpoint: Endpoint) -> bool:
        """Keep a connection for the next task; False when it should be closed instead."""
        if not self.keep:
            return False
        with self._lock:  # checked under the lock: close() takes what is kept after setting it
            if self._closed.is_set():
                return False
            kept = self._idle.setdefault(key, [])
            if len(kept) >= self.max_idle:
                return False
            kept.append((time.monotonic(), endpoint))
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._reap, name="surge-far-end-reaper", daemon=True
                )
                self._reaper.start()
        return True

    def _reap(self) -> None:
        while not self._closed.wait(max(self.idle_s / 4, 0.05)):
            now = time.monotonic()
            stale: list[Endpoint] = []
            with self._lock:
                for kept in self._idle.values():
                    stale += [e for since, e in kept if now - since > self.idle_s]
                    kept[:] = [(since, e) for since, e in kept if now - since <= self.idle_s]
            for endpoint in stale:
                close_politely(endpoint)

    def idle(self) -> int:
        with self._lock:
            return sum(len(kept) for kept in self._idle.values())

    def statistics(self) -> dict[str, int]:
        with self._lock:
            return {"opened": self.opened, "reused": self.reused, "dead": self.dead,
                    "idle": sum(len(kept) for kept in self._idle.values())}  # fmt: skip

    def close(self) -> None:
        """Close every kept connection; the ones in use close when their task ends."""
        self._closed.set()
        reaper = self._reaper
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join(timeout=5)
        with self._lock:
            kept = [e for conns in self._idle.values() for _, e in conns]
            self._idle.clear()
        for endpoint in kept:
            close_politely(endpoint)
        if kept:
            log.info("closed %d kept far-end connection(s)", len(kept))


def far_end(opts: Any, far: FarEnds | None) -> Any:
    """The far-end session of one task: from the worker's kept connections, or (None) opened
    for this task alone and closed after it."""
    return (far if far is not None else FarEnds(keep=False)).session(opts)
