"""The destination's file system as the options that act on it outside the data transfer see it
(--symbolic-links copy, --preserve-file-owner-uid/gid, --delete-before-transfer, the times of
directories): this machine
for a download, the far end's file operations over the control channel otherwise.

:func:`place` puts a path where the receiver puts a file of the same relative path
(workers/receive.py): under the destination directory, or, for a single source argument copied
to a new name, at that name.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
from dataclasses import dataclass
from typing import Any, Protocol

from .endpoint import Endpoint, EndpointError

__all__ = ["DestSide", "LocalDest", "RemoteDest", "Where", "place"]


@dataclass(frozen=True)
class Where:
    """How the destination looked before the transfer: what decides where paths land."""

    destination: str
    is_dir: bool
    single_source: bool
    must_be_dir: bool


def place(where: Where, rel: str) -> str:
    """The destination path of the source-relative path `rel` (its first part the source's name)."""
    dest = where.destination
    renamed = not where.is_dir and where.single_source and not where.must_be_dir and not dest.endswith("/")
    parts = rel.split("/")[1:] if renamed else rel.split("/")
    return posixpath.join(dest, *parts) if parts else dest


class DestSide(Protocol):
    """What those options need of the destination; each raises OSError with the reason."""

    def kind(self, path: str) -> str | None:
        """"link", "dir", "file" or "other" (links not followed); None when nothing is there."""

    def leads_to_dir(self, path: str) -> bool: ...

    def symlink(self, path: str, target: str) -> None: ...

    def chown(self, path: str, uid: int | None, gid: int | None) -> None: ...

    def set_times(self, path: str, mtime: float | None, atime: float | None) -> None:
        """Set the times given (None: leave that one)."""

    def listing(self, path: str) -> list[tuple[str, str]]:
        """(path relative to `path`, kind) of everything below the directory `path`."""

    def delete(self, path: str) -> None:
        """Remove a file, a link or a whole directory."""


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


class LocalDest:
    """The destination is this machine (a download)."""

    def kind(self, path: str) -> str | None:
        try:
            return _kind(os.lstat(path).st_mode)
        except FileNotFoundError:
            return None

    def leads_to_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def symlink(self, path: str, target: str) -> None:
        tmp = path + ".surge-tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, path)

    def chown(self, path: str, uid: int | None, gid: int | None) -> None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid, follow_symlinks=False)

    def set_times(self, path: str, mtime: float | None, atime: float | None) -> None:
        st = os.stat(path)
        os.utime(path, (st.st_atime if atime is None else atime, st.st_mtime if mtime is None else mtime))

    def listing(self, path: str) -> list[tuple[str, str]]:
        out = []
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                out.append((os.path.relpath(full, path).replace(os.sep, "/"), _kind(os.lstat(full).st_mode)))
        return out

    def delete(self, path: str) -> None:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)


class RemoteDest:
    """The destination is the far end (an upload, or a local copy through the local agent)."""

    PAGE = 5000  # entries per listing message

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def _op(self, op: str, path: str, **fields: Any) -> dict[str, Any]:
        try:
            self.endpoint.send({"type": "op", "op": op, "path": path, **fields})
            msg = self.endpoint.recv(120.0)
        except (EndpointError, TimeoutError) as exc:
            raise OSError(str(exc)) from None
        if msg["type"] == "error":
            raise OSError(str(msg.get("message")).removeprefix(f"{op}: "))
        return msg

    def kind(self, path: str) -> str | None:
        try:
            return str(self._op("stat", path, nofollow=True)["attrs"]["type"])
        except OSError:
            return None

    def leads_to_dir(self, path: str) -> bool:
        try:
            return bool(self._op("stat", path)["attrs"]["type"] == "dir")
        except OSError:
            return False

    def symlink(self, path: str, target: str) -> None:
        self._op("symlink", path, target=target)

    def chown(self, path: str, uid: int | None, gid: int | None) -> None:
        self._op("chown", path, user=uid, group=gid)

    def set_times(self, path: str, mtime: float | None, atime: float | None) -> None:
        times = {k: v for k, v in (("mtime", mtime), ("atime", atime)) if v is not None}
        self._op("setattr", path, **times)

    def listing(self, path: str) -> list[tuple[str, str]]:
        msg = self._op("list", path, page=self.PAGE)
        out = [(str(e["path"]), str(e["type"])) for e in msg["entries"]]
        while msg.get("more"):
            msg = self.endpoint.recv(120.0)
            out.extend((str(e["path"]), str(e["type"])) for e in msg["entries"])
        return out

    def delete(self, path: str) -> None:
        self._op("delete", path, recursive=True)
