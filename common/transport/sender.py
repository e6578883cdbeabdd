"""The sending side of a transport session, sans-I/O.

The driver calls `poll_blocks(now)` for the blocks the pacer allows now, reads each block's bytes
into a buffer and seals it with `seal_block`; it feeds every received datagram to `receive`,
sends what `poll_datagrams` returns, and sleeps until `next_deadline()`. The session keeps two
range sets over the stream: bytes never sent (`unsent`) and bytes the receiver asked for again
(`retransmit`, served first). It is done when the receiver acknowledges every byte.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from .codec import DropReason, Opener, Sealer
from .config import SessionConfig, StreamLayout
from .crypto import derive_protection
from .estimators import LossEstimator, RttEstimator
from .packets import (
    FLAG_ALL_SENT,
    FLAG_RETRANSMIT,
    Close,
    CloseCode,
    DecodeError,
    Feedback,
    PacketType,
    Status,
)
from .ranges import RangeSet
from .ratecontrol import make_controller

__all__ = ["Block", "SenderSession", "SessionClosed"]

_US = 1_000_000
_MASK32 = 0xFFFFFFFF


class Block(NamedTuple):
    """One datagram's worth of a file (a tuple: made for every datagram, so made cheaply)."""

    file_index: int
    offset: int  # in the file
    length: int
    stream_offset: int
    retransmit: bool


