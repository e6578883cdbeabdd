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
from common.paths import is_utf8
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
    DEFER = 3  # not now: the caller walks it (`Walk.deferred`), e.g. in another process


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

    def forget_below(self, key: bytes) -> None:
        """A recorded directory is no longer one: make sure the records below it are here, so
        that they are left over (gone). This base holds every record already."""
        return None


@dataclass
class Walk:
    entries: dict[str, Entry] = field(default_factory=dict)  # new or changed (everything if nothing is known)
    unchanged: int = 0  # known, and the same kind, size, mtime (and link target) as recorded
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reused: list[tuple[str, DirPolicy]] = field(default_factory=list)  # directories not listed
    unlisted: list[str] = field(default_factory=list)  # could not be listed: their contents are unknown
    uncertain: list[str] = field(default_factory=list)  # could not be examined (an error): neither same nor gone
    deferred: list[str] = field(default_factory=list)  # directories met and left for the caller (DirPolicy.DEFER)
    # -n follow: (dev, inode) of the directories met, by path, to tell a link back to one above it
    dir_ids: dict[str, tuple[int, int]] = field(default_factory=dict)


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
    under_b = os.fsencode(under)
    top = os.path.join(os.fsencode(root), under_b) if under else os.fsencode(root)
    stack: list[_Dir] = [(top, under, _key(under_b).replace(b"/", b"\x00"), None)]
    if symlinks == "follow":
        try:
            st = os.stat(top)
            w.dir_ids[under] = (st.st_dev, st.st_ino)
        except OSError:
            pass  # reported when it is listed
    while stack:
        full, rel_dir, kdir, only = stack.pop()
        try:
            fd = os.open(full, _DIR_FLAGS)
        except OSError as exc:
            _unlisted(w, rel_dir, exc)
            continue
        try:
            if only is None:
                if known is not None:
                    known.enter(kdir)
                try:
                    names = os.listdir(full)
                except OSError as exc:
                    _unlisted(w, rel_dir, exc)
                    continue
                if not rel_dir:
                    names = [n for n in names if _text(n) not in top_skip]
            else:  # names from the snapshot's keys (UTF-8)
                names = only if _UTF8 else [os.fsencode(n.decode("utf-8", "surrogateescape")) for n in only]
            _list(w, fd, names, full, rel_dir, kdir, known, emit_unchanged, filters, symlinks, dir_rule, stack)
        finally:
            os.close(fd)
    return w


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_Dir = tuple[bytes, str, bytes, "list[bytes] | None"]  # full path, relative path, key, names to visit (None: list it)


def _unlisted(w: Walk, rel_dir: str, exc: OSError) -> None:
    w.errors.append((rel_dir or ".", exc.strerror or str(exc)))
    w.unlisted.append(rel_dir)


def _list(w: Walk, fd: int, names: list[bytes], full: bytes, rel_dir: str, kdir: bytes, known: Known | None,
          emit_unchanged: bool, filters: Filter | None, symlinks: str, dir_rule: DirRule | None,
          stack: list[_Dir]) -> None:  # fmt: skip
    """Stat the `names` of one directory (open as `fd`): count the unchanged regular files here,
    hand everything else to `_one`."""
    rows: dict[bytes, Brief] = known.rows if known is not None else {}
    take = rows.pop
    lstat = os.lstat
    prefix = kdir + b"\x00" if kdir else b""
    utf8 = _UTF8
    unchanged = 0
    for name in names:
        key = prefix + (name if utf8 else _key(name))
        try:
            st = lstat(name, dir_fd=fd)
        except FileNotFoundError:
            continue  # gone since it was listed (or a known subdirectory that is gone): gone
        except OSError as exc:
            take(key, None)  # unknown, not gone
            _stat_failed(w, name, rel_dir, exc)
            continue
        old = take(key, None)
        # The common case, quickly: a regular file with its recorded size and mtime (the rule
        # of decide.changed(); names a scan skips are never recorded).
        if old is not None and (st.st_mode & 0o170000) == 0o100000 and old[2] == st.st_size \
                and old[3] == st.st_mtime_ns and old[5] == st.st_mode & 0o7777 and old[1] == FILE \
                and not emit_unchanged:  # fmt: skip
            unchanged += 1
            continue
        _one(w, fd, name, key, full, st, old, rel_dir, filters, symlinks, dir_rule, known, emit_unchanged, stack)
    w.unchanged += unchanged


