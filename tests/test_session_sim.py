"""Sender and receiver sessions wired through the in-memory network: integrity under loss,
reordering, duplication and corruption; forged datagrams; resume; retransmission overhead.

No sockets and no real time: `simulate.Network` runs both sessions on a manual clock.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from common.transport.codec import DropReason, Sealer
from common.transport.config import SessionConfig
from common.transport.crypto import derive_protection
from common.transport.packets import (
    DATA_HEADER_SIZE,
    Close,
    CloseCode,
    Feedback,
    PacketType,
    Status,
)
from common.transport.ranges import RangeSet
from common.transport.ratecontrol import RateConfig
from common.transport.receiver import ReceiverSession
from common.transport.sender import SenderSession
from common.transport.simulate import Flow, Network, Path, pattern

SECRET = bytes(range(32))
SID = 0x5EED
LINK = 2.5e6  # bytes/s: a 20 Mbit/s bottleneck
RTT = 0.04
BDP = int(LINK * RTT)


class RecordingPath(Path):
    """A Path that remembers the datagrams it corrupted and the sizes of all it carried."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.corrupted: set[bytes] = set()
        self.sizes: list[int] = []

    def transmit(self, data: bytes, now: float) -> list[tuple[float, bytes]]:
        self.sizes.append(len(data))
        out = super().transmit(data, now)
        self.corrupted.update(d for _, d in out if d != data)
        return out


def make_config(cipher: str = "none", **kwargs: object) -> SessionConfig:
    return SessionConfig(session_id=SID, cipher=cipher, secret=SECRET,
                         rate=RateConfig(target=100e6 / 8), **kwargs)  # type: ignore[arg-type]  # fmt: skip


def file_sizes(block: int) -> list[int]:
    """Zero-length, one-byte, not a multiple of the block, exactly a multiple, and a few MB."""
    return [0, 1, 3 * block + 17, 2_000_000, 0, 10 * block, 250_001, 5]


def make_flow(sizes: Sequence[int], config: SessionConfig, forward: Path, backward: Path,
              have: RangeSet | None = None) -> Flow:  # fmt: skip
    sources = [pattern(i, s) for i, s in enumerate(sizes)]
    sinks = [bytearray(len(s)) for s in sources]
    if have:  # what a resumed receiver already has on disk
        base = 0
        for src, sink in zip(sources, sinks):
            for s, e in have.intersection(base, base + len(src)):
                sink[s - base : e - base] = src[s - base : e - base]
            base += len(src)
    return Flow(
        SenderSession(config, list(sizes), 0.0, have=have.copy() if have else None),
        ReceiverSession(config, list(sizes), 0.0, have=have.copy() if have else None),
        forward, backward, sources, sinks=sinks,
    )  # fmt: skip


class Guard:
    """Checks, datagram by datagram, that every corrupted datagram is dropped and counted."""

    def __init__(self, flow: Flow) -> None:
        self.corrupt_to_receiver = 0
        self.corrupt_to_sender = 0
        rcv, snd = flow.receiver, flow.sender
        fwd, back = flow.forward, flow.backward
        rcv_receive, snd_receive = rcv.receive, snd.receive

        def to_receiver(datagram: memoryview, now: float,
                        out: memoryview | None = None) -> tuple[int, int, memoryview] | None:  # fmt: skip
            if bytes(datagram) not in getattr(fwd, "corrupted", ()):
                return rcv_receive(datagram, now, out)
            before = sum(rcv.drops.values())
            got = rcv_receive(datagram, now, out)
            assert got is None, "a corrupted datagram was handed to the writer"
            assert sum(rcv.drops.values()) == before + 1, "a corrupted datagram was not counted"
            self.corrupt_to_receiver += 1
            return None

        def to_sender(datagram: memoryview | bytes, now: float) -> None:
            if bytes(datagram) not in getattr(back, "corrupted", ()):
                return snd_receive(datagram, now)
            before = sum(snd.drops.values())
            snd_receive(datagram, now)
            assert sum(snd.drops.values()) == before + 1, "a corrupted datagram was not counted"
            self.corrupt_to_sender += 1
            return None

        rcv.receive = to_receiver  # type: ignore[method-assign]
        snd.receive = to_sender  # type: ignore[method-assign]


