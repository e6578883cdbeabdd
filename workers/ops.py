"""File operations the control protocol offers besides transfers (what sync needs of a far end):
stat, list, mkdir, delete, rename, setattr, link, copy, chown, extended attributes, checksum,
the stats and -k digests of many files, read and write of small files. Every path
is resolved inside the user's docroot; reading needs the pull direction, changing needs push."""

from __future__ import annotations

import base64
import os
import shutil
import stat as stat_mod
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeAlias

from common.checksums import REPORT_ALGORITHMS, file_digest, ranges_digest
from common.filters import Filter
from common.paths import PathError, check_relative, free_name, is_utf8
from common.syncdigest import SYNC_ALGORITHMS, sync_digest

from .context import AgentContext, Channel, Refused

__all__ = ["MAX_DIGESTS", "MAX_LIST_ENTRIES", "MAX_SMALL_FILE", "handle_op"]

MAX_SMALL_FILE = 1 << 20  # read/write of whole files over the control channel
MAX_LIST_ENTRIES = 1_000_000
MAX_DIGESTS = 1000  # paths per `digests` or `stats` request
MAX_PAGE = 10_000  # entries per streamed listing message (~2 MB of JSON, far below the frame limit)


def _attrs(st: os.stat_result, path: str | None = None) -> dict[str, Any]:
    mode = st.st_mode
    kind = ("dir" if stat_mod.S_ISDIR(mode) else "file" if stat_mod.S_ISREG(mode)
            else "link" if stat_mod.S_ISLNK(mode) else "other")  # fmt: skip
    out: dict[str, Any] = {"type": kind, "size": st.st_size, "mtime": st.st_mtime, "atime": st.st_atime,
                           "mtime_ns": st.st_mtime_ns, "mode": stat_mod.S_IMODE(mode), "ino": st.st_ino,
                           "dev": st.st_dev, "nlink": st.st_nlink, "uid": st.st_uid, "gid": st.st_gid}  # fmt: skip
    if kind == "link" and path is not None:
        out["target"] = os.readlink(path)
    return out


