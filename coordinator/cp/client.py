"""`surge cp`, the client side: scan the sources, ask the far end for a plan, confirm resume and
overwrite digests, send over the UDP transport, collect per-file results, then run the
after-transfer actions and report. Exit status 0 only when every file arrived intact."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.checksums import ranges_digest, sparse_digest
from common.control.messages import PROTOCOL_VERSION, session_config_from
from common.transport.config import MAX_DATAGRAM, MIN_DATAGRAM
from common.transport.ranges import RangeSet
from common.transport.sender import SenderSession
from common.transport.sockopts import is_loopback, open_udp_socket, path_mtu
from common.transport.udp import TransferAborted, run_sender
from workers.send import FileSource, SendItem, SourceChanged

from .endpoint import Endpoint, EndpointError, LocalAgent
from .options import CopyOptions
from .postactions import after_transfer
from .sources import SourceFile, SourceTree, is_faux, parse_faux, scan_sources

__all__ = ["CopyError", "CopyResult", "run_copy"]

log = logging.getLogger("surge.cp")
_RATE_REFERENCE_BPS = 1e9  # what "-l 50%" is a percentage of when no server cap is known


class _Done(Exception):
    """The far end reported the end of the session."""


class CopyError(Exception):
    """The copy cannot start or cannot go on; the message names the cause."""


@dataclass
class CopyResult:
    files: list[SourceFile]
    status: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> file event
    stats: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors and all(s.get("status") in ("done", "skipped") for s in self.status.values()) \
            and len(self.status) == len(self.files)

    @property
    def bytes_transferred(self) -> int:
        return sum(self.files[i].size for i, s in self.status.items() if s.get("status") == "done")


def _datagram_size(opts: CopyOptions, host: str) -> int:
    """UDP payload size: -Z is the IP datagram size (MTU); default the path MTU."""
    v6 = opts.ipv6 or ":" in host
    header = 48 if v6 else 28
    if opts.datagram_size is not None:
        return min(opts.datagram_size, MAX_DATAGRAM) - header
    if is_loopback(host):
        return 65507 if not v6 else 65487  # loopback's MTU is 64 KiB: few, large datagrams
    probe = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((host, 9))
        mtu = path_mtu(probe) or 1500
    except OSError:
        mtu = 1500
    finally:
        probe.close()
    return max(min(mtu, MAX_DATAGRAM), MIN_DATAGRAM) - header


def _push_request(opts: CopyOptions, tree: SourceTree, dgram: int) -> dict[str, Any]:
    target = opts.target_rate.resolve(_RATE_REFERENCE_BPS)
    minimum = min(opts.min_rate.resolve(_RATE_REFERENCE_BPS), target)
    dest = opts.destination
    return {
        "type": "push",
        "session_id": secrets.randbits(63),
        "secret": secrets.token_hex(32),
        "cipher": opts.cipher,
        "rate": {"target_bps": target, "min_bps": minimum, "policy": opts.policy or "fair"},
        "datagram_size": dgram,
        "rexmsg_size": opts.rexmsg_size,
        "udp_port": opts.udp_port,
        "receive": {
            "destination": dest,
            "single_source": tree.single_source,
            "dest_must_be_dir": opts.destination_must_be_directory or dest.endswith("/"),
            "create_dir": opts.create_dir,
            "overwrite": opts.overwrite,
            "resume": opts.resume,
            "partial_suffix": opts.partial_file_suffix or ".partial",
            "preserve_mtime": opts.preserve_mtime,
            "preserve_atime": opts.preserve_atime,
            "checksum": opts.file_checksum,
            "save_before_overwrite": opts.save_before_overwrite,
            "discard": is_faux(dest),
        },
        "files": [{"rel": f.rel, "size": f.size, "mtime": f.mtime, "atime": f.atime} for f in tree.files],
        "dirs": tree.dirs,
    }


def _local_digest(f: SourceFile, kind: str, ranges: list[tuple[int, int]] | None) -> str | None:
    if f.faux is not None:
        return None  # generated data never matches a real file
    with open(f.path, "rb") as fh:
        if kind == "sparse":
            return sparse_digest(fh.fileno(), f.size, ranges)
        return ranges_digest(fh.fileno(), ranges if ranges is not None else [(0, f.size)])


def _send_item(f: SourceFile) -> SendItem:
    if f.faux is not None:
        return SendItem("", f.size, f.faux.fill)
    return SendItem(f.path, f.size, None, f.start, int(f.atime * 1e9))


def _decide(tree: SourceTree, plans: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """(indexes to skip, indexes to restart from scratch) after comparing digests."""
    skip: list[int] = []
    restart: list[int] = []
    for i, plan in enumerate(plans):
        check = plan.get("check")
        if plan["action"] == "skip" or not check:
            continue
        have = [(int(s), int(e)) for s, e in plan.get("have", [])] or None
        try:
            mine = _local_digest(tree.files[i], check["kind"], have)
        except OSError:
            mine = None
        if plan["action"] == "compare":
            if mine == check["digest"]:
                skip.append(i)
        elif mine != check["digest"]:
            restart.append(i)  # the partial file is not a prefix of this source: start over
    return skip, restart


def run_copy(opts: CopyOptions, *, endpoint_factory: Callable[[CopyOptions], Endpoint] | None = None,
             progress: Callable[[dict[str, Any]], None] | None = None,
             on_file: Callable[[SourceFile, dict[str, Any]], None] | None = None,
             on_job: Callable[[int, int], None] | None = None) -> CopyResult:  # fmt: skip
    """Run one copy. Raises CopyError for a problem that stops it before or during the data
    phase; per-file problems are in the result."""
    started = time.monotonic()
    tree = scan_sources(opts)
    result = CopyResult(tree.files, skipped=list(tree.skipped), errors=list(tree.errors))
    if on_job is not None:
        on_job(len(tree.files), tree.total_bytes)
    if is_faux(opts.destination):
        parse_faux(opts.destination)  # validate
    log.info("job: %d file(s), %d bytes, %d error(s) while scanning", len(tree.files), tree.total_bytes, len(tree.errors))
    endpoint = (endpoint_factory or (lambda o: LocalAgent(debug=o.debug > 0, ipv6=o.ipv6)))(opts)
    try:
        _session(opts, tree, endpoint, result, progress, on_file)
    finally:
        endpoint.close()
    if result.ok or not result.errors:
        after_transfer(opts, tree, result.status)
    result.elapsed = time.monotonic() - started
    return result


def _expect(endpoint: Endpoint, kind: str, timeout: float = 120.0) -> dict[str, Any]:
    msg = endpoint.recv(timeout)
    if msg["type"] == "error":
        raise CopyError(str(msg.get("message", "the far end refused the transfer")))
    if msg["type"] != kind:
        raise CopyError(f"protocol error: expected {kind!r} from the far end, got {msg['type']!r}")
    return msg


def _session(opts: CopyOptions, tree: SourceTree, endpoint: Endpoint, result: CopyResult,
             progress: Callable[[dict[str, Any]], None] | None,
             on_file: Callable[[SourceFile, dict[str, Any]], None] | None) -> None:  # fmt: skip
    try:
        endpoint.send({"type": "hello", "version": PROTOCOL_VERSION})
        _expect(endpoint, "hello", 30.0)
        dgram = _datagram_size(opts, endpoint.udp_host)
        request = _push_request(opts, tree, dgram)
        endpoint.send(request)
        plan = _expect(endpoint, "plan")
    except (EndpointError, TimeoutError) as exc:
        raise CopyError(str(exc)) from None
    plans = plan["files"]
    if len(plans) != len(tree.files):
        raise CopyError("protocol error: the plan does not match the file list")
    skip, restart = _decide(tree, plans)
    endpoint.send({"type": "start", "skip": skip, "restart": restart})
    skipped = set(skip)
    sending = [i for i, p in enumerate(plans) if p["action"] in ("send", "compare") and i not in skipped]
    restarted = set(restart)
    haves = [[] if i in restarted else plans[i].get("have", []) for i in sending]
    have = RangeSet()
    base = 0
    for i, ranges in zip(sending, haves):
        for s, e in ranges:
            have.add(base + int(s), base + int(e))
        base += tree.files[i].size
    config = session_config_from(request, plan["cipher"])
    log.info("session: cipher %s, datagram %d bytes, target %.0f bit/s, policy %s, %d file(s) to send",
             config.cipher, config.datagram_size, config.rate.target * 8, config.rate.policy, len(sending))
    items = [_send_item(tree.files[i]) for i in sending]
    sock, features = open_udp_socket("::" if opts.ipv6 else "0.0.0.0", 0)
    source = FileSource(items)

    def drain(timeout: float) -> None:
        while True:
            try:
                msg = endpoint.recv(timeout)
            except TimeoutError:
                return
            except EndpointError as exc:
                raise CopyError(str(exc)) from None
            if msg["type"] == "file":
                idx = int(msg["index"])
                result.status[idx] = msg
                log.info("%s %s %s", msg.get("status"), tree.files[idx].rel, msg.get("checksum") or msg.get("reason") or msg.get("error") or "")
                if on_file is not None:
                    on_file(tree.files[idx], msg)
            elif msg["type"] == "done":
                result.stats.setdefault("receiver", msg.get("stats", {}))
                raise _Done
            elif msg["type"] == "error":
                raise CopyError(str(msg.get("message")))

    def tick(stats: dict[str, Any]) -> None:
        try:
            drain(0.0)
        except _Done:
            pass
        if progress is not None:
            progress(stats)

    try:
        with sock:
            sock.connect((endpoint.udp_host, int(plan["udp_port"])))
            session = SenderSession(config, [it.size for it in items], time.monotonic(), have=have)
            try:
                result.stats["sender"] = run_sender(sock, features, session, source, progress=tick)
            except TransferAborted as exc:
                try:
                    drain(1.0)  # the far end may have said why
                except _Done:
                    pass
                raise CopyError(f"transfer failed: {exc}") from None
            except SourceChanged as exc:
                session.cancel(time.monotonic(), str(exc)[:200])
                for d in session.poll_datagrams(time.monotonic()):
                    sock.send(d)
                raise CopyError(str(exc)) from None
        try:
            drain(60.0)
        except _Done:
            endpoint.send({"type": "bye"})
    finally:
        source.close(restore_atime=opts.preserve_source_atime)
