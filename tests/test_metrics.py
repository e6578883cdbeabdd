"""Prometheus metrics (issue 5): real transfers through a real `surge server --metrics-port`,
scraped over HTTP, checked by `promtool check metrics` and scraped by a real Prometheus server;
forged datagrams sent to a live receiver are counted by reason; the sync engine's counters; the
option's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import filecmp
import os
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from promfix import Samples, parse, prometheus_scrapes, promtool_check, sample, scrape
from sshd import HOST, FarEnd, free_tcp_port, free_udp_port, surge_server

from common import metrics
from common.metrics_relay import PipeRelay, open_relay, relay_from
from common.transport.codec import Sealer
from common.transport.config import SessionConfig
from common.transport.crypto import derive_protection
from common.transport.packets import HEADER, VERSION, PacketType
from common.transport.ratecontrol import RateConfig
from common.transport.receiver import ReceiverSession
from common.transport.udp import run_receiver
from coordinator.sync.engine import run_sync
from coordinator.sync.options import parse_sync_args

MiB = 1 << 20
DROPPED = "surge_datagrams_dropped_total"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FarEnd, str]]:
    """`surge server --metrics-port N` with its docroot; yields it and its metrics address."""
    base = tmp_path_factory.mktemp("metrics")
    (base / "docroot").mkdir()
    port = free_tcp_port()
    with surge_server(base / "server", docroot=base / "docroot", udp_ports=4,
                      args=["--metrics-port", str(port)]) as far:  # fmt: skip
        yield far, f"{HOST}:{port}"


def _cp(far: FarEnd, *args: str, rate: str = "1g") -> subprocess.Popen[str]:
    argv = [
        sys.executable,
        "-m",
        "coordinator.cli",
        "cp",
        "-l",
        rate,
        "-O",
        str(free_udp_port()),
        *far.auth(),
        *args,
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str], far: FarEnd) -> None:
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{err}\n--- server log ---\n{far.log_tail()}"


def _random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return sample(after, name, **labels) - sample(before, name, **labels)


def _scrape(address: str) -> Samples:
    return scrape(f"http://{address}/metrics")[1]


def test_transfers_through_the_server_are_counted(
    server: tuple[FarEnd, str], tmp_path: Path
) -> None:
    """Upload and download through `surge server`: its endpoint (fed by the agent processes)
    counts the bytes both ways, the sessions by outcome and the RTT; promtool accepts it."""
    far, address = server
    size = 3 * MiB + 5
    src = _random_file(tmp_path / "up.bin", size)
    before = _scrape(address)
    _finish(_cp(far, str(src), far.remote("/")), far)
    assert far.docroot is not None and filecmp.cmp(src, far.docroot / "up.bin", shallow=False)
    raw, after = scrape(f"http://{address}/metrics")
    promtool_check(raw)
    got = delta(after, before, "surge_received_bytes_total")
    assert size <= got <= size * 1.01, got
    ok = "surge_sessions_total"
    assert delta(after, before, ok, outcome="succeeded") == 1
    assert delta(after, before, ok, outcome="failed") == 0
    assert sample(after, "surge_sessions_active") == 0
    assert 0 < sample(after, "surge_rtt_seconds") < 1
    assert sample(after, "surge_transfer_rate_bytes_per_second") > 0
    _finish(_cp(far, far.remote("/up.bin"), str(tmp_path / "down.bin")), far)
    assert filecmp.cmp(src, tmp_path / "down.bin", shallow=False)
    later = _scrape(address)
    assert delta(later, after, "surge_sent_bytes_total") >= size
    assert sample(later, ok, outcome="succeeded") == sample(after, ok, outcome="succeeded") + 1


def test_running_session_shows_progress_and_counts_forged_datagrams(server: tuple[FarEnd, str],
                                                                    tmp_path: Path) -> None:  # fmt: skip
    """While a rate-limited upload runs, the server's endpoint shows it active with bytes
    received so far; datagrams of a foreign session sent to the agent's UDP port meanwhile are
    counted as dropped (foreign_session), too short ones as malformed."""
    far, address = server
    size = 6 * MiB
    src = _random_file(tmp_path / "slow.bin", size)
    before = _scrape(address)
    base = sample(before, "surge_received_bytes_total")
    proc = _cp(far, str(src), far.remote("/"), rate="16m")  # 2 MB/s: about 3 s
    assert far.udp_ports is not None
    ports = range(far.udp_ports[0], far.udp_ports[1] + 1)
    midway: list[float] = []
    forged = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        while proc.poll() is None and len(midway) < 3:
            now = _scrape(address)
            got = sample(now, "surge_received_bytes_total") - base
            if sample(now, "surge_sessions_active") == 1 and 0 < got < size:
                midway.append(got)
                for port in ports:  # the agent has one of these; the others are closed
                    header = HEADER.pack(VERSION, PacketType.DATA, 0, secrets.randbits(64), forged)
                    udp.sendto(header + os.urandom(64), (HOST, port))
                    udp.sendto(b"\x01", (HOST, port))
                forged += 1
            time.sleep(0.3)
    _finish(proc, far)
    assert len(midway) >= 2 and midway[-1] > midway[0], (
        f"no progress seen during the transfer: {midway}"
    )
    after = _scrape(address)
    assert delta(after, before, DROPPED, reason="foreign_session") == forged
    assert delta(after, before, DROPPED, reason="malformed") == forged
    assert sample(after, "surge_sessions_active") == 0


def test_real_prometheus_scrapes_the_server(server: tuple[FarEnd, str], tmp_path: Path) -> None:
    far, address = server
    size = MiB
    _finish(_cp(far, str(_random_file(tmp_path / "p.bin", size)), far.remote("/")), far)
    with prometheus_scrapes([address]) as prom:
        result = prom.wait_for(f'surge_received_bytes_total{{instance="{address}"}}')
        assert result, prom.targets()
        assert float(result[0]["value"][1]) >= size
        assert prom.query(f'up{{instance="{address}"}}')[0]["value"][1] == "1"
        [target] = prom.targets()
        assert target["health"] == "up" and not target["lastError"], target


# -- a live receiver in this process, its own endpoint --------------------------------------------


class _Sink:
    def __init__(self) -> None:
        self.writes: list[tuple[int, int, bytes]] = []

    def write(self, file_index: int, offset: int, data: list[memoryview]) -> None:
        self.writes.append((file_index, offset, b"".join(data)))

    def file_complete(self, file_index: int) -> None:
        pass


def test_forged_datagrams_to_a_live_receiver_are_dropped_and_counted_by_reason() -> None:
    """A receiving session on a real UDP socket, its metrics on a real HTTP endpoint: forged
    datagrams of every kind are counted under their reason while the session runs, and the one
    genuine datagram is written."""
    config = SessionConfig(session_id=secrets.randbits(64), cipher="aes128gcm", secret=secrets.token_bytes(32),
                           rate=RateConfig(target=1e6), datagram_size=1400)  # fmt: skip
    session = ReceiverSession(config, [4096], time.monotonic())
    port = free_tcp_port()
    endpoint = metrics.serve_metrics(port, HOST)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((HOST, 0))
    rx.setblocking(False)
    stop = threading.Event()
    sink = _Sink()
    thread = threading.Thread(target=lambda: _receive_until_stopped(rx, session, sink, stop))
    before = _scrape(f"{HOST}:{port}")
    thread.start()
    try:
        sealer = Sealer(derive_protection(config.cipher, config.secret, "data"), config.session_id)
        genuine = _data(sealer, offset=0)
        forged = _forged(config, sealer, genuine)
        seen, expected, now = _send_and_count(rx.getsockname(), genuine, forged, f"{HOST}:{port}", before)
        assert seen == expected
        assert delta(now, before, "surge_sessions_active") == 1
        assert thread.is_alive()
        assert [(i, off, len(data)) for i, off, data in sink.writes] == [(0, 0, 1024)]
    finally:
        stop.set()
        thread.join(10)
        rx.close()
        endpoint.shutdown()  # type: ignore[attr-defined]
        endpoint.server_close()  # type: ignore[attr-defined]
    after = metrics.exposition()
    promtool_check(after)
    failed = "surge_sessions_total"  # cancelled (stopped), not complete: a failed session
    assert delta(parse(after), before, failed, outcome="failed") == 1
    assert delta(parse(after), before, "surge_sessions_active") == 0


def _forged(config: SessionConfig, sealer: Sealer, genuine: bytes) -> dict[str, list[bytes]]:
    """Datagrams a receiver of ``config`` must drop, by the reason it counts them under."""
    wrong_key = Sealer(
        derive_protection(config.cipher, secrets.token_bytes(32), "data"), config.session_id
    )
    return {
        "authentication": [_data(wrong_key, offset=0) for _ in range(3)],
        "replay": [genuine],  # the second copy of a datagram already accepted
        "out_of_range": [_data(sealer, offset=8192)],
        "version": [bytes([VERSION + 1]) + genuine[1:]],
        "foreign_session": [
            genuine[:4] + struct.pack("!Q", config.session_id ^ 1) + genuine[12:]
        ],
        "malformed": [b"\x01\x02\x03"],
    }


def _send_and_count(
    to: tuple[str, int], genuine: bytes, forged: dict[str, list[bytes]], endpoint: str,
    before: Samples,
) -> tuple[dict[str, float], dict[str, int], Samples]:  # fmt: skip
    """Send ``genuine``, then the ``forged`` datagrams, and scrape ``endpoint`` until the drops
    show up by reason (10 s at most). Returns the drops seen, those expected and the last scrape."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(genuine, to)
        for datagrams in forged.values():
            for d in datagrams:
                tx.sendto(d, to)
        expected = {reason: len(ds) for reason, ds in forged.items()}
        deadline = time.monotonic() + 10
        while True:  # the session is still running: the counts must show up live
            now = _scrape(endpoint)
            seen = {r: delta(now, before, DROPPED, reason=r) for r in expected}
            if seen == expected or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    return seen, expected, now


