"""Sealing and opening datagrams: the wire format of `packets` joined with the AEAD of `crypto`.

The `Sealer` of a direction owns its packet-number counter: every datagram it seals takes the
next number, so a nonce can never be used twice under a key. The `Opener` authenticates first
and only then consults the replay window, so a forged datagram cannot poison the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .crypto import AuthenticationError, PacketProtection, ReplayWindow
from .packets import (
    DATA_HEADER,
    DATA_HEADER_SIZE,
    HEADER,
    HEADER_SIZE,
    SESSION_LOW,
    VERSION,
    DecodeError,
    PacketType,
)

__all__ = ["DataBlock", "DropReason", "Opener", "Sealer"]


class DataBlock(Protocol):
    """What `Sealer.seal_data_batch` reads of a block (the sender's `Block`)."""

    @property
    def stream_offset(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def retransmit(self) -> bool: ...


class DropReason:
    """Why a received datagram was dropped (bounded label set for counters)."""

    MALFORMED = "malformed"
    VERSION = "version"
    FOREIGN = "foreign_session"
    AUTH = "authentication"
    REPLAY = "replay"
    UNEXPECTED = "unexpected_type"
    OUT_OF_RANGE = "out_of_range"
    ALL = (MALFORMED, VERSION, FOREIGN, AUTH, REPLAY, UNEXPECTED, OUT_OF_RANGE)


class Sealer:
    def __init__(self, protection: PacketProtection, session_id: int) -> None:
        self.protection = protection
        self.session_id = session_id
        self.packet_number = 0

    def seal_data_into(self, buf: memoryview, stream_offset: int, send_time_us: int, payload_len: int,
                       flags: int = 0, plain: memoryview | None = None) -> int:  # fmt: skip
        """Write header, sealed payload and tag into `buf`; returns the length. The payload is
        `plain` (not overlapping `buf`), or with `plain` None already at DATA_HEADER_SIZE in
        `buf` (free for `none`, a copy for the ciphers: see PacketProtection)."""
        pn = self.packet_number
        self.packet_number = pn + 1
        DATA_HEADER.pack_into(buf, 0, VERSION, PacketType.DATA, flags, self.session_id & SESSION_LOW, pn,
                              stream_offset, send_time_us)  # fmt: skip
        return self.protection.seal_into(buf, DATA_HEADER_SIZE, payload_len, pn, plain)

    def seal_data_batch(self, slots: list[memoryview], blocks: Sequence[DataBlock], send_time_us: int,
                        plains: list[memoryview] | None, retransmit_flag: int) -> int:  # fmt: skip
        """`seal_data_into` for consecutive datagram slots at once (the hot path: one call per
        GSO batch, not three per datagram). `plains[j]` is block j's payload (None: in place);
        a block's `retransmit` sets `retransmit_flag`. Returns the last datagram's length."""
        pack, seal, sid = DATA_HEADER.pack_into, self.protection.seal_into, self.session_id & SESSION_LOW
        pn = self.packet_number
        n = 0
        for j, b in enumerate(blocks):
            buf = slots[j]
            pack(buf, 0, VERSION, PacketType.DATA, retransmit_flag if b.retransmit else 0, sid, pn + j,
                 b.stream_offset, send_time_us)  # fmt: skip
            n = seal(buf, DATA_HEADER_SIZE, b.length, pn + j, None if plains is None else plains[j])
        self.packet_number = pn + len(blocks)
        return n

    def seal(self, ptype: PacketType, body: bytes, flags: int = 0) -> bytes:
        pn = self.packet_number
        self.packet_number = pn + 1
        buf = bytearray(HEADER_SIZE + len(body) + self.protection.overhead)
        HEADER.pack_into(buf, 0, VERSION, ptype, flags, self.session_id, pn)
        n = self.protection.seal_into(buf, HEADER_SIZE, len(body), pn, body)
        return bytes(buf[:n])


class Opener:
    def __init__(self, protection: PacketProtection, session_id: int, window: int = 1 << 16) -> None:
        self.protection = protection
        self.session_id = session_id
        self.replay = ReplayWindow(window)

    def open_data(self, datagram: memoryview,
                  out: memoryview | None = None) -> tuple[int, int, int, memoryview]:  # fmt: skip
        """(flags, stream offset, send time, payload) of a DATA datagram, or DecodeError
        whose message is a DropReason. With `out` (writable, not overlapping the datagram) the
        payload is decrypted into it and lives as long as that buffer (with `none` it stays in
        the datagram); without, it is valid until the next call."""
        if len(datagram) < DATA_HEADER_SIZE:
            raise DecodeError(DropReason.MALFORMED)
        version, _ptype, flags, sid, pn, offset, ts = DATA_HEADER.unpack_from(datagram)
        if version != VERSION:
            raise DecodeError(DropReason.VERSION)
        if sid != self.session_id & SESSION_LOW:
            raise DecodeError(DropReason.FOREIGN)
        try:
            payload = self.protection.open(datagram, DATA_HEADER_SIZE, pn, out)
        except AuthenticationError:
            raise DecodeError(DropReason.AUTH) from None
        if not self.replay.check_and_mark(pn):
            raise DecodeError(DropReason.REPLAY)
        return flags, offset, ts, payload

    def open(self, datagram: memoryview) -> tuple[PacketType, int, memoryview]:
        """(type, flags, plaintext body) of a non-DATA datagram; DecodeError(DropReason)."""
        if len(datagram) < HEADER_SIZE:
            raise DecodeError(DropReason.MALFORMED)
        version, ptype, flags, sid, pn = HEADER.unpack_from(datagram)
        if version != VERSION:
            raise DecodeError(DropReason.VERSION)
        if sid != self.session_id:
            raise DecodeError(DropReason.FOREIGN)
        try:
            kind = PacketType(ptype)
        except ValueError:
            raise DecodeError(DropReason.MALFORMED) from None
        try:
            body = self.protection.open(datagram, HEADER_SIZE, pn)
        except AuthenticationError:
            raise DecodeError(DropReason.AUTH) from None
        if not self.replay.check_and_mark(pn):
            raise DecodeError(DropReason.REPLAY)
        return kind, flags, body


def peek_type(datagram: memoryview) -> int:
    """The packet type byte, or -1 for a datagram too short to have one."""
    return datagram[1] if len(datagram) >= HEADER_SIZE else -1