def _walk(root: str, hidden: Filter | None = None) -> Iterator[dict[str, Any]]:
    """Every entry under `root`, but those the server's filters exclude (`hidden`: below the
    listed directory they are invisible, as they are to transfers, and excluded directories
    are not entered) and those whose names are not UTF-8 (they cannot cross the channel)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if (hidden and hidden.excluded_entry(rel, stat_mod.S_ISDIR(st.st_mode))) or not is_utf8(rel):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            yield {"path": rel, **_attrs(st, full)}


def _list(root: str, limit: int, hidden: Filter | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in _walk(root, hidden):
        out.append(entry)
        if len(out) > limit:
            raise Refused("limit", f"listing exceeds {limit} entries")
    return out


def _stream_list(chan: Channel, ctx: AgentContext, msg: dict[str, Any]) -> None:
    """`list` with `page`: the tree in messages of `page` entries, each with `more` but the last
    (a tree of any size, where one message is bounded by the frame limit)."""
    path_arg = str(msg.get("path", ""))
    ctx.authorize("pull", [path_arg])
    root = ctx.resolve(path_arg)
    if not os.path.isdir(root):
        os.stat(root)  # a missing root is an error, not an empty listing
        raise Refused("request", f"{path_arg}: not a directory")
    size = max(1, min(int(msg["page"]), MAX_PAGE))
    page: list[dict[str, Any]] = []
    for entry in _walk(root, ctx.filters()):
        page.append(entry)
        if len(page) >= size:
            chan.send({"type": "result", "op": "list", "entries": page, "more": True})
            page = []
    chan.send({"type": "result", "op": "list", "entries": page, "more": False})


def _owner_id(value: object, what: str) -> int:
    """-1 (unchanged) for None; a number as is; a name through the password/group database."""
    if value is None:
        return -1
    text = str(value)
    if text.isdigit():
        return int(text)
    import grp
    import pwd

    try:
        return pwd.getpwnam(text).pw_uid if what == "user" else grp.getgrnam(text).gr_gid
    except KeyError:
        raise Refused("request", f"no such {what} {text!r} on this host") from None


# Each handler gets the resolved path of the request's `path`, authorized for its direction.
_Handler: TypeAlias = Callable[[AgentContext, str, dict[str, Any]], dict[str, Any]]


def _stat(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    return {"attrs": _attrs(os.lstat(path) if msg.get("nofollow") else os.stat(path), path)}


def _list_op(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    limit = min(int(msg.get("limit", MAX_LIST_ENTRIES)), MAX_LIST_ENTRIES)
    return {"entries": _list(path, limit, ctx.filters())}


def _mkdir(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    os.makedirs(path, exist_ok=True)
    return {}


def _symlink(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(str(msg["target"]), path)
    return {}


def _link(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    """A hard link to another path of the same tree (--dedup=hardlink/inode)."""
    source_arg = str(msg["source"])
    ctx.authorize("push", [source_arg])
    tmp = path + ".surge-tmp"
    os.link(ctx.resolve(source_arg), tmp)
    os.replace(tmp, path)
    return {}


def _copy(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    """A local copy on the far end (--dedup=copy)."""
    source_arg = str(msg["source"])
    tmp = path + ".surge-tmp"
    shutil.copy2(ctx.resolve(source_arg), tmp)
    os.replace(tmp, path)
    return {}


def _chown(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    """-u/-j/--write-uid/--write-gid: names are looked up here, on the writing host."""
    os.chown(path, _owner_id(msg.get("user"), "user"), _owner_id(msg.get("group"), "group"), follow_symlinks=False)
    return {}


def _getxattrs(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    names = os.listxattr(path, follow_symlinks=False)
    return {"xattrs": {n: base64.b64encode(os.getxattr(path, n, follow_symlinks=False)).decode() for n in names}}


def _setxattrs(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    for name, value in dict(msg.get("xattrs", {})).items():
        os.setxattr(path, str(name), base64.b64decode(str(value), validate=True), follow_symlinks=False)
    return {}


def _delete(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    if os.path.isdir(path) and not os.path.islink(path):
        if msg.get("recursive"):
            shutil.rmtree(path)
        else:
            os.rmdir(path)
    else:
        os.unlink(path)
    return {}


def _rename(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    target_arg = str(msg["to"])
    ctx.authorize("push", [target_arg])
    target = ctx.resolve(target_arg)
    if msg.get("keep"):  # into a --keep-dir: its directories made, an earlier kept copy kept
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(path, free_name(target))
    else:
        os.replace(path, target)
    return {}


def _setattr(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    if "mode" in msg:
        os.chmod(path, int(msg["mode"]) & 0o7777)
    if "mtime" in msg or "atime" in msg:
        st = os.stat(path)
        os.utime(path, (float(msg.get("atime", st.st_atime)), float(msg.get("mtime", st.st_mtime))))
    return {}


def _checksum(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    algo = str(msg.get("algorithm", "sha-256"))
    if "ranges" in msg:
        with open(path, "rb") as fh:
            return {"digest": ranges_digest(fh.fileno(), [(int(s), int(e)) for s, e in msg["ranges"]])}
    if algo not in REPORT_ALGORITHMS:
        raise Refused("request", f"unknown checksum algorithm {algo!r}")
    return {"digest": file_digest(path, algo)}


def _digests(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    """A sync pair's -k checksums (common/syncdigest.py) of the files `paths` below `path`, in
    order; None for one that is not a readable regular file inside the user's roots, or that
    the server's filters hide (so a client resends rather than trusts it)."""
    algo = str(msg["algorithm"])
    if algo not in SYNC_ALGORITHMS:
        raise Refused("request", f"unknown checksum {algo!r} (expected {', '.join(SYNC_ALGORITHMS)})")
    rels = [str(p) for p in msg["paths"]]
    if len(rels) > MAX_DIGESTS:
        raise Refused("limit", f"digests: more than {MAX_DIGESTS} files in one request")
    hidden = ctx.filters()
    out: list[str | None] = []
    for rel in rels:
        digest = None
        try:
            full = os.path.join(path, check_relative(rel))
            st = os.lstat(full)
            if stat_mod.S_ISREG(st.st_mode) and ctx.confined(full) and not (hidden and hidden.excluded(rel, False)):
                digest = sync_digest(full, algo, st.st_size)
        except (OSError, PathError):
            pass
        out.append(digest)
    return {"digests": out}


