"""The embedded snapshot store: one SQLite file per sync pair, by default
``<sync root>/.surge/<pair>.db`` (Aspera keeps its database in ``.private-asp``; Surge uses its own
directory so both tools can sync the same tree).

Layout: one ``entries`` table, ``PRIMARY KEY(side, key) WITHOUT ROWID``, where ``key`` is
:func:`~common.snapshot.base.path_sort_key` (UTF-8 bytes, ``/`` mapped to ``\\x00``).  A path and
everything below it are then the one contiguous key range ``[key, key + b"\\x01")``, so prefix
listings, tree deletes and tree renames are single range operations on the primary key, and the
path itself is not stored twice.  ``meta`` holds the caller's string meta; ``store_info`` holds
the schema version and the pair name, which ``reset()`` keeps.  The tables, and the checks made
when a file is opened, are in :mod:`common.snapshot.sqlite_schema`.

Concurrency: a sibling ``<db>.lock`` file is held with ``flock`` from open to close, so two syncs
of the same pair cannot run at once; the database runs in WAL mode with ``synchronous=NORMAL``
(a power cut may lose the last transactions, never consistency).  One store object may be shared
by threads; its methods are serialized.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from typing import Final

from common.snapshot.base import (
    KINDS,
    Entry,
    SnapshotError,
    check_path,
    check_side,
    is_within,
    path_sort_key,
)
from common.snapshot.brief import Brief
from common.snapshot.sqlite_schema import APPLICATION_ID, CACHE_KIB, SCHEMA_VERSION, open_schema

__all__ = [
    "APPLICATION_ID",
    "BUSY_TIMEOUT_S",
    "CACHE_KIB",
    "DB_DIR_NAME",
    "ITER_PAGE_ROWS",
    "SCHEMA_VERSION",
    "BriefReader",
    "SqliteSnapshot",
    "default_snapshot_path",
]

DB_DIR_NAME: Final = ".surge"
"""Directory at the sync root that holds the pair databases when no -b/-B is given."""
ITER_PAGE_ROWS: Final = 4096
"""Rows read per query by ``iter_side``: the most it holds in memory."""
BUSY_TIMEOUT_S: Final = 5.0
"""How long a statement waits for another connection's write before failing."""

_SIDE_CODE: Final = {"local": 0, "remote": 1}
_KIND_CODE: Final = {kind: code for code, kind in enumerate(KINDS)}
_U64: Final = (1 << 64) - 1
_I64_LIMIT: Final = 1 << 63

_COLUMNS: Final = (
    "key, kind, size, mtime_ns, mode, inode, dev, nlink, checksum, target, rmtime_ns, uid, gid,"
    " meta"
)
_UPSERT: Final = f"INSERT OR REPLACE INTO entries (side, {_COLUMNS}) VALUES ({', '.join('?' * 15)})"
_BRIEF: Final = "key, kind, size, mtime_ns, target, mode"
_IN_TREE: Final = "side = ? AND key >= ? AND key < ?"

_CORRUPT_CODES: Final = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_BUSY_CODES: Final = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def default_snapshot_path(root: str, pair: str, db_dir: str | None = None) -> str:
    """``<db_dir or root/.surge>/<pair>.db``; the directory is created if missing (-b/-B)."""
    if not pair or "/" in pair or "\x00" in pair or pair in (".", ".."):
        raise ValueError(f"sync pair name {pair!r} cannot name a database file")
    directory = db_dir if db_dir is not None else os.path.join(root, DB_DIR_NAME)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise SnapshotError(f"cannot create snapshot directory {directory}: {exc}") from exc
    return os.path.join(directory, pair + ".db")


def _tree_range(path: str) -> tuple[bytes, bytes]:
    """Key bounds [low, high) of ``path`` and everything below it."""
    key = path_sort_key(check_path(path))
    return key, key + b"\x01"


def _signed(value: int) -> int:
    """Unsigned 64-bit (inode, dev) to the signed range SQLite stores."""
    return value - (1 << 64) if value >= _I64_LIMIT else value


