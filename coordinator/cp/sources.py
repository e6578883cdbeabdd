"""What `surge cp` sends: the sources of the command line (or of `--file-list` /
`--file-pair-list`) expanded into files and directories with their destination-relative paths,
after `-E`/`-N` filters, `--src-base`, `--exclude-newer-than/--exclude-older-than` and
`--skip-special-files`. Per-item problems are collected, not raised, so one unreadable file does
not stop the rest; a missing source argument is fatal before anything is sent.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from common.filters import Filter, FilterRule, compile_filters
from common.paths import is_utf8
from common.units import UnitError, parse_size

from ._values import with_prefix
from .options import CopyOptions

__all__ = ["FauxSpec", "SourceError", "SourceFile", "SourceTree", "is_faux", "listed_pairs", "parse_faux", "scan_sources",
           "select_share", "source_filters"]

_FAUX = re.compile(r"^faux://(?P<path>/?[^?]*)(?:\?(?P<query>.*))?$")


class SourceError(Exception):
    """A source argument cannot be used at all (missing, unreadable list...)."""


@dataclass(frozen=True)
class FauxSpec:
    """`faux:///name?size`: generated data instead of a file (ascp's test source)."""

    size: int
    fill: str = "zero"  # "zero" or "random" (a fixed pseudo-random pattern)


@dataclass(frozen=True)
class SourceFile:
    path: str  # local path ("" for faux)
    rel: str  # destination-relative path, '/'-separated, first part the source's own name
    size: int
    mtime: float
    atime: float
    faux: FauxSpec | None = None
    argument: str = ""  # the source argument this file came from
    start: int = 0  # first byte of the source sent (-@, or a multi-session part)
    part: tuple[int, int, int] | None = None  # multi-session: (part index, part count, whole size)
    uid: int = -1  # the source's owner and group, when --preserve-file-owner-uid/gid asks
    gid: int = -1


@dataclass
class SourceTree:
    files: list[SourceFile] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)  # destination-relative directories to create
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) not an error
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    links: list[tuple[str, str]] = field(default_factory=list)  # --symbolic-links copy: (rel, target)
    dir_times: dict[str, tuple[float, float]] = field(default_factory=dict)  # rel -> (mtime, atime)
    single_source: bool = True

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def is_faux(text: str) -> bool:
    return text.startswith("faux://")


def parse_faux(text: str) -> tuple[str, FauxSpec | None]:
    """(name, spec) of a faux URL; spec None for a faux destination (``faux://`` alone)."""
    m = _FAUX.match(text)
    if not m:
        raise SourceError(f"malformed faux URL {text!r}: expected faux:///NAME?SIZE")
    name = m.group("path").strip("/") or "faux"
    query = m.group("query")
    if not query:
        return name, None
    params = dict(p.partition("=")[::2] for p in query.split("&"))
    size_text = next((k for k, v in params.items() if not v), params.get("size", ""))
    try:
        size = parse_size(size_text, "faux size")
    except UnitError as exc:
        raise SourceError(f"malformed faux URL {text!r}: {exc}") from None
    fill = params.get("buf_init", "zero")
    if fill not in ("zero", "random"):
        raise SourceError(f"malformed faux URL {text!r}: buf_init must be zero or random")
    return name, FauxSpec(size, fill)


