"""The agent's side of an upload (`push`): plan, receive over UDP, commit, report."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.control.messages import SERVER_EXCLUDED, session_config_from
from common.paths import PathError
from common.transport.ciphers import CipherRefused, negotiate
from common.transport.ranges import RangeSet
from common.transport.receiver import ReceiverSession
from common.transport.sockopts import SocketFeatures
from common.transport.udp import TransferAborted, run_receiver

from .context import AgentContext, Channel, Refused, stats_json
from .receive import IncomingFile, PlanError, ReceiveOptions, plan_receive
from .sink import Entry, FileSink

__all__ = ["effective_transfer", "handle_push"]

_CHECKPOINT_EVERY = 2.0
_BATCH_FILES = 256  # per-file results go out in "files" messages of up to this many...
_BATCH_AGE = 0.02  # ...or as old as this (seconds), when the client asked for batches


def effective_transfer(ctx: AgentContext, req: dict[str, Any]) -> dict[str, Any]:
    """The rate, policy and datagram size the server allows for this request (the reference:
    the server's rate cap and datagram size override the client's)."""
    rate = req.get("rate", {})
    try:
        target, minimum, policy = ctx.policy.clamp_rates(rate.get("target_bps"), rate.get("min_bps"),
                                                         rate.get("policy"))  # fmt: skip
    except PermissionError as exc:
        raise Refused("policy", str(exc)) from None
    dgram = int(req["datagram_size"])
    if ctx.policy.datagram_size:
        dgram = min(dgram, ctx.policy.datagram_size - 28)
    return {"rate": {"target_bps": target, "min_bps": minimum, "policy": policy}, "datagram_size": dgram}


def handle_push(chan: Channel, req: dict[str, Any], ctx: AgentContext) -> int:
    try:
        push = _plan_push(req, ctx)
    except Refused as exc:
        return chan.refuse(exc.code, str(exc))
    except CipherRefused as exc:
        return chan.refuse("cipher", str(exc))
    except (PlanError, PathError) as exc:
        return chan.refuse("destination", str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        return chan.refuse("request", f"malformed push request: {exc}")
    server_filter = ctx.filters()
    if server_filter:  # aspera.conf filters come first: the server refuses what they exclude
        for i, f in enumerate(push.files):
            if server_filter.excluded(f.rel.partition("/")[2] or f.rel, False):
                push.plans[i] = {"action": "skip", "reason": SERVER_EXCLUDED}
    try:
        sock, features = ctx.bind_udp(int(req.get("udp_port", 33001)))
    except Refused as exc:
        return chan.refuse(exc.code, str(exc))
    with sock:
        chan.send({"type": "plan", "cipher": push.cipher, "udp_port": sock.getsockname()[1], "files": push.plans,
                   "receive_buffer": features.rcvbuf, **push.effective})  # fmt: skip
        start = chan.recv("start")
        return _receive(chan, req, push, start, sock, features)


@dataclass(frozen=True)
class _Push:
    """A push request read and planned: the files, their targets and plans, the transfer's terms."""

    opts: ReceiveOptions
    files: list[IncomingFile]
    targets: list[str]
    plans: list[dict[str, Any]]
    cipher: str
    effective: dict[str, Any]  # rate and datagram size as the server allows them


def _plan_push(req: dict[str, Any], ctx: AgentContext) -> _Push:
    """Read the request inside the user's docroot and plan it; raises what the caller refuses."""
    receive = dict(req["receive"])
    if not receive.get("discard"):
        receive["destination"] = ctx.resolve(str(receive["destination"]))
        ctx.authorize("push", [str(req["receive"]["destination"])])
    if not receive.get("partial_suffix"):
        receive["partial_suffix"] = ctx.policy.partial_file_suffix or ".partial"
    opts = ReceiveOptions.from_json(receive)
    files = [IncomingFile.from_json(f) for f in req["files"]]
    dirs = [str(d) for d in req.get("dirs", [])]
    cipher = negotiate(req["cipher"], ctx.policy.cipher)
    effective = effective_transfer(ctx, req)
    targets, plans = plan_receive(opts, files, dirs, confine=ctx.confined)
    return _Push(opts, files, targets, plans, cipher, effective)