def _encode(side: int, e: Entry) -> tuple[object, ...]:
    if not isinstance(e, Entry):
        raise TypeError(f"upserts must be Entry objects, got {type(e).__name__}")
    return (
        side,
        path_sort_key(e.path),
        _KIND_CODE[e.kind],
        e.size,
        e.mtime_ns,
        e.mode,
        _signed(e.inode),
        _signed(e.dev),
        e.nlink,
        e.checksum,
        None if e.target is None else e.target.encode("utf-8", "surrogateescape"),
        e.rmtime_ns,
        e.uid,
        e.gid,
        e.meta,
    )


def _decode(row: tuple[object, ...]) -> Entry:
    key, kind, size, mtime, mode, inode, dev, nlink, checksum, target, rmtime, uid, gid, meta = row
    assert isinstance(key, bytes) and isinstance(kind, int)
    assert isinstance(inode, int) and isinstance(dev, int)
    assert target is None or isinstance(target, bytes)
    return Entry(
        key.replace(b"\x00", b"/").decode("utf-8", "surrogateescape"),
        KINDS[kind],
        size,  # type: ignore[arg-type]
        mtime,  # type: ignore[arg-type]
        mode,  # type: ignore[arg-type]
        inode & _U64,
        dev & _U64,
        nlink,  # type: ignore[arg-type]
        checksum,  # type: ignore[arg-type]
        None if target is None else target.decode("utf-8", "surrogateescape"),
        rmtime,  # type: ignore[arg-type]
        uid,  # type: ignore[arg-type]
        gid,  # type: ignore[arg-type]
        meta,  # type: ignore[arg-type]
    )


def _brief_below(db: sqlite3.Connection, side: str, top: str) -> dict[bytes, Brief]:
    low = path_sort_key(check_path(top)) + b"\x00"
    cursor = db.execute(f"SELECT {_BRIEF} FROM entries WHERE side = ? AND key >= ? AND key < ?",
                        (_SIDE_CODE[check_side(side)], low, low[:-1] + b"\x01"))  # fmt: skip
    return {row[0]: row for row in cursor}


class BriefReader:
    """Brief records below directories, through a read-only connection of its own and without
    the pair lock: for a process that helps the lock holder scan (--scan-threads)."""

    def __init__(self, path: str) -> None:
        from urllib.parse import quote

        uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
        self._db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)

    def below(self, side: str, top: str) -> dict[bytes, Brief]:
        return _brief_below(self._db, side, top)

    def close(self) -> None:
        self._db.close()


def _paths(name: str, items: Iterable[str]) -> Iterable[str]:
    if isinstance(items, str):
        raise TypeError(f"{name} must be an iterable of paths, not a single str")
    return items


