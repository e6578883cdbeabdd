"""What only the Redis snapshot store (common/snapshot/redis.py) has: the pair lock in Redis
(refused, released, expiring after a kill, renewed), a lost lock and a Redis restart turning into
SnapshotError instead of a partial snapshot, the compact bucket layout at scale, damaged data,
connect() errors; and a state machine that runs RedisSnapshot and SqliteSnapshot side by side and
demands identical answers.  The shared contract runs against both in tests/test_snapshot.py."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from unittest import mock

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from common.cluster.connect import ClusterError, connect, redact
from common.snapshot import SIDES, Entry, RedisSnapshot, SnapshotError, SqliteSnapshot, redis_plan
from common.snapshot import redis as snapshot_redis
from common.snapshot.base import is_within, path_sort_key
from common.snapshot.redis_codec import CodecError, pack, unpack

sys.path.insert(0, os.path.dirname(__file__))
from redis_server import RedisServer, redis_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REDIS: dict[str, redis.Redis] = {}


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with redis_server(password="pw-Snap") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: RedisServer) -> Iterator[redis.Redis]:
    _REDIS["client"] = r = redis.Redis.from_url(server.url)
    yield r
    r.close()
    del _REDIS["client"]


@pytest.fixture
def pair() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


def entry(path: str, size: int = 1, **kw: object) -> Entry:
    fields: dict[str, object] = {"mtime_ns": 1_700_000_000_123_456_789, "mode": 0o644,
                                 "inode": 7, "dev": 2049}  # fmt: skip
    fields.update(kw)
    return Entry(path, "file", size, **fields)  # type: ignore[arg-type]


def pair_keys(r: redis.Redis, pair: str) -> set[bytes]:
    """The pair's data keys (not the lock)."""
    return set(r.scan_iter(match=f"surge:snap:{pair}:*")) - {f"surge:snap:{pair}:lock".encode()}


# -- the pair lock -------------------------------------------------------------------------------


def test_a_second_store_of_the_pair_is_refused_and_the_lock_freed_on_close(
    server: RedisServer, client: redis.Redis, pair: str
) -> None:
    first = RedisSnapshot(client, pair)
    try:
        with pytest.raises(SnapshotError) as info:
            RedisSnapshot(server.url, pair)  # another client, as another coordinator would be
        message = str(info.value)
        assert "another sync of this pair is running" in message
        assert f"surge:snap:{pair}:lock" in message and f":{os.getpid()}:" in message
        assert "pw-Snap" not in message
        first.apply("local", [entry("still-works")])
        RedisSnapshot(client, pair + "x").close()  # other pairs are not blocked
    finally:
        first.close()
    assert client.exists(f"surge:snap:{pair}:lock") == 0
    with RedisSnapshot(client, pair) as second:
        assert second.get("local", "still-works") == entry("still-works")


