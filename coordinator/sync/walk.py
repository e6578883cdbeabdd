"""The directory walk under every local scan: stat each entry, and when the snapshot's brief
records are given, tell what is new or changed without building anything for what is not.

Names with line breaks or backslashes are skipped (as the reference says), and so are partial
and resume files, the snapshot directory, and everything the filters exclude. A directory may be
left unlisted (`DirPolicy`): --assume-no-mods does not list a directory whose mtime is
unchanged but still visits its subdirectories; --exclude-dirs-older-than does not enter an old
directory at all. Which records such a directory keeps is the caller's business (`Walk.reused`).

Paths are walked as bytes and keyed as the snapshot keys them (`path_sort_key`: UTF-8, "/" as
NUL); a path becomes a str only for an entry that is reported."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from common.filters import Filter
from common.snapshot import Entry
from common.snapshot.brief import DIR, FILE, LINK, Brief

__all__ = ["SKIP_SUFFIXES", "DirPolicy", "Known", "Walk", "entry_of", "walk"]

# Transfer state, temporary names, and metadata files (--preserve-xattrs=metafile) are never
# synchronized as files of their own.
SKIP_SUFFIXES = (".partial", ".aspx", ".surge-tmp", ".partial.parts", ".partial.lock", ".aspera-meta")
_DB_DIRS = (".surge", ".private-asp")
_UTF8 = sys.getfilesystemencoding().lower() in ("utf-8", "utf8")


class DirPolicy(IntEnum):
    LIST = 0  # list it and go on below
    REUSE_FILES = 1  # --assume-no-mods: do not list it; visit the subdirectories the snapshot knows
    REUSE_TREE = 2  # --exclude-dirs-older-than: do not enter it


class Known:
    """What the snapshot says about the paths a walk meets: brief records by key, taken out as
    the walk meets them, so that what is left of the listed directories is gone. `enter` is
    called before a directory is listed (a lazy view loads its children then); `subdirs` names
    the subdirectories of a directory that is not listed; `drop_tree` forgets a directory that is
    not entered. This base holds every record up front and lists every directory."""

    def __init__(self, rows: dict[bytes, Brief]) -> None:
        self.rows = rows

    def enter(self, key: bytes) -> None:
        return None

    def subdirs(self, key: bytes) -> list[bytes]:
        raise NotImplementedError("a walk that reuses directories needs a view that knows them")

    def drop_tree(self, key: bytes) -> None:
        raise NotImplementedError("a walk that reuses directories needs a view that knows them")


@dataclass
class Walk:
    entries: dict[str, Entry] = field(default_factory=dict)  # new or changed (everything if nothing is known)
    unchanged: int = 0  # known, and the same kind, size, mtime (and link target) as recorded
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reused: list[tuple[str, DirPolicy]] = field(default_factory=list)  # directories not listed
    unlisted: list[str] = field(default_factory=list)  # could not be listed: their contents are unknown
    uncertain: list[str] = field(default_factory=list)  # could not be examined (an error): neither same nor gone


def entry_of(path: str, st: os.stat_result, kind: str, target: str | None = None) -> Entry:
    return Entry(path, kind, st.st_size if kind == "file" else 0, st.st_mtime_ns, stat.S_IMODE(st.st_mode),
                 st.st_ino, st.st_dev, st.st_nlink, None, target, 0, st.st_uid, st.st_gid)  # fmt: skip


def _text(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape") if _UTF8 else os.fsdecode(name)


def _key(name: bytes) -> bytes:
    """A name as the snapshot keys it (UTF-8, whatever the file system encoding)."""
    return name if _UTF8 else os.fsdecode(name).encode("utf-8", "surrogateescape")


DirRule = Callable[[str, bytes, os.stat_result], DirPolicy]


def walk(root: str, *, known: Known | None = None, emit_unchanged: bool = False, filters: Filter | None = None,
         symlinks: str = "copy", dir_rule: DirRule | None = None, extra_skip: Iterable[str] = (),
         under: str = "") -> Walk:  # fmt: skip
    """Walk the tree under `root` (only below the directory `under` when given; paths relative
    to `root`). With `known`, entries the same as their record are only counted (or reported too,
    with `emit_unchanged`); without it, every entry is reported. `dir_rule(path, key, stat)`
    says how to treat each directory met."""
    w = Walk()
    top_skip = set(_DB_DIRS) | set(extra_skip)
    rows = known.rows if known is not None else {}
    take = rows.pop
    isreg = stat.S_ISREG
    under_b = os.fsencode(under)
    start = (os.path.join(os.fsencode(root), under_b) if under else os.fsencode(root), under, _key(under_b).replace(b"/", b"\x00"))
    stack: list[tuple[bytes, str, bytes, list[bytes] | None]] = [(*start, None)]
    while stack:
        full, rel_dir, kdir, only = stack.pop()
        prefix = kdir + b"\x00" if kdir else b""
        if only is None:
            if known is not None:
                known.enter(kdir)
            try:
                with os.scandir(full) as it:
                    listing: list[tuple[bytes, os.DirEntry[bytes] | None]] = [(de.name, de) for de in it]
            except OSError as exc:
                w.errors.append((rel_dir or ".", exc.strerror or str(exc)))
                w.unlisted.append(rel_dir)
                continue
        else:
            listing = [(name, None) for name in only]
        for name, de in listing:
            if not rel_dir and _text(name) in top_skip:
                continue
            key = prefix + _key(name)
            path = full + b"/" + name
            try:
                st = de.stat(follow_symlinks=False) if de is not None else os.lstat(path)
            except FileNotFoundError:
                if de is not None:  # listed a moment ago: report it as before
                    w.errors.append((f"{rel_dir}/{_text(name)}" if rel_dir else _text(name), "No such file or directory"))
                    w.uncertain.append(f"{rel_dir}/{_text(name)}" if rel_dir else _text(name))
                    take(key, None)
                continue  # a known subdirectory that is gone: its record stays behind, so it is gone
            except OSError as exc:
                rel = f"{rel_dir}/{_text(name)}" if rel_dir else _text(name)
                w.errors.append((rel, exc.strerror or str(exc)))
                w.uncertain.append(rel)
                take(key, None)
                continue
            old = take(key, None)
            # The quick test of the common case: a regular file with its recorded size and mtime
            # (the rule of decide.changed(); names a scan skips are never recorded).
            if old is not None and isreg(st.st_mode) and old[1] == FILE and old[2] == st.st_size \
                    and old[3] == st.st_mtime_ns and not emit_unchanged:  # fmt: skip
                w.unchanged += 1
                continue
            _one(w, name, key, path, st, old, rel_dir, filters, symlinks, dir_rule, known, emit_unchanged, stack)
    return w


def _one(w: Walk, name: bytes, key: bytes, path: bytes, st: os.stat_result, old: Brief | None, rel_dir: str,
         filters: Filter | None, symlinks: str, dir_rule: DirRule | None, known: Known | None,
         emit_unchanged: bool, stack: list[tuple[bytes, str, bytes, list[bytes] | None]]) -> None:  # fmt: skip
    """Everything but an unchanged regular file: name rules, links, filters, directories."""
    text = _text(name)
    rel = f"{rel_dir}/{text}" if rel_dir else text
    if "\n" in text or "\r" in text or "\\" in text:
        w.skipped.append((rel, "name contains a line break or backslash"))
        return
    if text.endswith(SKIP_SUFFIXES):
        return
    target = None
    if stat.S_ISLNK(st.st_mode):
        if symlinks == "skip":
            return
        if symlinks == "follow":
            try:
                st = os.stat(path)
            except OSError:
                w.errors.append((rel, "broken symbolic link"))
                w.uncertain.append(rel)
                return
        else:
            target = os.readlink(path)
    if target is not None:
        kind, code = "link", LINK
    elif stat.S_ISDIR(st.st_mode):
        kind, code = "dir", DIR
    elif stat.S_ISREG(st.st_mode):
        kind, code = "file", FILE
    else:
        w.skipped.append((rel, "special file"))
        return
    if filters and filters.excluded_entry(rel, kind == "dir"):
        return
    same = old is not None and old[1] == code and (
        code == DIR or (code == LINK and old[4] == target) or (code == FILE and old[2] == st.st_size and old[3] == st.st_mtime_ns))  # fmt: skip
    if same and not emit_unchanged:
        w.unchanged += 1
    else:
        w.entries[rel] = entry_of(rel, st, kind, None if target is None else _text(target))
    if code != DIR:
        return
    policy = dir_rule(rel, key, st) if dir_rule is not None else DirPolicy.LIST
    if policy == DirPolicy.LIST:
        stack.append((path, rel, key, None))
        return
    assert known is not None, "reusing a directory needs the snapshot's records"
    w.reused.append((rel, policy))
    if policy == DirPolicy.REUSE_FILES:
        stack.append((path, rel, key, known.subdirs(key)))
    else:
        known.drop_tree(key)
