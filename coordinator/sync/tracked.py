"""The filters of a sync pair with the reference's "Semantics" rule: excluded *new* paths are
invisible, but a path the snapshot already records stays tracked even when its name is, or
becomes, excluded. So with ``--exclude FILE3``, once FILE3 was synchronized, ``rm FILE3``,
``cp FILE4 FILE3``, ``mv FILE4 FILE3`` and ``mv FILE3 FILE4`` all reach the peer; on a clean
start (FILE3 never synchronized) they are ignored, or seen only as the change to FILE4.

:class:`TrackedFilter` answers like :class:`common.filters.Filter` (``excluded``,
``excluded_entry``, ``bool``), so the scanners and planners use it unchanged; the snapshot is
asked only about paths the rules exclude.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from common.filters import Filter, FilterRule

__all__ = ["TrackedFilter"]


class TrackedFilter(Filter):
    """`base` with every path for which `tracked(path)` is true kept. A Filter for the type
    checker; every question goes to `base` (its compiled rules are not copied)."""

    def __init__(self, base: Filter, tracked: Callable[[str], bool],
                 hard: Filter | None = None) -> None:  # no super(): delegation  # fmt: skip
        """`hard`: rules whose exclusions no record overrides (the far end's own: it refuses
        what they exclude); they are among `base`'s too, first."""
        self.base = base
        self._tracked = tracked
        self._hard = hard if hard else None
        self._entered: set[str] = set()  # excluded directories entered for their tracked records
        self._lock = threading.Lock()  # scanners may ask from several threads

    def __bool__(self) -> bool:
        return bool(self.base)

    def __len__(self) -> int:
        return len(self.base)

    @property
    def rules(self) -> tuple[FilterRule, ...]:
        return self.base.rules

    def __repr__(self) -> str:
        return f"TrackedFilter({self.base!r})"

    def excluded(self, path: str, is_dir: bool) -> bool:
        """Like Filter.excluded (directories above count), but a tracked path is not excluded
        (unless the `hard` rules exclude it)."""
        if not self.base.excluded(path, is_dir):
            return False
        return not self._tracked(path) or (self._hard is not None and self._hard.excluded(path, is_dir))

    def excluded_entry(self, path: str, is_dir: bool) -> bool:
        """Like Filter.excluded_entry, for a scanner that does not descend into excluded
        directories: a tracked excluded directory is entered, and below it only tracked paths
        are kept."""
        parent = path.rpartition("/")[0]
        hidden = parent in self._entered or self.base.excluded_entry(path, is_dir)
        if not hidden or not self._tracked(path):
            return hidden
        if self._hard is not None and self._hard.excluded_entry(path, is_dir):
            return True
        if is_dir:
            with self._lock:
                self._entered.add(path)
        return False