class SessionClosed(Exception):
    """The session ended: `code` is a CloseCode, `reason` says why."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class SenderSession:
    def __init__(self, config: SessionConfig, sizes: list[int], now: float,
                 have: RangeSet | None = None) -> None:  # fmt: skip
        self.config = config
        self.layout = StreamLayout(sizes)
        self.sealer = Sealer(derive_protection(config.cipher, config.secret, "data"), config.session_id)
        self.opener = Opener(derive_protection(config.cipher, config.secret, "feedback"), config.session_id)
        self.controller = make_controller(config.rate)
        self.block_size = config.block_size
        self.unsent = RangeSet([(0, self.layout.total)])
        for s, e in have or ():
            self.unsent.remove(s, e)
        self.retransmit = RangeSet()
        self._recent = RangeSet()  # retransmitted within the last round trip: ignore repeat asks
        self._recent_log: deque[tuple[float, int, int]] = deque()
        self.acked = 0
        self.sent_up_to = 0
        self.rtt = RttEstimator(now)
        self.loss = LossEstimator()
        self._credit = 0.0
        self._last_pace = now
        self._last_heard = now
        self._last_status = -1.0
        self._outbox: list[bytes] = []
        self.closed: SessionClosed | None = None
        self.bytes_sent = 0
        self.bytes_retransmitted = 0
        self.datagrams_sent = 0
        self.drops = dict.fromkeys(DropReason.ALL, 0)
        self.start_time = now
        self.end_time: float | None = None
        self._acked_once = False
        self.wire_bytes = 0  # payload plus per-datagram overhead, for the pacer's units
        self._sent_history: deque[tuple[float, int, float]] = deque()
        self._all_sent_announced = False
        self._sent_since_heard = 0  # wire bytes sent since the receiver's last feedback
        self._backlog = 0.0  # bytes queued ahead of the receiver, per its last feedback
        self._stall_budget = config.stall_budget

    # -- state ---------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.closed is not None

    @property
    def complete(self) -> bool:
        """Every byte of the stream is acknowledged by the receiver."""
        return self.acked >= self.layout.total and self._acked_once

    def _rtt(self) -> float:
        return self.rtt.srtt or 0.1

    # -- inputs --------------------------------------------------------------------------------
    def receive(self, datagram: memoryview | bytes, now: float) -> None:
        try:
            kind, _flags, body = self.opener.open(memoryview(datagram))
            if kind == PacketType.FEEDBACK:
                fb = Feedback.parse(body)
                self._sent_since_heard = 0
                # Bytes waiting before the receiver read them, by Little's law, as it measured:
                # its mean delay times what arrived per second, which over a short interval
                # (a report per megabyte) can spike far above what we send; our rate bounds it.
                arrivals = min(fb.delivery_rate, self.controller.rate)
                self._backlog = arrivals * fb.queue_delay_us / _US
                self._on_feedback(fb, now)
            elif kind == PacketType.CLOSE:
                close = Close.parse(body)
                if self.closed is None:
                    self.closed = SessionClosed(close.code, close.reason or "closed by receiver")
                    self.end_time = now
            else:
                raise DecodeError(DropReason.UNEXPECTED)
        except DecodeError as exc:
            reason = str(exc)
            self.drops[reason if reason in self.drops else DropReason.MALFORMED] += 1
            return
        self._last_heard = now

    def _on_feedback(self, fb: Feedback, now: float) -> None:
        now_us = int(now * _US) & _MASK32
        rtt = ((now_us - fb.echo_time_us - fb.hold_us) & _MASK32) / _US
        if fb.hold_us != _MASK32 and 0 < rtt < 60:
            self.rtt.sample(rtt, now)
        total = self.layout.total
        if fb.ack > total:
            self.drops[DropReason.OUT_OF_RANGE] += 1
            return
        if fb.ack > self.acked:
            self.acked = fb.ack
            self.retransmit.remove(0, fb.ack)
        if fb.ack >= total:
            self._acked_once = True
        self._expire_recent(now)
        for start, length in fb.requests:
            end = min(start + length, self.sent_up_to, total)
            start = max(start, self.acked)
            if start >= end:
                continue
            for s, e in self._recent.gaps(start, end):
                for gs, ge in self.unsent.gaps(s, e):  # never "retransmit" what was never sent
                    self.retransmit.add(gs, ge)
        if self.complete and self.closed is None:
            self._outbox.append(self.sealer.seal(PacketType.CLOSE, Close(CloseCode.DONE).encode()))
            self.closed = SessionClosed(CloseCode.DONE, "complete")
            self.end_time = now
            return
        self.loss.on_report(now, fb.arrived, self._rtt())
        if (self.unsent or self.retransmit) and not self._sender_limited(now):
            # When the sender itself fell short of its rate (nothing to send, or no CPU), a
            # low delivery rate says nothing about the path: leave the rate alone.
            wire_rate = fb.delivery_rate * self._wire_ratio()  # pacing counts whole datagrams
            self.controller.on_feedback(now, fb.queue_delay_us / _US, wire_rate, self._rtt(),
                                        self.rtt.min_rtt or self._rtt(), self.loss.loss,
                                        fb.min_delay_us / _US)  # fmt: skip

    def _wire_ratio(self) -> float:
        """Datagram bytes per payload byte so far (small files make headers weigh more)."""
        if not self.bytes_sent:
            return self.config.datagram_size / self.block_size
        return self.wire_bytes / self.bytes_sent

    def _sender_limited(self, now: float) -> bool:
        """Did we send less than 85 % of what the rate allowed over the last round trip?"""
        hist = self._sent_history
        hist.append((now, self.bytes_sent, self.controller.rate))
        horizon = now - max(self._rtt(), 0.02)
        while len(hist) > 2 and hist[1][0] <= horizon:
            hist.popleft()
        t0, sent0, rate0 = hist[0]
        if now - t0 < 0.01:
            return False
        wire = (self.bytes_sent - sent0) * self._wire_ratio()
        return wire < 0.85 * min(rate0, self.controller.rate) * (now - t0)

    def _expire_recent(self, now: float) -> None:
        horizon = now - max(self._rtt() * 1.2, 0.005)
        log = self._recent_log
        while log and log[0][0] < horizon:
            _, s, e = log.popleft()
            self._recent.remove(s, e)

    def cancel(self, now: float, reason: str = "cancelled") -> None:
        if self.closed is None:
            self._outbox.append(self.sealer.seal(PacketType.CLOSE, Close(CloseCode.CANCELLED, reason).encode()))
            self.closed = SessionClosed(CloseCode.CANCELLED, reason)
            self.end_time = now

    # -- outputs -------------------------------------------------------------------------------
    def poll_blocks(self, now: float, limit: int = 64) -> list[Block]:
        """Blocks the pacer allows to send now (retransmissions first), at most `limit`."""
        if self.closed is not None:
            return []
        rate = self.controller.rate
        burst = max(rate * self.config.max_burst, 4.0 * self.config.datagram_size)
        self._credit = min(self._credit + rate * (now - self._last_pace), burst)
        self._last_pace = now
        window = self._window(rate)
        if window <= 0:
            return []
        out: list[Block] = []
        overhead = self.config.datagram_size - self.block_size  # header and tag of every datagram
        credit = min(self._credit, window)
        wire_before = self.wire_bytes
        while credit > 0 and len(out) < limit:
            is_rexmit = bool(self.retransmit)
            source = self.retransmit if is_rexmit else self.unsent
            first = source.first()
            if first is None:
                break
            carved = len(out)
            start, cur, credit = self._carve(first, is_rexmit, credit, limit, out)
            source.pop_front(cur - start)
            copies = 1
            if is_rexmit:
                self._recent.add(start, cur)
                self._recent_log.append((now, start, cur))
                if not self.unsent and len(out) - carved <= limit - len(out):
                    # The tail: everything was sent once, so the link is idle but for repairs,
                    # and a lost repair costs the whole transfer two more round trips. Each
                    # repair goes twice: p^2 instead of p, for a few datagrams' worth of bytes.
                    copies = 2
                    dup = out[carved:]
                    out.extend(dup)
                    credit -= sum(b.length for b in dup) + overhead * len(dup)
                self.bytes_retransmitted += (cur - start) * copies
            elif cur > self.sent_up_to:
                self.sent_up_to = cur
            self.bytes_sent += (cur - start) * copies
            self.wire_bytes += (cur - start) * copies + overhead * (len(out) - carved)
        spent = self.wire_bytes - wire_before
        self._credit -= spent
        self._sent_since_heard += spent
        if out:
            self.datagrams_sent += len(out)
            self.loss.on_sent(now, self.bytes_sent)
        return out

    def _window(self, rate: float) -> float:
        """Flow control: bytes the receiver can still take. One that has said nothing for a
        round trip (the path's, without queues: a queue in its socket buffer is what this
        guards) while its buffer filled up (the budget, less what was queued already) is not
        reading (descheduled, overloaded); more would only overflow its buffer."""
        path_rtt = self.rtt.min_rtt or self._rtt()
        return self._stall_budget - self._backlog + rate * path_rtt - self._sent_since_heard

    def _carve(self, first: tuple[int, int], is_rexmit: bool, credit: float, limit: int,
               out: list[Block]) -> tuple[int, int, float]:  # fmt: skip
        """Append consecutive blocks of the range `first` to `out` while credit and `limit`
        allow; returns (range start, where carving stopped, credit left). The caller takes
        them off the range set at once."""
        layout, bsize = self.layout, self.block_size
        overhead = self.config.datagram_size - bsize
        start, range_end = first
        cur = start
        while credit > 0 and len(out) < limit and cur < range_end:
            index, offset, left = layout.locate(cur)  # once per file: blocks follow
            span = min(left, range_end - cur)
            while span > 0 and credit > 0 and len(out) < limit:
                n = bsize if span > bsize else span
                out.append(Block(index, offset, n, cur, is_rexmit))
                offset += n
                cur += n
                span -= n
                credit -= n + overhead
        return start, cur, credit

    @property
    def seals_in_place(self) -> bool:
        """True when a block's bytes may be read straight into the datagram (`-c none`);
        otherwise the driver reads them into a buffer of its own and passes it as `plain`."""
        return self.sealer.protection.in_place

    def seal_batch(self, slots: list[memoryview], blocks: list[Block], now: float,
                   plains: list[memoryview] | None = None) -> int:
        """`seal_block` for blocks j into datagram buffers `slots[j]` (their bytes in
        `plains[j]`, or in place with None); returns the last datagram's length."""
        return self.sealer.seal_data_batch(slots, blocks, int(now * _US) & _MASK32, plains, FLAG_RETRANSMIT)

    def seal_block(self, buf: memoryview, block: Block, now: float,
                   plain: memoryview | None = None) -> int:  # fmt: skip
        """Seal a block into the datagram buffer `buf`: its bytes are `plain` (not overlapping
        `buf`), or already at DATA_HEADER_SIZE in `buf`. Returns the datagram length."""
        return self.sealer.seal_data_into(buf, block.stream_offset, int(now * _US) & _MASK32, block.length,
                                          FLAG_RETRANSMIT if block.retransmit else 0, plain)  # fmt: skip

    def poll_datagrams(self, now: float) -> list[bytes]:
        """Control datagrams due now (status probes, close)."""
        if self.closed is None:
            if now - self._last_heard > self.config.idle_timeout:
                self.closed = SessionClosed(CloseCode.TIMEOUT,
                                            f"no answer from the receiver for {self.config.idle_timeout:.0f} s")  # fmt: skip
                self.end_time = now
            elif now - self._last_heard > max(4 * self._rtt(), 0.5) and now - self._last_status >= self._rtt():
                self.controller.on_silence(now)
            all_sent = not self.unsent and not self.retransmit
            interval = min(self.config.status_interval, max(self._rtt(), 0.005)) if all_sent else self.config.status_interval
            if now - self._last_status >= interval or (all_sent and not self._all_sent_announced):
                self._all_sent_announced = all_sent
                self._last_status = now
                status = Status(self.sent_up_to, int(self._rtt() * _US), int(self.controller.rate))
                self._outbox.append(self.sealer.seal(PacketType.STATUS, status.encode(),
                                                     FLAG_ALL_SENT if all_sent else 0))  # fmt: skip
        out, self._outbox = self._outbox, []
        return out

    def next_deadline(self, now: float) -> float:
        """When the driver should call again even if nothing arrives."""
        if self.closed is not None:
            return now
        deadline = self._last_status + self.config.status_interval
        if (self.retransmit or self.unsent) and self._window(self.controller.rate) > 0:
            # (with the window shut, only a feedback opens it: the driver waits on the socket)
            rate = max(self.controller.rate, 1.0)
            need = -self._credit + 1.0
            deadline = min(deadline, now + max(need / rate, 0.0))
        return deadline

    def statistics(self) -> dict[str, object]:
        end = self.end_time or self._last_pace
        elapsed = max(end - self.start_time, 1e-9)
        return {
            "bytes_total": self.layout.total,
            "bytes_sent": self.bytes_sent,
            "bytes_retransmitted": self.bytes_retransmitted,
            "bytes_acked": self.acked,
            "datagrams_sent": self.datagrams_sent,
            "srtt": self.rtt.srtt,
            "min_rtt": self.rtt.min_rtt,
            "loss": self.loss.loss,
            "elapsed": elapsed,
            "drops": dict(self.drops),
            **{f"rate_{k}": v for k, v in self.controller.statistics().items()},
        }
