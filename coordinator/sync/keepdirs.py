"""The reference's conditions on --keep-dir-local/--keep-dir-remote, checked before a sync on
the directories this machine holds: the directory must be outside the synchronized directory
(or excluded from the sync by the filters) and on the same file system (deleted files are moved
into it by rename)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from common.filters import FilterRule, compile_filters

__all__ = ["keep_dir_problem"]


def keep_dir_problem(option: str, keep: str, root: str, rules: Sequence[FilterRule]) -> str | None:
    """Why the existing directory `keep` cannot take the deleted files of the synchronized
    directory `root`, or None."""
    real_keep, real_root = os.path.realpath(keep), os.path.realpath(root)
    if real_keep == real_root:
        return f"{option}: {keep!r} is the synchronized directory itself"
    if real_keep.startswith(real_root.rstrip(os.sep) + os.sep):
        rel = os.path.relpath(real_keep, real_root).replace(os.sep, "/")
        if not compile_filters(rules).excluded(rel, True):
            return (f"{option}: {keep!r} is inside the synchronized directory; move it out, or "
                    "exclude it (--exclude)")  # fmt: skip
    if os.stat(real_keep).st_dev != os.stat(real_root).st_dev:
        return f"{option}: {keep!r} is not on the file system of {root!r} (deleted files are moved by rename)"
    return None
