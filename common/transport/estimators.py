"""Path measurements the sender keeps: round-trip time and the datagram loss rate.

Loss is measured, not reacted to: rate control uses it only to know how much more than the
delivery rate it must send to keep the bottleneck busy (``delivered / (1 - loss)``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque

__all__ = ["LossEstimator", "RttEstimator"]


class RttEstimator:
    """Smoothed RTT (EWMA 1/8) and the minimum RTT over the last 10-20 s."""

    def __init__(self, now: float) -> None:
        self.srtt = 0.0
        self.min_rtt = 0.0
        self._window = (now, 0.0, 0.0)  # (start, min this window, min last window)

    def sample(self, rtt: float, now: float) -> None:
        self.srtt = rtt if not self.srtt else 0.875 * self.srtt + 0.125 * rtt
        start, current, previous = self._window
        if now - start > 10.0:
            start, previous, current = now, current, rtt
        else:
            current = min(current, rtt) if current else rtt
        self._window = (start, current, previous)
        self.min_rtt = min(current, previous) if previous else current


class LossEstimator:
    """Fraction of sent payload that never arrived, over periods of at least `period` seconds.

    The receiver reports the payload bytes it ever received; they are compared with what had
    been sent one round trip before the report, so bytes still in flight are not counted lost.
    """

    def __init__(self, period: float = 0.5, weight: float = 0.3) -> None:
        self.loss = 0.0
        self.period = period
        self.weight = weight
        self._sent_times: deque[float] = deque()
        self._sent_totals: deque[int] = deque()
        self._mark: tuple[float, int, int] | None = None  # (time, arrived, sent-at-then)

    def on_sent(self, now: float, sent_total: int) -> None:
        if self._sent_times and now - self._sent_times[-1] < 0.001:
            self._sent_totals[-1] = sent_total
            return
        self._sent_times.append(now)
        self._sent_totals.append(sent_total)
        while len(self._sent_times) > 2 and now - self._sent_times[0] > 30.0:
            self._sent_times.popleft()
            self._sent_totals.popleft()

    def _sent_at(self, when: float) -> int:
        i = bisect_right(self._sent_times, when) - 1
        return self._sent_totals[i] if i >= 0 else 0

    def on_report(self, now: float, arrived_total: int, srtt: float) -> None:
        sent = self._sent_at(now - srtt)
        if self._mark is None:
            self._mark = (now, arrived_total, sent)
            return
        t0, arrived0, sent0 = self._mark
        if now - t0 < self.period or sent - sent0 <= 0:
            return
        sample = 1.0 - (arrived_total - arrived0) / (sent - sent0)
        sample = min(max(sample, 0.0), 0.5)
        self.loss += self.weight * (sample - self.loss)
        self._mark = (now, arrived_total, sent)
