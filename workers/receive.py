"""The receiving executor: decides what to do with each incoming file (destination, overwrite
policy, resume state), then writes blocks into partial files and commits each file when its
last byte arrives: verify, preserve times, keep a copy of the old file if asked, rename into
place. Nothing half-written is ever visible under a file's real name; a failed transfer leaves
the old file untouched plus, with `-k` 1-3, a partial file and its `.aspx` resume state.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from common.checksums import ranges_digest, sparse_digest
from common.paths import PathError, check_relative

__all__ = ["DEFAULT_PARTIAL_SUFFIX", "RESUME_SUFFIX", "IncomingFile", "Part", "PlanError", "ReceiveOptions", "plan_receive"]

DEFAULT_PARTIAL_SUFFIX = ".partial"
RESUME_SUFFIX = ".aspx"


class PlanError(Exception):
    """The destination cannot receive this transfer (message says what and why)."""


@dataclass(frozen=True)
class Part:
    """One of `count` byte ranges of a file split across multi-session transfers (-C)."""

    index: int
    count: int
    start: int
    whole: int  # size of the whole file


@dataclass(frozen=True)
class IncomingFile:
    rel: str  # path relative to the transfer root, its first part the source's own name
    size: int  # bytes this session carries (a part's length for a multi-session part)
    mtime: float
    atime: float
    part: Part | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> IncomingFile:
        size = int(d["size"])
        if size < 0:
            raise PlanError(f"negative size for {d.get('rel')!r}")
        part = None
        if d.get("part"):
            p = d["part"]
            part = Part(int(p["index"]), int(p["count"]), int(p["start"]), int(p["size"]))
            if not (0 <= part.index < part.count <= 128 and part.start >= 0 and part.start + size <= part.whole):
                raise PlanError(f"malformed multi-session part for {d.get('rel')!r}")
        return cls(check_relative(str(d["rel"])), size, float(d.get("mtime", 0)), float(d.get("atime", 0)), part)


@dataclass(frozen=True)
class ReceiveOptions:
    destination: str
    single_source: bool = True  # one source argument: it may be renamed to the destination
    dest_must_be_dir: bool = False
    create_dir: bool = False
    overwrite: str = "diff"
    resume: int = 0
    partial_suffix: str = DEFAULT_PARTIAL_SUFFIX
    preserve_mtime: bool = False
    preserve_atime: bool = False
    checksum: str = "none"
    save_before_overwrite: bool = False
    discard: bool = False  # faux:// destination: receive and drop

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReceiveOptions:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        opts = cls(**known)
        if opts.overwrite not in ("never", "always", "diff", "diff+older", "older"):
            raise PlanError(f"--overwrite: unknown policy {opts.overwrite!r}")
        if opts.resume not in (0, 1, 2, 3):
            raise PlanError(f"-k: unknown resume level {opts.resume!r}")
        if not opts.partial_suffix or "/" in opts.partial_suffix:
            raise PlanError("--partial-file-suffix: must be non-empty and contain no '/'")
        return opts


def _targets(opts: ReceiveOptions, files: Sequence[IncomingFile], dirs: Sequence[str]) -> tuple[str, list[str], list[str]]:
    """(root, target path of each file, directories to create) by ascp's destination rules."""
    dest = opts.destination
    if os.path.isdir(dest):
        root, strip = dest, False
    elif os.path.exists(dest):
        if len(files) == 1 and not dirs and opts.single_source and not opts.dest_must_be_dir:
            # The reference: a destination that is a symbolic link is written to its target (the
            # docroot check of plan_receive confines the target's directory).
            target = os.path.realpath(dest) if os.path.islink(dest) else dest
            return os.path.dirname(target) or ".", [target], []
        raise PlanError(f"destination {dest!r} is not a directory")
    elif opts.single_source and not opts.dest_must_be_dir and not dest.endswith("/"):
        # One source and no such destination: the source is copied under the new name.
        root, strip = dest, True
        parent = os.path.dirname(os.path.abspath(dest))
        if not os.path.isdir(parent) and not opts.create_dir:
            raise PlanError(f"destination directory {parent!r} does not exist (use -d to create it)")
        if len(files) == 1 and not dirs:
            return parent, [dest], [parent] if opts.create_dir else []
    else:
        if not opts.create_dir:
            raise PlanError(f"destination directory {dest!r} does not exist (use -d to create it)")
        root, strip = dest, False

    def place(rel: str) -> str:
        parts = rel.split("/")
        if strip:
            parts = parts[1:]
        return os.path.join(root, *parts) if parts else root

    made = [root] + [place(d) for d in dirs]
    return root, [place(f.rel) for f in files], made