def _receive(chan: Channel, req: dict[str, Any], push: _Push, start: dict[str, Any],
             sock: socket.socket, features: SocketFeatures) -> int:  # fmt: skip
    """Receive the files the client sends (all planned but those `start` skips), report each."""
    files, plans = push.files, push.plans
    skip = {int(i) for i in start.get("skip", [])}
    restart = {int(i) for i in start.get("restart", [])}
    sending = [i for i, p in enumerate(plans) if p["action"] in ("send", "compare") and i not in skip]
    chosen = set(sending)  # a set: 100,000 files must not cost 10^10 list scans
    results = _Results(chan, bool(req.get("batch_results")))
    for i, p in enumerate(plans):
        if i not in chosen:
            results.add({"index": i, "status": "skipped", "reason": p.get("reason", "same as source")})
    haves = [[] if i in restart else plans[i].get("have", []) for i in sending]
    sizes = [files[i].size for i in sending]
    config = session_config_from({**req, **push.effective, "receive_buffer": features.rcvbuf}, push.cipher)
    have = RangeSet()
    base = 0
    for size, ranges in zip(sizes, haves):
        for s, e in ranges:
            have.add(base + s, base + e)
        base += size
    session = ReceiverSession(config, sizes, time.monotonic(), have=have)

    def done(k: int, result: dict[str, Any]) -> None:
        results.add({"index": sending[k], **result})

    entries = [Entry(push.targets[i], files[i].size, files[i].mtime, files[i].atime, bool(h), files[i].part)
               for i, h in zip(sending, haves)]  # fmt: skip
    sink = FileSink(push.opts, entries, done)
    stats = receive_files(sock, session, sink, progress=lambda _stats: results.flush(_BATCH_AGE))
    results.flush()  # what was committed is reported before the end, even a failed end
    if isinstance(stats, str):
        return chan.refuse("transfer", stats)
    chan.send({"type": "done", "stats": stats_json(stats)})
    return 0


class _Results:
    """Per-file results to the client: one `file` message each, or (when the client asked for
    `batch_results`) `files` messages carrying many, so 100,000 small files do not cost 100,000
    control frames at both ends."""

    def __init__(self, chan: Channel, batch: bool) -> None:
        self.chan, self.batch = chan, batch
        self._pending: list[dict[str, Any]] = []
        self._since = 0.0

    def add(self, result: dict[str, Any]) -> None:
        if not self.batch:
            self.chan.send({"type": "file", **result})
            return
        if not self._pending:
            self._since = time.monotonic()
        self._pending.append(result)
        if len(self._pending) >= _BATCH_FILES:
            self.flush()
        else:
            self.flush(_BATCH_AGE)

    def flush(self, older_than: float = 0.0) -> None:
        """Send the pending results (only if the oldest waited `older_than` seconds)."""
        if self._pending and time.monotonic() - self._since >= older_than:
            self.chan.send({"type": "files", "results": self._pending})
            self._pending = []


def receive_files(sock: Any, session: ReceiverSession, sink: FileSink, peer: Any = None,
                  progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, object] | str:  # fmt: skip
    """Run the receiving session into `sink`, checkpointing resume state every 2 s; returns the
    statistics, or the reason the transfer failed (partial state kept or removed per -k)."""

    def file_ranges(k: int) -> list[list[int]]:
        base, size = session.layout.bases[k], session.layout.sizes[k]
        return [[s - base, e - base] for s, e in session.received.intersection(base, base + size)]

    last = [time.monotonic()]

    def tick(stats: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= _CHECKPOINT_EVERY:
            last[0] = now
            sink.checkpoint(file_ranges)
        if progress is not None:
            progress(stats)

    try:
        stats = run_receiver(sock, session, sink, progress=tick, peer=peer)
    except TransferAborted as exc:
        sink.abort(file_ranges)
        return str(exc)
    stats["max_rss_bytes"] = peak_rss()
    return stats


def peak_rss() -> int:
    """This process's peak resident memory in bytes. Linux's ru_maxrss survives execve (it starts
    at the RSS of the parent that forked us: a large client would make every agent look large);
    /proc's VmHWM belongs to this program's own address space."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