def test_the_lock_of_a_killed_sync_expires_after_its_ttl(
    server: RedisServer, client: redis.Redis, pair: str
) -> None:
    code = textwrap.dedent(f"""
        import sys, time
        from common.snapshot import Entry, RedisSnapshot
        s = RedisSnapshot({server.url!r}, {pair!r}, lock_ttl_s=1.5)
        s.apply("local", [Entry("from-child", "file", 5, 1, 0o644, 1, 1)])
        print("ready", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        time.sleep(1.6)  # past one TTL: only renewal keeps the lock now
        with pytest.raises(SnapshotError, match=f":{child.pid}:"):
            RedisSnapshot(client, pair)
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed = time.monotonic()
        with pytest.raises(SnapshotError, match="another sync"):
            RedisSnapshot(client, pair)  # the dead holder's lock is still there for now
        deadline = killed + 5
        while True:
            try:
                store = RedisSnapshot(client, pair)
                break
            except SnapshotError as exc:
                assert "another sync" in str(exc), exc
                assert time.monotonic() < deadline, "the lock of a killed sync never expired"
                time.sleep(0.1)
        with store:
            assert time.monotonic() - killed <= 1.5 + 1.0
            assert store.get("local", "from-child") is not None  # its committed work is kept
    finally:
        child.kill()
        child.wait()


def test_a_lost_lock_stops_every_call_and_writes_nothing(client: redis.Redis, pair: str) -> None:
    store = RedisSnapshot(client, pair, lock_ttl_s=60)
    try:
        store.apply("local", [entry("a"), entry("b")])
        before = {k: client.dump(k) for k in pair_keys(client, pair)}
        # Another holder after an expiry: the key now holds someone else's token.
        client.set(f"surge:snap:{pair}:lock", b"other-host:1:ffff")
        with pytest.raises(SnapshotError, match="pair lock was lost"):
            store.apply("local", [entry("c")], delete_trees=["a"])
        with pytest.raises(SnapshotError, match="pair lock was lost"):
            store.load("local")
        with pytest.raises(SnapshotError, match="pair lock was lost"):
            store.set_meta("k", "v")
        assert {k: client.dump(k) for k in pair_keys(client, pair)} == before
    finally:
        store.close()
    assert client.get(f"surge:snap:{pair}:lock") == b"other-host:1:ffff"  # not ours to delete


def wait_loaded(url: str) -> None:
    """Until a restarted Redis has read its append-only file (it answers LOADING before)."""
    with redis.Redis.from_url(url) as r:
        deadline = time.monotonic() + 10
        while r.info("persistence").get("loading") and time.monotonic() < deadline:
            time.sleep(0.05)


# -- Redis restarts ------------------------------------------------------------------------------


def test_a_redis_restart_that_loses_the_data_is_a_snapshot_error() -> None:
    with redis_server() as srv:
        store = RedisSnapshot(srv.url, "pair")
        try:
            store.apply("local", [entry(f"d/{i}") for i in range(300)])
            srv.stop(kill=True)
            with pytest.raises(SnapshotError, match=r"Redis failed: .*(refused|Connection)"):
                store.apply("local", [entry("while-down")])
            srv.start()  # empty: no persistence
            for call in (
                lambda: store.apply("local", [entry("after")]),
                lambda: store.load("local"),
                lambda: store.count("local"),
                lambda: list(store.iter_side("local")),
            ):
                with pytest.raises(SnapshotError, match="lost"):
                    call()
            r = redis.Redis.from_url(srv.url)
            assert r.dbsize() == 0  # nothing half-written into the new, empty Redis
        finally:
            store.close()
        with RedisSnapshot(srv.url, "pair") as fresh:  # the next sync starts over
            assert fresh.count("local") == 0


def test_a_redis_restart_with_persistence_carries_on() -> None:
    with redis_server(persist=True) as srv, RedisSnapshot(srv.url, "pair") as store:
        store.apply("local", [entry(f"d/{i:03d}") for i in range(300)])
        store.set_meta("checksum", "sha1")
        before = store.load("local")
        srv.restart(kill=False)
        wait_loaded(srv.url)
        assert store.load("local") == before
        store.apply("local", [entry("after")], delete_trees=["d"])
        assert [e.path for e in store.iter_side("local")] == ["after"]
        assert store.get_meta("checksum") == "sha1"


# -- layout, scale, damage -----------------------------------------------------------------------


def test_20k_entries_stay_compact_ordered_and_exact(client: redis.Redis, pair: str) -> None:
    """Real bucket sizes: a bulk load, updates and tree deletes keep buckets within the listpack
    limit, and memory per entry far below the 300-byte target of issue #5."""
    names = [f"d{i // 2000:02d}/s{i // 100 % 20:02d}/f{i:05d}.bin" for i in range(20_000)]
    with RedisSnapshot(client, pair) as store:
        for start in range(0, 20_000, 5_000):  # in the shuffled order workers finish in
            batch = names[start : start + 5_000][::-1]
            store.apply("local", [entry(p, i, checksum=f"{i:040x}") for i, p in enumerate(batch)])
        store.apply("local", [entry(p, 7) for p in names[::3]], delete_trees=["d03", "d07/s05"])
        updated = set(names[::3])  # upserts come after the tree deletes: they stay
        gone = {p for p in names if is_within(p, "d03") or is_within(p, "d07/s05")}
        kept = [p for p in names if p in updated or p not in gone]
        assert store.count("local") == len(kept)
        assert [e.path for e in store.iter_side("local")] == sorted(kept, key=path_sort_key)
        assert store.get("local", names[3]) == entry(names[3], 7)
        buckets = [k for k in pair_keys(client, pair) if b":local:b:" in k]
        sizes = [client.hlen(k) for k in buckets]
        assert max(sizes) <= redis_plan.BUCKET_MAX and sum(sizes) == len(kept)
        assert {client.object("encoding", k) for k in buckets} == {b"listpack"}
        per_entry = store.size_bytes() / len(kept)
        assert per_entry < 150, per_entry


def test_size_bytes_samples_many_buckets_close_to_the_sum(client: redis.Redis, pair: str) -> None:
    with RedisSnapshot(client, pair) as store:
        store.apply("remote", [entry(f"f{i:05d}") for i in range(5_000)])
        exact = store.size_bytes()
        with mock.patch.object(snapshot_redis, "SIZE_SAMPLE", 7):
            assert 0.8 * exact < store.size_bytes() < 1.2 * exact


def test_damaged_data_is_reported_and_rebuild_recovers(client: redis.Redis, pair: str) -> None:
    with RedisSnapshot(client, pair) as store:
        store.apply("local", [entry("a"), entry("b")])
    bucket = next(k for k in pair_keys(client, pair) if b":local:b:" in k)
    client.hset(bucket, path_sort_key("a"), b"\x00garbage")
    with RedisSnapshot(client, pair) as store:
        with pytest.raises(SnapshotError, match=r"corrupt .*'a'.*-x"):
            store.load("local")
        assert store.get("local", "b") == entry("b")
    client.hset(f"surge:snap:{pair}:local:idx", "zzz", "not-a-number")
    with pytest.raises(SnapshotError, match=r"corrupt \(bucket index of the local side\).*-x"):
        RedisSnapshot(client, pair)
    with RedisSnapshot(client, pair, rebuild=True) as store:
        assert store.load("local") == {} and store.count("local") == 0
        store.apply("local", [entry("fresh")])
        assert store.load("local") == {"fresh": entry("fresh")}


def test_newer_schema_and_bad_pair_names_are_refused(client: redis.Redis, pair: str) -> None:
    RedisSnapshot(client, pair).close()
    client.hset(f"surge:snap:{pair}:info", "schema_version", "99")
    with pytest.raises(SnapshotError, match=r"newer Surge \(schema 99, this one reads up to 1\)"):
        RedisSnapshot(client, pair)
    assert client.exists(f"surge:snap:{pair}:lock") == 0  # a refused open leaves no lock
    for bad in ("", "a:b", "x\ny"):
        with pytest.raises(ValueError, match="-N"):
            RedisSnapshot(client, bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_unpack_of_any_bytes_is_an_entry_or_a_codec_error(value: bytes) -> None:
    try:
        e = unpack(b"p", value)
    except CodecError:
        return
    assert unpack(b"p", pack(e)) == e


def test_a_sha1_entry_packs_small_enough_for_listpack() -> None:
    e = entry("x", 123_456_789, inode=98_765_432, checksum="ab" * 20, uid=1000, gid=1000)
    assert len(pack(e)) <= 56 and unpack(b"x", pack(e)) == e


# -- connect() -----------------------------------------------------------------------------------


def test_connect_errors_are_one_clear_line(server: RedisServer) -> None:
    port = server.port
    good = f"redis://:pw-Snap@127.0.0.1:{port}/0"
    assert connect(good).ping() is True
    cases = {
        f"redis://:wrong-one@127.0.0.1:{port}/0": f"Redis at 127.0.0.1:{port} refused the password"
        " in --cluster",
        f"redis://127.0.0.1:{port}/0": f"Redis at 127.0.0.1:{port} requires a password, and the"
        " URL in --cluster gives none",
        "http://127.0.0.1:6379": "--cluster: the URL must start with redis://, rediss:// or unix://",
        "127.0.0.1:6379": "--cluster: the URL must start with redis://",
        "unix:///nonexistent/redis.sock": "cannot reach Redis at /nonexistent/redis.sock"
        " (--cluster): [Errno 2]",
    }
    with redis_server() as other:  # a port nobody listens on any more
        dead = other.port
    cases[f"redis://127.0.0.1:{dead}/0"] = (
        f"cannot reach Redis at 127.0.0.1:{dead} (--cluster): [Errno 111] Connection refused"
    )
    for url, expected in cases.items():
        with pytest.raises(ClusterError) as info:
            connect(url, timeout=1)
        message = str(info.value)
        assert message.startswith(expected), message
        assert "\n" not in message and "wrong-one" not in message and "pw-Snap" not in message


def test_connect_falls_back_to_the_environment(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SURGE_BROKER_URL", raising=False)
    with pytest.raises(ClusterError, match="pass --cluster URL or set SURGE_BROKER_URL"):
        connect(None)
    monkeypatch.setenv("SURGE_BROKER_URL", server.url)
    assert connect(None).ping() is True
    monkeypatch.setenv("SURGE_BROKER_URL", f"redis://:nope@127.0.0.1:{server.port}/0")
    with pytest.raises(ClusterError, match="refused the password in SURGE_BROKER_URL") as info:
        connect(None)
    assert "nope" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:s3cret@host/1", "rediss://user:***@host/1"),
        ("redis://user@host/1", "redis://user@host/1"),
        ("unix:///run/redis.sock?password=s3cret&db=2", "unix:///run/redis.sock?password=***&db=2"),
        ("redis://host:6379", "redis://host:6379"),
    ],
)
def test_redact_hides_only_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown


# -- RedisSnapshot and SqliteSnapshot side by side ----------------------------------------------

NAMES = ["a", "a!", "a0", "b", "\x01", "é", "\udcfe"]
some_paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
some_entries = st.builds(
    entry,
    some_paths,
    st.integers(0, 1 << 40),
    checksum=st.none() | st.sampled_from(["ff" * 20, "F0", "abc"]),
    target=st.none() | st.just("../t"),
)


class SideBySide(RuleBasedStateMachine):
    """Random operation sequences on both stores; every answer must be the same.  Buckets of 3
    entries and pages of 2 rows make every operation cross bucket and page boundaries."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="snapshot-sbs-")
        self.pair = f"s{uuid.uuid4().hex[:10]}"
        self.patches = [
            mock.patch.object(redis_plan, "BUCKET_MAX", 3),
            mock.patch.object(redis_plan, "BUCKET_FILL", 2),
        ]
        for p in self.patches:
            p.start()
        self.lite = SqliteSnapshot(os.path.join(self.dir, "s.db"), "s")
        self.red = RedisSnapshot(_REDIS["client"], self.pair)

    @initialize(seed=st.lists(some_entries, max_size=30))
    def seed(self, seed: list[Entry]) -> None:
        for s in (self.lite, self.red):
            s.apply("local", seed)
            s.apply("remote", seed[::2])

    def known(self, data: st.DataObject, side: str) -> str:
        paths = sorted(
            {e.path.rsplit("/", n)[0] for e in self.lite.iter_side(side) for n in (0, 1)}
        )
        return data.draw(st.sampled_from(paths) | some_paths if paths else some_paths)

    @rule(side=st.sampled_from(SIDES), ups=st.lists(some_entries, max_size=12), data=st.data())
    def apply(self, side: str, ups: list[Entry], data: st.DataObject) -> None:
        dels = [self.known(data, side) for _ in range(data.draw(st.integers(0, 3)))]
        trees = [self.known(data, side) for _ in range(data.draw(st.integers(0, 2)))]
        for s in (self.lite, self.red):
            s.apply(side, ups, deletes=dels, delete_trees=trees)

    @rule(side=st.sampled_from(SIDES), data=st.data())
    def rename(self, side: str, data: st.DataObject) -> None:
        old, new = self.known(data, side), self.known(data, side)
        if is_within(old, new) or is_within(new, old):
            return
        for s in (self.lite, self.red):
            s.rename_tree(side, old, new)

    @rule(side=st.sampled_from(SIDES), data=st.data(), page=st.integers(1, 5))
    def listing(self, side: str, data: st.DataObject, page: int) -> None:
        prefix = self.known(data, side) if data.draw(st.booleans()) else ""
        with mock.patch.object(snapshot_redis, "ITER_PAGE_ROWS", page):
            assert list(self.red.iter_side(side, prefix)) == list(self.lite.iter_side(side, prefix))

    @rule(side=st.sampled_from(SIDES), data=st.data())
    def get(self, side: str, data: st.DataObject) -> None:
        path = self.known(data, side)
        assert self.red.get(side, path) == self.lite.get(side, path)

    @rule()
    def reopen(self) -> None:
        self.red.close()
        self.red = RedisSnapshot(_REDIS["client"], self.pair)

    @rule(dice=st.integers(0, 7))
    def reset(self, dice: int) -> None:
        if dice == 0:
            self.lite.reset()
            self.red.reset()

    @invariant()
    def same(self) -> None:
        for side in SIDES:
            assert self.red.count(side) == self.lite.count(side)
            assert list(self.red.iter_side(side)) == list(self.lite.iter_side(side))
        assert self.red.load("local") == self.lite.load("local")

    def teardown(self) -> None:
        self.lite.close()
        self.red.close()
        for p in self.patches:
            p.stop()


TestSideBySide = pytest.mark.usefixtures("client")(SideBySide.TestCase)
TestSideBySide.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)


def test_entries_differing_only_in_path_stay_distinct(client: redis.Redis, pair: str) -> None:
    base = entry("x")
    variants = [dataclasses.replace(base, path=p) for p in ("x", "x/y", "x!", "x0", "x\x01")]
    with RedisSnapshot(client, pair) as store:
        store.apply("local", variants)
        assert [e.path for e in store.iter_side("local", "x")] == ["x", "x/y"]
