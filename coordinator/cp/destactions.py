"""What some ascp options do at the destination besides the data transfer:

* ``--symbolic-links copy``/``copy+force``: the links the scan found are made as links (their
  target text unchanged). ``copy`` leaves an existing destination path alone; ``copy+force``
  replaces an existing file or link, but not a directory nor a link to one (the reference's
  symbolic link handling).
* ``--preserve-file-owner-uid``/``-gid``: each transferred file gets its source owner or group
  (it takes root at the destination; a failure is an error of that file).
* ``--preserve-modification-time``/``--preserve-access-time`` (``-p``): the reference sets the
  times of each transferred "file or directory"; directories get theirs after the files went
  in (deepest first, as writing into a directory changes its time).
* ``--delete-before-transfer``: before the transfer, what the destination counterpart of the
  source directory holds and the source does not is deleted (paths the -E/-N filters exclude
  are left alone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from .dest import DestSide, Where, place

__all__ = ["delete_extra", "make_links", "set_dir_times", "set_owners"]

log = logging.getLogger("surge.cp")


def make_links(side: DestSide, where: Where, links: Iterable[tuple[str, str]], force: bool) -> list[tuple[str, str]]:
    """Make the links (relative path, target); returns (path, problem) for those not made."""
    problems: list[tuple[str, str]] = []
    for rel, target in links:
        path = place(where, rel)
        try:
            there = side.kind(path)
            if there is not None and not force:
                log.info("link %s not made: the destination exists (--symbolic-links copy)", path)
            elif there == "dir" or (there == "link" and side.leads_to_dir(path)):
                log.info("link %s not made: a directory is there (--symbolic-links copy+force)", path)
            else:
                side.symlink(path, target)
                log.info("link %s -> %s", path, target)
        except OSError as exc:
            problems.append((path, f"cannot make the symbolic link: {exc.strerror or exc}"))
    return problems


def set_owners(side: DestSide, owners: Iterable[tuple[str, int, int]], uid: bool, gid: bool) -> list[tuple[str, str]]:
    """chown each (destination path, uid, gid); returns (path, problem) for failures."""
    problems: list[tuple[str, str]] = []
    for path, file_uid, file_gid in owners:
        try:
            side.chown(path, file_uid if uid else None, file_gid if gid else None)
        except OSError as exc:
            what = "owner" if uid else "group"
            problems.append((path, f"cannot set the {what} (--preserve-file-owner-{'uid' if uid else 'gid'}): "
                                   f"{exc.strerror or exc}"))  # fmt: skip
    return problems


def delete_extra(side: DestSide, where: Where, root: str, keep: set[str],
                 excluded: Callable[[str, bool], bool]) -> list[tuple[str, str]]:  # fmt: skip
    """--delete-before-transfer: delete what the destination of the source directory `root`
    (source-relative) has and `keep` (source-relative paths below `root`) does not; returns
    (path, problem) for what could not be deleted."""
    top = place(where, root)
    if side.kind(top) != "dir":
        return []  # nothing there yet
    problems: list[tuple[str, str]] = []
    gone: set[str] = set()
    for rel, kind in sorted(side.listing(top)):
        parents = rel.split("/")[:-1]
        if any("/".join(parents[: k + 1]) in gone for k in range(len(parents))) or f"{root}/{rel}" in keep:
            continue
        if excluded(rel, kind == "dir"):
            continue
        path = f"{top.rstrip('/')}/{rel}"
        try:
            side.delete(path)
            gone.add(rel)
            log.info("deleted %s (--delete-before-transfer)", path)
        except OSError as exc:
            problems.append((path, f"cannot delete (--delete-before-transfer): {exc.strerror or exc}"))
    return problems


def set_dir_times(side: DestSide, where: Where, times: dict[str, tuple[float, float]], mtime: bool,
                  atime: bool) -> list[tuple[str, str]]:  # fmt: skip
    """Give each directory (relative path -> (mtime, atime)) its source's times, deepest first;
    returns (path, problem) for failures."""
    problems: list[tuple[str, str]] = []
    for rel in sorted(times, key=lambda r: r.count("/"), reverse=True):
        path = place(where, rel)
        source_mtime, source_atime = times[rel]
        try:
            side.set_times(path, source_mtime if mtime else None, source_atime if atime else None)
        except OSError as exc:
            problems.append((path, f"cannot set the directory's times: {exc.strerror or exc}"))
    return problems
