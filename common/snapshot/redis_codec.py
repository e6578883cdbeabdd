"""The compact byte form of one snapshot :class:`~common.snapshot.base.Entry` in Redis, small
enough that a bucket of entries stays in Redis's listpack encoding (values <= 64 bytes).

The path is not in the value: it is the hash field (its :func:`path_sort_key`), so a value is::

    flags   1 byte   kind (bits 0-1), checksum as binary (4) or as text (8), target (16), meta (32)
    sizes   5 bytes  byte length (0..8) of each of the 9 integers below, one nibble each
    ints             size, mtime_ns, mode, inode, dev, nlink, rmtime_ns, uid, gid; little-endian,
                     signed ones zigzag-mapped, zero takes no byte
    blobs            checksum, target, meta when present: a varint length, then the bytes

A lowercase even-length hex checksum is stored as its bytes (a SHA-1 takes 20 bytes, not 40).
"""

from __future__ import annotations

from typing import Final

from common.snapshot.base import KINDS, Entry

__all__ = ["CodecError", "key_path", "pack", "unpack"]

_KIND_CODE: Final = {kind: code for code, kind in enumerate(KINDS)}
_SUM_BIN: Final = 4
_SUM_TEXT: Final = 8
_TARGET: Final = 16
_META: Final = 32
_N_INTS: Final = 9
_SIGNED: Final = (False, True, True, False, False, True, True, True, True)


class CodecError(ValueError):
    """A stored value that is not a packed entry (damaged or written by something else)."""


def _zz(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _unzz(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _binary_checksum(checksum: str) -> bytes | None:
    """The digest bytes when the hex text round-trips exactly, else None (kept as text)."""
    try:
        raw = bytes.fromhex(checksum)
    except ValueError:
        return None
    return raw if raw.hex() == checksum else None


def pack(e: Entry) -> bytes:
    if not isinstance(e, Entry):
        raise TypeError(f"upserts must be Entry objects, got {type(e).__name__}")
    ints = (e.size, _zz(e.mtime_ns), _zz(e.mode), e.inode, e.dev,
            _zz(e.nlink), _zz(e.rmtime_ns), _zz(e.uid), _zz(e.gid))  # fmt: skip
    lens = [(n.bit_length() + 7) >> 3 for n in ints]
    lens.append(0)
    flags = _KIND_CODE[e.kind]
    blobs = []
    if e.checksum is not None:
        raw = _binary_checksum(e.checksum)
        flags |= _SUM_TEXT if raw is None else _SUM_BIN
        blobs.append(e.checksum.encode() if raw is None else raw)
    if e.target is not None:
        flags |= _TARGET
        blobs.append(e.target.encode("utf-8", "surrogateescape"))
    if e.meta is not None:
        flags |= _META
        blobs.append(e.meta.encode("utf-8"))
    parts = [bytes((flags, *(lens[i] | lens[i + 1] << 4 for i in range(0, 10, 2))))]
    parts.extend(n.to_bytes(size, "little") for n, size in zip(ints, lens, strict=False))
    for blob in blobs:
        parts.append(_varint(len(blob)))
        parts.append(blob)
    return b"".join(parts)


def key_path(key: bytes) -> str:
    """The path of a :func:`path_sort_key` (the hash field)."""
    return key.replace(b"\x00", b"/").decode("utf-8", "surrogateescape")


def unpack(key: bytes, value: bytes) -> Entry:
    """The Entry stored under hash field ``key``; CodecError if ``value`` is not one."""
    try:
        return _unpack(key_path(key), value)
    except (IndexError, ValueError) as exc:
        raise CodecError(f"damaged snapshot entry for {key_path(key)!r}: {exc}") from None


def _unpack(path: str, value: bytes) -> Entry:
    flags = value[0]
    lens = [n for b in value[1:6] for n in (b & 0x0F, b >> 4)]
    pos, ints = 6, []
    for i in range(_N_INTS):
        end = pos + lens[i]
        if lens[i] > 8 or end > len(value):
            raise ValueError("integer past the end")
        n = int.from_bytes(value[pos:end], "little")
        ints.append(_unzz(n) if _SIGNED[i] else n)
        pos = end
    blobs = []
    for bit in (_SUM_BIN | _SUM_TEXT, _TARGET, _META):
        if not flags & bit:
            blobs.append(None)
            continue
        size = shift = 0
        while True:
            b = value[pos]
            pos += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        if pos + size > len(value):
            raise ValueError("field past the end")
        blobs.append(value[pos : pos + size])
        pos += size
    if pos != len(value) or flags & 3 >= len(KINDS):
        raise ValueError("trailing bytes or unknown kind")
    raw_sum, target, meta = blobs
    checksum = None
    if raw_sum is not None:
        checksum = raw_sum.hex() if flags & _SUM_BIN else raw_sum.decode()
    size, mtime, mode, inode, dev, nlink, rmtime, uid, gid = ints
    return Entry(
        path, KINDS[flags & 3], size, mtime, mode, inode, dev, nlink, checksum,
        None if target is None else target.decode("utf-8", "surrogateescape"),
        rmtime, uid, gid, None if meta is None else meta.decode("utf-8"),
    )  # fmt: skip
