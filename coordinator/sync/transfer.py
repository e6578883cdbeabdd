"""Moving the files a sync plan sends, over the same UDP transport and far end as `surge cp`:
an upload for local -> remote, a download for remote -> local. Each committed file is reported
back with the attributes it has at its destination, so the snapshot records both sides.

The engine reaches the transfer through a :class:`Dispatcher` (DESIGN decision 6): the embedded
default, :class:`InProcessDispatcher`, runs one session here over the engine's own far-end
connection; the cluster's (coordinator/cluster/dispatch.py) hands the files to Celery workers.
Both report each committed file through the same `on_file` callback, so status lines and the
snapshot are the same at both scales."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.snapshot import Entry

from ..cp.common import CopyError, CopyResult, hello
from ..cp.endpoint import Endpoint, EndpointError
from ..cp.options import CopyOptions
from ..cp.sources import SourceFile, SourceTree
from .threads import plan_lanes, transfer_in_threads

__all__ = [
    "Dispatcher",
    "InProcessDispatcher",
    "TransferOutcome",
    "TransferRequest",
    "connect_far_end",
    "copy_options",
    "send_files",
    "source_atime",
    "upload_sources",
]

FileDone = Callable[[str, dict[str, Any]], None]
Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TransferRequest:
    """The files of one direction of a sync plan and what a dispatcher needs to move them."""

    opts: Any  # SyncOptions
    endpoint: Endpoint | None  # the engine's far-end connection
    entries: list[Entry]  # files, paths relative to the roots
    upload: bool  # local -> remote (else remote -> local)
    destination: Any  # the Side the files land on (stat it to verify a commit)
    flush: Callable[[], None] | None = None  # make the records of the files reported so far durable
    factory: Callable[[Any], Endpoint] | None = None  # how the engine made its far end (None: the default)
    far_cores: int | None = None  # the far end's CPU cores, as its hello named them


@dataclass
class TransferOutcome:
    wire_bytes: int = 0  # file data sent, retransmissions included
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message)


class Dispatcher(Protocol):
    def transfer(
        self, request: TransferRequest, on_file: FileDone, progress: Progress | None
    ) -> TransferOutcome:
        """Move the files; `on_file(path, event)` once per file as it is committed ("done", with
        the destination's "attrs"), skipped or failed. Raises CopyError when nothing can move."""
        ...


class InProcessDispatcher:
    """The embedded default: one session in this process (an upload or a download); with
    --transfer-threads, a session per lane of its size classes, several at once in threads, each
    over its own far-end connection (threads.py)."""

    def transfer(
        self, request: TransferRequest, on_file: FileDone, progress: Progress | None
    ) -> TransferOutcome:
        o = request.opts
        assert request.endpoint is not None
        groups = getattr(o, "transfer_threads", ())
        lanes = plan_lanes(request.entries, groups) if groups else []
        if len(lanes) > 1:
            return self._in_threads(request, lanes, on_file, progress)
        return TransferOutcome(*self._send(request, o, request.endpoint, request.entries, on_file, progress))

    @staticmethod
    def _send(request: TransferRequest, opts: Any, endpoint: Endpoint, entries: list[Entry], on_file: FileDone,
              progress: Progress | None) -> tuple[int, list[tuple[str, str]]]:  # fmt: skip
        result = send_files(opts, endpoint, entries, upload=request.upload, local_root=opts.local_dir,
                            remote_root=opts.remote_dir, on_file=on_file, progress=progress)  # fmt: skip
        return int(result.stats.get("sender", {}).get("bytes_sent", 0)), list(result.errors)

    def _in_threads(self, request: TransferRequest, lanes: list[list[Entry]], on_file: FileDone,
                    progress: Progress | None) -> TransferOutcome:  # fmt: skip
        assert request.endpoint is not None

        def send(opts: Any, endpoint: Endpoint, lane: list[Entry], done: FileDone,
                 tick: Progress | None) -> tuple[int, list[tuple[str, str]]]:  # fmt: skip
            return self._send(request, opts, endpoint, lane, done, tick)

        def connect(opts: Any) -> Endpoint:  # looked up now: tests count the connections
            return connect_far_end(opts, request.factory)

        wire, errors = transfer_in_threads(request.opts, request.endpoint, lanes, send=send, connect=connect,
                                           on_file=on_file, progress=progress, far_cores=request.far_cores)  # fmt: skip
        return TransferOutcome(wire, errors)


def copy_options(opts: Any, source: str, destination: str) -> CopyOptions:
    """The transfer settings of a sync session expressed as `surge cp` options."""
    return CopyOptions(
        sources=(source,), destination=destination, target_rate=opts.target_rate, min_rate=opts.min_rate,
        policy=opts.policy, cipher=opts.cipher, udp_port=opts.udp_port, datagram_size=opts.datagram_size,
        rexmsg_size=opts.rexmsg_size, overwrite="always", resume=1, preserve_mtime=opts.preserve_mtime,
        preserve_atime=opts.preserve_atime, token=opts.token, password=opts.password, keys=tuple(opts.keys),
        ssh_port=opts.ssh_port, check_sshfp=opts.check_sshfp, create_dir=True,
        cookie=opts.cookie, tags=opts.tags, remote_log_dir=opts.remote_log_dir,  # -R, logged there with both
    )  # fmt: skip


def connect_far_end(opts: Any, factory: Callable[[Any], Endpoint] | None = None,
                    on_hello: Callable[[dict[str, Any]], None] | None = None) -> Endpoint:  # fmt: skip
    """The greeted far end of a sync pair: `surge agent` over SSH for a remote host, a local
    agent otherwise (`factory` replaces both); `on_hello` gets its greeting. Raises CopyError
    naming the cause."""
    from ..cp.client import default_endpoint
    from ..cp.remote import Route

    copts = copy_options(opts, opts.local_dir, opts.remote_dir)
    try:
        if factory is not None:
            endpoint = factory(opts)
        else:
            where = Route("push", opts.host, opts.user, (opts.local_dir,), opts.remote_dir)
            endpoint = default_endpoint(copts, where)
    except EndpointError as exc:
        raise CopyError(str(exc)) from None
    try:
        greeting = hello(endpoint, copts)
    except CopyError:
        endpoint.close()
        raise
    if on_hello is not None:
        on_hello(greeting)
    return endpoint


def upload_sources(opts: Any, endpoint: Endpoint, files: list[SourceFile], *, local_root: str, remote_root: str,
                   on_file: Callable[[SourceFile, dict[str, Any]], None],
                   progress: Callable[[dict[str, Any]], None] | None = None, **overrides: Any) -> CopyResult:  # fmt: skip
    """One upload session of `files` (whole files or multi-session parts, `rel` relative to the
    roots) with the pair's transfer settings; `overrides` replace copy options (overwrite, resume)."""
    from ..cp.upload import upload as do_upload

    tree = SourceTree(single_source=False)
    tree.files.extend(files)
    copts = dataclasses.replace(copy_options(opts, local_root, remote_root), **overrides)
    result = CopyResult(tree.files)
    do_upload(copts, tree, remote_root.rstrip("/") + "/", endpoint, result, progress, on_file)
    return result


def source_atime(path: str, mtime: float, preserve: bool) -> float:
    """The access time an upload gives the far end for the file at `path`: with
    --preserve-access-time its own (read now, before the transfer reads the file), otherwise
    `mtime` (the far end leaves its atime alone then)."""
    if preserve:
        try:
            return os.stat(path).st_atime
        except OSError:  # gone or unreadable: the transfer reports it
            pass
    return mtime


def send_files(opts: Any, endpoint: Endpoint, entries: list[Entry], *, upload: bool, local_root: str,
               remote_root: str, on_file: FileDone,
               progress: Callable[[dict[str, Any]], None] | None = None) -> CopyResult:  # fmt: skip
    """Send `entries` (files, paths relative to the roots) local -> remote (`upload`) or
    remote -> local; `on_file(path, event)` for each file the destination committed."""
    from ..cp.download import download

    def event(f: SourceFile, msg: dict[str, Any]) -> None:
        on_file(f.rel, msg)

    if upload:
        root = local_root.rstrip("/")
        files = [SourceFile(f"{root}/{e.path}", e.path, e.size, e.mtime_ns / 1e9,
                            source_atime(f"{root}/{e.path}", e.mtime_ns / 1e9, opts.preserve_atime))
                 for e in entries]  # fmt: skip
        return upload_sources(opts, endpoint, files, local_root=local_root, remote_root=remote_root,
                              on_file=event, progress=progress)  # fmt: skip
    root = remote_root.rstrip("/") or "/"
    copts = dataclasses.replace(
        copy_options(opts, root, local_root),
        sources=tuple(f"{root}/{e.path}" for e in entries),
        src_base=root,
    )
    result = CopyResult([])
    download(copts, copts.sources, local_root.rstrip("/") + "/", endpoint, result, progress, event)
    return result


__all__ += ["CopyError"]
