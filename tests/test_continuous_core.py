"""The change queue of continuous sync with a fake clock: cooloff, coalescing, linked renames,
--cooloff-max, --pending-max, --delete-delay, sharing retries, forced stats; and the scan
differ and rename finder it is fed by and feeds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.snapshot import Entry
from coordinator.continuous.core import ChangeQueue, QueueConfig
from coordinator.continuous.scope import find_renames, unannounced
from coordinator.sync import scan
from workers import watch
from workers.watch import diff_signatures


def paths(batch: list) -> list[str]:
    return sorted(c.path for c in batch)


def test_cooloff_waits_for_the_path_to_be_quiet() -> None:
    q = ChangeQueue(QueueConfig(cooloff=3))
    q.note("local", "f", 0.0)
    q.note("local", "f", 2.0)  # still being written
    assert q.pop_due(4.9).ready == []
    assert q.next_deadline() == 5.0
    assert paths(q.pop_due(5.0).ready) == ["f"]
    assert len(q) == 0 and q.next_deadline() is None


def test_cooloff_zero_is_immediate() -> None:
    q = ChangeQueue(QueueConfig(cooloff=0))
    q.note("local", "f", 10.0)
    assert paths(q.pop_due(10.0).ready) == ["f"]


def test_a_file_written_for_a_long_time_is_sent_once() -> None:
    q = ChangeQueue(QueueConfig(cooloff=1))
    sent = []
    for tick in range(100):  # an append every 0.5 s for 50 s
        now = tick * 0.5
        q.note("local", "log", now)
        sent += q.pop_due(now).ready
    assert sent == []
    assert paths(q.pop_due(49.5 + 1).ready) == ["log"]


def test_same_path_on_both_sides_are_two_changes() -> None:
    q = ChangeQueue(QueueConfig(cooloff=0))
    q.note("local", "f", 0)
    q.note("remote", "f", 0)
    assert sorted(c.side for c in q.pop_due(0).ready) == ["local", "remote"]


def test_a_tree_change_absorbs_and_covers_the_paths_below() -> None:
    q = ChangeQueue(QueueConfig(cooloff=2))
    q.note("local", "d/x", 0.0)
    q.note("local", "d/y/z", 0.5)
    q.note("local", "e", 0.5)
    q.note("local", "d", 1.0, tree=True)
    assert len(q) == 2
    for i in range(1000):  # the contents of a new directory, one event each
        assert q.note("local", f"d/new/{i}", 1.5)
    assert len(q) == 2 and q.coalesced >= 1000
    batch = q.pop_due(3.5)
    assert paths(batch.ready) == ["d", "e"]
    d = next(c for c in batch.ready if c.path == "d")
    assert d.tree and d.first == 0.0  # the lag counts from the oldest change it absorbed


def test_a_deletion_then_a_recreation_is_not_a_deletion() -> None:
    q = ChangeQueue(QueueConfig(cooloff=0))
    q.note("local", "f", 0, gone=True)
    q.note("local", "f", 0)
    assert [c.gone for c in q.pop_due(0).ready] == [False]


def test_both_ends_of_a_rename_are_synced_together() -> None:
    q = ChangeQueue(QueueConfig(cooloff=3))
    q.note_move("local", "old", "new", 0.0, tree=True)
    q.note("local", "new/inner", 2.0)  # a write inside the renamed directory
    assert q.pop_due(3.0).ready == []  # "old" alone must not go first (it would be a delete)
    assert paths(q.pop_due(5.0).ready) == ["new", "old"]


def test_rename_into_a_pending_tree_keeps_the_link() -> None:
    q = ChangeQueue(QueueConfig(cooloff=1))
    q.note_move("local", "a/f", "b/f", 0.0)
    q.note("local", "b", 0.5, tree=True)  # absorbs b/f, inherits its link
    q.note("local", "b/g", 0.8)
    assert q.pop_due(1.5).ready == []
    assert paths(q.pop_due(1.8).ready) == ["a/f", "b"]


def test_cooloff_max_gives_up_on_a_file_that_never_stops_changing() -> None:
    q = ChangeQueue(QueueConfig(cooloff=3, cooloff_max=10))
    for tick in range(11):
        q.note("local", "busy", float(tick))
    q.note("local", "calm", 5.0)
    assert q.next_deadline() == 8.0
    batch = q.pop_due(10.0)
    assert paths(batch.expired) == ["busy"] and paths(batch.ready) == ["calm"]
    assert len(q) == 1  # still queued: synchronized once it settles


def test_pending_max_drops_and_flags_an_overflow() -> None:
    q = ChangeQueue(QueueConfig(cooloff=1, pending_max=3))
    assert all(q.note("local", p, 0) for p in "abc")
    assert q.note("local", "a", 0.5)  # already pending: not a new entry
    assert not q.note("local", "d", 0.5)
    assert len(q) == 3 and q.dropped == 1
    assert q.take_overflow() and not q.take_overflow()


def test_delete_delay_holds_deletions_until_transfers_are_done() -> None:
    q = ChangeQueue(QueueConfig(cooloff=1, delete_delay=True))
    q.note("local", "gone", 0.0, gone=True)
    q.note("local", "big", 0.0)
    q.note("local", "big", 3.0)  # still being written
    assert paths(q.pop_due(1.5).ready) == []
    assert q.next_deadline() == 4.0  # no busy wait on the held deletion
    assert paths(q.pop_due(4.0).ready) == ["big", "gone"]


def test_without_delete_delay_deletions_go_at_once() -> None:
    q = ChangeQueue(QueueConfig(cooloff=1))
    q.note("local", "gone", 0.0, gone=True)
    q.note("local", "big", 3.0)
    assert paths(q.pop_due(1.5).ready) == ["gone"]


def test_sharing_retries_are_bounded() -> None:
    q = ChangeQueue(QueueConfig(cooloff=2, sharing_retry_max=2))
    q.note("local", "f", 0.0)
    (change,) = q.pop_due(2.0).ready
    for attempt in range(2):
        assert q.retry(change, 10.0 * attempt)
        assert q.pop_due(10.0 * attempt + 1.9).ready == []  # waits a cooloff between tries
        (change,) = q.pop_due(10.0 * attempt + 2.0).ready
        assert change.retries == attempt + 1 and change.first == 0.0
    assert not q.retry(change, 30.0)


def test_forced_stat_restarts_the_cooloff_on_a_silent_write() -> None:
    q = ChangeQueue(QueueConfig(cooloff=2))
    q.note("local", "f", 0.0)
    (change,) = q.pending()
    q.observe(change, (10, 1), 1.0)
    q.observe(change, (10, 1), 1.5)  # unchanged: no effect
    assert q.next_deadline() == 2.0
    q.observe(change, (20, 2), 1.8)  # grew without a notification
    assert q.pop_due(2.0).ready == [] and q.next_deadline() == 3.8


def test_statistics_lag_and_pending() -> None:
    q = ChangeQueue(QueueConfig(cooloff=5))
    assert q.statistics(1.0)["lag_seconds"] == 0.0
    q.note("local", "a", 1.0)
    q.note("local", "b", 3.0)
    stats = q.statistics(4.0)
    assert stats["pending"] == 2 and stats["lag_seconds"] == 3.0


@given(st.lists(st.tuples(st.sampled_from(["a", "a/b", "a/b/c", "d", "d/e"]), st.booleans(), st.floats(0, 10)),
                max_size=40))  # fmt: skip
def test_every_change_comes_out_once_and_covered(events: list[tuple[str, bool, float]]) -> None:
    """Whatever the order, every change comes out after it was noted (itself or under a tree
    change that came out later), and nothing stays pending."""
    q = ChangeQueue(QueueConfig(cooloff=1))
    out = []
    for path, tree, now in sorted(events, key=lambda e: e[2]):
        q.note("local", path, now, tree=tree)
        out += q.pop_due(now).ready
    out += q.pop_due(100.0).ready
    assert len(q) == 0
    for path, _, now in events:
        assert any(
            c.last >= now and (c.path == path or (c.tree and path.startswith(c.path + "/")))
            for c in out
        )


# -- scans compared ------------------------------------------------------------------------------
def test_diff_signatures_reports_files_trees_and_deletions() -> None:
    before = {
        "a": ("file", 1, 1, 10),
        "d": ("dir", 0, 0, 20),
        "d/x": ("file", 1, 1, 21),
        "g": ("file", 1, 1, 30),
    }
    after = {"a": ("file", 2, 2, 10), "d": ("dir", 0, 0, 20), "d/x": ("file", 1, 1, 21), "n": ("dir", 0, 0, 40),
             "n/y": ("file", 1, 1, 41)}  # fmt: skip
    assert diff_signatures(before, after) == [("change", "a", None, False), ("change", "n", None, True),
                                              ("gone", "g", None, False)]  # fmt: skip
    assert diff_signatures(after, after) == []


# -- renames found for a batch ------------------------------------------------------------------
def entry(path: str, kind: str = "file", inode: int = 1, mtime: int = 5) -> Entry:
    return Entry(path, kind, 3 if kind == "file" else 0, mtime, 0o644, inode, 1)


def test_find_renames_directory_and_file() -> None:
    snap = {"d": entry("d", "dir", 7), "d/f": entry("d/f", inode=8), "x": entry("x", inode=9)}
    now = {"e": entry("e", "dir", 7), "e/f": entry("e/f", inode=8), "y": entry("y", inode=9)}
    actions = find_renames(now, snap, None, snap, True)
    assert [(a.old_path, a.path) for a in actions] == [("d", "e"), ("x", "y")]


def test_find_renames_not_when_the_content_changed_or_the_other_side_moved_on() -> None:
    snap = {"x": entry("x", inode=9)}
    assert find_renames({"y": entry("y", inode=9, mtime=6)}, snap, None, snap, True) == []
    other_now = {"x": entry("x", inode=50, mtime=99)}  # the far copy changed since the sync
    assert find_renames({"y": entry("y", inode=9)}, snap, other_now, snap, True) == []
    assert (
        find_renames({"y": entry("y", inode=9)}, snap, {"x": entry("x", inode=9)}, snap, True) != []
    )


def test_a_ready_path_takes_along_the_other_side_and_its_rename_partner() -> None:
    """Our own copy echoes back on one side while the original is renamed on the other: both
    must be decided together, or the rename becomes a delete and a resend."""
    q = ChangeQueue(QueueConfig(cooloff=1))
    q.note("local", "sub", 0.0, tree=True)  # the echo of our mkdir
    q.note_move("remote", "sub", "sub2", 0.5, tree=True)
    q.note("local", "unrelated", 0.5)
    batch = q.pop_due(1.0)
    assert sorted((c.side, c.path) for c in batch.ready) == [
        ("local", "sub"),
        ("remote", "sub"),
        ("remote", "sub2"),
    ]
    assert [c.path for c in q.pending()] == ["unrelated"]


def test_the_watcher_skips_what_the_scanner_skips() -> None:
    assert watch.SKIP_SUFFIXES == scan.SKIP_SUFFIXES
    assert all(watch.skipped(f"d/x{suffix}") for suffix in scan.SKIP_SUFFIXES)
    assert watch.skipped(".surge/pair.db") and not watch.skipped("d/.surge")


def test_a_disappearance_no_event_announced_yet_counts_as_unchanged() -> None:
    """The far end's echo of our copy of `f` is synchronized while `f` is being renamed here:
    the rename's events are not in this batch, so `f` must not be deleted at the far end."""
    snap = {"f": entry("f", inode=9), "d": entry("d", "dir", 3), "d/x": entry("d/x", inode=4)}
    now: dict[str, Entry] = {}
    unannounced(now, snap, [])
    assert now == snap
    now = {}
    unannounced(now, snap, [("f", False), ("d", True)])  # announced: really gone
    assert now == {}
    now = {}
    unannounced(now, snap, [("d", False)])  # the directory itself, not what is below it
    assert set(now) == {"f", "d/x"}


def test_cooloff_max_keeps_the_change_queued_until_it_settles() -> None:
    """A path given up on is reported, not forgotten: written until just after --cooloff-max
    and then left alone, it is still synchronized once quiet (no further event will come); the
    rest of a given-up tree (a finished file beside a busy one) and the old end of a rename
    follow it."""
    q = ChangeQueue(QueueConfig(cooloff=3, cooloff_max=5))
    for tick in range(50):  # written from 0 to 4.9, then never again
        q.note("local", "busy", tick / 10)
    q.note("local", "new", 0.0, tree=True)
    q.note("local", "new/done", 0.1)
    q.note_move("local", "old", "moved", 0.0)
    for tick in range(50):
        q.note("local", "new/log", tick / 10)
        q.note("local", "moved", tick / 10)
    batch = q.pop_due(5.0)
    assert paths(batch.expired) == ["busy", "moved", "new", "old"] and batch.ready == []
    assert q.pop_due(7.0).ready == []
    assert paths(q.pop_due(7.9).ready) == ["busy", "moved", "new", "old"]
    assert len(q) == 0
