"""File checksums: the `--file-checksum` report digests, and the digests of byte ranges that
resume (`-k 2` sparse, `-k 3` full) and `--overwrite diff` compare between the two ends."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

__all__ = ["REPORT_ALGORITHMS", "file_digest", "ranges_digest", "sparse_digest"]

REPORT_ALGORITHMS = {"md5": "md5", "sha1": "sha1", "sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}
_CHUNK = 1 << 20
_SAMPLE = 4096
_SAMPLES = 256


def _hasher(algo: str) -> hashlib._Hash:
    return hashlib.new(REPORT_ALGORITHMS.get(algo, algo))


def file_digest(path: str | os.PathLike[str], algo: str) -> str:
    """Hex digest of a whole file (`algo`: md5, sha1, sha-256, sha-384, sha-512)."""
    h = _hasher(algo)
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def ranges_digest(fd: int, ranges: Iterable[tuple[int, int]]) -> str:
    """SHA-256 over the bytes of `ranges` (file offsets), in order: resume level 3."""
    h = hashlib.sha256()
    for start, end in ranges:
        pos = start
        while pos < end:
            data = os.pread(fd, min(_CHUNK, end - pos), pos)
            if not data:
                raise OSError(f"file shorter than expected at offset {pos}")
            h.update(data)
            pos += len(data)
    return h.hexdigest()


def sparse_digest(fd: int, size: int, ranges: Iterable[tuple[int, int]] | None = None) -> str:
    """SHA-256 over up to 256 samples of 4 KiB spread over the file, keeping only samples that
    lie wholly inside `ranges` (all of the file when None): resume level 2. Both ends compute the
    same sample positions from the file size alone."""
    spans = [(0, size)] if ranges is None else list(ranges)
    step = max(_SAMPLE, -(-size // _SAMPLES))
    h = hashlib.sha256(size.to_bytes(8, "big"))
    i = 0
    for pos in range(0, size, step):
        end = min(pos + _SAMPLE, size)
        while i < len(spans) and spans[i][1] < end:
            i += 1
        if i < len(spans) and spans[i][0] <= pos:
            data = os.pread(fd, end - pos, pos)
            if len(data) != end - pos:
                raise OSError(f"file shorter than expected at offset {pos}")
            h.update(pos.to_bytes(8, "big") + data)
    return h.hexdigest()