def _stats(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    """`stat` (not following links) of many entries `paths` below `path`, in order; None for
    one that is missing, outside the user's roots, or hidden by the server's filters."""
    rels = [str(p) for p in msg["paths"]]
    if len(rels) > MAX_DIGESTS:
        raise Refused("limit", f"stats: more than {MAX_DIGESTS} paths in one request")
    hidden = ctx.filters()
    out: list[dict[str, Any] | None] = []
    for rel in rels:
        attrs = None
        try:
            full = os.path.join(path, check_relative(rel))
            st = os.lstat(full)
            if ctx.confined(os.path.dirname(full)) and not (hidden and hidden.excluded(rel, stat_mod.S_ISDIR(st.st_mode))):
                attrs = _attrs(st, full)
        except (OSError, PathError):
            pass
        out.append(attrs)
    return {"attrs": out}


def _read(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    if os.path.getsize(path) > MAX_SMALL_FILE:
        raise Refused("limit", f"read: file larger than {MAX_SMALL_FILE} bytes; transfer it instead")
    with open(path, "rb") as fh:
        return {"data": base64.b64encode(fh.read()).decode()}


def _write(ctx: AgentContext, path: str, msg: dict[str, Any]) -> dict[str, Any]:
    data = base64.b64decode(str(msg.get("data", "")), validate=True)
    if len(data) > MAX_SMALL_FILE:
        raise Refused("limit", f"write: more than {MAX_SMALL_FILE} bytes; transfer it instead")
    tmp = path + ".surge-tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return {}


_HANDLERS: Final[dict[str, _Handler]] = {
    "stat": _stat, "list": _list_op, "mkdir": _mkdir, "symlink": _symlink, "link": _link, "copy": _copy,
    "chown": _chown, "getxattrs": _getxattrs, "setxattrs": _setxattrs, "delete": _delete, "rename": _rename,
    "setattr": _setattr, "checksum": _checksum, "digests": _digests, "stats": _stats, "read": _read, "write": _write,
}  # fmt: skip
_READING: Final = frozenset({"stat", "stats", "list", "checksum", "digests", "read", "getxattrs"})  # need pull; the others push


def _op(ctx: AgentContext, msg: dict[str, Any]) -> dict[str, Any]:
    op = str(msg.get("op"))
    path_arg = str(msg.get("path", ""))
    ctx.authorize("pull" if op in _READING else "push", [path_arg])
    path = ctx.resolve(path_arg)
    handler = _HANDLERS.get(op)
    if handler is None:
        raise Refused("request", f"unknown operation {op!r}")
    return handler(ctx, path, msg)


def handle_op(chan: Channel, msg: dict[str, Any], ctx: AgentContext) -> None:
    """Answer one `op` message with `result` or `error` (the session goes on either way)."""
    try:
        if msg.get("op") == "list" and msg.get("page"):
            _stream_list(chan, ctx, msg)
            return
        chan.send({"type": "result", "op": msg.get("op"), **_op(ctx, msg)})
    except Refused as exc:
        chan.send({"type": "error", "code": exc.code, "message": str(exc)})
    except PathError as exc:
        chan.send({"type": "error", "code": "path", "message": str(exc)})
    except OSError as exc:
        chan.send({"type": "error", "code": "os", "message": f"{msg.get('op')}: {exc.strerror or exc}"})
    except (KeyError, TypeError, ValueError) as exc:
        chan.send({"type": "error", "code": "request", "message": f"malformed {msg.get('op')} request: {exc}"})
