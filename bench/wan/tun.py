"""Open a layer-3 TUN device (``IFF_TUN | IFF_NO_PI``): each read or write is one IP packet."""

from __future__ import annotations

import fcntl
import os
import struct

from bench.wan.errors import WanSetupError

__all__ = ["IFNAMSIZ", "open_tun"]

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
#: Linux interface names are at most 15 bytes plus the terminating NUL.
IFNAMSIZ = 16


def open_tun(name: str) -> int:
    """Create TUN device ``name`` in the caller's network namespace and return its non-blocking,
    close-on-exec file descriptor. The device is not persistent: it disappears with the last fd."""
    raw = name.encode()
    if not 0 < len(raw) < IFNAMSIZ:
        raise ValueError(f"interface name must be 1..{IFNAMSIZ - 1} bytes, got {name!r}")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", raw, IFF_TUN | IFF_NO_PI))
    except OSError as exc:
        os.close(fd)
        raise WanSetupError(f"TUNSETIFF {name!r} failed: {exc}") from exc
    return fd
