"""Upload (and local copy): the client scans and sends, the far end plans, receives and commits."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from common.checksums import ranges_digest, sparse_digest
from common.control.messages import session_config_from
from common.transport.config import SessionConfig
from common.transport.ranges import RangeSet
from common.transport.sender import SenderSession
from common.transport.sockopts import SocketFeatures, open_udp_socket
from common.transport.udp import TransferAborted, run_sender
from workers.send import FileSource, SendItem, SourceChanged

from .common import CopyError, CopyResult, expect, transfer_fields
from .endpoint import Endpoint, EndpointError
from .options import CopyOptions
from .sources import SourceFile, SourceTree, is_faux

__all__ = ["file_entry", "local_digest", "upload"]

log = logging.getLogger("surge.cp")


def _push_request(opts: CopyOptions, tree: SourceTree, destination: str, host: str) -> dict[str, Any]:
    return {
        "type": "push",
        **transfer_fields(opts, host),
        "receive": {
            "destination": destination,
            "single_source": tree.single_source,
            "dest_must_be_dir": opts.destination_must_be_directory or destination.endswith("/"),
            "create_dir": opts.create_dir,
            "overwrite": opts.overwrite,
            "resume": opts.resume,
            "partial_suffix": opts.partial_file_suffix,
            "preserve_mtime": opts.preserve_mtime,
            "preserve_atime": opts.preserve_atime,
            "checksum": opts.file_checksum,
            "save_before_overwrite": opts.save_before_overwrite,
            "discard": is_faux(destination),
        },
        "files": [file_entry(f) for f in tree.files],
        "dirs": tree.dirs,
        "batch_results": True,  # per-file results may come many to a `files` message
    }


def file_entry(f: SourceFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"rel": f.rel, "size": f.size, "mtime": f.mtime, "atime": f.atime}
    if f.part is not None:
        entry["part"] = {"index": f.part[0], "count": f.part[1], "start": f.start, "size": f.part[2]}
    if f.uid >= 0:  # --preserve-file-owner-uid/gid of a download: the far end's owners
        entry["uid"], entry["gid"] = f.uid, f.gid
    return entry


def local_digest(f: SourceFile, kind: str, ranges: list[tuple[int, int]] | None) -> str | None:
    """Digest of a local file over `ranges` (all of it when None): sparse or full SHA-256."""
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
            mine = local_digest(tree.files[i], check["kind"], have)
        except OSError:
            mine = None
        if plan["action"] == "compare":
            if mine == check["digest"]:
                skip.append(i)
        elif mine != check["digest"]:
            restart.append(i)  # the partial file is not a prefix of this source: start over
    return skip, restart


def upload(opts: CopyOptions, tree: SourceTree, destination: str, endpoint: Endpoint, result: CopyResult,
           progress: Callable[[dict[str, Any]], None] | None,
           on_file: Callable[[SourceFile, dict[str, Any]], None] | None) -> None:  # fmt: skip
    request, plan = _ask_plan(opts, tree, destination, endpoint)
    plans = plan["files"]
    skip, restart = _decide(tree, plans)
    endpoint.send({"type": "start", "skip": skip, "restart": restart})
    skipped, restarted = set(skip), set(restart)
    sending = [i for i, p in enumerate(plans) if p["action"] in ("send", "compare") and i not in skipped]
    have = _have_ranges(tree, plans, sending, restarted)
    config = session_config_from({**request, "rate": plan.get("rate", request["rate"]),
                                  "datagram_size": plan.get("datagram_size", request["datagram_size"]),
                                  "receive_buffer": plan.get("receive_buffer")},
                                 plan["cipher"])  # fmt: skip
    log.info("upload: cipher %s, datagram %d bytes, target %.0f bit/s, policy %s, %d file(s) to send",
             config.cipher, config.datagram_size, config.rate.target * 8, config.rate.policy, len(sending))
    items = [_send_item(tree.files[i]) for i in sending]
    replies = _Replies(endpoint, tree, result, progress, on_file)
    _transfer(opts, endpoint, plan, config, items, have, replies, result)


def _ask_plan(opts: CopyOptions, tree: SourceTree, destination: str,
              endpoint: Endpoint) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Send the push request; (the request, the far end's plan with one entry per file)."""
    try:
        request = _push_request(opts, tree, destination, endpoint.udp_host)
        endpoint.send(request)
        plan = expect(endpoint, "plan")
    except (EndpointError, TimeoutError) as exc:
        raise CopyError(str(exc)) from None
    if len(plan["files"]) != len(tree.files):
        raise CopyError("protocol error: the plan does not match the file list")
    return request, plan


