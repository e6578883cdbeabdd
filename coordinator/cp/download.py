"""Download: the far end scans and offers its files, the client plans, confirms digests,
receives over UDP and commits locally."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.control.messages import session_config_from
from common.paths import PathError, check_relative
from common.transport.config import SessionConfig
from common.transport.ranges import RangeSet
from common.transport.receiver import ReceiverSession
from common.transport.sockopts import open_udp_socket
from workers.push import receive_files
from workers.receive import IncomingFile, PlanError, ReceiveOptions, plan_receive
from workers.sink import Entry, FileSink

from .common import CopyError, CopyResult, expect, transfer_fields
from .dest import LocalDest, Where
from .destactions import delete_extra, make_links, set_dir_times, set_owners
from .endpoint import Endpoint, EndpointError
from .options import CopyOptions
from .sources import SourceFile, is_faux, source_filters

__all__ = ["download"]

log = logging.getLogger("surge.cp")


def _pull_request(opts: CopyOptions, sources: tuple[str, ...], host: str,
                  dests: tuple[str | None, ...] | None) -> dict[str, Any]:  # fmt: skip
    return {
        "type": "pull",
        **transfer_fields(opts, host),
        "sources": list(sources),
        **({"dests": list(dests)} if dests is not None else {}),
        "multi_session": [*opts.multi_session, opts.multi_session_threshold] if opts.multi_session else None,
        "scan": {
            "filters": [list(f) for f in opts.filters], "src_base": opts.src_base,
            "exclude_newer_than": opts.exclude_newer_than, "exclude_older_than": opts.exclude_older_than,
            "skip_special_files": opts.skip_special_files,
            "byte_range": list(opts.byte_range) if opts.byte_range else None,
            "symbolic_links": opts.symbolic_links,
            "owners": opts.preserve_uid or opts.preserve_gid,
        },
    }  # fmt: skip


def _receive_options(opts: CopyOptions, destination: str, single_source: bool) -> ReceiveOptions:
    return ReceiveOptions(
        destination=destination, single_source=single_source,
        dest_must_be_dir=opts.destination_must_be_directory or destination.endswith("/"),
        create_dir=opts.create_dir, overwrite=opts.overwrite, resume=opts.resume,
        partial_suffix=opts.partial_file_suffix or ".partial", preserve_mtime=opts.preserve_mtime,
        preserve_atime=opts.preserve_atime, checksum=opts.file_checksum,
        save_before_overwrite=opts.save_before_overwrite, discard=is_faux(destination),
    )  # fmt: skip


def _check_digests(endpoint: Endpoint, plans: list[dict[str, Any]]) -> tuple[set[int], set[int]]:
    """Ask the far end for its digests where resume or overwrite needs them: (skip, restart)."""
    asks = [{"index": i, "kind": p["check"]["kind"], "ranges": p.get("have", [])}
            for i, p in enumerate(plans) if p.get("check")]  # fmt: skip
    if not asks:
        return set(), set()
    endpoint.send({"type": "digests", "requests": asks})
    theirs = expect(endpoint, "digests")["digests"]
    skip, restart = set(), set()
    for ask, digest in zip(asks, theirs):
        i = ask["index"]
        same = digest is not None and digest == plans[i]["check"]["digest"]
        if plans[i]["action"] == "compare" and same:
            skip.add(i)
        elif plans[i]["action"] == "send" and not same:
            restart.add(i)
    return skip, restart


def download(opts: CopyOptions, sources: tuple[str, ...], destination: str, endpoint: Endpoint,
             result: CopyResult, progress: Callable[[dict[str, Any]], None] | None,
             on_file: Callable[[SourceFile, dict[str, Any]], None] | None,
             dests: tuple[str | None, ...] | None = None) -> None:  # fmt: skip
    """Download `sources` (with `dests`, a file list's: each one's destination or None)."""
    try:
        got = _take_offer(opts, sources, destination, endpoint, result, dests)
    except (PlanError, PathError) as exc:
        raise CopyError(str(exc)) from None
    except (EndpointError, TimeoutError) as exc:
        raise CopyError(str(exc)) from None
    sending = [i for i, p in enumerate(got.plans) if p["action"] in ("send", "compare") and i not in got.skip]
    haves = {i: ([] if i in got.restart else got.plans[i].get("have", [])) for i in sending}
    for i, p in enumerate(got.plans):
        if i not in haves:
            result.status[i] = {"type": "file", "index": i, "status": "skipped", "reason": p.get("reason", "same as source")}
    # The socket comes first: the sender learns from `start` what its buffer holds.
    sock, features = open_udp_socket("::" if ":" in endpoint.udp_host else "0.0.0.0", 0, gro=True)
    try:
        endpoint.send({"type": "start", "send": sending, "have": {str(i): h for i, h in haves.items() if h},
                       "receive_buffer": features.rcvbuf})  # fmt: skip
    except BaseException:
        sock.close()
        raise
    config = session_config_from({**got.request, "rate": got.offer.get("rate", got.request["rate"]),
                                  "datagram_size": got.offer.get("datagram_size", got.request["datagram_size"]),
                                  "receive_buffer": features.rcvbuf},
                                 got.offer["cipher"])  # fmt: skip
    log.info("download: cipher %s, datagram %d bytes, %d file(s) to receive", config.cipher, config.datagram_size,
             len(sending))  # fmt: skip
    _receive(got, sending, haves, sock, config, endpoint, result, progress, on_file)
    _finish_locally(opts, destination, got, result)


@dataclass(frozen=True)
class _Offered:
    """The far end's offer and this side's plan to receive it."""

    request: dict[str, Any]
    offer: dict[str, Any]
    files: list[IncomingFile]
    ropts: ReceiveOptions
    links: list[tuple[str, str]]
    where: Where
    targets: list[str]
    plans: list[dict[str, Any]]
    skip: set[int]  # the far end's digest matched: nothing to send
    restart: set[int]  # the partial file is not a prefix of the source: start over


def _take_offer(opts: CopyOptions, sources: tuple[str, ...], destination: str, endpoint: Endpoint,
                result: CopyResult, dests: tuple[str | None, ...] | None) -> _Offered:  # fmt: skip
    """Send the pull request, record the offered files and plan their reception (deleting extra
    destination files first with --delete-before-transfer)."""
    request = _pull_request(opts, sources, endpoint.udp_host, dests)
    endpoint.send(request)
    offer = expect(endpoint, "offer")
    files = [IncomingFile.from_json(f) for f in offer["files"]]
    result.files[:] = [SourceFile("", f.rel, f.size, f.mtime, f.atime) for f in files]
    result.errors.extend((str(p), str(m)) for p, m in offer.get("errors", []))
    ropts = _receive_options(opts, destination, bool(offer.get("single_source")))
    links = [(check_relative(str(rel)), str(target)) for rel, target in offer.get("links", [])]
    where = Where(destination, os.path.isdir(destination), ropts.single_source, ropts.dest_must_be_dir)
    if opts.delete_before_transfer:
        result.errors.extend(_delete_extra(opts, offer, where, links))
    targets, plans = plan_receive(ropts, files, [str(d) for d in offer.get("dirs", [])])
    skip, restart = _check_digests(endpoint, plans)
    return _Offered(request, offer, files, ropts, links, where, targets, plans, skip, restart)


def _receive(got: _Offered, sending: list[int], haves: dict[int, list[Any]], sock: socket.socket,
             config: SessionConfig, endpoint: Endpoint, result: CopyResult,
             progress: Callable[[dict[str, Any]], None] | None,
             on_file: Callable[[SourceFile, dict[str, Any]], None] | None) -> None:  # fmt: skip
    """Receive the files over UDP into their targets, then take the far end's `done`."""
    files = got.files
    sizes = [files[i].size for i in sending]
    have = RangeSet()
    base = 0
    for i, size in zip(sending, sizes):
        for s, e in haves[i]:
            have.add(base + int(s), base + int(e))
        base += size

    def done(k: int, event: dict[str, Any]) -> None:
        i = sending[k]
        result.status[i] = {"type": "file", "index": i, **event}
        if on_file is not None:
            on_file(result.files[i], result.status[i])

    entries = [Entry(got.targets[i], files[i].size, files[i].mtime, files[i].atime, bool(haves[i]), files[i].part)
               for i in sending]  # fmt: skip
    sink = FileSink(got.ropts, entries, done)
    with sock:
        session = ReceiverSession(config, sizes, time.monotonic(), have=have)
        stats = receive_files(sock, session, sink, peer=(endpoint.udp_host, int(got.offer["udp_port"])),
                              progress=progress)  # fmt: skip
    if isinstance(stats, str):
        raise CopyError(f"transfer failed: {stats}")
    result.stats["receiver"] = stats
    try:
        result.stats["sender"] = expect(endpoint, "done", 60.0).get("stats", {})
    except (EndpointError, TimeoutError) as exc:
        raise CopyError(str(exc)) from None


