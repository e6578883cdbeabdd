"""RangeSet against a reference model: a Python set of integers over a small universe."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from common.transport.ranges import RangeSet

U = 64  # the universe is [0, U); queries reach a little beyond it
bound = st.integers(min_value=0, max_value=U)
span = st.tuples(bound, bound)
spans = st.lists(span, max_size=12)


def runs(model: set[int]) -> list[tuple[int, int]]:
    """Maximal half-open runs of a set of integers: what a RangeSet must hold."""
    out: list[tuple[int, int]] = []
    for x in sorted(model):
        if out and out[-1][1] == x:
            out[-1] = (out[-1][0], x + 1)
        else:
            out.append((x, x + 1))
    return out


def cover(start: int, end: int) -> set[int]:
    return set(range(start, end))


def assert_matches(rs: RangeSet, model: set[int]) -> None:
    expected = runs(model)
    assert list(rs) == expected
    assert rs.to_list() == [list(r) for r in expected]
    assert rs.total == len(model)
    assert len(rs) == len(expected)
    assert bool(rs) == bool(model)
    assert rs.first() == (expected[0] if expected else None)


class RangeSetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rs = RangeSet()
        self.model: set[int] = set()

    @rule(s=span)
    def add(self, s: tuple[int, int]) -> None:
        start, end = s
        new = cover(start, end) - self.model
        assert self.rs.add(start, end) == len(new)
        self.model |= new

    @rule(s=span)
    def remove(self, s: tuple[int, int]) -> None:
        start, end = s
        gone = cover(start, end) & self.model
        assert self.rs.remove(start, end) == len(gone)
        self.model -= gone

    @rule(
        limit=st.one_of(
            st.integers(min_value=1, max_value=6), st.integers(min_value=1, max_value=U + 4)
        )
    )
    def pop_front(self, limit: int) -> None:
        got = self.rs.pop_front(limit)
        expected_runs = runs(self.model)
        if not expected_runs:
            assert got is None
            return
        s, e = expected_runs[0]
        assert got == (s, min(e, s + limit))
        self.model -= cover(*got)

    @rule(s=span)
    def contains(self, s: tuple[int, int]) -> None:
        start, end = s
        assert self.rs.contains(start, end) == (cover(start, end) <= self.model)

    @rule(s=span)
    def overlaps(self, s: tuple[int, int]) -> None:
        start, end = s
        if start < end:
            assert self.rs.overlaps(start, end) == bool(cover(start, end) & self.model)

    @rule(s=span)
    def gaps(self, s: tuple[int, int]) -> None:
        start, end = s
        assert self.rs.gaps(start, end) == runs(cover(start, end) - self.model)

    @rule(s=span)
    def intersection(self, s: tuple[int, int]) -> None:
        start, end = s
        assert self.rs.intersection(start, end) == runs(cover(start, end) & self.model)

    @rule(origin=bound)
    def prefix_end(self, origin: int) -> None:
        end = origin
        while end in self.model:
            end += 1
        assert self.rs.prefix_end(origin) == end

    @rule()
    def copy_is_independent(self) -> None:
        other = self.rs.copy()
        assert other == self.rs
        other.add(U + 10, U + 20)
        assert other != self.rs
        assert_matches(self.rs, self.model)

    @invariant()
    def matches_model(self) -> None:
        assert_matches(self.rs, self.model)


TestRangeSetStateful = RangeSetMachine.TestCase
TestRangeSetStateful.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


@given(spans)
def test_constructor_equals_successive_adds(items: list[tuple[int, int]]) -> None:
    built = RangeSet(items)
    added = RangeSet()
    model: set[int] = set()
    for s, e in items:
        added.add(s, e)
        model |= cover(s, e)
    assert built == added
    assert_matches(built, model)


@given(spans, st.randoms(use_true_random=False))
def test_insertion_order_does_not_matter(items: list[tuple[int, int]], rnd: random.Random) -> None:
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert RangeSet(items) == RangeSet(shuffled)


@given(spans, bound, bound)
def test_gaps_and_intersection_partition_the_query(
    items: list[tuple[int, int]], a: int, b: int
) -> None:
    rs = RangeSet(items)
    pieces = sorted(rs.gaps(a, b) + rs.intersection(a, b))
    covered = [x for s, e in pieces for x in range(s, e)]
    assert covered == list(range(a, b))  # disjoint, in order, exactly [a, b)


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ([(0, 5), (5, 10)], [(0, 10)]),  # touching ranges merge (in order)
        ([(5, 10), (0, 5)], [(0, 10)]),  # ... and out of order
        ([(0, 2), (4, 6), (2, 4)], [(0, 6)]),  # a filler joins both neighbours
        ([(0, 2), (3, 5)], [(0, 2), (3, 5)]),  # a one-byte hole keeps them apart
        ([(10, 20), (0, 30)], [(0, 30)]),  # a superset swallows
        ([(0, 1), (2, 3), (4, 5), (1, 4)], [(0, 5)]),  # bridges several
        ([(3, 3), (7, 2)], []),  # empty and inverted ranges add nothing
    ],
)
def test_merging(ranges: list[tuple[int, int]], expected: list[tuple[int, int]]) -> None:
    assert list(RangeSet(ranges)) == expected


def test_remove_splits_a_range() -> None:
    rs = RangeSet([(0, 100)])
    assert rs.remove(40, 60) == 20
    assert list(rs) == [(0, 40), (60, 100)]
    assert rs.total == 80
    assert rs.remove(200, 300) == 0
    assert rs.remove(30, 30) == 0


def test_pop_front_takes_from_the_first_range_only() -> None:
    rs = RangeSet([(10, 15), (20, 30)])
    assert rs.pop_front(3) == (10, 13)
    assert rs.pop_front(100) == (13, 15)  # never crosses into the next range
    assert rs.pop_front(100) == (20, 30)
    assert rs.pop_front(1) is None
    assert rs.total == 0


def test_pop_front_of_exactly_the_first_range_removes_it() -> None:
    rs = RangeSet([(0, 8), (10, 12)])
    assert rs.pop_front(8) == (0, 8)
    assert list(rs) == [(10, 12)]  # no empty range left behind
    assert rs.pop_front(2) == (10, 12)
    assert not rs and len(rs) == 0


def test_large_offsets() -> None:
    big = 1 << 60
    rs = RangeSet([(big, big + 10), (0, 1)])
    assert rs.total == 11
    assert rs.prefix_end(big) == big + 10
    assert rs.gaps(0, big + 20) == [(1, big), (big + 10, big + 20)]
