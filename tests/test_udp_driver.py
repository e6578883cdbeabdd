"""The socket driver on real UDP sockets: behaviour the sans-I/O tests cannot see."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from common.transport.config import SessionConfig
from common.transport.ratecontrol import RateConfig
from common.transport.receiver import ReceiverSession
from common.transport.udp import TransferAborted, run_receiver


class _NoWrites:
    def write(self, file_index: int, offset: int, data: list[memoryview]) -> None:
        raise AssertionError("nothing was sent, so nothing may be written")

    def file_complete(self, file_index: int) -> None:
        raise AssertionError("no file can complete")


def test_receiver_whose_sender_never_comes_times_out_without_spinning() -> None:
    """Nobody ever sends: the receiver gives up after its idle timeout, sleeping meanwhile (it
    used to poll a deadline in the past forever, one core at 100 %, as an orphaned agent)."""
    cfg = SessionConfig(1, "aes128gcm", bytes(32), RateConfig(target=1e6), idle_timeout=1.0)
    session = ReceiverSession(cfg, [4096], time.monotonic())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    stop = threading.Event()
    watchdog = threading.Timer(8.0, stop.set)  # a receiver that never gives up is stopped
    watchdog.start()
    try:
        wall0, cpu0 = time.monotonic(), time.thread_time()
        with pytest.raises(TransferAborted, match="no data from the sender"):
            run_receiver(sock, session, _NoWrites(), linger=0, stop=stop)
        wall, cpu = time.monotonic() - wall0, time.thread_time() - cpu0
    finally:
        watchdog.cancel()
        sock.close()
    assert 0.9 <= wall < 10
    assert cpu < 0.3, f"the idle receiver burnt {cpu:.2f} s of CPU in {wall:.2f} s"
