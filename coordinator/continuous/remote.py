"""The far end's changes, for a continuous pull or bidi with a remote host: a second control
channel to `surge agent`, given to its `watch` request; the agent watches its tree (inotify,
and periodic scans with --remote-scan-interval) and streams `changes` messages, which a reader
thread hands to the loop. The first channel stays free for the sync's own requests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..cp.common import CopyError
from ..cp.endpoint import Endpoint, EndpointError, close_politely
from ..sync.engine import SyncError
from ..sync.transfer import connect_far_end

__all__ = ["RemoteWatch"]

WATCH_ANSWER_SECONDS = 120.0  # the agent walks its tree to place its watches before answering


class RemoteWatch:
    """`on_event(item)` gets ("event", "remote", WatchEvent), ("overflow", "remote") or
    ("fatal", message) from the reader thread."""

    def __init__(self, opts: Any, on_event: Callable[[tuple[Any, ...]], None],
                 endpoint_factory: Callable[[Any], Endpoint] | None = None) -> None:  # fmt: skip
        self.opts = opts
        self.on_event = on_event
        self.factory = endpoint_factory
        self.endpoint: Endpoint | None = None
        self.notifications = True
        self._closing = False
        self._reader: threading.Thread | None = None

    def start(self) -> str | None:
        """Open the channel and start the watch; returns the far end's warning, if any."""
        o = self.opts
        try:
            self.endpoint = connect_far_end(o, self.factory)
            self.endpoint.send({"type": "watch", "path": o.remote_dir, "scan_interval": o.remote_scan_interval,
                                "intensity": o.scan_intensity})  # fmt: skip
            answer = self.endpoint.recv(WATCH_ANSWER_SECONDS)
        except (EndpointError, CopyError, TimeoutError) as exc:
            self.stop()
            raise SyncError(f"-C: cannot watch the remote directory: {exc}") from None
        if answer.get("type") != "watching":
            self.stop()
            raise SyncError(
                f"-C: the far end cannot watch {o.remote_dir!r}: {answer.get('message', answer)}"
            )
        self.notifications = bool(answer.get("notifications"))
        self._reader = threading.Thread(target=self._read, name="surge-remote-watch", daemon=True)
        self._reader.start()
        warning = answer.get("warning")
        return f"far end: {warning}" if warning else None

    def _read(self) -> None:
        endpoint = self.endpoint  # stop() drops the attribute while this thread still reads
        assert endpoint is not None
        try:
            while True:
                msg = endpoint.recv(None)
                if msg.get("type") != "changes":
                    continue
                if msg.get("overflow"):
                    self.on_event(("overflow", "remote"))
                for op, path, new, tree in msg.get("events", []):
                    self.on_event(("event", "remote", (str(op), str(path), new, bool(tree))))
        except EndpointError as exc:
            if not self._closing:
                self.on_event(("fatal", f"the far end's watch ended: {exc}"))

    def stop(self) -> None:
        self._closing = True
        if self.endpoint is None:
            return
        close_politely(self.endpoint)
        self.endpoint = None
