"""The layout of the SQLite snapshot store (:mod:`common.snapshot.sqlite`) and its check on open:
a new file gets the tables, an older Surge's file the index it lacks; a foreign, damaged or newer
database, or one of another pair, is refused untouched.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from common.snapshot.base import SnapshotError

__all__ = ["APPLICATION_ID", "CACHE_KIB", "SCHEMA_VERSION", "open_schema"]

SCHEMA_VERSION: Final = 1
"""Layout version written to ``store_info``; a database with a higher one is refused."""
APPLICATION_ID: Final = 0x53524745  # "SRGE", in the SQLite header: marks the file as ours
CACHE_KIB: Final = 16 * 1024
"""SQLite page cache per open store."""

_DIRS_INDEX: Final = "CREATE INDEX IF NOT EXISTS entries_dirs ON entries (side, key) WHERE kind = 1"
"""The directories alone (a thousandth of a tree of small files): a re-sync that skips unchanged
directories starts from them. Older snapshots get it when first opened; older Surge keeps it."""
_SCHEMA: Final = (
    "CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE entries (
        side INTEGER NOT NULL,
        key BLOB NOT NULL,
        kind INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        mode INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        dev INTEGER NOT NULL,
        nlink INTEGER NOT NULL,
        checksum TEXT,
        target BLOB,
        rmtime_ns INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        gid INTEGER NOT NULL,
        meta TEXT,
        PRIMARY KEY (side, key)
    ) WITHOUT ROWID""",
    _DIRS_INDEX,
)


def open_schema(db: sqlite3.Connection, path: str, pair: str | None) -> None:
    """Check the database at ``path`` (creating the tables in an empty one) and set the
    connection up; ``pair`` is recorded on first use and must match afterwards."""
    # Read before writing anything: a foreign database is refused untouched.
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if app_id not in (0, APPLICATION_ID) or (tables and app_id != APPLICATION_ID):
        raise SnapshotError(
            f"{path} is an SQLite database but not a Surge snapshot; move it away or"
            " choose another database directory with -b/-B"
        )
    if tables and not {"store_info", "meta", "entries"} <= tables:
        raise SnapshotError(
            f"snapshot database {path} is corrupt (tables missing); rebuild it with -x"
            " (--reset)"
        )
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    db.execute("BEGIN IMMEDIATE")
    try:
        if not tables:
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute(
                "INSERT INTO store_info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        else:
            db.execute(_DIRS_INDEX)
        _check_info(db, path, pair)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _check_info(db: sqlite3.Connection, path: str, pair: str | None) -> None:
    """The schema version is one this Surge reads, and the pair is ``pair`` (recorded if new)."""
    info = dict(db.execute("SELECT key, value FROM store_info").fetchall())
    version = info.get("schema_version", "")
    if not version.isdigit():
        raise SnapshotError(
            f"snapshot database {path} is corrupt (no schema version or missing"
            " tables); rebuild it with -x (--reset)"
        )
    if int(version) > SCHEMA_VERSION:
        raise SnapshotError(
            f"snapshot database {path} was written by a newer Surge (schema"
            f" {version}, this one reads up to {SCHEMA_VERSION}); upgrade Surge or"
            " rebuild the snapshot with -x (--reset)"
        )
    recorded = info.get("pair")
    if pair is not None and recorded is not None and recorded != pair:
        raise SnapshotError(
            f"snapshot database {path} belongs to sync pair {recorded!r}, not"
            f" {pair!r}; give this pair its own -N name or database directory (-b/-B),"
            " or rebuild it with -x (--reset)"
        )
    if pair is not None and recorded is None:
        db.execute("INSERT INTO store_info VALUES ('pair', ?)", (pair,))
