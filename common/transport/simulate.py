"""A deterministic in-memory network for the sans-I/O sessions: tests and benchmarks use it to
run senders and receivers through a bottleneck with delay, loss, reordering, duplication and
corruption, on a manual clock, with no sockets and no real time.

A `Path` is one direction of a link: a drop-tail queue drained at `rate` (bytes/s, None for
unlimited), then `delay` seconds of propagation. Several flows may share one Path: that is the
shared bottleneck of the fairness tests.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .receiver import ReceiverSession
from .sender import SenderSession

__all__ = ["Flow", "Network", "Path"]


@dataclass
class Path:
    rate: float | None = None  # bytes/s at the bottleneck; None: no queue
    delay: float = 0.01  # one-way propagation, seconds
    loss: float = 0.0  # random loss probability, before the queue
    queue_limit: int = 1 << 20  # bytes the bottleneck queue holds (drop-tail)
    reorder: float = 0.0  # probability a datagram is delayed by up to `reorder_delay`
    reorder_delay: float = 0.005
    duplicate: float = 0.0
    corrupt: float = 0.0  # probability one bit of the datagram is flipped
    seed: int = 1
    # Statistics
    sent: int = 0
    dropped_loss: int = 0
    dropped_queue: int = 0
    _free_at: float = 0.0
    _queue: list[tuple[float, int]] = field(default_factory=list)  # (departure time, size)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def queued_bytes(self, now: float) -> int:
        q = self._queue
        while q and q[0][0] <= now:
            heapq.heappop(q)
        return sum(size for _, size in q)

    def transmit(self, data: bytes, now: float) -> list[tuple[float, bytes]]:
        """Arrival times (and contents) of `data` sent at `now`: none if lost."""
        self.sent += 1
        rng = self._rng
        if self.loss and rng.random() < self.loss:
            self.dropped_loss += 1
            return []
        depart = now
        if self.rate:
            if self.queued_bytes(now) + len(data) > self.queue_limit:
                self.dropped_queue += 1
                return []
            depart = max(now, self._free_at) + len(data) / self.rate
            self._free_at = depart
            heapq.heappush(self._queue, (depart, len(data)))
        arrive = depart + self.delay
        if self.corrupt and rng.random() < self.corrupt:
            buf = bytearray(data)
            bit = rng.randrange(len(buf) * 8)
            buf[bit // 8] ^= 1 << (bit % 8)
            data = bytes(buf)
        out = [(arrive + (rng.random() * self.reorder_delay if self.reorder and rng.random() < self.reorder else 0.0), data)]
        if self.duplicate and rng.random() < self.duplicate:
            out.append((arrive + rng.random() * 0.002, data))
        return out


def _deliver_at(deliver: Callable[[bytes, float], None], payload: bytes, when: float) -> None:
    deliver(payload, when)


def pattern(file_index: int, size: int) -> bytes:
    """Deterministic test content of a file: distinct per file and per position."""
    rng = random.Random(file_index * 7919 + size)
    return rng.randbytes(size)


@dataclass
class Flow:
    """One sender/receiver pair with its files in memory."""

    sender: SenderSession
    receiver: ReceiverSession
    forward: Path
    backward: Path
    sources: Sequence[bytes]
    sinks: list[bytearray] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)  # file indexes in completion order
    start: float = 0.0
    finished_at: float | None = None
    bytes_delivered_log: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sinks:
            self.sinks = [bytearray(len(s)) for s in self.sources]


class Network:
    """Runs flows to completion on a manual clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = 0
        self.flows: list[Flow] = []
        self._woken = False

    def add(self, flow: Flow) -> Flow:
        self.flows.append(flow)
        return flow

    def _at(self, when: float, fn: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, fn))

    def _send(self, path: Path, data: bytes, now: float, deliver: Callable[[bytes, float], None]) -> None:
        for when, payload in path.transmit(data, now):
            self._at(when, functools.partial(_deliver_at, deliver, payload))

    def _pump(self, flow: Flow, now: float) -> None:
        snd, rcv = flow.sender, flow.receiver
        if now < flow.start:
            return
        dgram = snd.config.datagram_size
        for block in snd.poll_blocks(now):
            buf = bytearray(dgram)
            plain = memoryview(flow.sources[block.file_index])[block.offset : block.offset + block.length]
            n = snd.seal_block(memoryview(buf), block, now, plain)
            self._send(flow.forward, bytes(buf[:n]), now, functools.partial(self._to_receiver, flow))
        for d in snd.poll_datagrams(now):
            self._send(flow.forward, d, now, functools.partial(self._to_receiver, flow))
        for d in rcv.poll_datagrams(now):
            self._send(flow.backward, d, now, functools.partial(self._to_sender, flow))

    def _to_sender(self, flow: Flow, data: bytes, now: float) -> None:
        flow.sender.receive(data, now)
        self._woken = True  # like a driver's poll, a datagram for the sender wakes the loop

    def _to_receiver(self, flow: Flow, data: bytes, now: float) -> None:
        got = flow.receiver.receive(memoryview(data), now, memoryview(bytearray(len(data))))
        if got is not None:
            index, offset, payload = got
            flow.sinks[index][offset : offset + len(payload)] = payload
            flow.bytes_delivered_log.append((now, len(payload)))
        for ev in flow.receiver.events():
            flow.completed.append(ev.file_index)

    def run(self, until: float = 60.0, tick: float = 0.0005) -> float:
        """Advance until every flow is done or `until` (simulated seconds); returns the time."""
        while self.now < until:
            active = [f for f in self.flows if not (f.sender.done and (f.receiver.done or f.receiver.complete))]
            if not active:
                break
            for flow in active:
                if flow.sender.done and not flow.receiver.done and flow.finished_at is None:
                    flow.finished_at = self.now
                self._pump(flow, self.now)
            deadline = min(
                [max(min(f.sender.next_deadline(self.now), f.receiver.next_deadline(self.now)), f.start)
                 for f in active] + [until],
            )  # fmt: skip
            deadline = max(deadline, self.now + tick)
            self._woken = False
            while self._events and self._events[0][0] <= deadline:
                when, _, fn = heapq.heappop(self._events)
                self.now = max(self.now, when)
                fn(self.now)
                if self._woken:
                    break
            else:
                self.now = max(self.now, deadline)
        for f in self.flows:
            if f.finished_at is None and f.sender.done:
                f.finished_at = f.sender.end_time
        return self.now
