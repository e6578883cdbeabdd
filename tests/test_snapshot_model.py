"""Model-based tests of the snapshot store: a state machine of apply / rename_tree / reset / reopen
against a dict model, for SqliteSnapshot and for RedisSnapshot with buckets small enough to split
and merge."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from unittest import mock

import pytest
from hypothesis import settings
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
    SnapshotStore,
    SqliteSnapshot,
    is_within,
    path_sort_key,
)
from common.snapshot import redis as snapshot_redis
from common.snapshot import sqlite as snapshot_sqlite

sys.path.insert(0, os.path.dirname(__file__))
from snapshot_helpers import _REDIS, U64, entry, new_pair, paths_of, small_buckets

pytest_plugins = ["snapshot_helpers"]  # its fixtures


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
