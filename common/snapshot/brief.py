"""Brief records: the fields that say whether a path changed since the last sync (kind, size,
mtime, link target), read without building an :class:`~common.snapshot.base.Entry` per row.

A re-sync compares its scan with these and builds full entries only for the paths that differ,
so an unchanged file costs a stat and a dictionary lookup. A brief record is the row
``(key, kind, size, mtime_ns, target, mode)``: ``key`` is
:func:`~common.snapshot.base.path_sort_key` of the path, ``kind`` an index into
:data:`~common.snapshot.base.KINDS`, ``target`` the link target as UTF-8 bytes (surrogateescape)
or None, ``mode`` the permission bits (a chmod alone is a change to synchronize).

The SQLite store reads them in one query (:meth:`SqliteSnapshot.brief`); any other store gets
them from its entries (:func:`load_brief`)."""

from __future__ import annotations

from typing import Final, TypeAlias

from common.snapshot.base import KINDS, Entry, path_sort_key

__all__ = ["DIR", "FILE", "LINK", "Brief", "brief_of", "has_records", "key_path", "load_brief", "load_brief_below"]

Brief: TypeAlias = tuple[bytes, int, int, int, "bytes | None", int]
FILE: Final = KINDS.index("file")
DIR: Final = KINDS.index("dir")
LINK: Final = KINDS.index("link")


def key_path(key: bytes) -> str:
    """The path of a key (the inverse of path_sort_key)."""
    return key.replace(b"\x00", b"/").decode("utf-8", "surrogateescape")


def brief_of(e: Entry) -> Brief:
    target = None if e.target is None else e.target.encode("utf-8", "surrogateescape")
    return (path_sort_key(e.path), KINDS.index(e.kind), e.size, e.mtime_ns, target, e.mode)


def load_brief(store: object, side: str, *, dirs_only: bool = False,
               children_of: str | None = None) -> dict[bytes, Brief]:  # fmt: skip
    """Brief records of `side` by key: all of them, only directories (`dirs_only`), or only
    the direct children of the directory `children_of` ("" for the root)."""
    native = getattr(store, "brief", None)
    if native is not None:
        return native(side, dirs_only=dirs_only, children_of=children_of)
    out: dict[bytes, Brief] = {}
    entries = store.iter_side(side, children_of or "")  # type: ignore[attr-defined]
    for e in entries:
        if dirs_only and e.kind != "dir":
            continue
        if children_of is not None:
            rest = e.path[len(children_of) + 1 :] if children_of else e.path
            if not rest or "/" in rest:
                continue
        b = brief_of(e)
        out[b[0]] = b
    return out


def has_records(store: object, side: str) -> bool:
    """Whether `side` has any record (a count of a large snapshot takes milliseconds)."""
    native = getattr(store, "has_records", None)
    if native is not None:
        return bool(native(side))
    return bool(store.count(side))  # type: ignore[attr-defined]


def load_brief_below(store: object, side: str, top: str) -> dict[bytes, Brief]:
    """Brief records of everything below the directory `top` (not `top` itself)."""
    native = getattr(store, "brief_below", None)
    if native is not None:
        return native(side, top)
    out: dict[bytes, Brief] = {}
    for e in store.iter_side(side, top):  # type: ignore[attr-defined]
        if e.path != top:
            b = brief_of(e)
            out[b[0]] = b
    return out
