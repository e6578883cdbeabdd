"""`surge agent`: the far end of one transfer, speaking the control protocol on stdin/stdout.

A client starts it as a local child process (local `surge cp`) or through SSH as the remote
command (as ascp starts ascp on the server). It answers `hello`, plans a push (destination,
overwrite and resume decisions), opens the UDP data port, receives, reports each file as it
is committed, and ends with `done`. Diagnostics go to stderr; stdout carries only frames.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from typing import Any, BinaryIO

from common import __version__
from common.control.framing import ProtocolError, read_message, write_message
from common.control.messages import PROTOCOL_VERSION, session_config_from
from common.paths import PathError
from common.transport.ciphers import CipherRefused, ServerCipherPolicy, negotiate
from common.transport.ranges import RangeSet
from common.transport.receiver import ReceiverSession
from common.transport.sockopts import open_udp_socket
from common.transport.udp import TransferAborted, run_receiver

from .receive import FileSink, IncomingFile, PlanError, ReceiveOptions, plan_receive

__all__ = ["main", "serve"]

_CHECKPOINT_EVERY = 2.0


class _Channel:
    def __init__(self, rin: BinaryIO, wout: BinaryIO) -> None:
        self.rin, self.wout = rin, wout
        self._lock = threading.Lock()

    def send(self, msg: dict[str, Any]) -> None:
        with self._lock:
            write_message(self.wout, msg)

    def recv(self, *expected: str) -> dict[str, Any]:
        msg = read_message(self.rin)
        if msg["type"] == "error":
            raise ProtocolError(f"peer error: {msg.get('message')}")
        if expected and msg["type"] not in expected:
            raise ProtocolError(f"expected {' or '.join(expected)}, got {msg['type']!r}")
        return msg


def serve(rin: BinaryIO, wout: BinaryIO, *, cipher_policy: ServerCipherPolicy | None = None,
          bind_host: str = "127.0.0.1") -> int:  # fmt: skip
    chan = _Channel(rin, wout)
    try:
        hello = chan.recv("hello")
        if hello.get("version") != PROTOCOL_VERSION:
            chan.send({"type": "error", "code": "version", "message": f"protocol version {hello.get('version')} not supported"})
            return 2
        chan.send({"type": "hello", "version": PROTOCOL_VERSION, "software": f"surge {__version__}"})
        request = chan.recv("push")
        return _receive(chan, request, cipher_policy or ServerCipherPolicy("any"), bind_host)
    except (ProtocolError, EOFError) as exc:
        print(f"surge agent: {exc}", file=sys.stderr)
        return 2


def _refuse(chan: _Channel, code: str, message: str) -> int:
    chan.send({"type": "error", "code": code, "message": message})
    return 1


def _receive(chan: _Channel, req: dict[str, Any], policy: ServerCipherPolicy, bind_host: str) -> int:
    try:
        opts = ReceiveOptions.from_json(req["receive"])
        files = [IncomingFile.from_json(f) for f in req["files"]]
        dirs = [str(d) for d in req.get("dirs", [])]
        cipher = negotiate(req["cipher"], policy)
        targets, plans = plan_receive(opts, files, dirs)
    except CipherRefused as exc:
        return _refuse(chan, "cipher", str(exc))
    except (PlanError, PathError) as exc:
        return _refuse(chan, "destination", str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        return _refuse(chan, "request", f"malformed push request: {exc}")
    udp_port = int(req.get("udp_port", 33001))
    try:
        sock, _features = open_udp_socket(bind_host, udp_port, gro=True)
    except OSError as exc:
        return _refuse(chan, "port", f"-O: cannot use UDP port {udp_port}: {exc.strerror}")
    with sock:
        chan.send({"type": "plan", "cipher": cipher, "udp_port": sock.getsockname()[1], "files": plans})
        start = chan.recv("start")
        skip = {int(i) for i in start.get("skip", [])}
        restart = {int(i) for i in start.get("restart", [])}
        sending = [i for i, p in enumerate(plans) if p["action"] in ("send", "compare") and i not in skip]
        for i, p in enumerate(plans):
            if i not in sending:
                chan.send({"type": "file", "index": i, "status": "skipped", "reason": p.get("reason", "same as source")})
        haves = [[] if i in restart else plans[i].get("have", []) for i in sending]
        sizes = [files[i].size for i in sending]
        config = session_config_from(req, cipher)
        have = RangeSet()
        bases = 0
        for size, ranges in zip(sizes, haves):
            for s, e in ranges:
                have.add(bases + s, bases + e)
            bases += size
        session = ReceiverSession(config, sizes, time.monotonic(), have=have)

        def done(k: int, result: dict[str, Any]) -> None:
            chan.send({"type": "file", "index": sending[k], **result})

        entries = [(targets[i], files[i].size, files[i].mtime, files[i].atime, bool(h)) for i, h in zip(sending, haves)]
        sink = FileSink(opts, entries, done)

        def file_ranges(k: int) -> list[list[int]]:
            base = session.layout.bases[k]
            return [[s - base, e - base] for s, e in session.received.intersection(base, base + sizes[k])]

        last = [time.monotonic()]

        def progress(_stats: dict[str, object]) -> None:
            now = time.monotonic()
            if now - last[0] >= _CHECKPOINT_EVERY:
                last[0] = now
                sink.checkpoint(file_ranges)

        try:
            stats = run_receiver(sock, session, sink, progress=progress)
        except TransferAborted as exc:
            sink.abort(file_ranges)
            return _refuse(chan, "transfer", str(exc))
        stats["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        chan.send({"type": "done", "stats": _jsonable(stats)})
    try:
        chan.recv("bye")
    except (EOFError, ProtocolError):
        pass
    return 0


def _jsonable(stats: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in stats.items() if isinstance(v, (int, float, str, dict))}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `surge agent` (and `python -m workers.agent`)."""
    bind = os.environ.get("SURGE_AGENT_BIND", "127.0.0.1")
    return serve(sys.stdin.buffer, sys.stdout.buffer, bind_host=bind)


if __name__ == "__main__":
    sys.exit(main())
