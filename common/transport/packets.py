"""Wire format of the UDP transport (version 2). See docs/PROTOCOL.md.

FEEDBACK (receiver -> sender), STATUS (sender -> receiver) and CLOSE datagrams start with a clear
20-byte header, authenticated as associated data, and carry an encrypted body::

    version u8 | type u8 | flags u16 | session id u64 | packet number u64

DATA datagrams, the bulk of every transfer, have a 27-byte clear header of their own (also
associated data), then the encrypted block and its tag::

    version u8 | type u8 | flags u8 | session id, low 32 bits u32 | packet number u64 |
    stream offset u64 | send time u32 (microseconds, wrapping) | payload | tag

The stream offset places the block in the session's files laid end to end, which both ends know
(StreamLayout); 9 bytes fewer than a file index and offset plus a full session id is 0.6 % more
file data in a 1500-byte packet. The session id's low half still drops foreign datagrams before
any cryptography (and a forged one fails authentication anyway).
All integers are big-endian. A packet number is used once per direction and session: it is the
nonce of the datagram and the key of the replay window.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = [
    "DATA_HEADER",
    "DATA_HEADER_SIZE",
    "FLAG_ALL_SENT",
    "FLAG_RETRANSMIT",
    "HEADER",
    "HEADER_SIZE",
    "RANGE",
    "SESSION_LOW",
    "VERSION",
    "Close",
    "CloseCode",
    "DataHeader",
    "DecodeError",
    "Feedback",
    "Header",
    "PacketType",
    "Status",
]

VERSION: Final = 2
HEADER: Final = struct.Struct("!BBHQQ")
HEADER_SIZE: Final = HEADER.size  # 20
DATA_HEADER: Final = struct.Struct("!BBBIQQI")  # the whole clear header of a DATA datagram
DATA_HEADER_SIZE: Final = DATA_HEADER.size  # 27
SESSION_LOW: Final = 0xFFFF_FFFF  # the part of the session id a DATA datagram carries
RANGE: Final = struct.Struct("!QI")  # a retransmission request: start, length

FLAG_RETRANSMIT: Final = 0x0001  # DATA: this block was sent before
FLAG_ALL_SENT: Final = 0x0001  # STATUS: every byte has been sent at least once


class PacketType(IntEnum):
    DATA = 1
    FEEDBACK = 2
    STATUS = 3
    CLOSE = 4


class DecodeError(ValueError):
    """Truncated or malformed bytes; the session counts it as a drop."""


@dataclass(frozen=True, slots=True)
class Header:
    type: PacketType
    flags: int
    session_id: int
    packet_number: int
    version: int = VERSION

    def encode(self) -> bytes:
        return HEADER.pack(self.version, self.type, self.flags, self.session_id, self.packet_number)

    @classmethod
    def parse(cls, data: bytes | memoryview) -> Header:
        if len(data) < HEADER_SIZE:
            raise DecodeError(f"datagram of {len(data)} bytes is shorter than the header")
        version, ptype, flags, sid, pn = HEADER.unpack_from(data)
        if version != VERSION:
            raise DecodeError(f"unsupported protocol version {version}")
        try:
            return cls(PacketType(ptype), flags, sid, pn, version)
        except ValueError:
            raise DecodeError(f"unknown packet type {ptype}") from None


@dataclass(frozen=True, slots=True)
class DataHeader:
    """The clear header of a DATA datagram (the hot path uses DATA_HEADER directly; this class
    is its readable twin for tests and tools)."""

    flags: int
    session_low: int  # the session id's low 32 bits
    packet_number: int
    stream_offset: int
    send_time_us: int
    version: int = VERSION

    def encode(self) -> bytes:
        return DATA_HEADER.pack(self.version, PacketType.DATA, self.flags, self.session_low, self.packet_number,
                                self.stream_offset, self.send_time_us)  # fmt: skip

    @classmethod
    def parse(cls, data: bytes | memoryview) -> DataHeader:
        if len(data) < DATA_HEADER_SIZE:
            raise DecodeError("truncated data header")
        version, ptype, flags, sid, pn, offset, ts = DATA_HEADER.unpack_from(data)
        if version != VERSION:
            raise DecodeError(f"unsupported protocol version {version}")
        if ptype != PacketType.DATA:
            raise DecodeError(f"not a data header (type {ptype})")
        return cls(flags, sid, pn, offset, ts, version)


_FEEDBACK: Final = struct.Struct("!IIQQQIIQH")


@dataclass(frozen=True, slots=True)
class Feedback:
    """Receiver progress, path measurements and retransmission requests."""

    echo_time_us: int  # send time of the newest DATA received, echoed for RTT
    hold_us: int  # how long the receiver held that echo before sending this
    ack: int  # every stream byte below this has arrived
    received: int  # distinct stream bytes received so far
    arrived: int  # all DATA payload bytes ever arrived, duplicates included (loss estimation)
    queue_delay_us: int  # mean one-way delay above the path's minimum, this interval
    min_delay_us: int  # least delay above the path's minimum, this interval
    delivery_rate: int  # bytes/s of DATA payload arrived over the last interval
    requests: tuple[tuple[int, int], ...] = ()  # (start, length) stream ranges to send again

    @staticmethod
    def max_requests(rexmsg_size: int) -> int:
        """How many ranges fit in one request of at most `rexmsg_size` bytes (the -X limit)."""
        return max(1, (rexmsg_size - HEADER_SIZE - _FEEDBACK.size - 16) // RANGE.size)

    def encode(self) -> bytes:
        head = _FEEDBACK.pack(
            self.echo_time_us, self.hold_us, self.ack, self.received, self.arrived, self.queue_delay_us,
            self.min_delay_us, self.delivery_rate, len(self.requests),
        )  # fmt: skip
        return head + b"".join(RANGE.pack(s, n) for s, n in self.requests)

    @classmethod
    def parse(cls, body: bytes | memoryview) -> Feedback:
        if len(body) < _FEEDBACK.size:
            raise DecodeError("truncated feedback")
        echo, hold, ack, received, arrived, q_mean, q_min, rate, count = _FEEDBACK.unpack_from(body)
        if len(body) != _FEEDBACK.size + count * RANGE.size:
            raise DecodeError(f"feedback announces {count} ranges but carries {len(body)} bytes")
        reqs = tuple(RANGE.unpack_from(body, _FEEDBACK.size + i * RANGE.size) for i in range(count))
        return cls(echo, hold, ack, received, arrived, q_mean, q_min, rate, reqs)


_STATUS: Final = struct.Struct("!QIQ")


@dataclass(frozen=True, slots=True)
class Status:
    """Sender state, sent periodically: lets the receiver find lost tail blocks."""

    sent_up_to: int  # highest stream offset sent so far
    srtt_us: int  # the sender's smoothed round-trip time
    rate: int  # current sending rate, bytes/s

    def encode(self) -> bytes:
        return _STATUS.pack(self.sent_up_to, self.srtt_us, self.rate)

    @classmethod
    def parse(cls, body: bytes | memoryview) -> Status:
        if len(body) != _STATUS.size:
            raise DecodeError("malformed status")
        return cls(*_STATUS.unpack_from(body))


_CLOSE: Final = struct.Struct("!HB")  # code, reason length
_CLOSE_REASON_MAX: Final = 200


class CloseCode(IntEnum):
    DONE = 0
    CANCELLED = 1
    PROTOCOL_ERROR = 2
    IO_ERROR = 3
    TIMEOUT = 4


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str = ""  # at most 200 bytes of UTF-8 go on the wire, cut on a character boundary

    def encode(self) -> bytes:
        reason = self.reason.encode()[:_CLOSE_REASON_MAX].decode("utf-8", "ignore").encode()
        return _CLOSE.pack(self.code, len(reason)) + reason

    @classmethod
    def parse(cls, body: bytes | memoryview) -> Close:
        if len(body) < _CLOSE.size:
            raise DecodeError("malformed close")
        code, length = _CLOSE.unpack_from(body)
        if length > _CLOSE_REASON_MAX or len(body) != _CLOSE.size + length:
            raise DecodeError("malformed close")
        return cls(code, bytes(body[_CLOSE.size :]).decode("utf-8", "replace"))
