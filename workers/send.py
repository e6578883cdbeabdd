"""The sending executor's file access: positional reads of the files of a session, straight
into datagram buffers, with a bounded set of open descriptors. Faux sources generate data."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .openfiles import OpenFiles

__all__ = ["FileSource", "SendItem", "SourceChanged"]

_PATTERN = random.Random(0x5E46E).randbytes(1 << 16)


class SourceChanged(OSError):
    """A source file shrank or vanished during the transfer."""


@dataclass(frozen=True)
class SendItem:
    path: str  # "" for generated data
    size: int
    fill: str | None = None  # faux: "zero" or "random"
    start: int = 0  # offset in the source of the item's first byte (-@)
    atime: int | None = None  # access time (ns) before the transfer, to restore


class FileSource:
    def __init__(self, items: Sequence[SendItem]) -> None:
        self.items = list(items)
        self._open = OpenFiles()

    def _fd(self, i: int) -> int:
        def opener() -> int:
            try:
                return os.open(self.items[i].path, os.O_RDONLY)
            except FileNotFoundError:
                raise SourceChanged(f"source file vanished during the transfer: {self.items[i].path}") from None

        return self._open.get(i, opener)

    def read_into(self, file_index: int, offset: int, views: list[memoryview]) -> None:
        item = self.items[file_index]
        if item.fill is not None:
            for view in views:
                n = len(view)
                if item.fill == "zero":
                    view[:] = bytes(n)
                else:
                    start = offset % len(_PATTERN)
                    view[:] = (_PATTERN[start:] + _PATTERN)[:n] if start + n > len(_PATTERN) else _PATTERN[start : start + n]
                offset += n
            return
        want = sum(len(v) for v in views)
        got = os.preadv(self._fd(file_index), views, item.start + offset)
        if got != want:
            raise SourceChanged(f"source file shrank during the transfer: {item.path}")

    def close(self, restore_atime: bool = False) -> None:
        """Close every file; with --preserve-source-access-time, put back the access times the
        sources had before they were read."""
        self._open.close_all()
        if restore_atime:
            for item in self.items:
                if item.path and item.atime is not None:
                    try:
                        os.utime(item.path, ns=(item.atime, os.stat(item.path).st_mtime_ns))
                    except OSError:
                        pass