def _have_ranges(tree: SourceTree, plans: list[dict[str, Any]], sending: list[int],
                 restarted: set[int]) -> RangeSet:  # fmt: skip
    """What the far end already holds of the files to send, as ranges of the stream of them all."""
    have = RangeSet()
    base = 0
    for i in sending:
        for s, e in ([] if i in restarted else plans[i].get("have", [])):
            have.add(base + int(s), base + int(e))
        base += tree.files[i].size
    return have


def _transfer(opts: CopyOptions, endpoint: Endpoint, plan: dict[str, Any], config: SessionConfig,
              items: list[SendItem], have: RangeSet, replies: _Replies, result: CopyResult) -> None:  # fmt: skip
    """Send the files over UDP, then wait for the far end's `done`."""
    sock, features = open_udp_socket("::" if ":" in endpoint.udp_host else "0.0.0.0", 0)
    source = FileSource(items)
    try:
        with sock:
            sock.connect((endpoint.udp_host, int(plan["udp_port"])))
            session = SenderSession(config, [it.size for it in items], time.monotonic(), have=have)
            result.stats["sender"] = _run_sender(sock, features, session, source, replies)
        replies.settle(60.0)
    finally:
        source.close(restore_atime=opts.preserve_source_atime)


def _run_sender(sock: socket.socket, features: SocketFeatures, session: SenderSession, source: FileSource,
                replies: _Replies) -> dict[str, object]:  # fmt: skip
    """The sender's statistics; a failed transfer raises CopyError with the reason."""
    try:
        return run_sender(sock, features, session, source, progress=replies.tick)
    except TransferAborted as exc:
        replies.settle(1.0)  # the far end may have said why
        raise CopyError(f"transfer failed: {exc}") from None
    except SourceChanged as exc:
        session.cancel(time.monotonic(), str(exc)[:200])
        for d in session.poll_datagrams(time.monotonic()):
            sock.send(d)
        raise CopyError(str(exc)) from None


class _Replies:
    """The far end's messages while and after the files are sent: per-file results (alone or in
    `files` batches), then `done` or `error`."""

    def __init__(self, endpoint: Endpoint, tree: SourceTree, result: CopyResult,
                 progress: Callable[[dict[str, Any]], None] | None,
                 on_file: Callable[[SourceFile, dict[str, Any]], None] | None) -> None:  # fmt: skip
        self.endpoint, self.tree, self.result = endpoint, tree, result
        self.progress, self.on_file = progress, on_file
        self.finished = False  # the far end's "done" arrived (possibly during a progress tick)
        self.verbose = log.isEnabledFor(logging.INFO)

    def tick(self, stats: dict[str, Any]) -> None:
        """The sender's progress callback: take what the far end said so far, then report."""
        self.settle(0.0)
        if self.progress is not None:
            self.progress(stats)

    def settle(self, timeout: float) -> None:
        """Take messages until `done`, or until none came for `timeout` seconds."""
        while not self.finished:
            try:
                msg = self.endpoint.recv(timeout)
            except TimeoutError:
                return
            except EndpointError as exc:
                raise CopyError(str(exc)) from None
            if msg["type"] == "file":
                self._file_result(msg)
            elif msg["type"] == "files":
                for one in msg["results"]:
                    self._file_result({"type": "file", **one})
            elif msg["type"] == "done":
                self.result.stats.setdefault("receiver", msg.get("stats", {}))
                self.finished = True
            elif msg["type"] == "error":
                raise CopyError(str(msg.get("message")))

    def _file_result(self, msg: dict[str, Any]) -> None:
        idx = int(msg["index"])
        self.result.status[idx] = msg
        if self.verbose:
            log.info("%s %s %s", msg.get("status"), self.tree.files[idx].rel,
                     msg.get("checksum") or msg.get("reason") or msg.get("error") or "")  # fmt: skip
        if self.on_file is not None:
            self.on_file(self.tree.files[idx], msg)
