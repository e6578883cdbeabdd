"""The end of a transfer, where every round trip spent on repairs is lost time: repairs of the
tail go twice, and every retransmission request rides in two consecutive feedbacks, so one
lost datagram no longer costs the transfer a re-ask timeout and another round trip.

Sessions only, driven by hand on a manual clock: no sockets, no simulator."""

from __future__ import annotations

from common.transport.codec import Opener
from common.transport.config import SessionConfig
from common.transport.crypto import derive_protection
from common.transport.packets import Feedback, PacketType
from common.transport.ratecontrol import RateConfig
from common.transport.receiver import ReceiverSession
from common.transport.sender import Block, SenderSession
from common.transport.simulate import Flow, Network, Path, pattern

SID = 0x7A11
SECRET = bytes(range(32))
# A fixed, very high rate: the pacer never holds a block back, so the tests choose the timing.
CONFIG = SessionConfig(SID, "aes128gcm", SECRET, RateConfig(target=1e11, policy="fixed"),
                       datagram_size=1472)  # fmt: skip
BLOCK = CONFIG.block_size
SIZE = 200 * BLOCK
DATA = pattern(0, SIZE)


def _send(snd: SenderSession, now: float, limit: int = 10_000) -> list[Block]:
    """What the pacer lets out by `now` (retransmissions first)."""
    return snd.poll_blocks(now, limit=limit)


def _deliver(snd: SenderSession, rcv: ReceiverSession, blocks: list[Block], now: float,
             lose: set[int]) -> None:  # fmt: skip
    """Seal `blocks` and hand them to the receiver, but for the stream offsets in `lose`."""
    for b in blocks:
        buf = memoryview(bytearray(CONFIG.datagram_size))
        n = snd.seal_block(buf, b, now, memoryview(DATA)[b.offset : b.offset + b.length])
        if b.stream_offset not in lose:
            rcv.receive(buf[:n], now, memoryview(bytearray(n)))


def _status(snd: SenderSession, rcv: ReceiverSession, now: float) -> None:
    """The sender's STATUS (how far it sent, its RTT) reaches the receiver."""
    for d in snd.poll_datagrams(now):
        rcv.receive(memoryview(d), now)


def _asked(datagrams: list[bytes]) -> list[tuple[int, int]]:
    opener = Opener(derive_protection(CONFIG.cipher, SECRET, "feedback"), SID)
    out: list[tuple[int, int]] = []
    for d in datagrams:
        kind, _flags, body = opener.open(memoryview(d))
        if kind == PacketType.FEEDBACK:
            out.extend(Feedback.parse(body).requests)
    return out


def test_repairs_go_once_mid_transfer_and_twice_in_the_tail() -> None:
    snd, rcv = SenderSession(CONFIG, [SIZE], 0.0), ReceiverSession(CONFIG, [SIZE], 0.0)
    first = _send(snd, 0.001, limit=100)
    assert len(first) == 100 and snd.unsent  # half the file is still to come
    _deliver(snd, rcv, first, 0.01, lose={10 * BLOCK})
    _status(snd, rcv, 0.01)
    for d in rcv.poll_datagrams(0.02):
        snd.receive(d, 0.05)
    repair = _send(snd, 0.05, limit=1)
    assert [(b.stream_offset, b.retransmit) for b in repair] == [(10 * BLOCK, True)]

    rest = _send(snd, 1.0)
    assert not snd.unsent and len(rest) == 100  # everything has now been sent once
    _deliver(snd, rcv, repair + rest, 1.01, lose={150 * BLOCK})
    _status(snd, rcv, 1.01)
    for d in rcv.poll_datagrams(1.03):
        snd.receive(d, 1.04)
    tail = _send(snd, 1.05)
    assert [(b.stream_offset, b.retransmit) for b in tail] == [(150 * BLOCK, True)] * 2
    assert snd.bytes_retransmitted == 3 * BLOCK
    assert snd.bytes_sent == SIZE + 3 * BLOCK  # every copy counts as sent (redundancy is honest)


def test_every_request_rides_in_two_consecutive_feedbacks() -> None:
    snd, rcv = SenderSession(CONFIG, [SIZE], 0.0), ReceiverSession(CONFIG, [SIZE], 0.0)
    _deliver(snd, rcv, _send(snd, 0.001, limit=50), 0.01, lose={7 * BLOCK})
    _status(snd, rcv, 0.01)  # how far the sender got, and its RTT (100 ms before any sample)
    gap = (7 * BLOCK, BLOCK)
    asks = [_asked(rcv.poll_datagrams(t)) for t in (0.03, 0.05, 0.07, 0.09)]
    assert asks[0] == [gap] and asks[1] == [gap]  # asked, then asked again
    assert asks[2] == [] and asks[3] == []  # then left alone for a round trip
    # A gap repaired in between is not asked for a second time.
    _deliver(snd, rcv, [Block(0, 7 * BLOCK, BLOCK, 7 * BLOCK, True)], 0.1, lose=set())
    _deliver(snd, rcv, _send(snd, 0.2, limit=20), 0.2, lose={62 * BLOCK})
    _status(snd, rcv, 0.2)
    assert _asked(rcv.poll_datagrams(0.22)) == [(62 * BLOCK, BLOCK)]
    repair = [Block(0, 62 * BLOCK, BLOCK, 62 * BLOCK, True)]
    _deliver(snd, rcv, repair, 0.23, lose=set())
    assert _asked(rcv.poll_datagrams(0.24)) == []


def test_first_rate_is_a_share_of_the_target_within_bounds() -> None:
    assert RateConfig(target=1e9 / 8).first_rate() == 5e6  # -l 1g: 40 Mbit/s
    assert RateConfig(target=10e9 / 8).first_rate() == 12.5e6  # never above 100 Mbit/s
    assert RateConfig(target=100e6 / 8).first_rate() == 2.5e6  # never below 20 Mbit/s...
    snd = SenderSession(SessionConfig(SID, "none", SECRET, RateConfig(target=1e6)), [1], 0.0)
    assert snd.controller.rate == 1e6  # ...but never above -l
    assert RateConfig(target=1e9 / 8, initial=3e6).first_rate() == 3e6  # explicit wins


def test_long_lossy_path_costs_at_most_three_round_trips_over_the_ideal() -> None:
    """20 Mbit/s, 200 ms, 3 % loss both ways, 3 MiB, ten seeds: each transfer ends within 3
    round trips of the time the file takes at the link rate (one of them is the path itself).
    Before repairs of the tail went twice and asks rode twice, 4 of 10 took 3.1-3.6."""
    link, rtt, size = 20e6 / 8, 0.2, 3 << 20
    config = SessionConfig(SID, "aes128gcm", SECRET, RateConfig(target=1e9 / 8))
    carried = link * config.block_size / (config.datagram_size + 28)  # file bytes/s at best
    for seed in range(7, 77, 7):
        forward = Path(rate=link * config.datagram_size / (config.datagram_size + 28),
                       delay=rtt / 2, loss=0.03, queue_limit=int(link * rtt), seed=seed)  # fmt: skip
        backward = Path(delay=rtt / 2, loss=0.03, seed=seed + 1)
        snd = SenderSession(config, [size], 0.0)
        net = Network()
        net.add(Flow(snd, ReceiverSession(config, [size], 0.0), forward, backward, [bytes(size)]))
        net.run(until=60.0)
        assert snd.complete and snd.end_time is not None
        extra = (snd.end_time - size / carried) / rtt
        assert extra <= 3.0, f"seed {seed}: {extra:.2f} round trips over the ideal"