def _read_list(path: str) -> list[str]:
    """The lines of a --file-list / --file-pair-list (`-`: standard input): UTF-8 (names cross
    the control channel as UTF-8), a byte-order mark at the start dropped (editors on Windows
    write one), CR LF line ends taken."""
    try:
        if path == "-":
            import sys

            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise SourceError(f"cannot read file list {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(f"file list {path!r}: line {line} is not UTF-8 text") from None
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


class _Scanner:
    def __init__(self, opts: CopyOptions, filters: Filter, tree: SourceTree) -> None:
        self.opts = opts
        self.filters = filters
        self.tree = tree

    def _time_excluded(self, st: os.stat_result) -> bool:
        o = self.opts
        if o.exclude_newer_than is not None and st.st_mtime > o.exclude_newer_than:
            return True
        return o.exclude_older_than is not None and st.st_mtime < o.exclude_older_than

    def add_file(self, path: str, rel: str, match: str, st: os.stat_result, argument: str) -> None:
        if self.filters and self.filters.excluded(match, False):
            self.tree.skipped.append((path, "excluded by filter"))
            return
        if self._time_excluded(st):
            self.tree.skipped.append((path, "excluded by modification time"))
            return
        if not os.access(path, os.R_OK):
            self.tree.errors.append((path, "permission denied"))
            return
        owners = self.opts.preserve_uid or self.opts.preserve_gid
        self.tree.files.append(SourceFile(path, rel, st.st_size, st.st_mtime, st.st_atime, None, argument,
                                          uid=st.st_uid if owners else -1, gid=st.st_gid if owners else -1))

    def symlink(self, path: str, rel: str, match: str) -> bool:
        """True when `path`, a symbolic link, is dealt with by --symbolic-links skip or copy
        (follow: the caller goes on with what it points to)."""
        method = self.opts.symbolic_links
        if method == "follow":
            return False
        if method == "skip":
            self.tree.skipped.append((path, "symbolic link (--symbolic-links skip)"))
        elif self.filters and self.filters.excluded(match, False):
            self.tree.skipped.append((path, "excluded by filter"))
        else:
            try:
                self.tree.links.append((rel, os.readlink(path)))
            except OSError as exc:
                self.tree.errors.append((path, exc.strerror or str(exc)))
        return True

    def walk(self, path: str, rel: str, match_prefix: str, argument: str,
             above: frozenset[tuple[int, int]] = frozenset()) -> None:  # fmt: skip
        """Add the tree under directory `path`; `match_prefix` is its filter path ('' at the root),
        `above` the (device, inode) of the directories it is inside: a link back to one of them is
        a loop. (A link to a directory elsewhere is followed: its files go twice, as with ascp.)"""
        try:
            st = os.stat(path)
        except OSError as exc:
            self.tree.errors.append((path, exc.strerror or str(exc)))
            return
        key = (st.st_dev, st.st_ino)
        if key in above:
            self.tree.skipped.append((path, "directory loop through a symbolic link"))
            return
        above = above | {key}
        self.tree.dirs.append(rel)
        self.tree.dir_times[rel] = (st.st_mtime, st.st_atime)
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as exc:
            self.tree.errors.append((path, exc.strerror or str(exc)))
            return
        for entry in entries:
            name = entry.name
            if "\n" in name or "\r" in name:
                self.tree.skipped.append((entry.path, "name contains a line break"))
                continue
            if not is_utf8(name):
                self.tree.errors.append((entry.path, "name is not valid UTF-8; not transferred"))
                continue
            child_rel = f"{rel}/{name}"
            match = f"{match_prefix}/{name}" if match_prefix else name
            if entry.is_symlink() and self.symlink(entry.path, child_rel, match):
                continue
            try:
                est = entry.stat()  # follows symbolic links (ascp's default: follow)
            except OSError as exc:
                self.tree.errors.append((entry.path, exc.strerror or "broken symbolic link"))
                continue
            if stat.S_ISDIR(est.st_mode):
                if self.filters and self.filters.excluded(match, True):
                    self.tree.skipped.append((entry.path, "excluded by filter"))
                    continue
                self.walk(entry.path, child_rel, match, argument, above)
            elif stat.S_ISREG(est.st_mode):
                self.add_file(entry.path, child_rel, match, est, argument)
            elif not self.opts.skip_special_files:
                self.tree.errors.append((entry.path, "special file (device, pipe or socket) not transferred"))


def source_filters(opts: CopyOptions) -> Filter:
    """The -E/-N rules of `opts`, compiled."""
    return compile_filters(FilterRule("exclude" if kind == "exclude" else "include", pattern,
                                      "-E" if kind == "exclude" else "-N")
                           for kind, pattern in opts.filters)  # fmt: skip


def listed_pairs(opts: CopyOptions) -> list[tuple[str, str | None]] | None:
    """The (source, destination or None) lines of --file-pair-list/--file-list, with
    --source-prefix before each source; None without a list."""
    pairs: list[tuple[str, str | None]]
    if opts.file_pair_list:
        lines = _read_list(opts.file_pair_list)
        if len(lines) % 2:
            raise SourceError(f"--file-pair-list {opts.file_pair_list!r}: a source without its destination on the last line")
        pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]
    elif opts.file_list:
        pairs = [(line, None) for line in _read_list(opts.file_list)]
    else:
        return None
    if opts.source_prefix is not None:
        pairs = [(with_prefix(opts.source_prefix, arg), dest) for arg, dest in pairs]
    return pairs


