"""Measurement probes, run inside a namespace as ``python -m bench.wan.probe {ping,sink,blast}``.

Each prints one JSON object on stdout when done (``sink`` first prints ``READY``, then stops
when its stdin is closed). They need nothing but Python: ``ping`` uses a raw ICMP socket (root),
and receive times come from the kernel (``SO_TIMESTAMPNS``), so the probes' own scheduling delay
does not count as link delay.

* ``ping``: ICMP echo to ``--dst``; reports every round-trip time.
* ``blast``: paced UDP datagrams with a sequence number, at ``--rate`` bits/s counted at the IP
  layer (payload + 28 bytes), ``--count`` of them or for ``--seconds``.
* ``sink``: receives ``blast`` datagrams; reports counts, losses, reordering and the IP-layer
  rate between the first and the last arrival.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time
from array import array
from collections.abc import Sequence
from typing import Any

__all__ = ["main"]

#: IPv4 + UDP header bytes added to every datagram payload.
UDP_IP_OVERHEAD = 28
#: IPv4 + ICMP echo header bytes.
ICMP_IP_OVERHEAD = 28
#: Socket buffers requested for the blaster and the sink.
SOCKET_BUFFER_BYTES = 8 << 20
#: Most datagrams a sink records (arrival time and sequence each); beyond it, counts only.
SINK_RECORD_LIMIT = 2_000_000
#: Hard stop of a sink that is never told to stop, in seconds.
SINK_MAX_SECONDS = 600.0

_HEADER = struct.Struct("!QQ")  # sequence, send time (ns)
_ICMP = struct.Struct("!BBHHH")
_TIMESTAMP = struct.Struct("@qq")  # struct timespec
_ANC_SIZE = socket.CMSG_SPACE(_TIMESTAMP.size)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def _kernel_time_ns(ancdata: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESTAMP.size:
            sec, nsec = _TIMESTAMP.unpack_from(data)
            return int(sec * 1_000_000_000 + nsec)
    return time.time_ns()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(dst: str, count: int, interval_s: float, size: int, timeout_s: float) -> dict[str, Any]:
    """ICMP echo ``count`` times; RTT = kernel receive time minus time just before ``sendto``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    ident = os.getpid() & 0xFFFF
    sent: dict[int, int] = {}
    rtts: dict[int, float] = {}
    duplicates = 0
    payload = b"surge-wan-probe".ljust(max(0, size - ICMP_IP_OVERHEAD), b"\0")
    start = time.monotonic()

    def receive_until(deadline: float, stop_when_complete: bool = False) -> None:
        nonlocal duplicates
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop_when_complete and len(rtts) == len(sent)):
                return
            if not select.select([sock], [], [], remaining)[0]:
                return
            data, anc, _, _ = sock.recvmsg(65535, _ANC_SIZE)
            received_ns = _kernel_time_ns(anc)
            header_len = (data[0] & 0x0F) * 4
            kind, _, _, rid, seq = _ICMP.unpack_from(data, header_len)
            if kind != 0 or rid != ident or seq not in sent:
                continue
            if seq in rtts:
                duplicates += 1
                continue
            rtts[seq] = (received_ns - sent[seq]) / 1e6

    for seq in range(count):
        header = _ICMP.pack(8, 0, 0, ident, seq)
        packet = _ICMP.pack(8, 0, _checksum(header + payload), ident, seq) + payload
        sent[seq] = time.time_ns()
        sock.sendto(packet, (dst, 0))
        receive_until(start + (seq + 1) * interval_s)
    receive_until(time.monotonic() + timeout_s, stop_when_complete=True)
    sock.close()
    return {
        "sent": count,
        "received": len(rtts),
        "duplicates": duplicates,
        "size": len(payload) + ICMP_IP_OVERHEAD,
        "rtt_ms": [rtts[seq] for seq in sorted(rtts)],
    }