class SqliteSnapshot:
    """The SnapshotStore of the embedded default, in one SQLite file.

    Opening takes the pair lock (``<path>.lock``) and checks the file; ``pair`` (the sync pair
    name), when given, is recorded on first use and must match afterwards.  ``rebuild=True``
    (``-x``) deletes the existing database first, even one too damaged to open.
    """

    def __init__(self, path: str, pair: str | None = None, *, rebuild: bool = False) -> None:
        self.path: Final = os.fspath(path)
        self.lock_path: Final = self.path + ".lock"
        self._mutex = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise SnapshotError(f"cannot create snapshot directory {directory}: {exc}") from exc
        self._lock_fd = self._take_lock()
        try:
            if rebuild:
                self._remove_files()
            with self._errors():
                self._db = sqlite3.connect(
                    self.path,
                    timeout=BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                )
                open_schema(self._db, self.path, pair)
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _take_lock(self) -> int:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SnapshotError(f"cannot open lock file {self.lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                pid = int(os.pread(fd, 32, 0).split()[0])
                holder = f", pid {pid}"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SnapshotError(
                    f"another sync of this pair is running (lock held on {self.lock_path}{holder})"
                ) from exc
            raise SnapshotError(
                f"cannot lock {self.lock_path}: {exc}; the file system may not support locking,"
                " put the database on a local disk with -b/-B"
            ) from exc
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _remove_files(self) -> None:
        for name in (self.path, self.path + "-wal", self.path + "-shm", self.path + "-journal"):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise SnapshotError(f"cannot remove old snapshot file {name}: {exc}") from exc

    # -- plumbing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite failures into SnapshotError naming the file and the remedy."""
        try:
            yield
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", -1) & 0xFF
            if code in _CORRUPT_CODES:
                message = (
                    f"snapshot database {self.path} is corrupt ({exc}); delete it or rebuild it"
                    " with -x (--reset)"
                )
            elif code in _BUSY_CODES:
                message = f"snapshot database {self.path} is locked by another process ({exc})"
            else:
                message = f"snapshot database {self.path}: {exc}"
            raise SnapshotError(message) from exc

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise SnapshotError(f"snapshot database {self.path} is closed")
        return self._db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Serialized, atomic: commit at the end of the block, roll back on any exception."""
        with self._mutex, self._errors():
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    # -- SnapshotStore ------------------------------------------------------------------------

    def load(self, side: str) -> dict[str, Entry]:
        code = _SIDE_CODE[check_side(side)]
        with self._mutex, self._errors():
            cursor = self._conn().execute(f"SELECT {_COLUMNS} FROM entries WHERE side = ?", (code,))
            return {e.path: e for e in map(_decode, cursor)}

    def brief(self, side: str, *, dirs_only: bool = False,
              children_of: str | None = None) -> dict[bytes, Brief]:  # fmt: skip
        """Brief records (common/snapshot/brief.py) by key, without an Entry per row: all of
        `side`, only its directories, or only the direct children of the directory
        `children_of` ("" for the root)."""
        code = _SIDE_CODE[check_side(side)]
        kind = f" AND kind = {_KIND_CODE['dir']}" if dirs_only else ""
        with self._mutex, self._errors():
            db = self._conn()
            if children_of is None:
                cursor = db.execute(f"SELECT {_BRIEF} FROM entries WHERE side = ?{kind}", (code,))
                return {row[0]: row for row in cursor}
            low = path_sort_key(check_path(children_of)) + b"\x00" if children_of else b""
            high = low[:-1] + b"\x01" if low else None
            child = f" AND instr(substr(key, {len(low) + 1}), x'00') = 0"
            # The subdirectories (from the directory index) cut the key range into the stretches
            # that hold the children, so that their subtrees are not read.
            below = "" if high is None else " AND key < ?"
            bounds = (code, low) if high is None else (code, low, high)
            subdirs = [k for (k,) in db.execute(f"SELECT key FROM entries WHERE side = ? AND kind = 1 AND key >= ?"
                                                f"{below}{child} ORDER BY key", bounds)]  # fmt: skip
            if dirs_only:
                return {row[0]: row for row in db.execute(
                    f"SELECT {_BRIEF} FROM entries WHERE side = ? AND kind = 1 AND key >= ?{below}{child}", bounds)}  # fmt: skip
            out: dict[bytes, Brief] = {}
            starts = [low] + [k + b"\x01" for k in subdirs]
            ends: list[bytes | None] = [k + b"\x00" for k in subdirs] + [high]
            for start, end in zip(starts, ends):
                until = "" if end is None else " AND key < ?"
                params = (code, start) if end is None else (code, start, end)
                out.update((row[0], row) for row in db.execute(
                    f"SELECT {_BRIEF} FROM entries WHERE side = ? AND key >= ?{until}{child}", params))  # fmt: skip
            return out

    def brief_below(self, side: str, top: str) -> dict[bytes, Brief]:
        """Brief records of everything below the directory `top` (not `top` itself)."""
        with self._mutex, self._errors():
            return _brief_below(self._conn(), side, top)

    def has_records(self, side: str) -> bool:
        code = _SIDE_CODE[check_side(side)]
        with self._mutex, self._errors():
            return self._conn().execute("SELECT 1 FROM entries WHERE side = ? LIMIT 1", (code,)).fetchone() is not None

    def get(self, side: str, path: str) -> Entry | None:
        key = (_SIDE_CODE[check_side(side)], path_sort_key(check_path(path)))
        with self._mutex, self._errors():
            row = (
                self._conn()
                .execute(f"SELECT {_COLUMNS} FROM entries WHERE side = ? AND key = ?", key)
                .fetchone()
            )
        return None if row is None else _decode(row)

    def iter_side(self, side: str, prefix: str = "") -> Iterator[Entry]:
        code = _SIDE_CODE[check_side(side)]
        low, high = _tree_range(prefix) if prefix else (b"", None)
        bound = "" if high is None else " AND key < :high"
        first = f"SELECT {_COLUMNS} FROM entries WHERE side = :side AND key >= :low{bound}"
        later = f"SELECT {_COLUMNS} FROM entries WHERE side = :side AND key > :low{bound}"
        query = first
        while True:
            params = {"side": code, "low": low, "high": high, "n": ITER_PAGE_ROWS}
            with self._mutex, self._errors():
                rows = self._conn().execute(f"{query} ORDER BY key LIMIT :n", params).fetchall()
            for row in rows:
                yield _decode(row)
            if len(rows) < ITER_PAGE_ROWS:
                return
            low, query = rows[-1][0], later

    def apply(
        self,
        side: str,
        upserts: Iterable[Entry] = (),
        deletes: Iterable[str] = (),
        delete_trees: Iterable[str] = (),
    ) -> None:
        code = _SIDE_CODE[check_side(side)]
        deletes = _paths("deletes", deletes)
        delete_trees = _paths("delete_trees", delete_trees)
        with self._transaction() as db:
            db.executemany(
                f"DELETE FROM entries WHERE {_IN_TREE}",
                ((code, *_tree_range(top)) for top in delete_trees),
            )
            db.executemany(
                "DELETE FROM entries WHERE side = ? AND key = ?",
                ((code, path_sort_key(check_path(path))) for path in deletes),
            )
            db.executemany(_UPSERT, (_encode(code, e) for e in upserts))

    def rename_tree(self, side: str, old: str, new: str) -> None:
        code = _SIDE_CODE[check_side(side)]
        check_path(old)
        check_path(new)
        if is_within(new, old) or is_within(old, new):
            raise ValueError(f"cannot rename {old!r} to {new!r}: one is inside the other")
        old_range = (code, *_tree_range(old))
        new_key = path_sort_key(new)
        with self._transaction() as db:
            if db.execute(f"SELECT 1 FROM entries WHERE {_IN_TREE} LIMIT 1", old_range).fetchone():
                db.execute(f"DELETE FROM entries WHERE {_IN_TREE}", (code, *_tree_range(new)))
                # substr() of a BLOB counts bytes; || yields TEXT holding the same bytes, which
                # the CAST turns back into a BLOB unchanged (no UTF-8 validation happens).
                db.execute(
                    f"UPDATE entries SET key = CAST(? || substr(key, ?) AS BLOB) WHERE {_IN_TREE}",
                    (new_key, len(old_range[1]) + 1, *old_range),
                )

    def get_meta(self, key: str) -> str | None:
        with self._mutex, self._errors():
            row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"meta key must be a non-empty str, got {key!r}")
        if value is not None and not isinstance(value, str):
            raise TypeError(f"meta value must be a str or None, got {type(value).__name__}")
        with self._transaction() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def count(self, side: str) -> int:
        code = _SIDE_CODE[check_side(side)]
        with self._mutex, self._errors():
            row = self._conn().execute("SELECT count(*) FROM entries WHERE side = ?", (code,))
            return int(row.fetchone()[0])

    def size_bytes(self) -> int:
        """Bytes of the database file and its write-ahead log."""
        total = 0
        for name in (self.path, self.path + "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(name).st_size
        return total

    def reset(self) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM entries")
            db.execute("DELETE FROM meta")
        with self._mutex, self._errors():
            db = self._conn()
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._mutex:
            db, self._db = self._db, None
            fd, self._lock_fd = self._lock_fd, None
            try:
                if db is not None:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("PRAGMA optimize")
                    db.close()
            finally:
                if fd is not None:
                    with contextlib.suppress(OSError):
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)

    def __enter__(self) -> SqliteSnapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._db is None else "open"
        return f"SqliteSnapshot({self.path!r}, {state})"
