"""Configuration of one transport session, agreed by both ends over the control channel."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field

from .crypto import TAG_SIZE
from .packets import DATA_HEADER_SIZE
from .ratecontrol import RateConfig

__all__ = ["MAX_DATAGRAM", "MIN_DATAGRAM", "MIN_REXMSG", "SessionConfig", "StreamLayout"]

MIN_DATAGRAM = 296  # -Z range of the reference
MIN_REXMSG = 98  # the smallest FEEDBACK that carries one retransmission range
MAX_DATAGRAM = 65535
_MAX_UDP_PAYLOAD = 65507


@dataclass(frozen=True)
class SessionConfig:
    session_id: int
    cipher: str  # negotiated: "aes128gcm", "aes256cfb", "none"...
    secret: bytes = field(repr=False)
    rate: RateConfig
    datagram_size: int = 1472  # bytes of UDP payload per DATA datagram, header and tag included
    rexmsg_size: int = 1440  # -X: largest retransmission request
    feedback_interval: float = 0.01
    # What the receiver's UDP socket holds (SO_RCVBUF as the kernel reports it, which counts
    # its own overhead too). The default is what a process without privileges gets where
    # net.core.rmem_max is 4 MiB; ends that know better say so over the control channel.
    receive_buffer: int = 8 << 20
    status_interval: float = 0.05
    idle_timeout: float = 30.0  # give up when the peer is silent this long
    max_burst: float = 0.004  # seconds of the current rate the pacer may send back to back

    def __post_init__(self) -> None:
        if not MIN_DATAGRAM - 28 <= self.datagram_size <= _MAX_UDP_PAYLOAD:
            raise ValueError(f"datagram size {self.datagram_size} out of range")
        if not MIN_REXMSG <= self.rexmsg_size <= 1440:
            raise ValueError(f"-X: retransmission request size must be between {MIN_REXMSG} and 1440 bytes")
        if self.block_size < 64:
            raise ValueError("datagram size too small for the header and tag")
        if self.receive_buffer < 1:
            raise ValueError("receive buffer size must be positive")

    @property
    def stall_budget(self) -> int:
        """Flow control: what the sender may send past the receiver's last feedback (and its
        standing queue), beyond one round trip at its rate. A receiving process that is not
        scheduled reads nothing and says nothing; this much its buffer absorbs meanwhile,
        instead of dropping datagrams (half of it: small datagrams cost the kernel about twice
        their size)."""
        return self.receive_buffer // 2

    @property
    def feedback_bytes(self) -> int:
        """The receiver reports every `feedback_interval`, or sooner once this many payload
        bytes arrived: at loopback and LAN rates the sender hears well within its budget."""
        return max(64 << 10, min(1 << 20, self.receive_buffer // 16))

    @property
    def block_size(self) -> int:
        """File bytes carried by one full DATA datagram."""
        overhead = 0 if self.cipher == "none" else TAG_SIZE
        return self.datagram_size - DATA_HEADER_SIZE - overhead


class StreamLayout:
    """Places the session's files end to end in one stream, so loss recovery works on a single
    range set. A block never crosses a file boundary; zero-length files take no stream space."""

    __slots__ = ("_hint", "bases", "sizes", "total")

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)
        self.bases: list[int] = []
        pos = 0
        for size in self.sizes:
            if size < 0:
                raise ValueError("file size must not be negative")
            self.bases.append(pos)
            pos += size
        self.total = pos
        self._hint = 0

    def __len__(self) -> int:
        return len(self.sizes)

    def locate(self, stream_offset: int) -> tuple[int, int, int]:
        """(file index, offset in file, bytes left in that file) of a stream offset."""
        i = self._hint
        bases, sizes = self.bases, self.sizes
        if not (i < len(bases) and bases[i] <= stream_offset < bases[i] + sizes[i]):
            i = bisect_right(bases, stream_offset) - 1
            while sizes[i] == 0 or stream_offset >= bases[i] + sizes[i]:
                i += 1  # skip zero-length files that share a base
            self._hint = i
        off = stream_offset - bases[i]
        return i, off, sizes[i] - off
