"""The snapshot store: what each side of a sync pair looked like at the end of the last
successful sync (DESIGN decision 6: one interface, SQLite embedded, Redis for the cluster)."""

from typing import TYPE_CHECKING

from common.snapshot.base import (
    KINDS,
    SIDES,
    Entry,
    SnapshotError,
    SnapshotStore,
    is_within,
    path_sort_key,
)
from common.snapshot.sqlite import SqliteSnapshot, default_snapshot_path

if TYPE_CHECKING:
    from common.snapshot.redis import RedisSnapshot

__all__ = [
    "KINDS",
    "SIDES",
    "Entry",
    "RedisSnapshot",
    "SnapshotError",
    "SnapshotStore",
    "SqliteSnapshot",
    "default_snapshot_path",
    "is_within",
    "path_sort_key",
]


def __getattr__(name: str) -> type:
    # The Redis store (and the redis client, ~0.1 s to import) only when a cluster sync asks.
    if name == "RedisSnapshot":
        from common.snapshot.redis import RedisSnapshot

        return RedisSnapshot
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