def _file_state(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _load_resume(aspx: str, size: int, mtime: float) -> list[list[int]] | None:
    try:
        with open(aspx, encoding="utf-8") as f:
            state = json.load(f)
        if state.get("size") != size or abs(float(state.get("mtime", -1)) - mtime) > 1e-3:
            return None  # the source changed since: start over
        ranges = [[int(s), int(e)] for s, e in state["ranges"]]
        if any(not 0 <= s < e <= size for s, e in ranges):
            return None
        return ranges
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plan_receive(opts: ReceiveOptions, files: Sequence[IncomingFile], dirs: Sequence[str],
                 confine: Callable[[str], bool] | None = None) -> tuple[list[str], list[dict[str, Any]]]:  # fmt: skip
    """Targets and, per file, the action: ``send`` (optionally with ``have`` ranges to resume and
    a ``check`` digest the sender must confirm), ``compare`` (a complete file whose digest the
    sender compares with its own: equal means skip) or ``skip``."""
    if opts.discard:
        return ["" for _ in files], [{"action": "send"} for _ in files]
    _, targets, made = _targets(opts, files, dirs)
    parents = {_split(t)[0] for t in targets}
    listing = _Listing(targets)
    absent = [listing.absent(t, opts.partial_suffix if opts.resume else None) for t in targets]
    if confine is not None:  # checked before anything is created: a link must not lead out
        for path in {*made, *parents}:
            if not confine(path):
                raise PathError(f"{path!r} leads outside the docroot through a symbolic link")
        for path, gone in zip(targets, absent):
            if not gone and os.path.islink(path) and not confine(path):
                raise PathError(f"{path!r} leads outside the docroot through a symbolic link")
    for d in made:
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise PlanError(f"cannot create directory {d!r}: {exc.strerror}") from None
    for parent in parents:  # parents of listed files (--file-pair-list) are created as needed
        if parent and not os.path.isdir(parent):
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise PlanError(f"cannot create directory {parent!r}: {exc.strerror}") from None
    plans = [{"action": "send"} if gone else _plan_one(opts, f, t) for f, t, gone in zip(files, targets, absent)]
    return targets, plans


def _split(path: str) -> tuple[str, str]:
    """os.path.split for the normalized paths of targets, at a fraction of its cost."""
    head, sep, name = path.rpartition("/")
    return head or sep, name


class _Listing:
    """The names in each destination directory, listed once when that is cheaper than a few
    stats per file: into a fresh tree, no target or partial file exists, and 100,000 files
    need no per-file lookup to find that out."""

    def __init__(self, targets: Sequence[str]) -> None:
        self._wanted: dict[str, int] = {}
        for t in targets:
            parent = _split(t)[0]
            self._wanted[parent] = self._wanted.get(parent, 0) + 1
        self._names: dict[str, frozenset[str] | None] = {}

    def _list(self, parent: str) -> frozenset[str] | None:
        try:  # a directory's size says roughly how many names a listing would return
            if os.stat(parent or ".").st_size // 32 > 16 * self._wanted.get(parent, 0):
                return None
            return frozenset(os.listdir(parent or "."))
        except FileNotFoundError:
            return frozenset()  # created empty by this plan
        except OSError:
            return None  # not listable: ask per file

    def absent(self, path: str, partial_suffix: str | None) -> bool:
        """Known to have no file at `path` (nor, when given, a partial file beside it)."""
        parent, name = _split(path)
        if parent not in self._names:
            self._names[parent] = self._list(parent)
        names = self._names[parent]
        return names is not None and name not in names and (partial_suffix is None or name + partial_suffix not in names)


def _plan_one(opts: ReceiveOptions, f: IncomingFile, target: str) -> dict[str, Any]:
    st = _file_state(target)
    if f.part is not None:  # parts are always sent: the sessions assemble one new file together
        if st is not None and opts.overwrite == "never":
            return {"action": "skip", "reason": "exists (--overwrite never)"}
        return {"action": "send"}
    if st is not None and not os.path.isfile(target):
        return {"action": "skip", "reason": "destination exists and is not a regular file", "error": True}
    if st is not None:
        newer_source = f.mtime > st.st_mtime + 1e-6
        policy = opts.overwrite
        if policy == "never":
            return {"action": "skip", "reason": "exists (--overwrite never)"}
        if policy == "older":
            return {"action": "send"} if newer_source else {"action": "skip", "reason": "destination not older"}
        if policy in ("diff", "diff+older"):
            if policy == "diff+older" and not newer_source:
                return {"action": "skip", "reason": "destination not older"}
            if opts.resume >= 1 and st.st_size != f.size:
                pass  # different: fall through to send
            elif opts.resume == 1:
                return {"action": "skip", "reason": "same size"}
            elif opts.resume >= 2:
                with open(target, "rb") as fh:
                    kind = "sparse" if opts.resume == 2 else "full"
                    digest = (sparse_digest(fh.fileno(), f.size) if kind == "sparse"
                              else ranges_digest(fh.fileno(), [(0, f.size)]))  # fmt: skip
                return {"action": "compare", "check": {"kind": kind, "digest": digest}}
    if opts.resume >= 1:
        partial = target + opts.partial_suffix
        ranges = _load_resume(target + RESUME_SUFFIX, f.size, f.mtime) if os.path.isfile(partial) else None
        if ranges:
            plan: dict[str, Any] = {"action": "send", "have": ranges}
            if opts.resume >= 2:
                with open(partial, "rb") as fh:
                    if os.fstat(fh.fileno()).st_size < max(e for _, e in ranges):
                        return {"action": "send"}
                    kind = "sparse" if opts.resume == 2 else "full"
                    spans = [(s, e) for s, e in ranges]
                    digest = (sparse_digest(fh.fileno(), f.size, spans) if kind == "sparse"
                              else ranges_digest(fh.fileno(), spans))  # fmt: skip
                plan["check"] = {"kind": kind, "digest": digest}
            return plan
    return {"action": "send"}


__all__ += ["PathError"]