def assert_complete(flow: Flow, end: float, until: float) -> None:
    assert end < until, f"flow did not finish in {until} simulated seconds"
    assert flow.sender.complete
    assert flow.receiver.complete
    assert flow.sender.closed is not None and flow.sender.closed.code == CloseCode.DONE
    for i, (src, sink) in enumerate(zip(flow.sources, flow.sinks)):
        assert bytes(sink) == src, f"file {i} differs"
    n = len(flow.sources)
    assert sorted(flow.completed) == list(range(n)), f"FileComplete events: {flow.completed}"


# -- integrity --------------------------------------------------------------------------------
@pytest.mark.parametrize("loss", [0.0, 0.01, 0.05, 0.10, 0.30])
def test_integrity_under_loss_reordering_duplication_and_corruption(loss: float) -> None:
    config = make_config("aes128gcm")
    forward = RecordingPath(rate=LINK, delay=RTT / 2, queue_limit=BDP + 64_000, seed=11, loss=loss,
                            reorder=0.05, reorder_delay=0.01, duplicate=0.02, corrupt=0.01)  # fmt: skip
    backward = RecordingPath(delay=RTT / 2, seed=12, loss=loss,
                             reorder=0.05, reorder_delay=0.01, duplicate=0.02, corrupt=0.01)  # fmt: skip
    flow = make_flow(file_sizes(config.block_size), config, forward, backward)
    guard = Guard(flow)
    net = Network()
    net.add(flow)
    end = net.run(until=60.0)
    assert_complete(flow, end, 60.0)
    assert guard.corrupt_to_receiver > 0  # the corruption hook was exercised...
    assert flow.receiver.drops[DropReason.AUTH] > 0  # ...and mostly caught by the tag
    assert flow.receiver.drops[DropReason.REPLAY] > 0  # duplicates dropped
    if loss:
        assert flow.sender.bytes_retransmitted > 0


@pytest.mark.parametrize("cipher", ["aes256cfb", "aes192gcm", "none"])
@pytest.mark.parametrize("datagram_size", [268, 1472, 9000])
def test_integrity_for_each_cipher_and_datagram_size(cipher: str, datagram_size: int) -> None:
    config = make_config(cipher, datagram_size=datagram_size)
    forward = Path(rate=LINK, delay=RTT / 2, loss=0.05, reorder=0.05, duplicate=0.02,
                   queue_limit=BDP + 10 * datagram_size, seed=21)  # fmt: skip
    backward = Path(delay=RTT / 2, loss=0.05, seed=22)
    sizes = [0, 1, 3 * config.block_size + 1, 400_000, 2 * config.block_size]
    flow = make_flow(sizes, config, forward, backward)
    net = Network()
    net.add(flow)
    assert_complete(flow, net.run(until=60.0), 60.0)
    assert flow.receiver.drops[DropReason.AUTH] == 0  # nothing genuine was rejected


def test_feedback_datagrams_respect_rexmsg_size() -> None:
    config = make_config("aes128gcm", rexmsg_size=200)
    forward = Path(rate=LINK, delay=RTT / 2, loss=0.2, queue_limit=BDP, seed=31)
    backward = RecordingPath(delay=RTT / 2, seed=32)
    flow = make_flow([1_500_000], config, forward, backward)
    net = Network()
    net.add(flow)
    assert_complete(flow, net.run(until=60.0), 60.0)
    assert flow.receiver.requests_sent > 100
    full = 20 + 50 + 16 + 12 * Feedback.max_requests(200)  # header, body, tag, ranges
    assert max(backward.sizes) <= 200
    assert max(backward.sizes) == full  # requests were split into full datagrams, none larger


