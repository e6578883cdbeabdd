"""After-transfer actions on the source side: --remove-after-transfer, --move-after-transfer,
--remove-empty-directories and --remove-empty-source-directory. Only files the far end
confirmed (committed, or skipped as already identical) are touched."""

from __future__ import annotations

import errno
import os
from typing import Any

from .options import CopyOptions
from .sources import SourceTree

__all__ = ["after_transfer"]


def after_transfer(opts: CopyOptions, tree: SourceTree, status: dict[int, dict[str, Any]]) -> list[tuple[str, str]]:
    """Run the actions; returns (path, problem) for those that failed."""
    problems: list[tuple[str, str]] = []
    if not (opts.remove_after_transfer or opts.move_after_transfer or opts.remove_empty_directories):
        return problems
    confirmed = [f for i, f in enumerate(tree.files)
                 if f.faux is None and status.get(i, {}).get("status") in ("done", "skipped")]  # fmt: skip
    for f in confirmed:
        try:
            if opts.remove_after_transfer:
                os.unlink(f.path)
            elif opts.move_after_transfer:
                dest = os.path.join(opts.move_after_transfer, *f.rel.split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.rename(f.path, dest)
        except OSError as exc:
            why = "archive directory is on another file system" if exc.errno == errno.EXDEV else exc.strerror
            problems.append((f.path, str(why)))
    if opts.remove_empty_directories:
        _remove_empty_directories(opts, tree)
    return problems


def _remove_empty_directories(opts: CopyOptions, tree: SourceTree) -> None:
    """The reference: scanning starts at --src-base when given (the base itself stays), else at
    each source directory; a source argument that is a directory stays unless
    --remove-empty-source-directory; for a file argument without --src-base only its parent
    directory is removed, if empty."""
    args = sorted({(f.argument.rstrip("/") or "/") for f in tree.files if f.faux is None})
    arg_dirs = [os.path.abspath(a) for a in args if os.path.isdir(a)]
    arg_files = [os.path.abspath(a) for a in args if not os.path.isdir(a)]  # before any is pruned
    keep = set() if opts.remove_empty_source_directory else set(arg_dirs)
    if opts.src_base:
        base = os.path.abspath(opts.src_base)
        _prune(base, keep | {base})
        return
    for top in arg_dirs:
        _prune(top, keep)
    for arg in arg_files:
        _rmdir_if_empty(os.path.dirname(arg))


def _rmdir_if_empty(path: str) -> bool:
    try:
        os.rmdir(path)
        return True
    except OSError:
        return False


def _prune(top: str, keep: set[str]) -> None:
    """Remove the empty directories below and including `top`, deepest first, except `keep`."""
    for dirpath, _dirnames, _files in os.walk(top, topdown=False):
        if os.path.abspath(dirpath) not in keep:
            _rmdir_if_empty(dirpath)
