"""The -k checksum of a sync pair's file, as both ends compute it (the client for its files, a far
end's `digests` operation for its own): ``sha1`` / ``md5`` of the whole file, or their
``-sparse`` forms (common.checksums.sparse_digest's samples), prefixed with the form so that two
forms never compare equal. hashlib is imported on first use: a re-sync with nothing to
checksum does not load OpenSSL."""

from __future__ import annotations

import os

__all__ = ["SYNC_ALGORITHMS", "sync_digest"]

SYNC_ALGORITHMS = ("sha1", "md5", "sha1-sparse", "md5-sparse")

_WHOLE = 256 * 4096  # up to this size, common.checksums.sparse_digest's samples cover the whole file


def _small_sparse_digest(fd: int, size: int) -> str:
    """sparse_digest(fd, size) for a file of at most _WHOLE bytes (its 4 KiB samples then tile
    the file), from one read instead of one per sample."""
    import hashlib

    data = os.pread(fd, size, 0)
    if len(data) != size:
        raise OSError(f"file shorter than expected at offset {len(data)}")
    h = hashlib.sha256(size.to_bytes(8, "big"))
    for pos in range(0, size, 4096):
        h.update(pos.to_bytes(8, "big") + data[pos : pos + 4096])
    return h.hexdigest()


_NOATIME = getattr(os, "O_NOATIME", 0)


def _open_quietly(path: str) -> int:
    """Open a file for reading without changing its access time where the system lets us (Linux
    O_NOATIME: the owner or root), so that --preserve-access-time sends the atime it had."""
    if _NOATIME:
        try:
            return os.open(path, os.O_RDONLY | _NOATIME)
        except PermissionError:  # EPERM: not the file's owner
            pass
    return os.open(path, os.O_RDONLY)


def sync_digest(path: str, algo: str, size: int, mtime_ns: int | None = None) -> str | None:
    """The -k checksum of a file; None when `mtime_ns` is given and the file no longer has that
    size and modification time (it changed since it was scanned)."""
    import hashlib  # here: a re-sync with nothing to checksum does not load OpenSSL

    from common.checksums import sparse_digest

    base = algo.split("-")[0]
    fd = _open_quietly(path)
    try:
        if algo.endswith("-sparse"):
            digest = f"{base}s:" + (_small_sparse_digest(fd, size) if size <= _WHOLE else sparse_digest(fd, size))
        else:
            h = hashlib.new(base)
            pos = 0
            while data := os.pread(fd, 1 << 20, pos):
                h.update(data)
                pos += len(data)
            digest = f"{base}:" + h.hexdigest()
        if mtime_ns is not None:
            st = os.fstat(fd)
            if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
                return None
        return digest
    finally:
        os.close(fd)
