"""Sets of half-open byte ranges, the bookkeeping unit of loss recovery and resume.

A `RangeSet` keeps disjoint, non-adjacent ``[start, end)`` ranges sorted in two parallel lists,
so membership and insertion are a bisect plus a small splice. The common case on a clean link
(each block lands right after the previous one) extends the last range in O(1).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

__all__ = ["RangeSet"]


class RangeSet:
    """Disjoint half-open integer ranges, merged on insertion."""

    __slots__ = ("_ends", "_starts", "_total")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._total = 0
        for start, end in ranges:
            self.add(start, end)

    # -- queries -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of disjoint ranges (not bytes; see `total`)."""
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    @property
    def total(self) -> int:
        """Number of integers (bytes) covered."""
        return self._total

    def first(self) -> tuple[int, int] | None:
        return (self._starts[0], self._ends[0]) if self._starts else None

    def contains(self, start: int, end: int) -> bool:
        """True when all of ``[start, end)`` is covered."""
        if start >= end:
            return True
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and self._ends[i] > start:
            return True
        return i + 1 < len(self._starts) and self._starts[i + 1] < end

    def prefix_end(self, origin: int = 0) -> int:
        """End of the contiguous run that starts at `origin` (origin itself if uncovered)."""
        if self._starts and self._starts[0] <= origin < self._ends[0]:
            return self._ends[0]
        i = bisect_right(self._starts, origin) - 1
        if i >= 0 and self._ends[i] > origin:
            return self._ends[i]
        return origin

    def gaps(self, start: int, end: int) -> list[tuple[int, int]]:
        """The parts of ``[start, end)`` that are not covered, in order."""
        out: list[tuple[int, int]] = []
        pos = start
        i = max(bisect_right(self._starts, start) - 1, 0)
        starts, ends = self._starts, self._ends
        while i < len(starts) and pos < end:
            s, e = starts[i], ends[i]
            if e <= pos:
                i += 1
                continue
            if s >= end:
                break
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
            i += 1
        if pos < end:
            out.append((pos, end))
        return out

    def intersection(self, start: int, end: int) -> list[tuple[int, int]]:
        """The covered parts of ``[start, end)``, in order."""
        out: list[tuple[int, int]] = []
        i = max(bisect_right(self._starts, start) - 1, 0)
        while i < len(self._starts) and self._starts[i] < end:
            s, e = max(self._starts[i], start), min(self._ends[i], end)
            if s < e:
                out.append((s, e))
            i += 1
        return out

    # -- updates -------------------------------------------------------------------------------
    def add(self, start: int, end: int) -> int:
        """Cover ``[start, end)``; returns how many bytes were newly covered."""
        if start >= end:
            return 0
        starts, ends = self._starts, self._ends
        # Fast path: appending at or after the last range (in-order arrival).
        if not starts or start > ends[-1]:
            starts.append(start)
            ends.append(end)
            self._total += end - start
            return end - start
        if start >= starts[-1]:
            if end <= ends[-1]:
                return 0
            added = end - max(start, ends[-1])
            ends[-1] = end
            self._total += added
            return added
        lo = bisect_left(ends, start)  # first range that ends at/after start (touching merges)
        hi = bisect_right(starts, end)  # ranges [lo, hi) touch or overlap
        if lo == hi:
            starts.insert(lo, start)
            ends.insert(lo, end)
            self._total += end - start
            return end - start
        new_start = min(start, starts[lo])
        new_end = max(end, ends[hi - 1])
        old = sum(ends[i] - starts[i] for i in range(lo, hi))
        starts[lo:hi] = [new_start]
        ends[lo:hi] = [new_end]
        added = (new_end - new_start) - old
        self._total += added
        return added

    def remove(self, start: int, end: int) -> int:
        """Uncover ``[start, end)``; returns how many bytes were removed."""
        if start >= end or not self._starts:
            return 0
        starts, ends = self._starts, self._ends
        lo = bisect_right(ends, start)  # first range ending after start
        hi = bisect_left(starts, end)  # ranges [lo, hi) overlap
        if lo >= hi:
            return 0
        removed = 0
        keep_s: list[int] = []
        keep_e: list[int] = []
        for i in range(lo, hi):
            s, e = starts[i], ends[i]
            removed += min(e, end) - max(s, start)
            if s < start:
                keep_s.append(s)
                keep_e.append(start)
            if e > end:
                keep_s.append(end)
                keep_e.append(e)
        starts[lo:hi] = keep_s
        ends[lo:hi] = keep_e
        self._total -= removed
        return removed

    def pop_front(self, limit: int) -> tuple[int, int] | None:
        """Remove and return up to `limit` bytes from the start of the first range."""
        if not self._starts:
            return None
        s, e = self._starts[0], self._ends[0]
        if e - s <= limit:
            del self._starts[0], self._ends[0]
            self._total -= e - s
            return s, e
        self._starts[0] = s + limit
        self._total -= limit
        return s, s + limit

    def copy(self) -> RangeSet:
        other = RangeSet()
        other._starts = list(self._starts)
        other._ends = list(self._ends)
        other._total = self._total
        return other

    def to_list(self) -> list[list[int]]:
        """JSON-friendly form: ``[[start, end], ...]``."""
        return [[s, e] for s, e in zip(self._starts, self._ends)]