# -- forged and garbage datagrams -------------------------------------------------------------
def test_forged_datagrams_are_dropped_and_change_nothing() -> None:
    config = make_config("aes256gcm")
    sizes = [300_000, 700_000]
    flow = make_flow(sizes, config, Path(rate=LINK, delay=RTT / 2, queue_limit=BDP, seed=41),
                     Path(delay=RTT / 2, seed=42))  # fmt: skip
    net = Network()
    net.add(flow)
    net.run(until=0.15)  # part way through
    rcv, snd = flow.receiver, flow.sender
    assert 0 < rcv.received.total < sum(sizes)
    before_rcv, before_snd = rcv.received.copy(), (snd.acked, snd.bytes_sent)
    sinks_before = [bytes(s) for s in flow.sinks]

    # Valid-looking datagrams: right version, type and session id; sealed under another key.
    wrong = bytes(reversed(SECRET))
    data_forger = Sealer(derive_protection("aes256gcm", wrong, "data"), SID)
    data_forger.packet_number = 1 << 40  # would push the genuine packets out of the window
    forged_to_receiver = []
    for base, size in zip((0, sizes[0]), sizes):
        for offset in (0, size // 2, size - 1000):
            buf = bytearray(DATA_HEADER_SIZE + 1000 + 16)
            buf[DATA_HEADER_SIZE : DATA_HEADER_SIZE + 1000] = b"\xee" * 1000
            n = data_forger.seal_data_into(memoryview(buf), base + offset, 0, 1000)
            forged_to_receiver.append(bytes(buf[:n]))
    forged_to_receiver.append(
        data_forger.seal(PacketType.STATUS, Status(sum(sizes), 1, 1).encode(), 1)
    )
    forged_to_receiver.append(
        data_forger.seal(PacketType.CLOSE, Close(CloseCode.CANCELLED, "x").encode())
    )
    # A genuine datagram with its tag altered (the header stays valid).
    genuine = bytearray(Sealer(derive_protection("aes256gcm", SECRET, "data"), SID).seal(
        PacketType.CLOSE, Close(CloseCode.CANCELLED, "x").encode()))  # fmt: skip
    genuine[-1] ^= 0x80
    forged_to_receiver.append(bytes(genuine))

    fb_forger = Sealer(derive_protection("aes256gcm", wrong, "feedback"), SID)
    total = sum(sizes)
    forged_to_sender = [
        fb_forger.seal(
            PacketType.FEEDBACK, Feedback(0, 0, total, total, total, 0, 0, 10**9).encode()
        ),
        fb_forger.seal(PacketType.CLOSE, Close(CloseCode.DONE).encode()),
    ]

    auth_rcv, auth_snd = rcv.drops[DropReason.AUTH], snd.drops[DropReason.AUTH]
    for d in forged_to_receiver:
        assert rcv.receive(memoryview(d), net.now) is None
    for d in forged_to_sender:
        snd.receive(d, net.now)
    assert rcv.drops[DropReason.AUTH] == auth_rcv + len(forged_to_receiver)
    assert snd.drops[DropReason.AUTH] == auth_snd + len(forged_to_sender)
    assert rcv.received == before_rcv and rcv.closed is None
    assert (snd.acked, snd.bytes_sent) == before_snd and snd.closed is None
    assert [bytes(s) for s in flow.sinks] == sinks_before
    assert rcv.opener.replay.highest < 1 << 40

    end = net.run(until=30.0)
    assert_complete(flow, end, 30.0)


@pytest.mark.parametrize("cipher", ["aes128gcm", "none"])
def test_garbage_and_truncated_datagrams_are_counted_drops(cipher: str) -> None:
    config = make_config(cipher)
    snd = SenderSession(config, [100_000], 0.0)
    rcv = ReceiverSession(config, [100_000], 0.0)
    rng = random.Random(5)
    genuine = []
    buf = bytearray(config.datagram_size)
    for block in snd.poll_blocks(0.01, limit=4):
        genuine.append(bytes(buf[: snd.seal_block(memoryview(buf), block, 0.01)]))
    genuine += snd.poll_datagrams(0.01)
    junk: list[bytes] = [b"", b"\x01", bytes(19), bytes(20), bytes(26), bytes(27), bytes(35), bytes(36)]
    junk += [rng.randbytes(rng.randrange(0, 1500)) for _ in range(300)]
    for g in genuine:
        junk += [g[:n] for n in range(0, len(g), 7)]
    for d in junk:
        rcv.receive(memoryview(d), 0.02)  # must not raise
        snd.receive(d, 0.02)
    assert rcv.received.total == 0 or cipher == "none"
    assert sum(rcv.drops.values()) >= 300 and sum(snd.drops.values()) == len(junk)
    assert rcv.closed is None and snd.closed is None


# -- resume -----------------------------------------------------------------------------------
SIZES = [1_000_000, 0, 2_000_000, 300_000]


@pytest.mark.parametrize(
    "have",
    [
        pytest.param([(500, 600_000), (1_200_000, 2_000_000), (3_000_000, 3_000_001)], id="inside_files"),
        pytest.param([(0, 1)], id="first_byte"),
        pytest.param([(1_000_000, 3_299_999)], id="all_but_the_last_byte"),
        pytest.param([(0, 1_000_000)], id="one_whole_file"),
        pytest.param([(500_000, 1_500_000)], id="across_a_file_boundary"),
        pytest.param([(0, 3_300_000)], id="everything"),
    ],
)  # fmt: skip
def test_resume_sends_only_the_missing_bytes(have: list[tuple[int, int]]) -> None:
    config = make_config("aes128gcm")
    have_set = RangeSet(have)
    flow = make_flow(SIZES, config, Path(rate=LINK, delay=RTT / 2, queue_limit=BDP + 64_000, seed=51),
                     Path(delay=RTT / 2, seed=52), have=have_set)  # fmt: skip
    net = Network()
    net.add(flow)
    end = net.run(until=30.0)
    missing = sum(SIZES) - have_set.total
    assert flow.sender.bytes_sent == missing
    assert flow.sender.bytes_retransmitted == 0
    assert flow.receiver.bytes_duplicate == 0
    assert_complete(flow, end, 30.0)


# -- retransmission overhead ------------------------------------------------------------------
@pytest.mark.parametrize(("loss", "bound"), [(0.01, 1.02), (0.05, 1.06)])
def test_redundant_retransmission_stays_small(loss: float, bound: float) -> None:
    """bytes_sent/total: 1/(1-loss) is the floor (lost retransmissions are lost too), so 1.0101
    at 1 % and 1.0526 at 5 %; the bound leaves little room for repairs sent twice."""
    config = make_config("none")
    sizes = [4_000_000, 0, 1, 3_000_017, 1_000_000]
    forward = Path(rate=LINK, delay=RTT / 2, loss=loss, queue_limit=BDP, seed=61)
    backward = Path(delay=RTT / 2, loss=loss, seed=62)
    flow = make_flow(sizes, config, forward, backward)
    net = Network()
    net.add(flow)
    assert_complete(flow, net.run(until=60.0), 60.0)
    total = sum(sizes)
    ratio = flow.sender.bytes_sent / total
    assert ratio <= bound, (f"bytes_sent/total = {ratio:.4f} (duplicates at the receiver: "
                            f"{flow.receiver.bytes_duplicate}, path losses {forward.dropped_loss}, "
                            f"queue drops {forward.dropped_queue})")  # fmt: skip
    assert flow.receiver.bytes_duplicate <= 0.01 * total


# -- GRO reads ----------------------------------------------------------------------------------
def test_a_coalesced_read_is_received_like_its_datagrams_one_by_one() -> None:
    """One GRO read holds several datagrams back to back: `receive_coalesced` yields the blocks
    `receive` would, each payload opened into the caller's buffer at its datagram's offset; a
    forged datagram among them is dropped and counted, and the others still land."""
    config = make_config("aes128gcm", datagram_size=1472)
    size = 6 * config.block_size
    data = pattern(0, size)
    snd = SenderSession(config, [size], 0.0)
    blocks = snd.poll_blocks(0.01, limit=6)
    read = bytearray()
    for b in blocks:
        d = memoryview(bytearray(config.datagram_size))
        n = snd.seal_block(d, b, 0.01, memoryview(data)[b.offset : b.offset + b.length])
        read += d[:n]
    read[3 * config.datagram_size + 100] ^= 1  # the fourth datagram is forged
    rcv = ReceiverSession(config, [size], 0.0)
    out = memoryview(bytearray(len(read)))
    got = rcv.receive_coalesced(memoryview(read), len(read), config.datagram_size, 0.02, out)
    assert [(i, off) for i, off, _ in got] == [(0, b.offset) for b in blocks if b is not blocks[3]]
    for _, off, payload in got:
        assert bytes(payload) == data[off : off + len(payload)]
        assert payload.obj is out.obj
    assert rcv.drops[DropReason.AUTH] == 1
    assert rcv.received.total == 5 * config.block_size
