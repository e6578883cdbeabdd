"""The two ends of a sync pair behind one small interface: list, stat, mkdir, symlink, delete
(optionally into a keep directory), rename and attribute updates. `LocalSide` works on this
machine's file system; `RemoteSide` sends the same operations over the control channel to
`surge agent` (which confines them to the user's docroot)."""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from common.paths import free_name
from common.snapshot import Entry

from .scan import entry_from_attrs

if TYPE_CHECKING:
    from ..cp.endpoint import Endpoint

__all__ = ["LocalSide", "RemoteSide", "Side", "SideError"]

log = logging.getLogger("surge.sync")


class SideError(Exception):
    """An operation on one end failed; the message names the path and the cause."""


class Side(Protocol):
    root: str

    def stat(self, path: str) -> Entry | None: ...

    def mkdir(self, path: str) -> None: ...

    def symlink(self, path: str, target: str) -> None: ...

    def delete(self, path: str, keep_dir: str | None = None) -> None: ...

    def rename(self, old: str, new: str) -> None: ...

    def set_attrs(self, path: str, mtime_ns: int | None, mode: int | None) -> None: ...


class LocalSide:
    def __init__(self, root: str) -> None:
        self.root = root

    def stat_many(self, paths: Sequence[str]) -> dict[str, Entry]:
        """The entries this side has at `paths` (those it has)."""
        return {p: e for p in paths if (e := self.stat(p)) is not None}

    def _full(self, path: str) -> str:
        return os.path.join(self.root, *path.split("/"))

    def stat(self, path: str) -> Entry | None:
        full = self._full(path)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return None
        import stat as st_mod

        kind = "dir" if st_mod.S_ISDIR(st.st_mode) else "link" if st_mod.S_ISLNK(st.st_mode) else "file"
        return Entry(path, kind, st.st_size if kind == "file" else 0, st.st_mtime_ns, st_mod.S_IMODE(st.st_mode),
                     st.st_ino, st.st_dev, st.st_nlink, None, os.readlink(full) if kind == "link" else None)  # fmt: skip

    def mkdir(self, path: str) -> None:
        try:
            os.makedirs(self._full(path), exist_ok=True)
        except OSError as exc:
            raise SideError(f"{path}: cannot create directory: {exc.strerror}") from None

    def symlink(self, path: str, target: str) -> None:
        full = self._full(path)
        try:
            if os.path.lexists(full):
                os.unlink(full)
            os.symlink(target, full)
        except OSError as exc:
            raise SideError(f"{path}: cannot create symbolic link: {exc.strerror}") from None

    def delete(self, path: str, keep_dir: str | None = None) -> None:
        full = self._full(path)
        try:
            if keep_dir:
                dest = os.path.join(keep_dir, *path.split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.rename(full, free_name(dest))  # an earlier kept copy of the name stays
            elif os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SideError(f"{path}: cannot delete: {exc.strerror}") from None

    def rename(self, old: str, new: str) -> None:
        try:
            dest = self._full(new)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(self._full(old), dest)
        except OSError as exc:
            raise SideError(f"{old} -> {new}: cannot rename: {exc.strerror}") from None

    def set_attrs(self, path: str, mtime_ns: int | None, mode: int | None) -> None:
        full = self._full(path)
        try:
            if mode is not None:
                os.chmod(full, mode)
            if mtime_ns is not None:
                st = os.stat(full)
                os.utime(full, ns=(st.st_atime_ns, mtime_ns))
        except OSError as exc:
            raise SideError(f"{path}: cannot set attributes: {exc.strerror}") from None


    # -- what --dedup and the metadata options need ---------------------------------------------
    def link(self, source: str, path: str) -> None:
        self._replace_with(path, lambda tmp: os.link(self._full(source), tmp), "link")

    def copy(self, source: str, path: str) -> None:
        self._replace_with(path, lambda tmp: shutil.copy2(self._full(source), tmp), "copy")

    def _replace_with(self, path: str, make: Any, what: str) -> None:
        full = self._full(path)
        tmp = full + ".surge-tmp"
        try:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            if os.path.lexists(tmp):
                os.unlink(tmp)
            make(tmp)
            os.replace(tmp, full)
        except OSError as exc:
            raise SideError(f"{path}: cannot {what}: {exc.strerror or exc}") from None

    def chown(self, path: str, user: int | str | None, group: int | str | None) -> None:
        try:
            os.chown(self._full(path), _uid(user), _gid(group), follow_symlinks=False)
        except (OSError, KeyError) as exc:
            raise SideError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None

    def get_xattrs(self, path: str) -> dict[str, bytes]:
        full = self._full(path)
        try:
            return {n: os.getxattr(full, n, follow_symlinks=False) for n in os.listxattr(full, follow_symlinks=False)}
        except OSError as exc:
            raise SideError(f"{path}: {exc.strerror or exc}") from None

    def set_xattrs(self, path: str, attrs: dict[str, bytes]) -> None:
        full = self._full(path)
        for name, value in attrs.items():
            try:
                os.setxattr(full, name, value, follow_symlinks=False)
            except OSError as exc:
                raise SideError(f"{path}: cannot set {name}: {exc.strerror or exc}") from None

    def read_small(self, path: str) -> bytes:
        try:
            with open(self._full(path), "rb") as f:
                return f.read(1 << 20)
        except OSError as exc:
            raise SideError(f"{path}: {exc.strerror or exc}") from None

    def write_small(self, path: str, data: bytes) -> None:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(data)

        self._replace_with(path, write, "write")


def _uid(user: int | str | None) -> int:
    if user is None:
        return -1
    import pwd

    return int(user) if str(user).isdigit() else pwd.getpwnam(str(user)).pw_uid


def _gid(group: int | str | None) -> int:
    if group is None:
        return -1
    import grp

    return int(group) if str(group).isdigit() else grp.getgrnam(str(group)).gr_gid


class RemoteSide:
    """Operations through the far end's agent; paths are joined to the remote root."""

    def __init__(self, endpoint: Endpoint, root: str) -> None:
        self.endpoint = endpoint
        self.root = root.rstrip("/") or "/"

    def _path(self, path: str) -> str:
        return f"{self.root}/{path}" if path else self.root

    def op(self, op: str, path: str, **fields: Any) -> dict[str, Any]:
        self.endpoint.send({"type": "op", "op": op, "path": self._path(path), **fields})
        msg = self.endpoint.recv(120.0)
        if msg["type"] == "error":
            raise SideError(f"{path or '.'}: {msg.get('message')}")
        return msg

    PAGE = 5000  # entries per listing message

    def list(self) -> list[Entry]:
        """The remote tree, streamed in pages (a tree of any size; one message holds a page)."""
        msg = self.op("list", "", page=self.PAGE)
        out = [entry_from_attrs(e["path"], e) for e in msg["entries"]]
        while msg.get("more"):
            msg = self.endpoint.recv(120.0)
            if msg["type"] == "error":
                raise SideError(f".: {msg.get('message')}")
            out.extend(entry_from_attrs(e["path"], e) for e in msg["entries"])
        return out

    BATCH = 500  # paths per `digests` or `stats` request (the far end takes up to 1000)

    def fill_checksums(self, entries: dict[str, Entry], paths: Sequence[str], algo: str) -> None:
        """The far end's -k checksums of its files `paths`, into `entries`; a file it cannot
        digest keeps none (and so compares as different). A far end without the `digests`
        operation (an older Surge) leaves them all without."""
        for start in range(0, len(paths), self.BATCH):
            batch = paths[start : start + self.BATCH]
            try:
                digests = self.op("digests", "", paths=batch, algorithm=algo)["digests"]
            except SideError as exc:
                log.info("no checksums from the far end: %s", exc)
                return
            for p, digest in zip(batch, digests):
                if isinstance(digest, str) and p in entries:
                    entries[p] = dataclasses.replace(entries[p], checksum=digest)

    def stat_many(self, paths: Sequence[str]) -> dict[str, Entry]:
        """The entries the far end has at `paths` (those it has), up to 500 per request; one
        request a path from a far end without the `stats` operation (an older Surge)."""
        out: dict[str, Entry] = {}
        for start in range(0, len(paths), self.BATCH):
            batch = paths[start : start + self.BATCH]
            try:
                found = self.op("stats", "", paths=list(batch))["attrs"]
            except SideError:
                found = [self.stat(p) for p in batch]
            for p, a in zip(batch, found):
                if isinstance(a, Entry):
                    out[p] = a
                elif isinstance(a, dict):
                    out[p] = entry_from_attrs(p, a)
        return out

    def stat(self, path: str) -> Entry | None:
        try:
            return entry_from_attrs(path, self.op("stat", path, nofollow=True)["attrs"])
        except SideError:
            return None

    def mkdir(self, path: str) -> None:
        self.op("mkdir", path)

    def symlink(self, path: str, target: str) -> None:
        self.op("symlink", path, target=target)

    def delete(self, path: str, keep_dir: str | None = None) -> None:
        if keep_dir:
            self.endpoint.send({"type": "op", "op": "rename", "path": self._path(path),
                                "to": f"{keep_dir.rstrip('/')}/{path}", "keep": True})  # fmt: skip
            msg = self.endpoint.recv(120.0)
            if msg["type"] == "error":
                raise SideError(f"{path}: {msg.get('message')}")
            return
        self.op("delete", path, recursive=True)

    def rename(self, old: str, new: str) -> None:
        self.op("rename", old, to=self._path(new))

    def set_attrs(self, path: str, mtime_ns: int | None, mode: int | None) -> None:
        fields: dict[str, Any] = {}
        if mode is not None:
            fields["mode"] = mode
        if mtime_ns is not None:
            fields["mtime"] = mtime_ns / 1e9
        self.op("setattr", path, **fields)

    def link(self, source: str, path: str) -> None:
        self.op("link", path, source=self._path(source))

    def copy(self, source: str, path: str) -> None:
        self.op("copy", path, source=self._path(source))

    def chown(self, path: str, user: int | str | None, group: int | str | None) -> None:
        self.op("chown", path, user=user, group=group)

    def get_xattrs(self, path: str) -> dict[str, bytes]:
        found = self.op("getxattrs", path)["xattrs"]
        return {k: base64.b64decode(v) for k, v in found.items()}

    def set_xattrs(self, path: str, attrs: dict[str, bytes]) -> None:
        self.op("setxattrs", path, xattrs={k: base64.b64encode(v).decode() for k, v in attrs.items()})

    def read_small(self, path: str) -> bytes:
        return base64.b64decode(self.op("read", path)["data"])

    def write_small(self, path: str, data: bytes) -> None:
        self.op("write", path, data=base64.b64encode(data).decode())
