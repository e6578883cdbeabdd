"""What the upload and download flows of `surge cp` share: the result, the errors, the first
control exchange, the transfer parameters of a request, and the datagram size choice."""

from __future__ import annotations

import logging
import secrets
import socket
from dataclasses import dataclass, field
from typing import Any

from common.control.messages import PROTOCOL_VERSION
from common.transport.config import MAX_DATAGRAM, MIN_DATAGRAM
from common.transport.sockopts import is_loopback, path_mtu

from .endpoint import Endpoint, EndpointError
from .options import CopyOptions
from .sources import SourceFile

__all__ = ["CopyError", "CopyResult", "expect", "hello", "transfer_fields"]

log = logging.getLogger("surge.cp")
_RATE_REFERENCE_BPS = 1e9  # what "-l 50%" is a percentage of when no server cap is known


class CopyError(Exception):
    """The copy cannot start or cannot go on; the message names the cause."""


@dataclass
class CopyResult:
    files: list[SourceFile]
    status: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> file event
    stats: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors and all(s.get("status") in ("done", "skipped") for s in self.status.values()) \
            and len(self.status) == len(self.files)

    @property
    def bytes_transferred(self) -> int:
        return sum(self.files[i].size for i, s in self.status.items() if s.get("status") == "done")


def expect(endpoint: Endpoint, kind: str, timeout: float = 120.0) -> dict[str, Any]:
    msg = endpoint.recv(timeout)
    if msg["type"] == "error":
        raise CopyError(str(msg.get("message", "the far end refused the transfer")))
    if msg["type"] != kind:
        raise CopyError(f"protocol error: expected {kind!r} from the far end, got {msg['type']!r}")
    return msg


def hello(endpoint: Endpoint, opts: CopyOptions) -> dict[str, Any]:
    try:
        msg: dict[str, Any] = {"type": "hello", "version": PROTOCOL_VERSION}
        if opts.token:
            msg["token"] = opts.token
        for key, value in (("cookie", opts.cookie), ("tags", opts.tags), ("log_dir", opts.remote_log_dir)):
            if value:
                msg[key] = value  # reported and logged by the far end (--cookie, --tags, -R)
        endpoint.send(msg)
        return expect(endpoint, "hello", 30.0)
    except (EndpointError, TimeoutError) as exc:
        raise CopyError(str(exc)) from None


def _datagram_size(opts: CopyOptions, host: str) -> int:
    """UDP payload size: -Z is the IP datagram size (MTU); default the path MTU."""
    v6 = opts.ipv6 or ":" in host
    header = 48 if v6 else 28
    if opts.datagram_size is not None:
        return min(opts.datagram_size, MAX_DATAGRAM) - header
    if is_loopback(host):
        return 65507 if not v6 else 65487  # loopback's MTU is 64 KiB: few, large datagrams
    probe = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((host, 9))
        mtu = path_mtu(probe) or 1500
    except OSError:
        mtu = 1500
    finally:
        probe.close()
    return max(min(mtu, MAX_DATAGRAM), MIN_DATAGRAM) - header


def transfer_fields(opts: CopyOptions, host: str) -> dict[str, Any]:
    """The session parameters of a push or pull request: keys, cipher, rates, sizes, port."""
    target = opts.target_rate.resolve(_RATE_REFERENCE_BPS)
    minimum = min(opts.min_rate.resolve(_RATE_REFERENCE_BPS), target)
    return {
        "session_id": secrets.randbits(63),
        "secret": secrets.token_hex(32),
        "cipher": opts.cipher,
        "rate": {"target_bps": target, "min_bps": minimum, "policy": opts.policy},
        "datagram_size": _datagram_size(opts, host),
        "rexmsg_size": opts.rexmsg_size,
        "udp_port": opts.udp_port,
    }
