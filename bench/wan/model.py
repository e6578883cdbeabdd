"""Sans-I/O model of one direction of an emulated link.

:class:`DirectionModel` takes packets with an explicit ``now`` (nanoseconds on any monotonic
clock) and decides, with no I/O and no clock of its own, whether each packet is lost, dropped by
the bottleneck queue, or when it must be delivered. The emulator process drives it from TUN file
descriptors; tests drive it with a manual clock.

Order of effects, per packet:

1. random loss: Bernoulli with probability ``spec.loss``, from a private, seedable RNG;
2. a drop-tail queue of ``spec.effective_queue_bytes`` bytes drained at ``spec.rate_bps``: the
   packet is dropped if the bytes still waiting to be serialised plus its own length exceed the
   limit, else it leaves the bottleneck once every byte before it and its own ``len*8/rate``
   serialisation time have passed;
3. a fixed propagation delay ``rtt_ms/2`` plus a uniform jitter in ``[-jitter_ms, +jitter_ms]``.
   Unless ``spec.reorder``, a packet is never delivered before the one admitted before it (so
   jitter is clamped from below by the previous delivery time, as on a real serial path).

The queue is kept as a single number, the time at which the serialiser becomes free, so the
cost per packet is constant and the emulated rate is exact whatever the driver's wake-up error.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import dataclass

from bench.wan.spec import LinkSpec

__all__ = ["DirectionModel", "DirectionStatistics"]


@dataclass
class DirectionStatistics:
    """Counters of one direction (all monotonically increasing, except ``queue_peak_bytes``)."""

    packets_in: int = 0
    bytes_in: int = 0
    packets_forwarded: int = 0
    bytes_forwarded: int = 0
    packets_dropped_loss: int = 0
    bytes_dropped_loss: int = 0
    packets_dropped_queue: int = 0
    bytes_dropped_queue: int = 0
    queue_peak_bytes: int = 0


class DirectionModel:
    """One direction: loss, drop-tail bottleneck queue and delay, behind ``offer``/``release``.

    ``pending`` holds ``(release_ns, packet)`` in delivery order (a FIFO ``deque``), or, when the
    spec allows reordering, a heap of ``(release_ns, sequence, packet)``; ``next_release()`` tells
    the driver when to wake up, ``release(now)`` pops every packet that is due.
    """

    __slots__ = (
        "_delay_ns",
        "_free_at",
        "_jitter_ns",
        "_last_release",
        "_loss",
        "_ns_per_byte",
        "_queue_limit_ns",
        "_random",
        "_reorder",
        "_sequence",
        "pending",
        "spec",
        "stats",
    )

    def __init__(self, spec: LinkSpec, seed: int | None = None) -> None:
        self.spec = spec
        self.stats = DirectionStatistics()
        self._ns_per_byte = 8e9 / spec.rate_bps
        self._queue_limit_ns = spec.effective_queue_bytes * self._ns_per_byte
        self._delay_ns = spec.rtt_ms * 1e6 / 2.0
        self._jitter_ns = spec.jitter_ms * 1e6
        self._loss = spec.loss
        self._random = random.Random(spec.seed if seed is None else seed)
        self._free_at = 0.0
        self._last_release = 0
        self._sequence = 0
        self._reorder = spec.reorder and spec.jitter_ms > 0
        self.pending: deque[tuple[int, bytes]] | list[tuple[int, int, bytes]]
        self.pending = [] if self._reorder else deque()

    @property
    def reorders(self) -> bool:
        """True when ``pending`` is a heap (jitter may reorder), False when it is a FIFO."""
        return self._reorder

    def backlog_bytes(self, now_ns: int) -> int:
        """Bytes waiting in the bottleneck queue (not yet serialised) at ``now_ns``."""
        return max(0, int((self._free_at - now_ns) / self._ns_per_byte))

    def offer(self, now_ns: int, packet: bytes) -> bool:
        """Admit a packet that arrived at ``now_ns``; False if it was dropped (loss or queue)."""
        size = len(packet)
        stats = self.stats
        stats.packets_in += 1
        stats.bytes_in += size
        if self._loss and self._random.random() < self._loss:
            stats.packets_dropped_loss += 1
            stats.bytes_dropped_loss += size
            return False
        service_ns = size * self._ns_per_byte
        backlog_ns = self._free_at - now_ns
        if backlog_ns <= 0:
            self._free_at = now_ns + service_ns
        elif backlog_ns + service_ns > self._queue_limit_ns:
            stats.packets_dropped_queue += 1
            stats.bytes_dropped_queue += size
            return False
        else:
            self._free_at += service_ns
            queued = int((backlog_ns + service_ns) / self._ns_per_byte)
            stats.queue_peak_bytes = max(stats.queue_peak_bytes, queued)
        release = self._free_at + self._delay_ns
        if self._jitter_ns:
            release += self._random.uniform(-self._jitter_ns, self._jitter_ns)
        release_ns = int(release)
        if self._reorder:
            self._sequence += 1
            heapq.heappush(self.pending, (release_ns, self._sequence, packet))  # type: ignore[arg-type]
        else:
            release_ns = max(release_ns, self._last_release)
            self._last_release = release_ns
            self.pending.append((release_ns, packet))  # type: ignore[arg-type]
        stats.packets_forwarded += 1
        stats.bytes_forwarded += size
        return True

    def next_release(self) -> int | None:
        """Release time of the next pending packet, or None when nothing is in flight."""
        return self.pending[0][0] if self.pending else None

    def release(self, now_ns: int) -> list[bytes]:
        """Pop every packet whose release time is at or before ``now_ns``, in delivery order."""
        out: list[bytes] = []
        pending = self.pending
        if self._reorder:
            heap: list[tuple[int, int, bytes]] = pending  # type: ignore[assignment]
            while heap and heap[0][0] <= now_ns:
                out.append(heapq.heappop(heap)[2])
        else:
            fifo: deque[tuple[int, bytes]] = pending  # type: ignore[assignment]
            while fifo and fifo[0][0] <= now_ns:
                out.append(fifo.popleft()[1])
        return out
