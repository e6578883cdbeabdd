"""Typed configuration of an emulated link: one :class:`LinkSpec` per direction."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MIN_QUEUE_BYTES", "LinkSpec", "parse_rate"]

#: Smallest default bottleneck queue, whatever the bandwidth-delay product.
MIN_QUEUE_BYTES = 64 * 1024

_RATE_RE = re.compile(
    r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgG]?)(?:bit|bps|b)?(?:/s)?\s*$"
)
_RATE_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_rate(text: str) -> float:
    """Parse a rate such as ``100m``, ``1.5G``, ``20Mbit`` or ``2e7`` into bits per second."""
    match = _RATE_RE.match(text)
    if match is None:
        raise ValueError(f"not a rate: {text!r} (expected e.g. 100m, 1g, 20mbit, 2e7)")
    return float(match.group(1)) * _RATE_UNITS[match.group(2).lower()]


@dataclass(frozen=True)
class LinkSpec:
    """One direction of an emulated link.

    The emulator applies, in this order: random loss (Bernoulli, ``loss``), a drop-tail queue of
    ``queue_bytes`` drained at ``rate_bps``, then a one-way delay of ``rtt_ms / 2`` plus a uniform
    jitter in ``[-jitter_ms, +jitter_ms]``. Jitter never reorders packets unless ``reorder``.
    """

    rate_bps: float = 100e6
    rtt_ms: float = 50.0
    loss: float = 0.0
    jitter_ms: float = 0.0
    queue_bytes: int | None = None
    seed: int | None = None
    reorder: bool = False

    def __post_init__(self) -> None:
        if not self.rate_bps > 0:
            raise ValueError(f"LinkSpec.rate_bps must be > 0, got {self.rate_bps!r}")
        if not self.rtt_ms >= 0:
            raise ValueError(f"LinkSpec.rtt_ms must be >= 0, got {self.rtt_ms!r}")
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"LinkSpec.loss must be within 0..1, got {self.loss!r}")
        if not self.jitter_ms >= 0:
            raise ValueError(f"LinkSpec.jitter_ms must be >= 0, got {self.jitter_ms!r}")
        if self.jitter_ms > self.rtt_ms / 2:
            raise ValueError(
                f"LinkSpec.jitter_ms ({self.jitter_ms}) must not exceed the one-way delay "
                f"rtt_ms/2 ({self.rtt_ms / 2})"
            )
        if self.queue_bytes is not None and self.queue_bytes < 1:
            raise ValueError(f"LinkSpec.queue_bytes must be >= 1, got {self.queue_bytes!r}")

    @property
    def one_way_delay_ms(self) -> float:
        return self.rtt_ms / 2.0

    @property
    def bdp_bytes(self) -> int:
        """Bandwidth-delay product: rate times round-trip time, in bytes."""
        return int(self.rate_bps * self.rtt_ms / 1000.0 / 8.0)

    @property
    def effective_queue_bytes(self) -> int:
        """The queue limit in force: ``queue_bytes`` or one BDP, at least 64 KiB."""
        if self.queue_bytes is not None:
            return self.queue_bytes
        return max(self.bdp_bytes, MIN_QUEUE_BYTES)

    def to_json(self) -> dict[str, object]:
        return {
            "rate_bps": self.rate_bps,
            "rtt_ms": self.rtt_ms,
            "loss": self.loss,
            "jitter_ms": self.jitter_ms,
            "queue_bytes": self.effective_queue_bytes,
            "seed": self.seed,
            "reorder": self.reorder,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LinkSpec:
        return cls(**data)  # type: ignore[arg-type]
