"""The snapshot store (common/snapshot): SqliteSnapshot and RedisSnapshot against the
SnapshotStore contract — round trips, atomicity, tree operations among similarly named siblings,
ordering, meta, reset — and a state machine against a dict model, for both stores (the Redis
ones against a private redis-server); the pair lock, damaged and foreign files for SQLite (Redis:
tests/test_snapshot_redis.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from common.snapshot import (
    SIDES,
    Entry,
    RedisSnapshot,
    SnapshotError,
    SnapshotStore,
    SqliteSnapshot,
    default_snapshot_path,
    is_within,
    path_sort_key,
    redis_plan,
)
from common.snapshot import redis as snapshot_redis
from common.snapshot import sqlite as snapshot_sqlite

sys.path.insert(0, os.path.dirname(__file__))
from redis_server import redis_server

U64 = (1 << 64) - 1
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


def entry(path: str, kind: str = "file", size: int = 1, **kw: object) -> Entry:
    fields: dict[str, object] = {"mtime_ns": 10, "mode": 0o644, "inode": 7, "dev": 3}
    fields.update(kw)
    return Entry(path, kind, size, **fields)  # type: ignore[arg-type]


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "pair.db")


_REDIS: dict[str, redis.Redis] = {}
"""The module's redis-server client while the ``redis_client`` fixture is up (the state machine
cannot take fixtures)."""


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    with redis_server() as srv:
        _REDIS["client"] = client = redis.Redis.from_url(srv.url)
        yield client
        client.close()
        del _REDIS["client"]


@contextlib.contextmanager
def small_buckets() -> Iterator[None]:
    """Redis buckets of 4 entries, so that a few dozen entries split and merge them."""
    with (
        mock.patch.object(redis_plan, "BUCKET_MAX", 4),
        mock.patch.object(redis_plan, "BUCKET_FILL", 3),
    ):
        yield


def new_pair() -> str:
    return f"t{uuid.uuid4().hex[:12]}"  # one redis-server per module: a pair per test


class StoreKind:
    """Opens the same pair of one store kind again and again (``rebuild=`` passed through)."""

    def __init__(self, open_: Callable[..., SnapshotStore], module: ModuleType) -> None:
        self.open, self.module = open_, module


@pytest.fixture(params=["sqlite", "redis"])
def kind(request: pytest.FixtureRequest, db_path: str) -> StoreKind:
    if request.param == "sqlite":
        return StoreKind(lambda **kw: SqliteSnapshot(db_path, "pair", **kw), snapshot_sqlite)
    client, pair = request.getfixturevalue("redis_client"), new_pair()
    return StoreKind(lambda **kw: RedisSnapshot(client, pair, **kw), snapshot_redis)


@pytest.fixture
def store(kind: StoreKind) -> Iterator[SnapshotStore]:
    s = kind.open()
    yield s
    s.close()


def paths_of(store: SnapshotStore, side: str = "local", prefix: str = "") -> list[str]:
    return [e.path for e in store.iter_side(side, prefix)]


# Similarly named siblings: '!' and '.' sort before '/' in ASCII, '0' right after it.
SIBLINGS = [
    "a",
    "a/b",
    "a/b/c",
    "a/b/c/d",
    "a/b!",
    "a/b.c",
    "a/b0",
    "a/b2",
    "a/b2/x",
    "a/c",
    "ab",
    "a!",
]


def seed_siblings(store: SnapshotStore, side: str = "local") -> None:
    store.apply(
        side,
        upserts=[
            entry(p, "dir" if any(q.startswith(p + "/") for q in SIBLINGS) else "file", size=i)
            for i, p in enumerate(SIBLINGS)
        ],
    )


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


# -- locking, damage, foreign files --------------------------------------------------------------


def test_a_second_store_on_the_same_pair_is_refused(db_path: str) -> None:
    first = SqliteSnapshot(db_path, "pair")
    try:
        with pytest.raises(SnapshotError) as info:
            SqliteSnapshot(db_path, "pair")
        message = str(info.value)
        assert "another sync of this pair is running" in message
        assert db_path + ".lock" in message and f"pid {os.getpid()}" in message
        first.apply("local", [entry("still-works")])
    finally:
        first.close()
    with SqliteSnapshot(db_path, "pair") as second:  # released on close
        assert second.get("local", "still-works") is not None


def test_garbage_file_is_reported_and_rebuild_recovers(db_path: str) -> None:
    Path(db_path).write_bytes(os.urandom(8192))
    with pytest.raises(SnapshotError) as info:
        SqliteSnapshot(db_path, "pair")
    assert db_path in str(info.value) and "corrupt" in str(info.value)
    assert "-x" in str(info.value)
    # The failed open released the lock, and -x (rebuild) starts afresh.
    with SqliteSnapshot(db_path, "pair", rebuild=True) as store:
        assert store.load("local") == {}
        store.apply("local", [entry("a")])
        assert store.count("local") == 1


def test_damaged_pages_are_reported_as_corrupt(db_path: str) -> None:
    with SqliteSnapshot(db_path, "pair") as store:
        store.apply("local", [entry(f"dir/{i:05d}", checksum="cd" * 32) for i in range(3000)])
    data = bytearray(Path(db_path).read_bytes())
    page = 4096
    for offset in range(2 * page, len(data), page):  # keep the header and the schema page
        data[offset : offset + page] = b"\xa5" * page
    Path(db_path).write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match=r"corrupt.*-x"), SqliteSnapshot(db_path, "pair") as s:
        s.load("local")


def test_foreign_sqlite_database_is_refused_untouched(db_path: str) -> None:
    with sqlite3.connect(db_path) as other:
        other.execute("CREATE TABLE photos (name TEXT)")
    before = Path(db_path).read_bytes()
    with pytest.raises(SnapshotError, match="not a Surge snapshot"):
        SqliteSnapshot(db_path)
    assert Path(db_path).read_bytes() == before
    assert not Path(db_path + "-wal").exists()


def test_newer_schema_is_refused(db_path: str) -> None:
    SqliteSnapshot(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("UPDATE store_info SET value = '99' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(SnapshotError, match=r"newer Surge \(schema 99, this one reads up to 1\)"):
        SqliteSnapshot(db_path)


def test_a_database_of_another_pair_is_refused(db_path: str) -> None:
    SqliteSnapshot(db_path, "photos").close()
    with pytest.raises(SnapshotError, match=r"belongs to sync pair 'photos', not 'music'"):
        SqliteSnapshot(db_path, "music")
    SqliteSnapshot(db_path).close()  # no pair given: no check
    SqliteSnapshot(db_path, "photos").close()
    with SqliteSnapshot(db_path, "music", rebuild=True):
        pass
    SqliteSnapshot(db_path, "music").close()


def test_a_closed_store_says_so(kind: StoreKind) -> None:
    store = kind.open()
    store.close()
    store.close()  # idempotent
    with pytest.raises(SnapshotError, match="closed"):
        store.load("local")


def test_default_snapshot_path(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    path = default_snapshot_path(str(root), "nightly", None)
    assert path == str(root / ".surge" / "nightly.db")
    assert (root / ".surge").is_dir()
    elsewhere = default_snapshot_path(str(root), "nightly", str(tmp_path / "db" / "local"))
    assert elsewhere == str(tmp_path / "db" / "local" / "nightly.db")
    assert (tmp_path / "db" / "local").is_dir()
    for bad in ("", "a/b", "..", "x\x00"):
        with pytest.raises(ValueError):
            default_snapshot_path(str(root), bad, None)


# -- scale ---------------------------------------------------------------------------------------


def test_100k_entries_apply_and_load(db_path: str) -> None:
    """SQLite only: bench/redis_memory.py loads 100k into Redis, tests/test_snapshot_redis.py
    20k with the real bucket sizes."""
    with SqliteSnapshot(db_path, "pair") as store:
        _load_100k(store)


def _load_100k(store: SnapshotStore) -> None:
    entries = [
        Entry(f"d{i // 1000}/s{i // 100 % 10}/f{i}.dat", "file", i, i * 1000, 0o644, i + 1, 2049,
              checksum=f"{i:064x}")
        for i in range(100_000)
    ]  # fmt: skip
    t0 = time.perf_counter()
    store.apply("local", entries)
    t1 = time.perf_counter()
    loaded = store.load("local")
    t2 = time.perf_counter()
    subtree = paths_of(store, prefix="d42")
    t3 = time.perf_counter()
    print(
        f"\nsnapshot 100k: apply {t1 - t0:.2f} s, load {t2 - t1:.2f} s, iter one tree of"
        f" {len(subtree)} in {(t3 - t2) * 1000:.1f} ms, {store.size_bytes() / 1e6:.1f} MB"
    )
    assert len(loaded) == 100_000 and loaded[entries[-1].path] == entries[-1]
    assert len(subtree) == 1000
    assert t2 - t0 < 10


# -- model-based ---------------------------------------------------------------------------------

# Few names, so that operations keep meeting existing paths and their similarly named siblings.
MODEL_NAMES = ["a", "a!", "a0", "b", "\x01", "\udcfe", "é"]
model_paths = st.lists(st.sampled_from(MODEL_NAMES), min_size=1, max_size=3).map("/".join)
model_entries = st.builds(
    Entry,
    path=model_paths,
    kind=st.sampled_from(["file", "dir", "link"]),
    size=st.integers(0, 100),
    mtime_ns=st.integers(-5, 5),
    mode=st.just(0o644),
    inode=st.sampled_from([0, 1, U64]),
    dev=st.just(1),
    checksum=st.none() | st.just("ff"),
)


SEED_PATHS = [*MODEL_NAMES, *(f"{a}/{b}" for a in MODEL_NAMES for b in MODEL_NAMES)]


class _Interrupted(Exception):
    pass


class SnapshotMachine(RuleBasedStateMachine):
    """apply / rename_tree / reset / reopen against {side: {path: Entry}}."""

    module: ModuleType = snapshot_sqlite

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, dict[str, Entry]] = {side: {} for side in SIDES}
        self.store: SnapshotStore | None = None

    def open_store(self) -> SnapshotStore:
        return SqliteSnapshot(self.path, "model")

    @initialize(seed=st.sets(st.sampled_from(SEED_PATHS), min_size=len(SEED_PATHS) // 2))
    def open(self, seed: set[str]) -> None:
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="snapshot-model-")
        self.path = os.path.join(self.dir, "m.db")
        self.store = self.open_store()
        for side in SIDES:  # start from a populated tree: every operation has neighbours
            self.model[side] = {p: entry(p, size=len(p)) for p in seed}
            self.store.apply(side, self.model[side].values())

    def some_path(self, data: st.DataObject, side: str) -> str:
        """A path at or above a recorded one most of the time, so operations hit something."""
        known = sorted({p.rsplit("/", n)[0] for p in self.model[side] for n in range(3)})
        if not known:
            return data.draw(model_paths)
        return data.draw(st.sampled_from(known) | model_paths)

    @rule(
        side=st.sampled_from(SIDES),
        upserts=st.lists(model_entries, max_size=10),
        n_deletes=st.integers(0, 3),
        n_trees=st.integers(0, 2),
        fail=st.integers(0, 4).map(lambda n: n == 0),
        data=st.data(),
    )
    def apply(
        self,
        side: str,
        upserts: list[Entry],
        n_deletes: int,
        n_trees: int,
        fail: bool,
        data: st.DataObject,
    ) -> None:
        assert self.store is not None
        deletes = [self.some_path(data, side) for _ in range(n_deletes)]
        trees = [self.some_path(data, side) for _ in range(n_trees)]

        def stream() -> Iterator[Entry]:
            yield from upserts
            if fail:
                raise _Interrupted

        try:
            self.store.apply(side, stream(), deletes=deletes, delete_trees=trees)
        except _Interrupted:
            return  # nothing applied: the model stays as it is
        m = self.model[side]
        for top in trees:
            for p in [p for p in m if is_within(p, top)]:
                del m[p]
        for p in deletes:
            m.pop(p, None)
        for e in upserts:
            m[e.path] = e

    @rule(side=st.sampled_from(SIDES), data=st.data())
    def rename(self, side: str, data: st.DataObject) -> None:
        assert self.store is not None
        old, new = self.some_path(data, side), self.some_path(data, side)
        if is_within(old, new) or is_within(new, old):
            with pytest.raises(ValueError):
                self.store.rename_tree(side, old, new)
            return
        self.store.rename_tree(side, old, new)
        m = self.model[side]
        moving = {p: e for p, e in m.items() if is_within(p, old)}
        if moving:
            for p in [p for p in m if is_within(p, new) or p in moving]:
                del m[p]
            for p, e in moving.items():
                target = new + p[len(old) :]
                m[target] = dataclasses.replace(e, path=target)

    @rule()
    def reopen(self) -> None:
        assert self.store is not None
        self.store.close()
        self.store = self.open_store()

    @rule(dice=st.integers(0, 5))
    def reset(self, dice: int) -> None:
        assert self.store is not None
        if dice:  # -x now and then only, so that the model can grow
            return
        self.store.reset()
        self.model = {side: {} for side in SIDES}

    @rule(side=st.sampled_from(SIDES), data=st.data())
    def listing(self, side: str, data: st.DataObject) -> None:
        assert self.store is not None
        prefix = self.some_path(data, side)
        expected = sorted((p for p in self.model[side] if is_within(p, prefix)), key=path_sort_key)
        with mock.patch.object(self.module, "ITER_PAGE_ROWS", 2):
            assert paths_of(self.store, side, prefix) == expected

    @invariant()
    def same_as_model(self) -> None:
        if self.store is None:
            return
        for side in SIDES:
            assert self.store.load(side) == self.model[side]
            assert self.store.count(side) == len(self.model[side])
            assert paths_of(self.store, side) == sorted(self.model[side], key=path_sort_key)

    def teardown(self) -> None:
        if self.store is not None:
            self.store.close()
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)


TestSnapshotModel = SnapshotMachine.TestCase
TestSnapshotModel.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


class RedisSnapshotMachine(SnapshotMachine):
    """The same against RedisSnapshot, with 4-entry buckets so that they split and merge."""

    module = snapshot_redis

    def __init__(self) -> None:
        super().__init__()
        self.pair = new_pair()
        self.buckets = small_buckets()
        self.buckets.__enter__()

    def open_store(self) -> SnapshotStore:
        return RedisSnapshot(_REDIS["client"], self.pair)

    def teardown(self) -> None:
        super().teardown()
        self.buckets.__exit__(None, None, None)


TestRedisSnapshotModel = pytest.mark.usefixtures("redis_client")(RedisSnapshotMachine.TestCase)
TestRedisSnapshotModel.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
