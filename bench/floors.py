"""What one Python thread cannot go below, measured on the bench's own trees (bench.sync_bench
runs these as commands, so their times include the interpreter's start like Surge's do):

- ``walk SRC``: list every directory and ``lstat`` every entry, nothing else — no records, no
  comparison, no imports beyond the standard library. A no-change re-sync with one scan thread
  (the reference's default) does at least this.
- ``copy SRC DST``: copy the tree one file at a time the way a careful receiver must — read the
  source, create ``NAME.partial``, write, set the mtime, rename into place — with no transport,
  no records and no status. A receiver that creates files one by one does at least this.

Standard library only: run as a script (``python bench/floors.py walk SRC``).
"""

from __future__ import annotations

import os
import stat
import sys

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def walk(root: bytes) -> int:
    """Entries met under `root`."""
    count, stack, lstat = 0, [root], os.lstat
    while stack:
        path = stack.pop()
        fd = os.open(path, _DIR)
        try:
            for name in os.listdir(path):
                st = lstat(name, dir_fd=fd)
                count += 1
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path + b"/" + name)
        finally:
            os.close(fd)
    return count


def copy(src: bytes, dst: bytes) -> int:
    """Files copied from `src` into the new directory `dst`."""
    count, stack = 0, [(src, dst)]
    while stack:
        here, there = stack.pop()
        os.mkdir(there)
        for name in os.listdir(here):
            source, target = here + b"/" + name, there + b"/" + name
            st = os.lstat(source)
            if stat.S_ISDIR(st.st_mode):
                stack.append((source, target))
                continue
            with open(source, "rb") as f:
                data = f.read()
            partial = target + b".partial"
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, data)
                os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
            os.rename(partial, target)
            count += 1
    return count


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "walk":
        walk(os.fsencode(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "copy":
        copy(os.fsencode(argv[1]), os.fsencode(argv[2]))
        return 0
    print("usage: floors.py walk SRC | floors.py copy SRC DST", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
