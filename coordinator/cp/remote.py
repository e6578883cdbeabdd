"""Where the far end of a copy is: `[user@]host:path` on either side (or `--host`/`--mode`), and
the endpoint that reaches it: the local agent, or `surge agent` over SSH."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .options import CopyOptions
from .sources import listed_pairs

__all__ = ["RemoteSpec", "Route", "parse_remote", "route"]

# user@host:path, host:path, user@[v6]:path; a single letter before ':' is a Windows drive.
_REMOTE = re.compile(r"^(?:(?P<user>[^@/:\[\]]+)@)?(?P<host>\[[0-9A-Fa-f:.%\w]+\]|[^@/:\[\]\s]{2,}):(?P<path>.*)$")


@dataclass(frozen=True)
class RemoteSpec:
    user: str | None
    host: str
    path: str


def parse_remote(text: str) -> RemoteSpec | None:
    """The remote parts of `text`, or None for a local path (including `C:\\dir` and `faux://`)."""
    if text.startswith("faux://"):
        return None
    m = _REMOTE.match(text)
    if not m:
        return None
    host = m.group("host")
    if host.startswith("["):
        host = host[1:-1]
    return RemoteSpec(m.group("user"), host, m.group("path") or ".")


@dataclass(frozen=True)
class Route:
    """`direction` is "push" (upload, or a local copy) or "pull" (download)."""

    direction: str
    host: str | None  # None: local copy through a local agent
    user: str | None
    sources: tuple[str, ...]  # paths as the sending side sees them
    destination: str  # path as the receiving side sees it
    dests: tuple[str | None, ...] | None = None  # a download from a file list: each source's destination


class RouteError(ValueError):
    pass


def route(opts: CopyOptions) -> Route:
    """Decide upload, download or local from the arguments (ascp's rules)."""
    if opts.host is not None:
        host = opts.host[1:-1] if opts.host.startswith("[") and opts.host.endswith("]") else opts.host  # --host=[v6]
        if opts.mode == "recv":
            listed = listed_pairs(opts)  # a download's file list names the far end's sources
            if listed is None:
                return Route("pull", host, opts.user, opts.sources, opts.destination)
            return Route("pull", host, opts.user, tuple(source for source, _ in listed), opts.destination,
                         tuple(dest for _, dest in listed))  # fmt: skip
        return Route("push", host, opts.user, opts.sources, opts.destination)
    dest = parse_remote(opts.destination)
    remote_sources = [parse_remote(s) for s in opts.sources]
    if dest is not None:
        if any(r is not None for r in remote_sources):
            raise RouteError("both sources and destination are remote: one side must be local")
        return Route("push", dest.host, opts.user or dest.user, opts.sources, dest.path)
    if any(r is not None for r in remote_sources):
        if any(r is None for r in remote_sources):
            raise RouteError("mixed local and remote sources: all sources must be on one host")
        hosts = {(r.host, r.user) for r in remote_sources if r}
        if len(hosts) > 1:
            raise RouteError("sources on several hosts: all sources must be on one host")
        host, user = hosts.pop()
        return Route("pull", host, opts.user or user, tuple(r.path for r in remote_sources if r), opts.destination)
    return Route("push", None, None, opts.sources, opts.destination)


__all__ += ["RouteError"]
