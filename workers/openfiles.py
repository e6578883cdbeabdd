"""A bounded set of open file descriptors, least recently used closed first: a session may
touch millions of files, a process may hold only so many open."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["OpenFiles"]


class OpenFiles:
    def __init__(self, limit: int = 128) -> None:
        self.limit = limit
        self._fds: OrderedDict[int, int] = OrderedDict()

    def get(self, key: int, opener: Callable[[], int]) -> int:
        """The descriptor for `key`, opened with `opener()` when it is not open."""
        fd = self._fds.get(key)
        if fd is not None:
            self._fds.move_to_end(key)
            return fd
        if len(self._fds) >= self.limit:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        fd = opener()
        self._fds[key] = fd
        return fd

    def peek(self, key: int) -> int | None:
        return self._fds.get(key)

    def pop(self, key: int) -> int | None:
        """Forget `key` and hand its descriptor (if open) to the caller, who closes it."""
        return self._fds.pop(key, None)

    def close_all(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