def _data(sealer: Sealer, offset: int) -> bytes:
    buf = bytearray(2048)
    n = sealer.seal_data_into(memoryview(buf), offset, 0, 1024)
    return bytes(buf[:n])


def _receive_until_stopped(
    sock: socket.socket, session: ReceiverSession, sink: _Sink, stop: threading.Event
) -> None:
    try:
        run_receiver(sock, session, sink, stop=stop, linger=0)
    except Exception:  # TransferAborted when stopped: expected
        pass


# -- the agent-to-server relay ----------------------------------------------------------------------


def test_relay_counts_an_agent_that_dies_mid_session_as_failed() -> None:
    """Events as an agent writes them; garbage lines are ignored; end of file (the agent died)
    ends its open session as failed, so nothing stays active."""
    pipe, wfd = open_relay()
    relay = PipeRelay(wfd)
    before = parse(metrics.exposition())
    relay({"id": 7, "dir": "recv", "ev": "start", "stats": {"bytes_received": 100}, "active": True})
    relay(
        {
            "id": 7,
            "dir": "recv",
            "ev": "update",
            "stats": {"bytes_received": 600, "drops": {"authentication": 2}},
        }
    )
    os.write(wfd, b'not json\n{"id": "7", "ev": "finish", "stats": {}, "ok": true}\n[1]\n')
    relay({"id": 8, "dir": "send", "ev": "update", "stats": {"bytes_sent": 10**9}})  # never started
    os.close(wfd)
    asyncio.run(relay_from(pipe))
    after = parse(metrics.exposition())
    assert delta(after, before, "surge_received_bytes_total") == 500
    assert delta(after, before, "surge_sent_bytes_total") == 0
    assert delta(after, before, DROPPED, reason="authentication") == 2
    sessions = "surge_sessions_total"
    assert delta(after, before, sessions, outcome="failed") == 1
    assert delta(after, before, sessions, outcome="succeeded") == 0
    assert delta(after, before, "surge_sessions_active") == 0


