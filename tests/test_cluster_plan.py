"""Cluster planning: every byte of every file is covered exactly once, no batch breaks its
limits, size classes go to their queues, and tasks survive their JSON round trip."""

from __future__ import annotations

import json
from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from common.cluster.schema import QUEUE_LARGE, QUEUE_SMALL, TaskSpec
from coordinator.cluster.plan import (
    ALIGN,
    MAX_PARTS,
    PlanLimits,
    files_of,
    plan_tasks,
    range_layout,
)
from coordinator.sync.options import parse_sync_args

MiB = 1 << 20

sizes = st.one_of(st.integers(0, 4096), st.integers(0, 300 * MiB), st.integers(0, 1 << 42))
file_lists = st.lists(st.tuples(sizes, st.integers(0, 2**62)), max_size=60).map(
    lambda xs: [(f"d{i % 7}/f{i}", size, mtime) for i, (size, mtime) in enumerate(xs)]
)
limits = st.builds(
    PlanLimits,
    batch_files=st.integers(1, 600),
    batch_bytes=st.integers(1, 128 * MiB),
    threshold=st.sampled_from([0, 1, 1000, ALIGN, 5 * MiB, 1 << 30]),
    rate_bps=st.sampled_from([1e5, 10e6, 200e6, 10e9]),
    task_seconds=st.sampled_from([60.0, 1800.0]),
    small_bound=st.sampled_from([None, 0, 128, MiB]),
)


@settings(max_examples=150, deadline=None)
@given(file_lists, limits)
def test_every_byte_of_every_file_is_covered_exactly_once(
    files: list[tuple[str, int, int]], lim: PlanLimits
) -> None:
    tasks = plan_tasks("j1", files, lim)
    carried = files_of(tasks)
    assert set(carried) == {p for p, _, _ in files}
    assert [t.task for t in tasks] == [format(i, "x") for i in range(len(tasks))]
    for path, size, mtime in files:
        mine = carried[path]
        if lim.threshold and size >= lim.threshold:
            rngs = sorted((t.range for t in mine if t.range is not None), key=lambda r: r.index)
            assert len(rngs) == len(mine) and 1 <= len(rngs) <= MAX_PARTS
            assert [r.index for r in rngs] == list(range(len(rngs)))
            assert all(
                r.count == len(rngs) and r.size == size and r.mtime_ns == mtime for r in rngs
            )
            pos = 0
            for r in rngs:  # contiguous, no overlap, no gap, nothing past the end
                assert r.start == pos and r.start % ALIGN == 0 and (r.length > 0 or size == 0)
                pos += r.length
            assert pos == size
            assert all(t.queue == QUEUE_LARGE and t.kind == "range" for t in mine)
        else:
            assert len(mine) == 1 and mine[0].kind == "batch"
            assert [f.size for f in mine[0].files if f.path == path] == [size]
            bound = lim.batch_bytes if lim.small_bound is None else lim.small_bound
            assert mine[0].queue == (QUEUE_SMALL if size <= bound else QUEUE_LARGE)


@settings(max_examples=150, deadline=None)
@given(file_lists, limits)
def test_no_batch_is_over_its_limits(files: list[tuple[str, int, int]], lim: PlanLimits) -> None:
    for t in plan_tasks("j1", files, lim):
        if t.kind == "batch":
            assert 1 <= len(t.files) <= lim.batch_files
            assert len(t.files) == 1 or sum(f.size for f in t.files) <= lim.batch_bytes
            assert TaskSpec.from_json(t.to_json()) == t
            # the hand-written JSON is exactly what dataclasses.asdict gave (older workers read it)
            assert t.to_json() == json.dumps(asdict(t), separators=(",", ":"))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 1 << 44), limits)
def test_ranges_respect_the_time_cap_unless_the_part_limit_forbids(
    size: int, lim: PlanLimits
) -> None:
    layout = range_layout(size, lim)
    longest = max(length for _, length in layout)

    def aligned(n: int) -> int:
        return -(-n // ALIGN) * ALIGN

    assert len(layout) <= MAX_PARTS
    # Within the time cap, or as short as 128 parts allow (the far end's limit wins).
    assert longest <= max(aligned(lim.range_time_cap), aligned(-(-size // MAX_PARTS)))


def test_a_file_at_the_threshold_is_split_and_one_below_is_not() -> None:
    lim = PlanLimits(threshold=4 * MiB)
    tasks = plan_tasks("j", [("a", 4 * MiB, 1), ("b", 4 * MiB - 1, 1), ("c", 10 * MiB, 1)], lim)
    kinds = {p: [t.kind for t in ts] for p, ts in files_of(tasks).items()}
    assert kinds == {"a": ["range", "range"], "b": ["batch"], "c": ["range"] * 3}


def test_small_files_are_batched_by_count_and_bytes() -> None:
    lim = PlanLimits(batch_files=500, batch_bytes=64 * MiB)
    many = [(f"f{i}", 10, 0) for i in range(1200)]
    assert [len(t.files) for t in plan_tasks("j", many, lim)] == [500, 500, 200]
    big = [(f"f{i}", 30 * MiB, 0) for i in range(5)]
    assert [len(t.files) for t in plan_tasks("j", big, lim)] == [2, 2, 1]


def test_transfer_threads_size_classes_map_to_queues() -> None:
    opts = parse_sync_args(
        ["-N", "p", "-d", "/a", "-r", "/b", "--transfer-threads=2:128", "--transfer-threads=6"]
    )
    lim = PlanLimits.from_options(opts)
    assert lim.small_bound == 128
    tasks = plan_tasks("j", [("tiny", 100, 0), ("mid", 5000, 0)], lim)
    assert {t.files[0].path: t.queue for t in tasks} == {"tiny": QUEUE_SMALL, "mid": QUEUE_LARGE}


def test_twenty_thousand_small_files_make_forty_batches() -> None:
    files = [(f"d{i // 1000}/f{i}", 4096, 0) for i in range(20_000)]
    tasks = plan_tasks("j", files, PlanLimits())
    assert sum(len(t.files) for t in tasks) == 20_000 and len(tasks) == 40
