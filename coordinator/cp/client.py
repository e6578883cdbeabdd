"""`surge cp`, the client side: decide the route (local copy, upload or download), reach the far
end (a local agent, or `surge agent` over SSH), run the upload or download flow, then the
after-transfer actions. Exit status 0 only when every file arrived intact."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .common import CopyError, CopyResult, hello
from .dest import RemoteDest, Where, place
from .destactions import delete_extra, make_links, set_dir_times, set_owners
from .endpoint import Endpoint, EndpointError, LocalAgent
from .options import CopyOptions
from .postactions import after_transfer
from .remote import Route, RouteError, route
from .sources import SourceFile, SourceTree, is_faux, parse_faux, scan_sources, source_filters

__all__ = ["CopyError", "CopyResult", "run_copy"]

log = logging.getLogger("surge.cp")


def default_endpoint(opts: CopyOptions, where: Route) -> Endpoint:
    """The local agent for a local copy; `surge agent` over SSH (or the -S command) otherwise."""
    if where.host is None:
        return LocalAgent(debug=opts.debug > 0, ipv6=opts.ipv6)
    from .ssh import SshEndpoint

    return SshEndpoint(where.host, port=opts.ssh_port, user=where.user, keys=opts.keys, key_text=opts.key_text,
                       password=opts.password,
                       check_sshfp=opts.check_sshfp, command=opts.remote_command)  # fmt: skip


def _upload(opts: CopyOptions, tree: SourceTree, destination: str, endpoint: Endpoint, result: CopyResult,
            progress: Callable[[dict[str, Any]], None] | None,
            on_file: Callable[[SourceFile, dict[str, Any]], None] | None) -> None:  # fmt: skip
    """The upload, with what --delete-before-transfer, --symbolic-links copy and
    --preserve-file-owner-uid/gid do at the destination (paths placed as the destination was
    before the transfer)."""
    from .upload import upload

    side = RemoteDest(endpoint)
    dir_times = tree.dir_times if opts.preserve_mtime or opts.preserve_atime else {}
    acting = tree.links or dir_times or opts.delete_before_transfer or opts.preserve_uid or opts.preserve_gid
    where = Where(destination, side.leads_to_dir(destination) if acting else True, tree.single_source,
                  opts.destination_must_be_directory)  # fmt: skip
    if opts.delete_before_transfer:
        result.errors.extend(_delete_extra(opts, tree, side, where))
    if tree.files or tree.dirs or not tree.links:
        upload(opts, tree, destination, endpoint, result, progress, on_file)
    result.errors.extend(make_links(side, where, tree.links, opts.symbolic_links == "copy+force"))
    if opts.preserve_uid or opts.preserve_gid:
        done = [(place(where, f.rel), f.uid, f.gid) for i, f in enumerate(tree.files)
                if f.uid >= 0 and result.status.get(i, {}).get("status") == "done"]  # fmt: skip
        result.errors.extend(set_owners(side, done, opts.preserve_uid, opts.preserve_gid))
    if dir_times and not is_faux(destination):
        result.errors.extend(set_dir_times(side, where, dir_times, opts.preserve_mtime, opts.preserve_atime))


def _delete_extra(opts: CopyOptions, tree: SourceTree, side: RemoteDest, where: Where) -> list[tuple[str, str]]:
    if not tree.dirs or len(opts.sources) != 1:
        raise CopyError("--delete-before-transfer: the source must be a directory")
    root = tree.dirs[0]
    keep = {f.rel for f in tree.files} | set(tree.dirs) | {rel for rel, _ in tree.links}
    filters = source_filters(opts)
    try:
        return delete_extra(side, where, root, keep, lambda rel, is_dir: bool(filters) and filters.excluded(rel, is_dir))
    except OSError as exc:
        raise CopyError(f"--delete-before-transfer: {exc.strerror or exc}") from None


def run_copy(opts: CopyOptions, *, endpoint_factory: Callable[[CopyOptions], Endpoint] | None = None,
             progress: Callable[[dict[str, Any]], None] | None = None,
             on_file: Callable[[SourceFile, dict[str, Any]], None] | None = None,
             on_job: Callable[[int, int], None] | None = None) -> CopyResult:  # fmt: skip
    """Run one copy. Raises CopyError for a problem that stops it before or during the data
    phase; per-file problems are in the result."""
    from .download import download

    started = time.monotonic()
    try:
        where = route(opts)
    except RouteError as exc:
        raise CopyError(str(exc)) from None
    tree = SourceTree()
    if where.direction == "push":
        tree = scan_sources(opts)
        if on_job is not None:
            on_job(len(tree.files), tree.total_bytes)
        log.info("job: %d file(s), %d bytes, %d error(s) while scanning", len(tree.files), tree.total_bytes,
                 len(tree.errors))  # fmt: skip
    if is_faux(opts.destination):
        parse_faux(opts.destination)  # validate
    result = CopyResult(tree.files, skipped=list(tree.skipped), errors=list(tree.errors))
    try:
        endpoint = endpoint_factory(opts) if endpoint_factory else default_endpoint(opts, where)
    except EndpointError as exc:
        raise CopyError(str(exc)) from None
    try:
        hello(endpoint, opts)
        if where.direction == "push":
            _upload(opts, tree, where.destination, endpoint, result, progress, on_file)
        else:
            download(opts, where.sources, where.destination, endpoint, result, progress, on_file, where.dests)
        try:
            endpoint.send({"type": "bye"})
        except EndpointError:
            pass
    finally:
        endpoint.close()
    if where.direction == "push" and (result.ok or not result.errors):
        after_transfer(opts, tree, result.status)
    result.elapsed = time.monotonic() - started
    return result
