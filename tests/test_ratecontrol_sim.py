"""Rate control (-a policy, -l, -m) measured through the in-memory network, no sockets.

Shares are measured from `Flow.bytes_delivered_log` (file bytes written at the receiver) over a
window after convergence. The bottleneck is a 20 Mbit/s drop-tail queue at 50 ms RTT; its
buffer is 2 x BDP (250 KB), enough to hold what a fair and a high flow aim to keep queued
together (alpha 80 KB + 160 KB), so the delay-based policies are judged on their own terms.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from common.transport.config import SessionConfig
from common.transport.ratecontrol import RateConfig
from common.transport.receiver import ReceiverSession
from common.transport.sender import SenderSession
from common.transport.simulate import Flow, Network, Path, pattern

LINK = 2.5e6  # bytes/s: 20 Mbit/s
RTT = 0.05
FAST_TARGET = 100e6 / 8  # -l far above the link: the policy, not the cap, sets the rate


class QueueProbe(Path):
    """A bottleneck that samples its own queueing delay (at most once a millisecond)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.delays: list[tuple[float, float]] = []

    def transmit(self, data: bytes, now: float) -> list[tuple[float, bytes]]:
        if self.rate and (not self.delays or now - self.delays[-1][0] >= 0.001):
            self.delays.append((now, self.queued_bytes(now) / self.rate))
        return super().transmit(data, now)

    def median_delay(self, t0: float, t1: float) -> float:
        return statistics.median(d for t, d in self.delays if t0 <= t < t1)


@dataclass
class Run:
    flows: list[Flow]
    bottleneck: QueueProbe

    def rate(self, i: int, t0: float, t1: float) -> float:
        """Bytes/s of file data delivered to flow `i`'s receiver during [t0, t1)."""
        return sum(n for t, n in self.flows[i].bytes_delivered_log if t0 <= t < t1) / (t1 - t0)


def run(policies: Sequence[str], until: float, *, starts: Sequence[float] | None = None,
        link: float = LINK, target: float = FAST_TARGET, loss: float = 0.0,
        queue: int | None = None) -> Run:  # fmt: skip
    bottleneck = QueueProbe(rate=link, delay=RTT / 2, loss=loss,
                            queue_limit=queue or int(2 * link * RTT), seed=1)  # fmt: skip
    net = Network()
    flows = []
    for i, policy in enumerate(policies):
        config = SessionConfig(session_id=100 + i, cipher="none", secret=bytes(32),
                               rate=RateConfig(target=target, policy=policy))  # fmt: skip
        size = int(min(link, target) * until * 1.1)  # never runs out of data
        flow = Flow(SenderSession(config, [size], 0.0), ReceiverSession(config, [size], 0.0),
                    bottleneck, Path(delay=RTT / 2, loss=loss, seed=10 + i), [pattern(i, size)],
                    start=starts[i] if starts else 0.0)  # fmt: skip
        flows.append(net.add(flow))
    net.run(until=until)
    for flow in flows:
        assert not flow.sender.done, "a flow ended early: the measurement window would be idle"
    return Run(flows, bottleneck)


# -- fixed ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target_mbit", [5, 10, 15])
def test_fixed_holds_the_target_on_a_faster_link(target_mbit: float) -> None:
    target = target_mbit * 1e6 / 8
    r = run(["fixed"], 6.0, link=2 * LINK, target=target)
    delivered = r.rate(0, 1.0, 6.0)
    assert abs(delivered - target) <= 0.05 * target, f"{delivered * 8 / 1e6:.2f} Mbit/s"
    assert r.flows[0].sender.bytes_retransmitted == 0


# -- fair, alone ------------------------------------------------------------------------------
def test_fair_converges_to_the_bottleneck() -> None:
    r = run(["fair"], 8.0)
    assert r.rate(0, 2.0, 8.0) >= 0.90 * LINK
    assert r.bottleneck.dropped_queue == 0


@pytest.mark.parametrize(
    "link_mbit",
    [20, 50],
)
def test_fair_keeps_queueing_delay_low(link_mbit: float) -> None:
    link = link_mbit * 1e6 / 8
    r = run(["fair"], 8.0, link=link)
    assert r.rate(0, 2.0, 8.0) >= 0.90 * link
    median = r.bottleneck.median_delay(2.0, 8.0)
    assert median < 0.025, f"median queueing delay {median * 1e3:.1f} ms"


def test_fair_stays_converged_over_time() -> None:
    r = run(["fair"], 25.0)
    early, late = r.bottleneck.median_delay(2.0, 9.0), r.bottleneck.median_delay(15.0, 25.0)
    assert r.rate(0, 15.0, 25.0) >= 0.90 * LINK
    assert late <= 1.25 * early + 0.002, (
        f"queueing delay {early * 1e3:.1f} ms -> {late * 1e3:.1f} ms"
    )
    assert r.bottleneck.dropped_queue == 0


# -- fair with random loss --------------------------------------------------------------------
@pytest.mark.parametrize("loss", [0.01, 0.03])
def test_random_loss_does_not_lower_the_fair_rate(loss: float) -> None:
    """Loss on both paths, none from the queue: goodput (new file bytes) stays near the link."""
    r = run(["fair"], 8.0, loss=loss)
    assert r.bottleneck.dropped_queue == 0  # the losses were all random, not congestion
    goodput = r.rate(0, 2.0, 8.0)
    assert goodput >= 0.85 * LINK, f"goodput {goodput / LINK:.1%} of the link"


# -- sharing one bottleneck -------------------------------------------------------------------

@pytest.mark.parametrize(
    "starts",
    [
        pytest.param((0.0, 0.0), id="together"),
        pytest.param((0.0, 1.0), id="second_joins_later"),
    ],
)  # fmt: skip
def test_two_fair_flows_share_the_bottleneck(starts: tuple[float, float]) -> None:
    r = run(["fair", "fair"], 9.5, starts=starts)
    a, b = r.rate(0, 3.0, 9.5), r.rate(1, 3.0, 9.5)
    assert a + b >= 0.90 * LINK
    assert max(a, b) <= 1.2 * min(a, b), f"shares {a / LINK:.3f} and {b / LINK:.3f} of the link"


def test_two_fair_flows_stay_fair_over_time() -> None:
    r = run(["fair", "fair"], 20.0)
    a, b = r.rate(0, 12.0, 20.0), r.rate(1, 12.0, 20.0)
    assert max(a, b) <= 1.2 * min(a, b), f"shares {a / LINK:.3f} and {b / LINK:.3f} of the link"


@pytest.mark.parametrize(
    "high_first", [False, True], ids=["fair_listed_first", "high_listed_first"]
)
def test_high_takes_about_twice_the_fair_share(high_first: bool) -> None:
    policies = ["high", "fair"] if high_first else ["fair", "high"]
    r = run(policies, 9.5)
    rates = dict(zip(policies, (r.rate(0, 3.0, 9.5), r.rate(1, 3.0, 9.5))))
    ratio = rates["high"] / rates["fair"]
    assert 1.5 <= ratio <= 2.6, f"high/fair = {ratio:.2f}"



@pytest.mark.parametrize("starts", [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0)],
                         ids=["together", "fair_joins_later", "low_joins_later"])  # fmt: skip
def test_low_yields_to_fair(starts: tuple[float, float]) -> None:
    r = run(["low", "fair"], 9.5, starts=starts)
    low, fair = r.rate(0, 3.0, 9.5), r.rate(1, 3.0, 9.5)
    assert low + fair >= 0.90 * LINK
    assert low < 0.25 * (low + fair), f"low gets {low / (low + fair):.1%}"