def _finish_locally(opts: CopyOptions, destination: str, got: _Offered, result: CopyResult) -> None:
    """What follows the files at the destination: links, directory times, owners."""
    where, offer, targets = got.where, got.offer, got.targets
    result.errors.extend(make_links(LocalDest(), where, got.links, opts.symbolic_links == "copy+force"))
    if (opts.preserve_mtime or opts.preserve_atime) and not is_faux(destination):
        times = {check_relative(str(rel)): (float(t[0]), float(t[1])) for rel, t in offer.get("dir_times", {}).items()}
        result.errors.extend(set_dir_times(LocalDest(), where, times, opts.preserve_mtime, opts.preserve_atime))
    if opts.preserve_uid or opts.preserve_gid:
        owners = [(targets[i], int(offer["files"][i].get("uid", -1)), int(offer["files"][i].get("gid", -1)))
                  for i, s in result.status.items() if s.get("status") == "done"]  # fmt: skip
        result.errors.extend(set_owners(LocalDest(), [o for o in owners if o[1] >= 0], opts.preserve_uid,
                                        opts.preserve_gid))  # fmt: skip


def _delete_extra(opts: CopyOptions, offer: dict[str, Any], where: Where,
                  links: list[tuple[str, str]]) -> list[tuple[str, str]]:  # fmt: skip
    """--delete-before-transfer of a download: the offer is the source tree."""
    dirs = [check_relative(str(d)) for d in offer.get("dirs", [])]
    if not dirs or len(opts.sources) != 1:
        raise CopyError("--delete-before-transfer: the source must be a directory")
    keep = {str(f["rel"]) for f in offer["files"]} | set(dirs) | {rel for rel, _ in links}
    filters = source_filters(opts)
    return delete_extra(LocalDest(), where, dirs[0], keep,
                        lambda rel, is_dir: bool(filters) and filters.excluded(rel, is_dir))  # fmt: skip
