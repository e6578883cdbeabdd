"""The snapshot store interface: what each side of a sync pair looked like at the end of the last
successful sync, so that a re-sync only stats and can tell creates, updates, deletes and renames.

A store holds, per side (``"local"``, ``"remote"``), one :class:`Entry` per path, plus a small
string key/value ``meta`` map (checksum algorithm, remote host sync name, ...).  Paths are
``/``-separated, relative to the sync root.  Listings are ordered by :func:`path_sort_key`, which
compares paths level by level (``/`` sorts before every other character), so a directory is
followed at once by everything below it, the order of a depth-first walk that sorts each
directory by name::

    a, a/x, a/x/y, a!b, a.b, a0

Two implementations share the interface (DESIGN decision 6): SQLite for the embedded default
(:mod:`common.snapshot.sqlite`) and Redis for the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "KINDS",
    "SIDES",
    "Entry",
    "Kind",
    "Side",
    "SnapshotError",
    "SnapshotStore",
    "check_path",
    "check_side",
    "is_within",
    "path_sort_key",
]

Side: TypeAlias = Literal["local", "remote"]
SIDES: Final = ("local", "remote")
Kind: TypeAlias = Literal["file", "dir", "link"]
KINDS: Final = ("file", "dir", "link")

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_UINT64_MAX: Final = (1 << 64) - 1
_DOT_PARTS: Final = frozenset((".", ".."))


class SnapshotError(Exception):
    """The snapshot database cannot be used: locked by another sync, corrupt, written by a newer
    Surge, or belonging to another pair.  The message names the file and what to do."""


def check_path(path: str) -> str:
    """Return ``path`` if it is a clean relative path, else raise ValueError.

    Clean: not empty, no leading or trailing ``/``, no empty, ``.`` or ``..`` level, no NUL.
    """
    if (
        not path
        or path[0] == "/"
        or path[-1] == "/"
        or "//" in path
        or "\x00" in path
        or ((path[0] == "." or "/." in path) and not _DOT_PARTS.isdisjoint(path.split("/")))
    ):
        raise ValueError(f"snapshot path must be a clean relative path, got {path!r}")
    return path


def check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return side


def path_sort_key(path: str) -> bytes:
    """The order of every listing: bytes of the path (UTF-8, undecodable names through
    surrogateescape) with ``/`` mapped to ``\\x00``, so that levels compare one at a time."""
    return path.encode("utf-8", "surrogateescape").replace(b"/", b"\x00")


def is_within(path: str, top: str) -> bool:
    """True if ``path`` is ``top`` or below it (``"a/b/c"`` is within ``"a/b"``, ``"a/b2"`` not)."""
    return path == top or path.startswith(top + "/")


@dataclass(frozen=True, slots=True)
class Entry:
    """One path as the last successful sync saw it."""

    path: str
    """``/``-separated, relative to the sync root; never empty or absolute."""
    kind: str
    """``"file"``, ``"dir"`` or ``"link"``."""
    size: int
    mtime_ns: int
    mode: int
    inode: int
    """0 .. 2**64-1 (0 when the side has no inodes)."""
    dev: int
    """0 .. 2**64-1."""
    nlink: int = 1
    checksum: str | None = None
    """Hex digest; the algorithm is recorded in the store's meta ``"checksum"``."""
    target: str | None = None
    """Symlink target."""
    rmtime_ns: int = 0
    """Directories: recursive mtime, the latest mtime of the directory and everything below."""
    uid: int = -1
    gid: int = -1
    meta: str | None = None
    """Optional JSON (xattrs/ACLs with ``--store-metadata-records``); must be valid Unicode."""

    def __post_init__(self) -> None:
        check_path(self.path)
        if self.kind not in KINDS:
            raise ValueError(f"Entry.kind must be one of {KINDS}, got {self.kind!r}")
        if not (
            0 <= self.size <= _INT64_MAX
            and 0 <= self.inode <= _UINT64_MAX
            and 0 <= self.dev <= _UINT64_MAX
            and _INT64_MIN <= self.mtime_ns <= _INT64_MAX
            and _INT64_MIN <= self.rmtime_ns <= _INT64_MAX
            and _INT64_MIN <= self.mode <= _INT64_MAX
            and _INT64_MIN <= self.nlink <= _INT64_MAX
            and _INT64_MIN <= self.uid <= _INT64_MAX
            and _INT64_MIN <= self.gid <= _INT64_MAX
        ):
            raise ValueError(
                f"Entry {self.path!r}: size must be 0..2**63-1, inode and dev 0..2**64-1, the"
                f" other numbers signed 64-bit: {self!r}"
            )


@runtime_checkable
class SnapshotStore(Protocol):
    """Per-side records of the last successful sync, plus string meta.

    Writes are atomic: :meth:`apply` and :meth:`rename_tree` either happen entirely or not at all,
    so a sync that dies half-way leaves the previous snapshot (plus whatever it committed).
    Methods raise :class:`SnapshotError` when the database cannot be used and ValueError for a bad
    side, path or entry.
    """

    def load(self, side: str) -> dict[str, Entry]:
        """Every record of a side, by path."""
        ...

    def get(self, side: str, path: str) -> Entry | None: ...

    def iter_side(self, side: str, prefix: str = "") -> Iterator[Entry]:
        """Records of a side in :func:`path_sort_key` order; ``prefix`` (a path) limits them to
        that path and everything below it.  Read page by page: memory stays bounded, and writes
        made while iterating do not disturb the pages not yet read."""
        ...

    def apply(
        self,
        side: str,
        upserts: Iterable[Entry] = (),
        deletes: Iterable[str] = (),
        delete_trees: Iterable[str] = (),
    ) -> None:
        """One atomic transaction, in this order: ``delete_trees`` (each path and everything
        below it), ``deletes`` (exact paths), ``upserts`` (insert or replace; the last one for a
        path wins).  An exception from any iterable leaves nothing applied."""
        ...

    def rename_tree(self, side: str, old: str, new: str) -> None:
        """Move ``old`` and everything below it to ``new``, atomically, replacing whatever was at
        ``new`` and below (as rename(2) replaces its target).  ``old`` and ``new`` must not be
        within each other (ValueError).  If nothing is at ``old`` or below, nothing changes."""
        ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str | None) -> None:
        """Set ``key``; ``None`` removes it."""
        ...

    def count(self, side: str) -> int: ...

    def size_bytes(self) -> int:
        """Storage used, for metrics."""
        ...

    def reset(self) -> None:
        """``-x``: forget every record of both sides and all meta."""
        ...

    def close(self) -> None:
        """Release the database and the pair lock; idempotent."""
        ...
