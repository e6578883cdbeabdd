"""Control messages of protocol version 1 (see docs/PROTOCOL.md for the whole exchange).

A push runs: client `hello` -> agent `hello`; client `push` (files, options, requested cipher,
session secret, rates) -> agent `plan` (negotiated cipher, UDP port, per-file action) or
`error`; client `start` (files to skip or restart after comparing digests) -> data over UDP,
agent `file` per committed file -> agent `done` (statistics) -> client `bye`.
"""

from __future__ import annotations

import os
from typing import Any

from common.transport.config import SessionConfig
from common.transport.ratecontrol import RateConfig

__all__ = ["PROTOCOL_VERSION", "SERVER_EXCLUDED", "available_cores", "session_config_from"]

PROTOCOL_VERSION = 1
SERVER_EXCLUDED = "excluded by the server's filters"
"""The reason of a file a far end skips because its own filter rules exclude it."""
_MIN_BUFFER = 64 << 10  # a peer's report is taken within these bounds
_MAX_BUFFER = 1 << 30


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, else the machine's count): the
    `cores` an agent names in its hello, and what a sync client holds --transfer-threads to."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def session_config_from(req: dict[str, Any], cipher: str) -> SessionConfig:
    """The transport configuration both ends derive from a push request and the negotiated
    cipher, so they agree on every parameter."""
    rate = req["rate"]
    # The receiving end's socket buffer, as it reported it ("receive_buffer" in `plan` for a
    # push, in `start` for a pull): bounds what the sender may have in its buffer at once.
    buffer = int(req.get("receive_buffer") or SessionConfig.receive_buffer)
    buffer = max(_MIN_BUFFER, min(buffer, _MAX_BUFFER))
    return SessionConfig(
        session_id=int(req["session_id"]),
        cipher=cipher,
        secret=bytes.fromhex(req["secret"]),
        rate=RateConfig(
            target=float(rate["target_bps"]) / 8,
            minimum=float(rate.get("min_bps", 0)) / 8,
            policy=str(rate.get("policy", "fair")),
            max_queue=buffer / 8,
        ),
        datagram_size=int(req["datagram_size"]),
        rexmsg_size=int(req.get("rexmsg_size", 1440)),
        idle_timeout=float(req.get("idle_timeout", 30.0)),
        receive_buffer=buffer,
    )
