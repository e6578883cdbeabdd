"""The agent's side of a download (`pull`): scan the sources inside the docroot, offer them,
answer digest requests for resume and overwrite checks, then send over UDP."""

from __future__ import annotations

import os
import time
from typing import Any

from common.checksums import ranges_digest, sparse_digest
from common.control.messages import session_config_from
from common.filters import FilterError
from common.paths import PathError
from common.transport.ciphers import CipherRefused, negotiate
from common.transport.ranges import RangeSet
from common.transport.sender import SenderSession
from common.transport.udp import TransferAborted, run_sender

from .context import AgentContext, Channel, Refused, stats_json
from .push import effective_transfer
from .send import FileSource, SendItem, SourceChanged

__all__ = ["handle_pull"]


def _scan(ctx: AgentContext, req: dict[str, Any]) -> Any:
    # Imported here: scanning is shared with the client, whose options type it reads.
    from coordinator.cp.options import CopyOptions
    from coordinator.cp.sources import scan_sources, select_share

    sources = tuple(ctx.resolve(str(s)) for s in req["sources"])
    opts = req.get("scan", {})
    filters: tuple[tuple[str, str], ...] = tuple((r.kind, r.pattern) for r in ctx.policy.filters)  # server's first
    filters += tuple((str(k), str(p)) for k, p in opts.get("filters", []))
    src_base = opts.get("src_base")
    byte_range = opts.get("byte_range")
    copts = CopyOptions(
        sources=sources, destination="faux://", filters=filters,
        src_base=ctx.resolve(src_base) if src_base else None,
        exclude_newer_than=opts.get("exclude_newer_than"), exclude_older_than=opts.get("exclude_older_than"),
        skip_special_files=bool(opts.get("skip_special_files")),
        byte_range=(byte_range[0], byte_range[1]) if byte_range else None,
        symbolic_links=str(opts.get("symbolic_links", "follow")),
        preserve_uid=bool(opts.get("owners")), preserve_gid=bool(opts.get("owners")),
    )  # fmt: skip
    dests = req.get("dests")  # a file list's destinations, one per source (None: the source's name)
    if dests is not None and (not isinstance(dests, list) or len(dests) != len(sources)
                              or any(d is not None and not isinstance(d, str) for d in dests)):  # fmt: skip
        raise ValueError("dests: expected one destination (or null) per source")
    tree = scan_sources(copts, dests)
    leaked = [f for f in tree.files if f.path and not ctx.confined(f.path)]
    if leaked:
        tree.files = [f for f in tree.files if f not in leaked]
        tree.errors.extend((f.path, "reached through a symbolic link that leaves the docroot") for f in leaked)
    multi = req.get("multi_session")
    if multi:
        tree = select_share(tree, int(multi[0]), int(multi[1]), int(multi[2]))
    return tree


def handle_pull(chan: Channel, req: dict[str, Any], ctx: AgentContext) -> int:
    from coordinator.cp.sources import SourceError
    from coordinator.cp.upload import file_entry

    try:
        ctx.authorize("pull", [str(s) for s in req["sources"]])
        cipher = negotiate(req["cipher"], ctx.policy.cipher)
        effective = effective_transfer(ctx, req)
        tree = _scan(ctx, req)
    except Refused as exc:
        return chan.refuse(exc.code, str(exc))
    except CipherRefused as exc:
        return chan.refuse("cipher", str(exc))
    except (PathError, SourceError, FilterError) as exc:
        return chan.refuse("source", str(exc))
    except (KeyError, TypeError, ValueError) as exc:
        return chan.refuse("request", f"malformed pull request: {exc}")
    try:
        sock, _features = ctx.bind_udp(int(req.get("udp_port", 33001)))
    except Refused as exc:
        return chan.refuse(exc.code, str(exc))
    files = tree.files
    with sock:
        chan.send({
            "type": "offer", "cipher": cipher, "udp_port": sock.getsockname()[1], **effective,
            "files": [file_entry(f) for f in files],
            "dirs": tree.dirs, "single_source": tree.single_source, "links": tree.links, "dir_times": tree.dir_times,
            "errors": [[os.path.basename(p), m] for p, m in tree.errors],
        })  # fmt: skip
        while True:
            msg = chan.recv("digests", "start")
            if msg["type"] == "start":
                break
            chan.send({"type": "digests", "digests": [_digest(files[int(d["index"])], d) for d in msg["requests"]]})
        sending = [int(i) for i in msg["send"]]
        haves = msg.get("have", {})
        items = [SendItem(files[i].path, files[i].size, files[i].faux.fill if files[i].faux else None, files[i].start)
                 for i in sending]  # fmt: skip
        have = RangeSet()
        base = 0
        for i, item in zip(sending, items):
            for s, e in haves.get(str(i), []):
                have.add(base + int(s), base + int(e))
            base += item.size
        config = session_config_from({**req, **effective, "receive_buffer": msg.get("receive_buffer")}, cipher)
        session = SenderSession(config, [it.size for it in items], time.monotonic(), have=have)
        source = FileSource(items)
        try:
            stats = run_sender(sock, _features, session, source)
        except (TransferAborted, SourceChanged) as exc:
            return chan.refuse("transfer", str(exc))
        finally:
            source.close()
        chan.send({"type": "done", "stats": stats_json(stats)})
    return 0


def _digest(f: Any, request: dict[str, Any]) -> str | None:
    """Digest of a source file over the ranges the client holds (resume and overwrite checks)."""
    if f.faux is not None:
        return None
    ranges = [(int(s), int(e)) for s, e in request.get("ranges", [])] or None
    try:
        with open(f.path, "rb") as fh:
            if request["kind"] == "sparse":
                return sparse_digest(fh.fileno(), f.size, ranges)
            return ranges_digest(fh.fileno(), ranges if ranges is not None else [(0, f.size)])
    except OSError:
        return None
