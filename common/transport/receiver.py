"""The receiving side of a transport session, sans-I/O.

`receive(datagram, now)` returns the block the driver must write (file index, offset, payload)
or None; the session keeps the set of stream bytes received, measures one-way delay for rate
control, and every feedback interval `poll_datagrams` yields a FEEDBACK: the cumulative ack, the
delay and delivery rate seen, and retransmission requests for the gaps (each gap asked again
only after a round trip, so repairs are not duplicated). `events()` reports files that are
complete, in the order they complete.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .codec import DropReason, Opener, Sealer
from .config import SessionConfig, StreamLayout
from .crypto import derive_protection
from .packets import (
    FLAG_ALL_SENT,
    Close,
    CloseCode,
    DecodeError,
    Feedback,
    PacketType,
    Status,
)
from .ranges import RangeSet
from .sender import SessionClosed

__all__ = ["FileComplete", "ReceiverSession"]

_US = 1_000_000
_MASK32 = 0xFFFFFFFF
_HALF32 = 1 << 31
_NO_ECHO = _MASK32
_DATA = int(PacketType.DATA)


@dataclass(frozen=True, slots=True)
class FileComplete:
    file_index: int


class ReceiverSession:
    def __init__(self, config: SessionConfig, sizes: list[int], now: float,
                 have: RangeSet | None = None) -> None:  # fmt: skip
        self.config = config
        self.layout = StreamLayout(sizes)
        self.opener = Opener(derive_protection(config.cipher, config.secret, "data"), config.session_id)
        self.sealer = Sealer(derive_protection(config.cipher, config.secret, "feedback"), config.session_id)
        self.received = RangeSet()
        self._remaining = list(self.layout.sizes)
        self._events: list[FileComplete] = []
        for s, e in have or ():
            while s < e:  # a resumed range may span several files: account each file apart
                index, _, left = self.layout.locate(s)
                self._note_new(s, min(e, s + left), index)
                s += left
        for index, size in enumerate(self.layout.sizes):
            if size == 0:
                self._events.append(FileComplete(index))
        self._max_requests = Feedback.max_requests(config.rexmsg_size)
        self.highest = self.received.prefix_end(0)  # highest stream offset seen
        self._highest_prev = self.highest
        self.sender_sent_up_to = 0
        self.sender_all_sent = False
        self.srtt = 0.0
        self.sender_rate = 0  # bytes/s, as the sender's last status said
        # Delay measurement: one-way delay relative to the first sample (clocks need not agree).
        self._delay_ref: int | None = None
        self._delay_sum = 0
        self._delay_n = 0
        self._delay_min = 0
        self._base_windows: deque[tuple[float, int]] = deque()  # (window start, min delay)
        self._echo_ts = 0
        self._echo_at = now
        self._arrived_interval = 0
        self._feedback_bytes = config.feedback_bytes
        self._last_feedback = now
        self._last_heard = now
        self._recent = RangeSet()  # asked for within the last round trip
        self._asked_last: list[tuple[int, int]] = []  # the previous feedback's requests
        self._recent_log: deque[tuple[float, int, int]] = deque()
        self._outbox: list[bytes] = []
        self.closed: SessionClosed | None = None
        self.bytes_received = 0  # payload bytes accepted, duplicates included
        self.bytes_duplicate = 0
        self.requests_sent = 0
        self.drops = dict.fromkeys(DropReason.ALL, 0)
        self.start_time = now
        self.end_time: float | None = None
        self.queue_delay_us = 0

    # -- state ---------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return self.received.total >= self.layout.total

    @property
    def done(self) -> bool:
        return self.closed is not None

    def events(self) -> list[FileComplete]:
        out, self._events = self._events, []
        return out

    def _note_new(self, start: int, end: int, index: int = -1) -> int:
        added = self.received.add(start, end)
        if added:
            if index < 0:
                index, _, _ = self.layout.locate(start)
            self._remaining[index] -= added
            if self._remaining[index] == 0:
                self._events.append(FileComplete(index))
        return added

    # -- inputs --------------------------------------------------------------------------------
    def receive(self, datagram: memoryview, now: float,
                out: memoryview | None = None) -> tuple[int, int, memoryview] | None:  # fmt: skip
        """Accept one datagram; returns (file index, offset, payload) to write, or None. With
        `out` (a writable buffer at least as long as the datagram, not overlapping it) a DATA
        payload is decrypted into it and stays valid as long as `out`; without, only until the
        next call."""
        try:
            if len(datagram) > 1 and datagram[1] == _DATA:
                return self._on_data(datagram, now, out)
            kind, flags, body = self.opener.open(datagram)
            if kind == PacketType.STATUS:
                status = Status.parse(body)
                self.sender_sent_up_to = min(max(self.sender_sent_up_to, status.sent_up_to), self.layout.total)
                self.sender_all_sent = bool(flags & FLAG_ALL_SENT)
                self.srtt = status.srtt_us / _US
                self.sender_rate = status.rate
                if self.complete:
                    self._last_feedback = -1.0  # answer at once: our final ack may have been lost
            elif kind == PacketType.CLOSE:
                close = Close.parse(body)
                if self.closed is None:
                    self.closed = SessionClosed(close.code, close.reason or "closed by sender")
                    self.end_time = now
            else:
                raise DecodeError(DropReason.UNEXPECTED)
            self._last_heard = now
        except DecodeError as exc:
            reason = str(exc)
            self.drops[reason if reason in self.drops else DropReason.MALFORMED] += 1
        return None

    def receive_coalesced(self, buf: memoryview, nbytes: int, segment: int, now: float,
                          out: memoryview) -> list[tuple[int, int, memoryview]]:  # fmt: skip
        """`receive` for the datagrams of one GRO read, `buf[:nbytes]`, back to back and each
        `segment` bytes but the last: the blocks to write, their payloads opened into `out` at
        the datagrams' own offsets. The driver's per-datagram work is one loop here (the hot
        path), not a call per datagram; anything but DATA goes through `receive`."""
        got: list[tuple[int, int, memoryview]] = []
        on_data, append = self._on_data, got.append
        for off in range(0, nbytes, segment):
            end = off + segment if off + segment < nbytes else nbytes
            dg = buf[off:end]
            if end - off > 1 and dg[1] == _DATA:
                try:
                    block = on_data(dg, now, out[off:end])
                except DecodeError as exc:
                    reason = str(exc)
                    self.drops[reason if reason in self.drops else DropReason.MALFORMED] += 1
                    continue
            else:
                block = self.receive(dg, now)
            if block is not None:
                append(block)
        return got

    def _on_data(self, datagram: memoryview, now: float,
                 out: memoryview | None) -> tuple[int, int, memoryview] | None:  # fmt: skip
        _flags, start, ts, payload = self.opener.open_data(datagram, out)
        self._last_heard = now
        layout = self.layout
        length = len(payload)
        if not length or start + length > layout.total:
            self.drops[DropReason.OUT_OF_RANGE] += 1
            return None
        index, offset, left = layout.locate(start)  # a block never crosses a file boundary
        if length > left:
            self.drops[DropReason.OUT_OF_RANGE] += 1
            return None
        now_us = int(now * _US)
        self._echo_ts, self._echo_at = ts, now
        raw = (now_us - ts) & _MASK32
        if self._delay_ref is None:
            self._delay_ref = raw
        rel = ((raw - self._delay_ref + _HALF32) & _MASK32) - _HALF32
        if not self._delay_n or rel < self._delay_min:
            self._delay_min = rel
        self._delay_sum += rel
        self._delay_n += 1
        self.bytes_received += length
        self._arrived_interval += length
        if start + length > self.highest:
            self.highest = start + length
        added = self.received.add(start, start + length)  # _note_new, inlined: per datagram
        if added:
            remaining = self._remaining
            remaining[index] -= added
            if not remaining[index]:
                self._events.append(FileComplete(index))
        if added < length:
            self.bytes_duplicate += length - added
            if not added:
                return None
        if self.received.total >= layout.total:
            self._last_feedback = -1.0  # tell the sender at once
        return index, offset, payload

    def cancel(self, now: float, reason: str, code: int = CloseCode.CANCELLED) -> None:
        if self.closed is None:
            self._outbox.append(self.sealer.seal(PacketType.CLOSE, Close(code, reason).encode()))
            self.closed = SessionClosed(code, reason)
            self.end_time = now

    # -- outputs -------------------------------------------------------------------------------
    def _queue_delay(self, now: float) -> tuple[int, int]:
        """(mean, min) one-way delay above the path minimum this interval, in microseconds."""
        if not self._delay_n:
            return self.queue_delay_us, self.queue_delay_us
        mean = self._delay_sum // self._delay_n
        wins = self._base_windows
        if not wins or now - wins[-1][0] > 10.0:
            wins.append((now, self._delay_min))
            while len(wins) > 3:  # base = min over the last 20-30 s (the sender drains its queue
                wins.popleft()  # every 15 s, so a standing queue never becomes the base)
        elif self._delay_min < wins[-1][1]:
            wins[-1] = (wins[-1][0], self._delay_min)
        base = min(m for _, m in wins)
        self._delay_sum = self._delay_n = 0
        self.queue_delay_us = max(mean - base, 0)
        return self.queue_delay_us, max(self._delay_min - base, 0)

    def _requests(self, now: float) -> list[tuple[int, int]]:
        """Gaps to ask for: below the highest offset seen one interval ago (reordering grace)
        or below what the sender last said it had sent; not asked for within a round trip."""
        ack = self.received.prefix_end(0)
        # STATUS follows the data it counts on the same path, so below sent_up_to is lost too.
        horizon = max(self._highest_prev, self.sender_sent_up_to)
        self._highest_prev = self.highest
        if horizon <= ack:
            return []
        rto = max(self.srtt * 1.5, 0.02) + 2 * self.config.feedback_interval
        log = self._recent_log
        while log and log[0][0] < now - rto:
            _, s, e = log.popleft()
            self._recent.remove(s, e)
        out: list[tuple[int, int]] = []
        cap = self._max_requests * 8
        for gs, ge in self.received.gaps(ack, horizon):
            for s, e in self._recent.gaps(gs, ge):
                while s < e and len(out) < cap:
                    n = min(e - s, 0xFFFFFFFF)
                    out.append((s, n))
                    self._recent.add(s, s + n)
                    log.append((now, s, s + n))
                    s += n
            if len(out) >= cap:
                break
        # A lost request costs its gap a re-ask timeout (1.5 round trips) and, near the end,
        # the whole transfer that long: each request rides in two consecutive feedbacks (the
        # sender ignores an ask it served within the round trip). Outstanding gaps only.
        again = [(s, n) for s, n in self._asked_last if not self.received.contains(s, s + n)]
        self._asked_last = out
        return again[: max(cap - len(out), 0)] + out

    def poll_datagrams(self, now: float) -> list[bytes]:
        if self.closed is None and now - self._last_heard > self.config.idle_timeout:
            self.closed = SessionClosed(CloseCode.TIMEOUT, f"no data from the sender for {self.config.idle_timeout:.0f} s")
            self.end_time = now
        if self.closed is None and (now - self._last_feedback >= self.config.feedback_interval
                                    or self._arrived_interval >= self._feedback_bytes):  # fmt: skip
            dt = now - self._last_feedback if self._last_feedback > 0 else self.config.feedback_interval
            self._last_feedback = now
            q_mean, q_min = self._queue_delay(now)
            rate = int(self._arrived_interval / max(dt, 1e-3))
            self._arrived_interval = 0
            reqs = self._requests(now) if not self.complete else []
            self.requests_sent += len(reqs)
            # No DATA yet: nothing to echo, so tell the sender not to take an RTT sample.
            hold = int((now - self._echo_at) * _US) & _MASK32 if self._delay_n or self._delay_ref is not None else _NO_ECHO
            chunk = self._max_requests
            ack = self.received.prefix_end(0)
            for i in range(0, max(len(reqs), 1), chunk):
                fb = Feedback(self._echo_ts, hold, ack, self.received.total, self.bytes_received,
                              q_mean, q_min, rate, tuple(reqs[i : i + chunk]))  # fmt: skip
                self._outbox.append(self.sealer.seal(PacketType.FEEDBACK, fb.encode()))
            if self.complete and self.end_time is None:
                self.end_time = now
        out, self._outbox = self._outbox, []
        return out

    @property
    def feedback_due(self) -> bool:
        """Enough data arrived since the last feedback that the sender should hear now."""
        return self._arrived_interval >= self._feedback_bytes

    def next_deadline(self, now: float) -> float:
        if self._last_feedback < 0 or self._arrived_interval >= self._feedback_bytes:
            return now
        return self._last_feedback + self.config.feedback_interval

    def statistics(self) -> dict[str, object]:
        end = self.end_time or self._last_heard
        return {
            "bytes_total": self.layout.total,
            "bytes_received": self.received.total,
            "bytes_duplicate": self.bytes_duplicate,
            "retransmission_requests": self.requests_sent,
            "queue_delay": self.queue_delay_us / _US,
            "srtt": self.srtt,
            "sender_rate": self.sender_rate,
            "elapsed": max(end - self.start_time, 1e-9),
            "drops": dict(self.drops),
        }
