"""The compact byte form of one snapshot :class:`~common.snapshot.base.Entry` in Redis, small
enough that a bucket of entries stays in Redis's listpack encoding (values <= 64 bytes).

The path is not in the value: it is the hash field (its :func:`path_sort_key`), so a value is::

    flags   1 byte   kind (bits 0-1), checksum as binary (4) or as text (8), target (16), meta (32)
    widths  3 bytes  the width class of each of the 9 integers below, 2 bits each: 1, 2, 4, 8 bytes
    ints             size, mtime_ns, mode, inode, dev, nlink, rmtime_ns, uid, gid; little-endian,
                     signed ones zigzag-mapped (small magnitudes stay small)
    blobs            checksum, target, meta when present: a varint length, then the bytes

Width classes rather than exact byte counts so that one cached ``struct.Struct`` per width
combination packs and unpacks all nine integers in C.  A lowercase even-length hex checksum is
stored as its bytes (a SHA-1 takes 20 bytes, not 40).
"""

from __future__ import annotations

import struct
from typing import Final

from common.snapshot.base import KINDS, Entry

__all__ = ["CodecError", "key_path", "pack", "unpack"]

_KIND_CODE: Final = {kind: code for code, kind in enumerate(KINDS)}
_SUM_BIN: Final = 4
_SUM_TEXT: Final = 8
_TARGET: Final = 16
_META: Final = 32
_HEAD: Final = 4  # flags + widths
# bit_length -> width class: 0-8 bits -> 0 (1 byte), -16 -> 1 (2), -32 -> 2 (4), -64 -> 3 (8).
_CLASS: Final = bytes(0 if b <= 8 else 1 if b <= 16 else 2 if b <= 32 else 3 for b in range(65))
_STRUCTS: dict[int, struct.Struct] = {}


def _struct(widths: int) -> struct.Struct:
    st = _STRUCTS.get(widths)
    if st is None:
        st = _STRUCTS[widths] = struct.Struct(
            "<" + "".join("BHIQ"[(widths >> (2 * i)) & 3] for i in range(9))
        )
    return st


class CodecError(ValueError):
    """A stored value that is not a packed entry (damaged or written by something else)."""


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
    m, mode, nl, rm, uid, gid = e.mtime_ns, e.mode, e.nlink, e.rmtime_ns, e.uid, e.gid
    ints = (e.size, (m << 1) ^ (m >> 63), (mode << 1) ^ (mode >> 63), e.inode, e.dev,
            (nl << 1) ^ (nl >> 63), (rm << 1) ^ (rm >> 63), (uid << 1) ^ (uid >> 63),
            (gid << 1) ^ (gid >> 63))  # zigzag, inline: this runs for every entry  # fmt: skip
    c = bytes(map(_CLASS.__getitem__, map(int.bit_length, ints)))
    widths = (c[0] | c[1] << 2 | c[2] << 4 | c[3] << 6 | c[4] << 8 | c[5] << 10 | c[6] << 12
              | c[7] << 14 | c[8] << 16)  # fmt: skip
    flags = _KIND_CODE[e.kind]
    head = _struct(widths).pack(*ints)
    if e.checksum is None and e.target is None and e.meta is None:
        return bytes((flags, widths & 0xFF, widths >> 8 & 0xFF, widths >> 16)) + head
    parts = [b"", head]
    if e.checksum is not None:
        raw = _binary_checksum(e.checksum)
        flags |= _SUM_TEXT if raw is None else _SUM_BIN
        parts += _blob(e.checksum.encode() if raw is None else raw)
    if e.target is not None:
        flags |= _TARGET
        parts += _blob(e.target.encode("utf-8", "surrogateescape"))
    if e.meta is not None:
        flags |= _META
        parts += _blob(e.meta.encode("utf-8"))
    parts[0] = bytes((flags, widths & 0xFF, widths >> 8 & 0xFF, widths >> 16))
    return b"".join(parts)


def _blob(data: bytes) -> tuple[bytes, bytes]:
    return _varint(len(data)), data


def key_path(key: bytes) -> str:
    """The path of a :func:`path_sort_key` (the hash field)."""
    return key.replace(b"\x00", b"/").decode("utf-8", "surrogateescape")


def unpack(key: bytes, value: bytes) -> Entry:
    """The Entry stored under hash field ``key``; CodecError if ``value`` is not one."""
    try:
        return _unpack(key_path(key), value)
    except (IndexError, ValueError, struct.error) as exc:
        raise CodecError(f"damaged snapshot entry for {key_path(key)!r}: {exc}") from None


def _unpack(path: str, value: bytes) -> Entry:
    flags = value[0]
    if flags >= 64 or flags & 3 >= len(KINDS) or value[3] > 3:
        raise ValueError("unknown flags or kind")
    st = _struct(int.from_bytes(value[1:_HEAD], "little"))
    size, mtime, mode, inode, dev, nlink, rmtime, uid, gid = st.unpack_from(value, _HEAD)
    pos = _HEAD + st.size
    blobs: list[bytes | None] = [None, None, None]
    if flags >= _SUM_BIN:
        for n, bit in enumerate((_SUM_BIN | _SUM_TEXT, _TARGET, _META)):
            if flags & bit:
                blobs[n], pos = _read_blob(value, pos)
    if pos != len(value):
        raise ValueError("trailing bytes")
    raw_sum, target, meta = blobs
    checksum = None
    if raw_sum is not None:
        checksum = raw_sum.hex() if flags & _SUM_BIN else raw_sum.decode()
    return Entry(
        path, KINDS[flags & 3], size, (mtime >> 1) ^ -(mtime & 1), (mode >> 1) ^ -(mode & 1),
        inode, dev, (nlink >> 1) ^ -(nlink & 1), checksum,
        None if target is None else target.decode("utf-8", "surrogateescape"),
        (rmtime >> 1) ^ -(rmtime & 1), (uid >> 1) ^ -(uid & 1), (gid >> 1) ^ -(gid & 1),
        None if meta is None else meta.decode("utf-8"),
    )  # fmt: skip


def _read_blob(value: bytes, pos: int) -> tuple[bytes, int]:
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
    return value[pos : pos + size], pos + size
