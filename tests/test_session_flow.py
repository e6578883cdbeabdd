"""Flow control: a receiver that is not reading (its process descheduled, overloaded) gets no
more than its socket buffer can hold, and at high rates it reports by the megabyte, not only
every 10 ms. Sessions driven by hand, no sockets."""

from __future__ import annotations

import pytest

from common.control.messages import session_config_from
from common.transport.config import SessionConfig
from common.transport.ratecontrol import RateConfig
from common.transport.receiver import ReceiverSession
from common.transport.sender import SenderSession

SID = 0xF10
SECRET = bytes(range(32))


def _config(buffer: int) -> SessionConfig:
    # fixed 1 GB/s: the pacer alone never stops the sender within these few milliseconds
    return SessionConfig(SID, "none", SECRET, RateConfig(target=1e9, policy="fixed"),
                         datagram_size=65507, receive_buffer=buffer)  # fmt: skip


def _sent_until_blocked(snd: SenderSession, start: float, step: float = 0.001) -> tuple[int, float]:
    """Wire bytes the sender puts out, polled every `step`, before it stops on its own."""
    total, now = 0, start
    for _ in range(1000):
        blocks = snd.poll_blocks(now, limit=10_000)
        if not blocks and total:
            return total, now
        total += sum(b.length for b in blocks)
        now += step
    raise AssertionError("the sender never stopped")


def test_a_silent_receiver_gets_no_more_than_its_budget() -> None:
    config = _config(8 << 20)
    snd = SenderSession(config, [1 << 30], 0.0)
    rcv = ReceiverSession(config, [1 << 30], 0.0)
    sent, now = _sent_until_blocked(snd, 0.001)
    # budget (half the buffer) plus one round trip at the rate (100 ms before any sample)
    assert config.stall_budget <= sent <= config.stall_budget + 1e9 * 0.1 + 2 * 65507
    assert snd.poll_blocks(now + 0.5, limit=10_000) == []  # still silent: still nothing
    for d in rcv.poll_datagrams(now + 0.5):  # the receiver speaks (it saw nothing, it is alive)
        snd.receive(d, now + 0.5)
    assert snd.poll_blocks(now + 0.501, limit=10_000)  # heard: sending again


def test_a_bigger_buffer_buys_a_longer_silence() -> None:
    small = _sent_until_blocked(SenderSession(_config(8 << 20), [1 << 30], 0.0), 0.001)[0]
    big = _sent_until_blocked(SenderSession(_config(64 << 20), [1 << 30], 0.0), 0.001)[0]
    assert big - small >= 27 << 20  # (64 - 8) / 2 MiB, to a datagram


def test_receiver_reports_by_the_megabyte_between_intervals() -> None:
    config = _config(64 << 20)
    assert config.feedback_bytes == 1 << 20
    snd = SenderSession(config, [8 << 20], 0.0)
    rcv = ReceiverSession(config, [8 << 20], 0.0)
    blocks = snd.poll_blocks(0.004, limit=10_000)  # 4 ms of credit at 1 GB/s
    assert sum(b.length for b in blocks) >= 3 << 20
    reported = 0
    for b in blocks:
        buf = memoryview(bytearray(config.datagram_size))
        n = snd.seal_block(buf, b, 0.0011, memoryview(bytes(b.length)))
        rcv.receive(buf[:n], 0.0011)
        if rcv.feedback_due:  # the driver stops reading and lets it speak, 0.1 ms in
            reported += len(rcv.poll_datagrams(0.0011))
    assert reported >= 2
    assert not rcv.poll_datagrams(0.0012)  # and then only after another megabyte or 10 ms


@pytest.mark.parametrize(("reported", "used"), [(None, 8 << 20), (0, 8 << 20), (1, 64 << 10),
                                               (212992, 212992), (1 << 40, 1 << 30)])  # fmt: skip
def test_the_receivers_buffer_report_is_taken_within_bounds(
    reported: int | None, used: int
) -> None:
    req = {"session_id": 1, "secret": SECRET.hex(), "datagram_size": 1472,
           "rate": {"target_bps": 1e9}, "receive_buffer": reported}  # fmt: skip
    config = session_config_from(req, "none")
    assert config.receive_buffer == used
    assert config.rate.max_queue == used / 8  # a standing queue leaves most of it free
