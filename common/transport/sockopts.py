"""Operating-system tuning of the data socket: buffer sizes, UDP GSO/GRO, path MTU, DF bit.

Kept apart from the driver so the driver only moves bytes. Linux constants that Python's socket
module does not export are spelled out here.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

__all__ = [
    "SOL_UDP",
    "UDP_SEGMENT",
    "SocketFeatures",
    "gro_segment_size",
    "is_loopback",
    "open_udp_socket",
    "path_mtu",
]  # fmt: skip

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = 103  # linux/udp.h: GSO segment size (sendmsg cmsg or sockopt)
UDP_GRO = 104  # linux/udp.h: coalesce received datagrams, segment size in a cmsg
IP_MTU = 14
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2
IPV6_MTU = 24
SOCKET_BUFFER = 32 << 20  # 32 MiB: a second of 250 Mbit/s, or bursts at loopback speed


@dataclass(frozen=True)
class SocketFeatures:
    gso: bool
    gro: bool
    rcvbuf: int
    sndbuf: int


def _set_buffer(sock: socket.socket, force_opt: int, opt: int, size: int) -> int:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force_opt, size)  # root: beyond net.core.*mem_max
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError:
            pass
    return sock.getsockopt(socket.SOL_SOCKET, opt)


def open_udp_socket(host: str, port: int, *, ipv6: bool = False, gro: bool = False,
                    buffer_size: int = SOCKET_BUFFER) -> tuple[socket.socket, SocketFeatures]:  # fmt: skip
    """A non-blocking UDP socket bound to (host, port); port 0 picks a free one.

    Raises OSError with errno EADDRINUSE when the port is taken (the caller names the option)."""
    family = socket.AF_INET6 if ipv6 or ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    rcv = _set_buffer(sock, getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF, buffer_size)
    snd = _set_buffer(sock, getattr(socket, "SO_SNDBUFFORCE", 32), socket.SO_SNDBUF, buffer_size)
    gro_on = False
    if gro:
        try:
            sock.setsockopt(SOL_UDP, UDP_GRO, 1)
            gro_on = True
        except OSError:
            pass
    gso_on = _probe_gso(sock)
    if family == socket.AF_INET:
        try:  # never fragment: a lost fragment loses the whole datagram
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        except OSError:
            pass
    return sock, SocketFeatures(gso_on, gro_on, rcv, snd)


def _probe_gso(sock: socket.socket) -> bool:
    if os.environ.get("SURGE_NO_GSO"):
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_SEGMENT, 0)  # 0: no default segmentation; probes support
        return True
    except OSError as exc:
        return exc.errno not in (errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP)


def gso_cmsg(segment: int) -> list[tuple[int, int, bytes]]:
    return [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", segment))]


def gro_segment_size(ancdata: list[tuple[int, int, bytes]], default: int) -> int:
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 2:
            return int.from_bytes(data[:4] if len(data) >= 4 else data[:2], "little") or default
    return default


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def path_mtu(sock: socket.socket) -> int | None:
    """The kernel's path MTU for a connected socket (IP packet size), or None."""
    try:
        if sock.family == socket.AF_INET6:
            return int(sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU))
        return int(sock.getsockopt(socket.IPPROTO_IP, IP_MTU))
    except OSError:
        return None