def blast(
    dst: str,
    port: int,
    rate_bps: float,
    size: int,
    count: int | None,
    seconds: float | None,
    catch_up: bool = True,
) -> dict[str, Any]:
    """Send paced datagrams of ``size`` payload bytes; pace counts ``size + 28`` bytes each.

    After a stall (the process was not scheduled), ``catch_up`` sends the missed datagrams at
    once, keeping the average rate; without it the schedule restarts from now, so no burst
    larger than two datagrams ever leaves (for measurements that must not fill the queue)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SOCKET_BUFFER_BYTES)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    sock.connect((dst, port))
    interval_ns = (size + UDP_IP_OVERHEAD) * 8e9 / rate_bps
    padding = bytes(max(0, size - _HEADER.size))
    limit = count if count is not None else sys.maxsize
    stop_ns = None if seconds is None else time.monotonic_ns() + int(seconds * 1e9)
    send = sock.send
    pack = _HEADER.pack
    monotonic_ns = time.monotonic_ns
    sent = errors = stalls = 0
    start = monotonic_ns()
    next_ns = float(start)
    while sent < limit:
        now = monotonic_ns()
        if stop_ns is not None and now >= stop_ns:
            break
        if now < next_ns:
            time.sleep((next_ns - now) / 1e9)
            continue
        if not catch_up and now - next_ns > 2 * interval_ns:
            next_ns = float(now)
            stalls += 1
        while next_ns <= now and sent < limit:
            try:
                send(pack(sent, now) + padding)
                sent += 1
            except OSError:  # ENOBUFS: the local device queue is full; not sent, not counted
                errors += 1
            next_ns += interval_ns
    elapsed = (monotonic_ns() - start) / 1e9
    sock.close()
    return {
        "sent": sent,
        "send_errors": errors,
        "stalls": stalls,
        "size": size,
        "seconds": elapsed,
        "offered_rate_bps": sent * (size + UDP_IP_OVERHEAD) * 8 / elapsed if elapsed else 0.0,
    }


def sink(bind: str, port: int, bin_s: float) -> dict[str, Any]:
    """Receive until stdin closes; report counts and the arrival rate at the IP layer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER_BYTES)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((bind, port))
    sock.setblocking(False)
    stdin = sys.stdin.fileno()
    print("READY", flush=True)
    times = array("q")
    sizes = array("l")
    seen: set[int] = set()
    packets = duplicates = reordered = 0
    highest = -1
    recvmsg = sock.recvmsg
    deadline = time.monotonic() + SINK_MAX_SECONDS
    running = True
    while running and time.monotonic() < deadline:
        ready = select.select([sock, stdin], [], [], 1.0)[0]
        if stdin in ready and not os.read(stdin, 4096):
            running = False  # drain what is already queued, then stop
        while True:
            try:
                data, anc, _, _ = recvmsg(65535, _ANC_SIZE)
            except BlockingIOError:
                break
            if len(data) < _HEADER.size:
                continue
            packets += 1
            seq = _HEADER.unpack_from(data)[0]
            if seq in seen:
                duplicates += 1
                continue
            seen.add(seq)
            if seq < highest:
                reordered += 1
            else:
                highest = seq
            if len(times) < SINK_RECORD_LIMIT:
                times.append(_kernel_time_ns(anc))
                sizes.append(len(data) + UDP_IP_OVERHEAD)
    sock.close()
    result: dict[str, Any] = {"packets": packets, "unique": len(seen), "duplicates": duplicates,
                              "reordered": reordered, "highest_seq": highest}  # fmt: skip
    return {**result, **_arrival_rate(times, sizes, bin_s)}


def _arrival_rate(times: array[int], sizes: array[int], bin_s: float) -> dict[str, Any]:
    """Bytes at the IP layer over the first-to-last arrival span, and per `bin_s` bin."""
    result: dict[str, Any] = {"ip_bytes": sum(sizes), "rate_bps": None, "bin_rates_bps": []}
    if len(times) >= 2 and times[-1] > times[0]:
        span_ns = times[-1] - times[0]
        result["seconds"] = span_ns / 1e9
        result["rate_bps"] = (sum(sizes) - sizes[0]) * 8e9 / span_ns
        bin_ns = int(bin_s * 1e9)
        bins: dict[int, int] = {}
        for t, s in zip(times, sizes):
            bins[(t - times[0]) // bin_ns] = bins.get((t - times[0]) // bin_ns, 0) + s
        full = [bins.get(i, 0) for i in range(int(span_ns // bin_ns))]
        result["bin_rates_bps"] = [b * 8 / bin_s for b in full]
    return result


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--rt-priority",
        type=int,
        default=0,
        help="SCHED_FIFO priority of the probe (0: normal scheduling)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ping")
    p.add_argument("--dst", required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.01, help="seconds between echo requests")
    p.add_argument("--size", type=int, default=84, help="IP packet size in bytes")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait after the last")
    b = sub.add_parser("blast")
    b.add_argument("--dst", required=True)
    b.add_argument("--port", type=int, required=True)
    b.add_argument("--rate", type=float, required=True, help="bits/s at the IP layer")
    b.add_argument("--size", type=int, default=1472, help="UDP payload bytes")
    b.add_argument("--count", type=int, default=None)
    b.add_argument("--seconds", type=float, default=None)
    b.add_argument(
        "--no-catch-up",
        action="store_true",
        help="after a stall, restart the schedule instead of bursting",
    )
    s = sub.add_parser("sink")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--bin", type=float, default=0.25, help="seconds per rate bin")
    return parser.parse_args(argv)


def _prioritise(rt_priority: int) -> None:
    """Run at SCHED_FIFO ``rt_priority`` (best effort): a probe starved by unrelated CPU load
    would measure its own scheduling delay instead of the link."""
    if rt_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(rt_priority))
        except OSError:
            pass


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    _prioritise(args.rt_priority)
    if args.command == "ping":
        result = ping(args.dst, args.count, args.interval, args.size, args.timeout)
    elif args.command == "blast":
        if args.size < _HEADER.size:
            raise SystemExit(f"--size must be at least {_HEADER.size}")
        if args.count is None and args.seconds is None:
            raise SystemExit("blast needs --count or --seconds")
        result = blast(
            args.dst,
            args.port,
            args.rate,
            args.size,
            args.count,
            args.seconds,
            catch_up=not args.no_catch_up,
        )
    else:
        result = sink(args.bind, args.port, args.bin)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
