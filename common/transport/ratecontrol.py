"""Rate control: how fast the sender may put datagrams on the wire, by `-a` policy.

Loss is not congestion. The adaptive policies follow *queueing delay* (one-way delay above the
path's minimum, measured by the receiver), never loss, in the manner of FAST TCP: each flow aims
to keep `alpha` bytes of its own in the bottleneck queue, so at equilibrium
``rate * queue_delay = alpha``. Flows that see the same queue therefore get the same rate
(``fair``); a flow with twice the alpha gets twice the rate (``high``); ``low`` keeps an eighth
of the alpha, so it takes about a ninth of what a fair flow takes and next to nothing beside a
loss-based TCP flow that fills the queue, yet the whole link when alone. ``fixed`` sends at the
target rate (`-l`).

Startup multiplies the rate every round trip until the queue starts to grow, then drains the
queue that the last round of growth built and settles at the delivery rate the receiver
measured; from there the update holds the queue near `alpha`. Every 15 s (the first time 1 s
after startup) a flow halves its rate for a moment so the queue empties and every flow keeps
measuring the true path delay.

All rates are bytes per second of UDP payload; all times are seconds. Pure functions of what the
session observed: no clock, no socket.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

__all__ = ["POLICIES", "RateConfig", "RateController", "make_controller"]

POLICIES = ("fixed", "fair", "high", "low")


@dataclass(frozen=True)
class RateConfig:
    target: float  # -l, bytes/s
    minimum: float = 0.0  # -m, bytes/s
    policy: str = "fair"
    alpha: float = 40_000.0  # bytes each fair flow keeps queued at the bottleneck
    # First rate, before any feedback: `initial_share` of the target (-l), between the two
    # bounds. Users set -l near their link's capacity (the reference's advice), so a small share
    # of it is below any link they expect, while a 1 Gbit/s target no longer spends several
    # round trips climbing from 20 Mbit/s. `initial` set explicitly wins.
    initial: float | None = None
    initial_share: float = 0.04
    initial_bounds: tuple[float, float] = (2_500_000.0, 12_500_000.0)  # 20 and 100 Mbit/s
    gamma: float = 0.8  # FAST smoothing per round trip
    startup_growth: float = 1.6  # rate multiplier per round trip during startup
    startup_exit_delay: float = 0.002  # queueing delay (s) that ends startup
    probe_growth: float = 1.1  # rate multiplier per round trip while our queue is below alpha/2
    horizon: float = 1.0  # round trips over which the queue is brought back to alpha
    # Fast paths: below this queueing delay, timing noise of the end hosts (a millisecond in
    # Python) would pass for a queue and hold the rate at alpha / noise. Each flow may keep at
    # least `min_queue_delay` of its own rate queued; on slower links alpha dominates.
    min_queue_delay: float = 0.004
    # ...but never more than this many bytes: on loopback and fast LANs the queue is the
    # receiver's socket buffer, and a standing queue must leave most of it free.
    max_queue: float = float("inf")
    # Every `probe_interval` seconds a flow halves its rate for a few milliseconds, so the
    # bottleneck queue empties and every flow's minimum delay stays the path's, not the path's
    # plus a standing queue (which would drift upward and favour late-comers).
    probe_interval: float = 15.0

    def first_rate(self) -> float:
        """The rate before any feedback (not yet clamped to -m/-l)."""
        if self.initial is not None:
            return self.initial
        low, high = self.initial_bounds
        return max(low, min(high, self.target * self.initial_share))

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}: expected one of {', '.join(POLICIES)}")
        if self.target <= 0:
            raise ValueError("target rate must be positive")
        if not 0 <= self.minimum <= self.target:
            raise ValueError("minimum rate must be between 0 and the target rate")


class RateController(Protocol):
    rate: float

    def on_feedback(self, now: float, queue_delay: float, delivery_rate: float, srtt: float,
                    base_rtt: float, loss: float = 0.0, least_delay: float | None = None) -> None: ...  # fmt: skip

    def on_silence(self, now: float) -> None: ...

    def statistics(self) -> dict[str, float | str]: ...


class FixedRate:
    """Send at the target rate whatever happens (bandwidth tests, dedicated links)."""

    def __init__(self, config: RateConfig) -> None:
        self.rate = config.target

    def on_feedback(self, now: float, queue_delay: float, delivery_rate: float, srtt: float,
                    base_rtt: float, loss: float = 0.0, least_delay: float | None = None) -> None:  # fmt: skip
        pass

    def on_silence(self, now: float) -> None:
        pass

    def statistics(self) -> dict[str, float | str]:
        return {"rate": self.rate, "phase": "fixed"}


class DelayBasedRate:
    """fair / high / low: FAST-style equilibrium on queueing delay, with startup and drain."""

    def __init__(self, config: RateConfig) -> None:
        self.cfg = config
        weight = {"fair": 1.0, "high": 2.0, "low": 0.125}[config.policy]
        self.alpha = config.alpha * weight
        self.rate = self._clamp(config.first_rate())
        self.phase = "startup"
        self.queue_delay = 0.0
        self._delivery = 0.0
        self._last_update: float | None = None
        self._max_delivery = 0.0
        self._drain_until = 0.0
        self._history: deque[tuple[float, float]] = deque()  # (time, rate) of each change
        self._next_probe = float("inf")
        self._probe_until = 0.0
        self._pre_probe_rate = self.rate

    def _clamp(self, rate: float) -> float:
        return max(self.cfg.minimum, min(self.cfg.target, rate))

    def on_feedback(self, now: float, queue_delay: float, delivery_rate: float, srtt: float,
                    base_rtt: float, loss: float = 0.0, least_delay: float | None = None) -> None:  # fmt: skip
        self.queue_delay = queue_delay
        # Phase decisions use the least delay of the interval: if even the luckiest datagram
        # queued, the queue is real; a mean is moved by one late wake-up of either host.
        least = queue_delay if least_delay is None else least_delay
        srtt = max(srtt, 1e-4)
        self._max_delivery = max(self._max_delivery * 0.99, delivery_rate)
        self._delivery += 0.2 * (delivery_rate - self._delivery)
        if self._last_update is None:
            self._last_update = now
            return
        if self.phase == "startup":
            self._startup(now, least, srtt)
        elif self.phase == "drain":
            self._drain(now, least)
        elif self.phase == "probe":
            if now >= self._probe_until:
                self.phase = "steady"
                self._set_rate(now, self._pre_probe_rate)
                self._last_update = now
                self._next_probe = now + self.cfg.probe_interval
        elif now - self._last_update >= min(srtt, 0.02):  # about once per RTT, at least every 20 ms
            dt, self._last_update = now - self._last_update, now
            if now >= self._next_probe:
                self._start_probe(now)
            else:
                self._steady(now, dt, queue_delay, srtt, loss)

    def _startup(self, now: float, least: float, srtt: float) -> None:
        dt, self._last_update = now - (self._last_update or now), now
        if least < self.cfg.startup_exit_delay:
            self._set_rate(now, self.rate * self.cfg.startup_growth ** min(dt / srtt, 1.0))
            return
        # The queue has started to grow: the pipe is full. Drain what the last round trip of
        # growth queued, then settle at the measured delivery rate.
        self.phase = "drain"
        self._drain_until = now + srtt
        self._set_rate(now, min(self.rate, self._max_delivery) * 0.6)

    def _drain(self, now: float, least: float) -> None:
        if now < self._drain_until and least > self.cfg.startup_exit_delay:
            return
        self.phase = "steady"
        self._set_rate(now, self._max_delivery * 0.97)
        self._last_update = now
        # The first drain comes soon: a flow that joined a busy link took the others' standing
        # queue for path delay, and a drain lets every flow see the empty queue.
        self._next_probe = now + min(self.cfg.probe_interval, 1.0)

    def _alpha(self) -> float:
        """Bytes this flow keeps queued: its policy's alpha, or on fast paths `min_queue_delay`
        of its rate (weighted alike), never more than `max_queue`."""
        cfg = self.cfg
        return min(max(self.alpha, self._delivery * cfg.min_queue_delay * self.alpha / cfg.alpha), cfg.max_queue)

    def _start_probe(self, now: float) -> None:
        self.phase = "probe"
        self._pre_probe_rate = self.rate
        alpha = min(max(self.alpha, self._delivery * self.cfg.min_queue_delay), self.cfg.max_queue)
        # Long enough to remove 4 alphas from the queue: empties it for up to 4 flows.
        self._probe_until = now + max(8 * alpha / max(self.rate, 1.0), 0.02)
        self._set_rate(now, self.rate * 0.5)

    def _steady(self, now: float, dt: float, queue_delay: float, srtt: float, loss: float) -> None:
        cfg, alpha = self.cfg, self._alpha()
        # What the bottleneck takes from us: the delivery rate, plus what random loss removes
        # before it. While our queue is well above its share the losses are our own overflow,
        # not random: compensating them would feed the overflow, so then we do not.
        random_loss = min(loss, 0.5) if self._delivery * queue_delay < 2 * alpha else 0.0
        arrival = self._delivery / (1.0 - random_loss)
        # Our bytes in the queue are delivery * delay (Little's law), as measured about one
        # round trip ago; add what we sent since beyond what the bottleneck drains (a Smith
        # predictor: without it the loop overshoots by a round trip of rate error).
        backlog = max(self._delivery * queue_delay + self._sent_excess(now, srtt, arrival), 0.0)
        want = arrival + (alpha - backlog) / (cfg.horizon * max(srtt, 0.01))
        gamma = min(cfg.gamma * dt / srtt, cfg.gamma)
        new_rate = (1 - gamma) * self.rate + gamma * want
        if backlog < alpha / 2:
            # Well below our share of the queue: the link has room. Grow multiplicatively (the
            # additive FAST term alone would take many round trips on a long path).
            new_rate = max(new_rate, self.rate * cfg.probe_growth ** min(dt / srtt, 1.0))
        self._set_rate(now, min(max(new_rate, self.rate * 0.5), self.rate * 2.0))

    def _set_rate(self, now: float, rate: float) -> None:
        self.rate = self._clamp(rate)
        hist = self._history
        hist.append((now, self.rate))
        while len(hist) > 2 and now - hist[1][0] > 5.0:
            hist.popleft()

    def _sent_excess(self, now: float, lag: float, drain: float) -> float:
        """Bytes sent over the last `lag` seconds beyond `drain` bytes/s."""
        start = now - lag
        total = 0.0
        hist = self._history
        for i in range(len(hist) - 1, -1, -1):
            t, rate = hist[i]
            end = hist[i + 1][0] if i + 1 < len(hist) else now
            lo = max(t, start)
            if end > lo:
                total += (rate - drain) * (end - lo)
            if t <= start:
                break
        return total

    def on_silence(self, now: float) -> None:
        """No feedback for several round trips: the path or the peer may be gone; slow down."""
        self.rate = self._clamp(self.rate * 0.5)
        self.phase = "steady"

    def statistics(self) -> dict[str, float | str]:
        return {"rate": self.rate, "phase": self.phase, "queue_delay": self.queue_delay}


def make_controller(config: RateConfig) -> RateController:
    if config.policy == "fixed":
        return FixedRate(config)
    return DelayBasedRate(config)
