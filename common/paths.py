"""Paths that cross the control channel: relative, '/'-separated, and confined to a root."""

from __future__ import annotations

import os
import posixpath
import time

__all__ = ["PathError", "check_relative", "confine", "free_name", "is_utf8"]


class PathError(ValueError):
    """A path that would escape its root, or is not acceptable as a transfer path."""


def check_relative(rel: str) -> str:
    """Normalize a relative transfer path; refuse absolute paths, '..', NUL and empty names."""
    if not rel or "\0" in rel:
        raise PathError(f"invalid path {rel!r}")
    if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
        raise PathError(f"absolute path not allowed here: {rel!r}")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise PathError(f"path escapes its root: {rel!r}")
    return "/".join(parts)


def confine(root: str | os.PathLike[str], rel: str) -> str:
    """Join `rel` under `root`, refusing anything that would land outside it (symlinks in the
    existing part of the path included)."""
    base = os.path.realpath(root)
    target = os.path.join(base, *check_relative(rel).split("/"))
    parent = os.path.realpath(os.path.dirname(target))
    if parent != base and not parent.startswith(base + os.sep):
        raise PathError(f"path escapes its root through a symbolic link: {rel!r}")
    return os.path.join(parent, posixpath.basename(target))


def free_name(target: str) -> str:
    """`target` itself when nothing is there; else name.ext -> name.yyyy.mm.dd.hh.mm.ss.index.ext,
    the first such name that is free (the reference's --save-before-overwrite naming; also what
    a second deletion into a --keep-dir gets, so an earlier kept copy is never replaced)."""
    if not os.path.lexists(target):
        return target
    head, ext = os.path.splitext(target)
    stamp = time.strftime("%Y.%m.%d.%H.%M.%S", time.localtime())
    index = 1
    while os.path.lexists(f"{head}.{stamp}.{index}{ext}"):
        index += 1
    return f"{head}.{stamp}.{index}{ext}"


def is_utf8(name: str) -> bool:
    """Whether a name decoded with surrogateescape was valid UTF-8 (no lone surrogates): names
    cross the control channel and the snapshot as UTF-8, so one that is not cannot."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