def _stat_failed(w: Walk, name: bytes, rel_dir: str, exc: OSError) -> None:
    rel = f"{rel_dir}/{_text(name)}" if rel_dir else _text(name)
    w.errors.append((rel, exc.strerror or str(exc)))
    w.uncertain.append(rel)


def _one(w: Walk, fd: int, name: bytes, key: bytes, full: bytes, st: os.stat_result, old: Brief | None,
         rel_dir: str, filters: Filter | None, symlinks: str, dir_rule: DirRule | None, known: Known | None,
         emit_unchanged: bool, stack: list[_Dir]) -> None:  # fmt: skip
    """Everything but an unchanged regular file: name rules, links, filters, directories."""
    text = _text(name)
    rel = f"{rel_dir}/{text}" if rel_dir else text
    taken = _accept(w, fd, name, text, rel, st, filters, symlinks)
    if taken is None:  # not synchronized: its record, if any, is left over (gone, or excluded)
        if old is not None and known is not None:
            known.rows[key] = old
        return
    kind, code, st, target = taken
    if code == DIR and symlinks == "follow" and _loops(w, rel, st):
        w.errors.append((rel, "symbolic link loop: it leads back to a directory above it"))
        w.uncertain.append(rel)
        return
    # (the mode counts too: a chmod alone is an attribute change to synchronize)
    same = old is not None and old[1] == code and (code == LINK or old[5] == st.st_mode & 0o7777) and (
        code == DIR or (code == LINK and old[4] == target) or (code == FILE and old[2] == st.st_size and old[3] == st.st_mtime_ns))  # fmt: skip
    if same and not emit_unchanged:
        w.unchanged += 1
    else:
        w.entries[rel] = entry_of(rel, st, kind, None if target is None else _text(target))
    if old is not None and old[1] == DIR and code != DIR and known is not None:
        known.forget_below(key)  # a directory no longer: what was recorded below it is gone
    if code != DIR:
        return
    policy = dir_rule(rel, key, st) if dir_rule is not None else DirPolicy.LIST
    path = full + b"/" + name
    if policy == DirPolicy.LIST:
        stack.append((path, rel, key, None))
        return
    if policy == DirPolicy.DEFER:
        w.deferred.append(rel)
        return
    assert known is not None, "reusing a directory needs the snapshot's records"
    w.reused.append((rel, policy))
    if policy == DirPolicy.REUSE_FILES:
        stack.append((path, rel, key, known.subdirs(key)))
    else:
        known.drop_tree(key)


def _loops(w: Walk, rel: str, st: os.stat_result) -> bool:
    """-n follow: the directory met at `rel` is one of those above it (reached through a link);
    following it would never end. Else it is remembered for the paths below it."""
    ident = (st.st_dev, st.st_ino)
    head = rel
    while head:
        head = head.rpartition("/")[0]
        if w.dir_ids.get(head) == ident:
            return True
    w.dir_ids[rel] = ident
    return False


def _accept(w: Walk, fd: int, name: bytes, text: str, rel: str, st: os.stat_result, filters: Filter | None,
            symlinks: str) -> tuple[str, int, os.stat_result, bytes | None] | None:  # fmt: skip
    """(kind, kind code, stat, link target) of an entry the sync takes, or None for one it
    leaves alone: a name it skips, a special file, a link with -n skip, an excluded path."""
    if "\n" in text or "\r" in text or "\\" in text:
        w.skipped.append((rel, "name contains a line break or backslash"))
        return None
    if not is_utf8(text):
        # Names cross the control channel and the snapshot as UTF-8: one that is not cannot be
        # synchronized (an error each run, so it is seen), and it must not stop the others.
        w.errors.append((rel, "name is not valid UTF-8; not synchronized"))
        w.uncertain.append(rel)
        return None
    if text.endswith(SKIP_SUFFIXES):
        return None
    target = None
    if stat.S_ISLNK(st.st_mode):
        if symlinks == "skip":
            return None
        if symlinks == "follow":
            try:
                st = os.stat(name, dir_fd=fd)
            except OSError:
                w.errors.append((rel, "broken symbolic link"))
                w.uncertain.append(rel)
                return None
        else:
            target = os.readlink(name, dir_fd=fd)
    if target is not None:
        kind, code = "link", LINK
    elif stat.S_ISDIR(st.st_mode):
        kind, code = "dir", DIR
    elif stat.S_ISREG(st.st_mode):
        kind, code = "file", FILE
    else:
        w.skipped.append((rel, "special file"))
        return None
    if filters and filters.excluded_entry(rel, kind == "dir"):
        return None
    return kind, code, st, target
