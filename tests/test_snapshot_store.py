"""The snapshot store (common/snapshot): SqliteSnapshot and RedisSnapshot against the
SnapshotStore contract — Entry validation, round trips, atomicity, tree operations among similarly
named siblings, ordering, meta and reset — for both stores."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.snapshot import (
    SIDES,
    Entry,
    SnapshotStore,
    is_within,
    path_sort_key,
)

sys.path.insert(0, os.path.dirname(__file__))
from snapshot_helpers import (
    I64_MAX,
    I64_MIN,
    SIBLINGS,
    U64,
    StoreKind,
    entry,
    paths_of,
    seed_siblings,
    small_buckets,
)

pytest_plugins = ["snapshot_helpers"]  # its fixtures


# -- Entry ---------------------------------------------------------------------------------------

full_entries = st.builds(
    Entry,
    path=st.lists(
        st.text(alphabet=st.sampled_from("ab.é !0\x01\udcfe\udc80"), min_size=1, max_size=4).filter(
            lambda s: s not in (".", "..")
        ),
        min_size=1,
        max_size=4,
    ).map("/".join),
    kind=st.sampled_from(["file", "dir", "link"]),
    size=st.integers(0, I64_MAX),
    mtime_ns=st.integers(I64_MIN, I64_MAX),
    mode=st.integers(0, 0o177777),
    inode=st.integers(0, U64),
    dev=st.integers(0, U64),
    nlink=st.integers(0, 1 << 32),
    checksum=st.none() | st.text("0123456789abcdef", min_size=1, max_size=128),
    target=st.none() | st.text(alphabet=st.characters(codec="utf-8") | st.just("\udcff")),
    rmtime_ns=st.integers(I64_MIN, I64_MAX),
    uid=st.integers(-1, (1 << 32) - 1),
    gid=st.integers(-1, (1 << 32) - 1),
    meta=st.none() | st.text(alphabet=st.characters(codec="utf-8")),
)


@pytest.mark.parametrize(
    "path", ["", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "./a", "a/..", "a\x00b"]
)
def test_entry_refuses_unclean_paths(path: str) -> None:
    with pytest.raises(ValueError, match="clean relative path"):
        entry(path)


@pytest.mark.parametrize("path", ["a", ".a", "a/.b", "a/..b", "a.b/c..", "...", "é/\udcfe"])
def test_entry_accepts_names_with_dots_and_undecodable_bytes(path: str) -> None:
    assert entry(path).path == path


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": "fifo"},
        {"size": -1},
        {"size": 1 << 63},
        {"inode": -1},
        {"inode": 1 << 64},
        {"dev": -1},
        {"mtime_ns": 1 << 63},
        {"uid": I64_MIN - 1},
    ],
)
def test_entry_refuses_values_the_store_cannot_keep(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(entry("a"), **changes)  # type: ignore[arg-type]


# -- round trips ---------------------------------------------------------------------------------


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(entries=st.lists(full_entries, min_size=1, max_size=20, unique_by=lambda e: e.path))
def test_every_field_round_trips(kind: StoreKind, entries: list[Entry]) -> None:
    with kind.open(rebuild=True) as store:
        store.apply("remote", entries)
        expected = {e.path: e for e in entries}
        assert store.load("remote") == expected
        assert [store.get("remote", e.path) for e in entries] == entries
        assert list(store.iter_side("remote")) == sorted(
            entries, key=lambda e: path_sort_key(e.path)
        )
        assert store.load("local") == {}
    with kind.open() as store:
        assert store.load("remote") == expected


def test_extreme_values_round_trip(store: SnapshotStore) -> None:
    e = Entry(
        "d/\udcfe\x01é", "link", I64_MAX, I64_MIN, 0o120777, U64, 1 << 63, 0,
        "F" * 128, "../t\udcff/é", I64_MAX, -1, (1 << 32) - 1, '{"xattr": {"user.k": "dg=="}}',
    )  # fmt: skip
    store.apply("local", [e])
    assert store.get("local", e.path) == e
    assert store.load("local") == {e.path: e}


def test_persistence_across_close_and_reopen(kind: StoreKind) -> None:
    with kind.open() as s:
        seed_siblings(s)
        s.apply("remote", [entry("r", inode=U64)])
        s.set_meta("checksum", "sha256")
        before = (s.load("local"), s.load("remote"))
    with kind.open() as s:
        assert (s.load("local"), s.load("remote")) == before
        assert s.get_meta("checksum") == "sha256"
        assert s.count("local") == len(SIBLINGS) and s.count("remote") == 1


def test_sides_are_separate(store: SnapshotStore) -> None:
    store.apply("local", [entry("x", size=1)])
    store.apply("remote", [entry("x", size=2), entry("y")])
    store.apply("remote", delete_trees=["x"])
    assert store.get("local", "x") == entry("x", size=1)
    assert store.load("remote") == {"y": entry("y")}
    with pytest.raises(ValueError, match="side"):
        store.load("middle")


def test_the_store_is_a_snapshot_store(store: SnapshotStore) -> None:
    assert isinstance(store, SnapshotStore)
    assert SIDES == ("local", "remote")


# -- apply ---------------------------------------------------------------------------------------


def test_apply_is_atomic_when_an_iterable_fails_midway(store: SnapshotStore) -> None:
    seed_siblings(store)
    store.set_meta("k", "v")
    before = store.load("local")

    def upserts() -> Iterator[Entry]:
        yield entry("new1")
        yield entry("a/b", size=999)
        raise RuntimeError("scanner died")

    with pytest.raises(RuntimeError, match="scanner died"):
        store.apply("local", upserts(), deletes=["ab"], delete_trees=["a/b2"])
    assert store.load("local") == before

    def deletes() -> Iterator[str]:
        yield "a/c"
        raise OSError("gone")

    with pytest.raises(OSError):
        store.apply("local", deletes=deletes(), delete_trees=["a"])
    with pytest.raises(TypeError):
        store.apply("local", upserts=[entry("new2"), ("not", "an", "entry")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        store.apply("local", upserts=[entry("new3")], deletes=["ok", "/absolute"])
    assert store.load("local") == before
    assert store.get_meta("k") == "v"
    # And the store still works after the rollbacks.
    store.apply("local", [entry("new4")])
    assert store.count("local") == len(before) + 1


def test_apply_order_trees_then_deletes_then_upserts(store: SnapshotStore) -> None:
    seed_siblings(store)
    # A directory replaced by a file of the same name in one transaction; last upsert wins.
    store.apply(
        "local",
        upserts=[entry("a/b", size=1), entry("a/b", size=2), entry("ab", size=5)],
        deletes=["ab", "a/c"],
        delete_trees=["a/b"],
    )
    got = store.load("local")
    assert got["a/b"] == entry("a/b", size=2)
    assert got["ab"] == entry("ab", size=5)
    assert sorted(got) == sorted(
        ["a", "a/b", "a/b!", "a/b.c", "a/b0", "a/b2", "a/b2/x", "ab", "a!"]
    )


def test_apply_refuses_a_single_str_as_a_list_of_paths(store: SnapshotStore) -> None:
    store.apply("local", [entry("a"), entry("b")])
    with pytest.raises(TypeError, match="single str"):
        store.apply("local", deletes="ab")
    assert store.count("local") == 2


@pytest.mark.parametrize(
    ("top", "gone"),
    [
        ("a/b", {"a/b", "a/b/c", "a/b/c/d"}),
        ("a/b/c", {"a/b/c", "a/b/c/d"}),
        ("a/b2", {"a/b2", "a/b2/x"}),
        ("a/b!", {"a/b!"}),
        ("a", {p for p in SIBLINGS if p == "a" or p.startswith("a/")}),
        ("a/zz", set()),
    ],
)
def test_delete_trees_removes_exactly_the_tree(
    store: SnapshotStore, top: str, gone: set[str]
) -> None:
    seed_siblings(store)
    seed_siblings(store, "remote")
    store.apply("local", delete_trees=[top])
    assert set(store.load("local")) == set(SIBLINGS) - gone
    assert set(store.load("remote")) == set(SIBLINGS)


# -- rename_tree ---------------------------------------------------------------------------------


def test_rename_tree_moves_exactly_the_tree(store: SnapshotStore) -> None:
    seed_siblings(store)
    before = store.load("local")
    store.rename_tree("local", "a/b", "x/y")
    after = store.load("local")
    moved = {"a/b": "x/y", "a/b/c": "x/y/c", "a/b/c/d": "x/y/c/d"}
    assert set(after) == (set(SIBLINGS) - set(moved)) | set(moved.values())
    for old, new in moved.items():
        assert after[new] == dataclasses.replace(before[old], path=new)
    for p in set(SIBLINGS) - set(moved):
        assert after[p] == before[p]
    assert paths_of(store, prefix="x/y") == ["x/y", "x/y/c", "x/y/c/d"]


def test_rename_tree_to_a_similar_name_and_back(store: SnapshotStore) -> None:
    seed_siblings(store)
    before = store.load("local")
    store.rename_tree("local", "a/b2", "a/b3")  # only b2 and below; b, b!, b.c, b0 stay
    assert "a/b3/x" in store.load("local") and "a/b2/x" not in store.load("local")
    store.rename_tree("local", "a/b3", "a/b2")
    assert store.load("local") == before


def test_rename_tree_replaces_the_target_tree(store: SnapshotStore) -> None:
    seed_siblings(store)
    store.rename_tree("local", "a/b", "a/b2")
    got = store.load("local")
    assert "a/b2/x" not in got  # the old target's contents are gone
    assert {p for p in got if is_within(p, "a/b2")} == {"a/b2", "a/b2/c", "a/b2/c/d"}
    assert got["a/b2"].size == SIBLINGS.index("a/b")


def test_rename_tree_of_a_file_and_of_nothing(store: SnapshotStore) -> None:
    seed_siblings(store)
    store.rename_tree("local", "a/b!", "z")
    assert store.get("local", "z") == entry("z", size=SIBLINGS.index("a/b!"))
    before = store.load("local")
    store.rename_tree("local", "missing", "a/b")  # nothing to move: nothing changes
    assert store.load("local") == before


@pytest.mark.parametrize(("old", "new"), [("a/b", "a/b/c"), ("a/b/c", "a/b"), ("a", "a")])
def test_rename_tree_refuses_nested_names(store: SnapshotStore, old: str, new: str) -> None:
    seed_siblings(store)
    before = store.load("local")
    with pytest.raises(ValueError, match="inside"):
        store.rename_tree("local", old, new)
    assert store.load("local") == before


def test_rename_tree_keeps_undecodable_names(store: SnapshotStore) -> None:
    store.apply("local", [entry("d\udcfe"), entry("d\udcfe/\udc80x"), entry("d\udcfe/é/\x01")])
    store.rename_tree("local", "d\udcfe", "é\udcff")
    # Levels compare as bytes: the undecodable 0x80 sorts before 'é' (0xC3 0xA9).
    assert paths_of(store) == ["é\udcff", "é\udcff/\udc80x", "é\udcff/é/\x01"]
    assert store.get("local", "é\udcff/\udc80x") == entry("é\udcff/\udc80x")


# -- listing order -------------------------------------------------------------------------------


def test_iter_side_is_in_walk_order_and_prefix_selects_a_tree(store: SnapshotStore) -> None:
    seed_siblings(store)
    assert paths_of(store) == [
        "a", "a/b", "a/b/c", "a/b/c/d", "a/b!", "a/b.c", "a/b0", "a/b2", "a/b2/x", "a/c", "a!", "ab",
    ]  # fmt: skip
    assert paths_of(store, prefix="a/b") == ["a/b", "a/b/c", "a/b/c/d"]
    assert paths_of(store, prefix="a/b2") == ["a/b2", "a/b2/x"]
    assert paths_of(store, prefix="a/b!") == ["a/b!"]
    assert paths_of(store, prefix="a/zz") == []
    assert paths_of(store, "remote") == []
    with pytest.raises(ValueError):
        paths_of(store, prefix="a/b/")


def test_iter_side_pages_and_tolerates_writes_between_pages(
    kind: StoreKind, store: SnapshotStore
) -> None:
    names = [f"d/{i:03d}" for i in range(50)]
    store.apply("local", [entry("d"), *(entry(n) for n in names), entry("e")])
    with mock.patch.object(kind.module, "ITER_PAGE_ROWS", 7), small_buckets():
        assert paths_of(store, prefix="d") == ["d", *names]
        seen = []
        for e in store.iter_side("local"):
            seen.append(e.path)
            if e.path == "d/010":  # a writer between pages: later pages see the new state
                store.apply("local", [entry("d/999")], deletes=["d/040"])
    assert seen == ["d", *[n for n in names if n != "d/040"], "d/999", "e"]


def test_path_sort_key_orders_levels_first() -> None:
    assert sorted(["a.b", "a/x", "a", "a0", "a!b", "a/x/y"], key=path_sort_key) == [
        "a", "a/x", "a/x/y", "a!b", "a.b", "a0",
    ]  # fmt: skip


# -- meta and reset ------------------------------------------------------------------------------


def test_meta_set_get_replace_remove(store: SnapshotStore) -> None:
    assert store.get_meta("checksum") is None
    store.set_meta("checksum", "sha256")
    store.set_meta("remote_host", "h1")
    store.set_meta("checksum", "md5")
    assert (store.get_meta("checksum"), store.get_meta("remote_host")) == ("md5", "h1")
    store.set_meta("checksum", None)
    assert store.get_meta("checksum") is None and store.get_meta("remote_host") == "h1"
    with pytest.raises(ValueError):
        store.set_meta("", "x")


def test_reset_forgets_records_and_meta_but_stays_usable(kind: StoreKind) -> None:
    with kind.open() as store:
        seed_siblings(store)
        seed_siblings(store, "remote")
        store.set_meta("checksum", "sha256")
        full = store.size_bytes()
        store.reset()
        assert store.load("local") == {} and store.load("remote") == {}
        assert store.count("local") == 0 and store.get_meta("checksum") is None
        assert 0 < store.size_bytes() <= full
        store.apply("local", [entry("fresh")])
    with kind.open() as store:  # the pair identity survives -x
        assert store.load("local") == {"fresh": entry("fresh")}


def test_count_and_size_bytes_grow(store: SnapshotStore) -> None:
    empty = store.size_bytes()
    assert empty > 0 and store.count("local") == 0
    store.apply("local", [entry(f"f{i}", checksum="ab" * 32) for i in range(2000)])
    assert store.count("local") == 2000
    assert store.size_bytes() > empty + 2000 * 32  # at least the binary digests