def scan_sources(opts: CopyOptions, dests: Sequence[str | None] | None = None) -> SourceTree:
    """Expand the sources of `opts`. Raises SourceError when a source argument is unusable.
    `dests` (the far end of a download from a file list): the list's destination of each of
    `opts.sources`, None where it has none."""
    filters = source_filters(opts)
    tree = SourceTree()
    scanner = _Scanner(opts, filters, tree)
    listed = listed_pairs(opts) if dests is None else list(zip(opts.sources, dests, strict=True))
    pairs = [(s, None) for s in opts.sources] if listed is None else listed  # sources: already prefixed
    # One plain source may be renamed to a destination that does not exist (as with cp/scp);
    # lists and --src-base always land inside the destination directory.
    tree.single_source = len(pairs) == 1 and listed is None and not opts.src_base
    for arg, dest_rel in pairs:
        _add_argument(scanner, opts, arg, dest_rel)
    if opts.byte_range is not None:
        _apply_byte_range(opts, tree)
    if opts.multi_session is not None:
        tree = select_share(tree, *opts.multi_session, opts.multi_session_threshold)
    return tree


def select_share(tree: SourceTree, node: int, count: int, threshold: int) -> SourceTree:
    """Multi-session (`-C node:count`): this session's share. Files below `threshold` (all files
    when it is 0) go whole to one session each, round robin; larger files are split into
    `count` byte ranges, one per session, assembled into one file at the far end."""
    share = SourceTree(dirs=list(tree.dirs), skipped=list(tree.skipped), errors=list(tree.errors),
                       links=list(tree.links) if node == 1 else [], dir_times=dict(tree.dir_times),
                       single_source=False)  # fmt: skip
    whole = 0
    for f in tree.files:
        if threshold and f.size >= threshold and count > 1:
            k = node - 1
            start, end = f.size * k // count, f.size * (k + 1) // count
            share.files.append(replace(f, size=end - start, start=f.start + start, part=(k, count, f.size)))
        else:
            if whole % count == node - 1:
                share.files.append(f)
            whole += 1
    return share


def _apply_byte_range(opts: CopyOptions, tree: SourceTree) -> None:
    """-@ first:last: the destination receives bytes first..last (inclusive) of the one file."""
    if len(tree.files) != 1 or tree.dirs:
        raise SourceError("-@: a byte range needs exactly one source file")
    f = tree.files[0]
    first = opts.byte_range[0] or 0  # type: ignore[index]
    last = opts.byte_range[1] if opts.byte_range[1] is not None else f.size - 1  # type: ignore[index]
    if first >= f.size or last >= f.size:
        raise SourceError(f"-@: range {first}:{last} is outside {f.path or f.rel} ({f.size} bytes)")
    tree.files[0] = replace(f, size=max(last - first + 1, 0), start=first)


def _add_argument(scanner: _Scanner, opts: CopyOptions, arg: str, dest_rel: str | None) -> None:
    tree = scanner.tree
    if is_faux(arg):
        name, spec = parse_faux(arg)
        if spec is None:
            raise SourceError(f"faux source {arg!r} needs a size: faux:///NAME?SIZE")
        rel = (dest_rel or name).strip("/") or name
        tree.files.append(SourceFile("", rel, spec.size, 0.0, 0.0, spec, arg))
        return
    path = arg.rstrip("/") or "/"
    try:
        st = os.stat(path) if opts.symbolic_links == "follow" else os.lstat(path)
    except FileNotFoundError:
        raise SourceError(f"source not found: {arg}") from None
    except OSError as exc:
        raise SourceError(f"cannot read source {arg}: {exc.strerror}") from None
    if opts.src_base:
        base = os.path.abspath(opts.src_base)
        full = os.path.abspath(path)
        if full != base and not full.startswith(base.rstrip("/") + "/"):
            tree.skipped.append((arg, f"outside the source base {opts.src_base}"))
            return
        rel = os.path.relpath(full, base).replace(os.sep, "/")
        if rel == ".":
            rel = os.path.basename(full)
        match_prefix = rel
    else:
        rel = os.path.basename(os.path.abspath(path)) or "root"
        match_prefix = ""
    if dest_rel is not None:
        rel = dest_rel.strip("/") or rel
    if stat.S_ISLNK(st.st_mode):
        scanner.symlink(path, rel, match_prefix or os.path.basename(path))
    elif stat.S_ISDIR(st.st_mode):
        scanner.walk(path, rel, match_prefix, arg)
    elif stat.S_ISREG(st.st_mode):
        scanner.add_file(path, rel, match_prefix or os.path.basename(path), st, arg)
    elif opts.skip_special_files:
        tree.skipped.append((arg, "special file"))
    else:
        raise SourceError(f"source {arg} is not a regular file or directory")
