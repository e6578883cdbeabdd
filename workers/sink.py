"""Writing received files: blocks go into a partial file (space claimed first, so a full disk
fails before any data moves); when a file's last byte arrives it is verified, its times set, the
old file kept if asked, and it is renamed into place. Resume state (`.aspx`) is recorded every
few seconds with `-k 1-3`; a failed session keeps it, or removes its partial files with `-k 0`.

A multi-session part (`-C`) writes its byte range into the partial file shared by the sessions;
the session whose part completes the set (under a file lock) commits the file.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from common.checksums import file_digest
from common.paths import free_name

from .openfiles import OpenFiles
from .receive import RESUME_SUFFIX, Part, ReceiveOptions

__all__ = ["Entry", "FileSink"]

_PREALLOCATE_FROM = 1 << 20  # claim space up front for files this large (small ones: not worth a syscall)



@dataclass(frozen=True)
class Entry:
    target: str
    size: int  # bytes this session writes
    mtime: float
    atime: float
    resumed: bool = False  # the partial file holds data from an earlier session: keep it
    part: Part | None = None

    @property
    def offset(self) -> int:
        return self.part.start if self.part else 0

    @property
    def whole(self) -> int:
        return self.part.whole if self.part else self.size


class FileSink:
    def __init__(self, opts: ReceiveOptions, entries: Sequence[Entry],
                 on_done: Callable[[int, dict[str, Any]], None]) -> None:  # fmt: skip
        self.opts = opts
        self.entries = list(entries)
        self.on_done = on_done
        self._open = OpenFiles()
        self._resume_files: set[str] = set()  # targets whose .aspx this session wrote
        self._opened: set[int] = set()
        self.done: set[int] = set()
        self.bytes_written = 0

    def _partial(self, i: int) -> str:
        return self.entries[i].target + self.opts.partial_suffix

    def _fd(self, i: int) -> int:
        return self._open.get(i, lambda: self._open_partial(i))

    def _open_partial(self, i: int) -> int:
        entry = self.entries[i]
        flags = os.O_WRONLY | os.O_CREAT
        first = i not in self._opened
        if first and not entry.resumed and entry.part is None:
            flags |= os.O_TRUNC
        fd = os.open(self._partial(i), flags, 0o644)
        if first:
            self._opened.add(i)
            if entry.whole >= _PREALLOCATE_FROM and hasattr(os, "posix_fallocate"):
                try:  # claim the space now: a full disk fails here, not half-way
                    os.posix_fallocate(fd, 0, entry.whole)
                except OSError as exc:
                    os.close(fd)
                    raise OSError(exc.errno, f"no space for {entry.target!r} ({entry.whole} bytes)") from None
        return fd

    def write(self, file_index: int, offset: int, data: list[memoryview]) -> None:
        n = sum(len(d) for d in data)
        if not self.opts.discard:
            entry = self.entries[file_index]
            done = os.pwritev(self._fd(file_index), data, entry.offset + offset)
            if done != n:
                raise OSError(28, f"short write to {entry.target!r}: {done} of {n} bytes")
        self.bytes_written += n

    def file_complete(self, file_index: int) -> None:
        if file_index in self.done:
            return
        self.done.add(file_index)
        if self.opts.discard:
            self.on_done(file_index, {"status": "done"})
            return
        entry = self.entries[file_index]
        try:
            fd = self._open.pop(file_index)
            if fd is None:
                fd = self._open_partial(file_index)
            if entry.part is None:
                try:
                    if entry.resumed or entry.size >= _PREALLOCATE_FROM:
                        os.ftruncate(fd, entry.size)  # an older or preallocated partial may be longer
                    result = self._commit(entry, fd)
                finally:
                    os.close(fd)
            else:
                os.close(fd)
                result = self._commit_part(entry)
        except OSError as exc:
            result = {"status": "failed", "error": f"{entry.target}: {exc.strerror or exc}"}
        self.on_done(file_index, result)

    def _commit(self, entry: Entry, fd: int | None = None) -> dict[str, Any]:
        """Verify, set times, keep the old file if asked, rename into place. `fd`, when given,
        is the partial file still open (saves a path lookup per call on small files)."""
        partial = entry.target + self.opts.partial_suffix
        result: dict[str, Any] = {"status": "done"}
        if self.opts.checksum != "none":
            result["checksum"] = file_digest(partial, self.opts.checksum)
        where: int | str = partial if fd is None else fd
        if self.opts.preserve_mtime or self.opts.preserve_atime:
            st = os.stat(where)
            os.utime(where, (entry.atime if self.opts.preserve_atime else st.st_atime,
                             entry.mtime if self.opts.preserve_mtime else st.st_mtime))  # fmt: skip
        st = os.stat(where)
        if self.opts.save_before_overwrite and os.path.isfile(entry.target):
            os.replace(entry.target, free_name(entry.target))
        os.replace(partial, entry.target)
        if entry.resumed or entry.target in self._resume_files:
            try:
                os.unlink(entry.target + RESUME_SUFFIX)
            except FileNotFoundError:
                pass
        result["attrs"] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "mode": st.st_mode & 0o7777,
                           "ino": st.st_ino, "dev": st.st_dev, "nlink": st.st_nlink}  # fmt: skip
        return result

    def _commit_part(self, entry: Entry) -> dict[str, Any]:
        """Record this part; the session that completes the set commits the whole file."""
        assert entry.part is not None
        partial = entry.target + self.opts.partial_suffix
        state_path = partial + ".parts"
        with open(partial + ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(state_path, encoding="utf-8") as f:
                    state = json.load(f)
                if (state.get("count"), state.get("size")) != (entry.part.count, entry.whole) or \
                        abs(float(state.get("mtime", -1)) - entry.mtime) > 1e-3:
                    state = None  # left by another transfer of this name: start the set again
            except (OSError, ValueError, TypeError):
                state = None
            state = state or {"count": entry.part.count, "size": entry.whole, "mtime": entry.mtime, "done": []}
            state["done"] = sorted(set(state["done"]) | {entry.part.index})
            if len(state["done"]) < entry.part.count:
                tmp = state_path + ".tmp"
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(state, f)
                os.replace(tmp, state_path)
                return {"status": "done", "part": f"{entry.part.index + 1}/{entry.part.count}"}
            os.truncate(partial, entry.whole)
            result = self._commit(entry)
            for leftover in (state_path, partial + ".lock"):
                try:
                    os.unlink(leftover)
                except FileNotFoundError:
                    pass
            result["part"] = f"{entry.part.index + 1}/{entry.part.count}"
            result["assembled"] = True
            return result

    def checkpoint(self, received: Callable[[int], list[list[int]]]) -> None:
        """Record the received ranges of every unfinished file (resume levels 1-3)."""
        if self.opts.resume == 0 or self.opts.discard:
            return
        for i in list(self._opened):
            entry = self.entries[i]
            if i in self.done or entry.part is not None:
                continue
            fd = self._open.peek(i)
            if fd is not None:
                os.fdatasync(fd)  # ranges claimed must be on disk first
            self._resume_files.add(entry.target)
            tmp = entry.target + RESUME_SUFFIX + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"size": entry.size, "mtime": entry.mtime, "ranges": received(i)}, f)
            os.replace(tmp, entry.target + RESUME_SUFFIX)

    def abort(self, received: Callable[[int], list[list[int]]]) -> None:
        """The session failed: keep resumable state (-k 1-3) or remove the partial files."""
        try:
            self.checkpoint(received)
        finally:
            self._open.close_all()
            if self.opts.resume == 0 and not self.opts.discard:
                for i in self._opened - self.done:
                    if self.entries[i].part is not None:
                        continue  # other sessions may still be writing their parts
                    try:
                        os.unlink(self._partial(i))
                    except FileNotFoundError:
                        pass