def test_relay_never_blocks_a_transfer_on_a_full_pipe() -> None:
    rfd, wfd = os.pipe()
    relay = PipeRelay(wfd)
    try:
        with contextlib.suppress(BlockingIOError):
            while True:
                os.write(wfd, b"x" * 4096)
        started = time.monotonic()
        relay({"id": 1, "dir": "send", "ev": "update", "stats": {"bytes_sent": 1}})
        assert time.monotonic() - started < 0.1
    finally:
        os.close(rfd)
        os.close(wfd)


# -- the sync engine -------------------------------------------------------------------------------


def test_sync_counts_files_bytes_and_snapshot(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d").mkdir(parents=True)
    dst.mkdir()
    sizes = {"a.bin": 100_000, "d/b.bin": 250_001, "c.txt": 3}
    for rel, n in sizes.items():
        _random_file(src / rel, n)

    def run(*args: str) -> Samples:
        opts = parse_sync_args(["-N", "pair", "-d", str(src), "-r", str(dst), "-O", str(free_udp_port()),
                                "-l", "1g", *args])  # fmt: skip
        report = run_sync(opts)
        assert report.ok, report.errors
        raw = metrics.exposition()
        promtool_check(raw)
        return parse(raw)

    before = parse(metrics.exposition())
    first = run()
    files = "surge_files_total"
    assert delta(first, before, files, state="synced") == 4  # 3 files, 1 directory
    assert delta(first, before, "surge_synced_bytes_total") == sum(sizes.values())
    assert delta(first, before, "surge_sent_bytes_total") >= sum(sizes.values())
    assert sample(first, "surge_files_pending") == 0
    assert sample(first, "surge_snapshot_entries") == 2 * 4  # both sides of each entry
    db = src / ".surge" / "pair.db"
    assert sample(first, "surge_snapshot_size_bytes") >= db.stat().st_size > 0
    (src / "c.txt").unlink()
    second = run()
    assert delta(second, first, files, state="deleted") == 1
    assert sample(second, "surge_snapshot_entries") == 2 * 3
    assert sample(second, "surge_synced_bytes_total") == sample(first, "surge_synced_bytes_total")


# -- the option --------------------------------------------------------------------------------


def _server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", "server", "--listen", HOST, *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize("value", ["0", "65536", "-1", "nine"])
def test_bad_metrics_port_is_a_usage_error(value: str) -> None:
    res = _server("--metrics-port", value)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("surge server: error: --metrics-port"), (
        res.stderr
    )


def test_metrics_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = _server("--metrics-port", str(port))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--metrics-port {port}" in lines[0] and "in use" in lines[0], (
        res.stderr
    )
