"""The defaults and bounds of ``surge sync``'s options, as the async reference documents them;
shared by :class:`~coordinator.sync.options.SyncOptions` (field defaults, range checks) and
:mod:`coordinator.sync._fields` (the value of an option not given).
"""

from __future__ import annotations

from common.units import Rate

__all__ = [
    "DATAGRAM_RANGE", "DEFAULT_LOG_SIZE", "DEFAULT_MIN_RATE", "DEFAULT_READ_BLOCK",
    "DEFAULT_SUPPORT_RESUME", "DEFAULT_TARGET_RATE", "DEFAULT_WRITE_BLOCK", "MAX_COOLOFF",
    "MAX_NAME_LENGTH", "MAX_PENDING", "MAX_READ_BLOCK", "MAX_THREADS", "MAX_TRANSFER_THREADS",
    "MAX_WRITE_BLOCK", "REXMSG_RANGE",
]

DEFAULT_TARGET_RATE = Rate(bits_per_second=10_000_000.0)  # -l: 10 Mbps
DEFAULT_MIN_RATE = Rate(bits_per_second=200_000.0)  # -m: 200 Kbps
MAX_NAME_LENGTH = 255  # -N: the name is a directory name in the database
MAX_THREADS = 256  # --*-threads
MAX_TRANSFER_THREADS = 128  # --transfer-threads N
MAX_PENDING = 1_000_000  # --pending-max: files queued for transfer
MAX_COOLOFF = 60  # --cooloff: "integers 0-60"
DEFAULT_LOG_SIZE = 10 << 20  # -L DIR without :MB
DEFAULT_SUPPORT_RESUME = 1 << 20  # --support-resume: 1048576
DEFAULT_READ_BLOCK = 64 << 20  # -g: "Default: 64 MB"
DEFAULT_WRITE_BLOCK = 64 << 10  # -G: "Default: 64 KB"
MAX_READ_BLOCK = 500 << 20  # -g: ascp's limit
MAX_WRITE_BLOCK = 16 << 20  # -G: "The maximum is 16 MB"
DATAGRAM_RANGE = (296, 65535)  # -Z
REXMSG_RANGE = (98, 1440)  # -X: "Maximum: 1440"; the minimum is one range with its header
