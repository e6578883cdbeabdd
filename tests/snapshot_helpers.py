"""Shared helpers and fixtures of the snapshot store tests (tests/test_snapshot_*.py): entries, the
sqlite/redis store-kind fixtures (the Redis ones against a private redis-server, one per test
module), small Redis buckets and similarly named sibling paths."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest
import redis

from common.snapshot import (
    Entry,
    RedisSnapshot,
    SnapshotStore,
    SqliteSnapshot,
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
