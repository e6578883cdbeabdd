"""What a sync run ends with: its report, or the error that stopped it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SyncError", "SyncReport", "SyncUsageError"]


class SyncError(Exception):
    """The sync cannot start or go on (the message names the option or path and the cause)."""


class SyncUsageError(SyncError):
    """The command line asks for what cannot be (a missing directory without --create-dir, a
    --keep-dir inside the tree...): a usage error, exit status 2, found before anything changed."""


@dataclass
class SyncReport:
    lines: list[tuple[str, str]] = field(default_factory=list)  # (path, status)
    errors: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    bytes_sent: int = 0  # size of the files committed at their destination
    wire_bytes: int = 0  # file data the transport sent, retransmissions included
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, path: str, status: str) -> None:
        self.lines.append((path, status))
        self.counts[status] = self.counts.get(status, 0) + 1
