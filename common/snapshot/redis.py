"""The cluster snapshot store: the SnapshotStore of one sync pair in Redis, shared by the
coordinators of a cluster, within ~100 bytes of Redis memory per tracked file.

Layout (``P`` = ``surge:snap:{pair}``, ``S`` = side)::

    P:lock           string  the pair lock (redis_lock.PairLock), TTL renewed while held
    P:info           hash    schema_version
    P:meta           hash    the caller's string meta
    P:S:idx          hash    bucket lower bound (a path_sort_key) -> b"<id>:<plen>"
    P:S:b:<id>       hash    path_sort_key minus the bucket's first plen bytes -> packed entry
                             (redis_codec); at most BUCKET_MAX fields

The buckets are the leaves of a B+-tree over :func:`path_sort_key`: bucket ``i`` holds the keys
in ``[bound_i, bound_i+1)``, the first bound is ``b""``.  Buckets of at most 128 small fields stay
in Redis's compact listpack encoding (a sorted set of paths plus one hash of entries measured
267 bytes per file against ~80 for these buckets, 100k files with SHA-1), and a key range (a tree, a prefix listing, a page) touches only the few buckets around it.  A bucket
that would pass BUCKET_MAX is read and split into BUCKET_FILL-sized buckets within the write.

The bounds, ids and field counts are cached here: only the lock holder writes, so the cache is
exact.  Every write is one Lua script that first checks the lock token and then runs all the
commands (atomic: all or nothing), after at most one pipelined read; every read checks the
token in the same round trip.  A lost lock (expired, or Redis restarted without its data) makes
every later call raise SnapshotError instead of writing a partial snapshot.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, cast

import redis

from common.cluster.connect import connect
from common.snapshot.base import (
    Entry,
    SnapshotError,
    check_path,
    check_side,
    is_within,
    path_sort_key,
)
from common.snapshot.redis_codec import CodecError, pack, unpack
from common.snapshot.redis_lock import PairLock
from common.snapshot.redis_plan import Buckets, Plan, plan_writes

__all__ = ["ITER_PAGE_ROWS", "LOCK_TTL_S", "SCHEMA_VERSION", "RedisSnapshot"]

SCHEMA_VERSION: Final = 1
LOCK_TTL_S: Final = 30.0
"""A killed sync blocks its pair this long at most; the holder renews every third of it."""
ITER_PAGE_ROWS: Final = 4096
"""Entries read per round trip by ``iter_side``: the most it holds in memory."""
READ_BUCKETS: Final = 512
"""Buckets fetched per pipeline by ``load`` and ``size_bytes``."""
SIZE_SAMPLE: Final = 1000
"""``size_bytes`` sums MEMORY USAGE of at most this many buckets and scales up."""

# KEYS[1] lock, ARGV[1] token, then (command, key index, n, n arguments) per command.
_RUN: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('SURGELOCK the pair lock is no longer held')
end
local out, i = {}, 2
while i <= #ARGV do
  local n = tonumber(ARGV[i + 2])
  out[#out + 1] = redis.call(ARGV[i], KEYS[tonumber(ARGV[i + 1])], unpack(ARGV, i + 3, i + 2 + n))
  i = i + 3 + n
end
return out
"""


def _tree_range(path: str) -> tuple[bytes, bytes]:
    key = path_sort_key(check_path(path))
    return key, key + b"\x01"


def _paths(name: str, items: Iterable[str]) -> Iterable[str]:
    if isinstance(items, str):
        raise TypeError(f"{name} must be an iterable of paths, not a single str")
    return items


class RedisSnapshot:
    """The SnapshotStore of one sync pair in Redis.

    ``client`` is a ``redis.Redis`` (bytes replies; see common.cluster.connect) or a URL.  Opening
    takes the pair lock; ``rebuild=True`` (``-x``) forgets the pair's snapshot first.
    """

    def __init__(
        self,
        client: redis.Redis | str,
        pair: str,
        *,
        rebuild: bool = False,
        lock_ttl_s: float = LOCK_TTL_S,
    ) -> None:
        if not pair or ":" in pair or any(ord(c) < 32 for c in pair):
            raise ValueError(f"sync pair name (-N) {pair!r} cannot name Redis keys")
        self.pair: Final = pair
        self.prefix: Final = f"surge:snap:{pair}"
        self._owns_client = isinstance(client, str)
        self._r = connect(client) if isinstance(client, str) else client
        if self._r.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "RedisSnapshot needs a client with bytes replies (decode_responses off)"
            )
        self._where = self._describe()
        self._mutex = threading.RLock()
        self._run = self._r.register_script(_RUN)
        self._buckets: dict[str, Buckets] | None = None
        self._lock: PairLock | None = None
        self._closed = False
        with self._errors():
            lock = PairLock(self._r, f"{self.prefix}:lock", lock_ttl_s)
            lock.acquire()
        self._lock = lock
        try:
            with self._errors():
                self._open(rebuild)
        except BaseException:
            self.close()
            raise

    # -- opening and plumbing -------------------------------------------------------------------

    def _describe(self) -> str:
        kw = self._r.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
        return f"Redis snapshot {self.prefix} at {where}"

    def _open(self, rebuild: bool) -> None:
        if rebuild:
            self._forget_everything()
        version = self._r.hget(f"{self.prefix}:info", "schema_version")
        if version is None:
            self._write([("HSET", f"{self.prefix}:info", ["schema_version", str(SCHEMA_VERSION)])])
        elif not version.isdigit():
            raise SnapshotError(f"{self._where} is corrupt (schema version {version!r}); rebuild"
                                " it with -x (--reset)")  # fmt: skip
        elif int(version) > SCHEMA_VERSION:
            raise SnapshotError(
                f"{self._where} was written by a newer Surge (schema {int(version)}, this one reads"
                f" up to {SCHEMA_VERSION}); upgrade Surge or rebuild the snapshot with -x (--reset)"
            )
        self._buckets = {side: self._load_buckets(side) for side in ("local", "remote")}

    def _forget_everything(self) -> None:
        """Every key of the pair but the lock, found by SCAN so that a damaged layout goes too."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix) + ":*"
        lock_key = f"{self.prefix}:lock".encode()
        doomed: list[bytes | str] = [
            k for k in self._r.scan_iter(match=pattern, count=1000) if k != lock_key
        ]
        for i in range(0, len(doomed), 1000):
            self._write([("UNLINK", k, []) for k in doomed[i : i + 1000]])

    def _load_buckets(self, side: str) -> Buckets:
        idx = cast(dict[bytes, bytes], self._r.hgetall(f"{self.prefix}:{side}:idx"))
        try:  # bound -> b"<id>:<plen>"
            rows = sorted((b, int(v.split(b":")[0]), int(v.split(b":")[1])) for b, v in idx.items())
            valid = not rows or (rows[0][0] == b"" and len({r[1] for r in rows}) == len(rows))
            valid = valid and all(0 <= r[2] <= len(r[0]) for r in rows)
        except (ValueError, IndexError):
            valid = False
        if not valid:
            raise SnapshotError(f"{self._where} is corrupt (bucket index of the {side} side);"
                                " rebuild it with -x (--reset)")  # fmt: skip
        rows = rows or [(b"", 0, 0)]
        pipe = self._r.pipeline(transaction=False)
        for row in rows:
            pipe.hlen(self._bucket_key(side, row[1]))
        counts = pipe.execute()
        return Buckets([r[0] for r in rows], [r[1] for r in rows], counts, [r[2] for r in rows])

    def _read_buckets(
        self, state: Buckets, side: str, first: int, end: int
    ) -> list[dict[bytes, bytes]]:
        """Buckets ``first`` .. ``end - 1`` in one pipeline, fields prefixed back to full keys."""
        replies = self._read([("HGETALL", self._bucket_key(side, b)) for b in state.ids[first:end]])
        out = []
        for i, fields in enumerate(replies, first):
            prefix = state.prefix(i)
            out.append({prefix + f: v for f, v in fields.items()} if prefix else fields)
        return out

    def _bucket_key(self, side: str, bucket_id: int) -> str:
        return f"{self.prefix}:{side}:b:{bucket_id}"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Redis failures as SnapshotError; after any, the bucket cache is reloaded before use."""
        try:
            yield
        except redis.ResponseError as exc:
            self._buckets = None
            if "SURGELOCK" in str(exc):
                raise SnapshotError(self._lost_message()) from None
            raise SnapshotError(f"{self._where}: {exc}") from exc
        except redis.RedisError as exc:
            self._buckets = None
            raise SnapshotError(f"{self._where}: Redis failed: {exc}") from exc
        except CodecError as exc:
            raise SnapshotError(
                f"{self._where} is corrupt ({exc}); rebuild it with -x (--reset)"
            ) from None

    def _lost_message(self) -> str:
        return (
            f"{self._where}: the pair lock was lost (it expired, or Redis restarted and lost its"
            " data); the snapshot may be incomplete, so this sync stops: run it again"
        )

    def _state(self, side: str) -> Buckets:
        """The cache of ``side`` once the lock is known to be held (reloaded after an error)."""
        if self._closed:
            raise SnapshotError(f"{self._where} is closed")
        assert self._lock is not None
        if self._lock.lost:
            raise SnapshotError(self._lost_message())
        if self._buckets is None:
            self._check_lock(self._r.get(self._lock.key))
            self._buckets = {s: self._load_buckets(s) for s in ("local", "remote")}
        return self._buckets[side]

    def _check_lock(self, value: object) -> None:
        assert self._lock is not None
        if value != self._lock.token:
            self._lock.lost = True
            raise SnapshotError(self._lost_message())

    def _read(self, queue: Sequence[tuple[object, ...]]) -> list[Any]:
        """One pipeline: the lock check, then ``queue`` (command, key, args...)."""
        assert self._lock is not None
        pipe = self._r.pipeline(transaction=False)
        pipe.get(self._lock.key)
        for command in queue:
            pipe.execute_command(*command)
        token, *replies = pipe.execute()
        self._check_lock(token)
        return replies

    def _write(self, commands: list[tuple[str, str | bytes, list[object]]]) -> list[int]:
        """All ``commands`` in one Lua script after the lock check: atomic, one round trip."""
        assert self._lock is not None
        keys: dict[str | bytes, int] = {self._lock.key: 1}
        args: list[Any] = [self._lock.token]
        for name, key, cmd_args in commands:
            index = keys.setdefault(key, len(keys) + 1)
            args += [name, index, len(cmd_args), *cmd_args]
        return cast(list[int], self._run(keys=list(keys), args=args))

    # -- SnapshotStore --------------------------------------------------------------------------

    def load(self, side: str) -> dict[str, Entry]:
        check_side(side)
        with self._mutex, self._errors():
            state = self._state(side)
            out: dict[str, Entry] = {}
            for i in range(0, len(state.ids), READ_BUCKETS):
                for bucket in self._read_buckets(state, side, i, i + READ_BUCKETS):
                    for key, value in bucket.items():
                        e = unpack(key, value)
                        out[e.path] = e
            return out

    def get(self, side: str, path: str) -> Entry | None:
        check_side(side)
        key = path_sort_key(check_path(path))
        with self._mutex, self._errors():
            state = self._state(side)
            i = state.index(key)
            if not key.startswith(state.prefix(i)):  # outside the bucket's shared prefix
                self._read([])
                return None
            field = key[state.plens[i] :]
            (value,) = self._read([("HGET", self._bucket_key(side, state.ids[i]), field)])
            return None if value is None else unpack(key, value)

    def iter_side(self, side: str, prefix: str = "") -> Iterator[Entry]:
        check_side(side)
        low, high = _tree_range(prefix) if prefix else (b"", None)
        first = True
        while True:
            with self._mutex, self._errors():
                rows, more = self._page(side, low, high, first)
                page = [unpack(k, v) for k, v in rows]
            yield from page
            if not more:
                return
            low, first = rows[-1][0], False

    def _page(
        self, side: str, low: bytes, high: bytes | None, inclusive: bool
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Up to ITER_PAGE_ROWS (key, value) after ``low`` and below ``high``, in key order, and
        whether more may follow.  Whole buckets are read until the page is full."""
        state = self._state(side)
        i = state.index(low)
        rows: list[tuple[bytes, bytes]] = []
        while i < len(state.ids) and (high is None or state.bounds[i] < high):
            j, want = i, 0
            while (
                j < len(state.ids)
                and (high is None or state.bounds[j] < high)
                and want < ITER_PAGE_ROWS
            ):
                want += max(state.counts[j], 1)
                j += 1
            for bucket in self._read_buckets(state, side, i, j):
                rows.extend(
                    (k, v)
                    for k, v in bucket.items()
                    if (k >= low if inclusive else k > low) and (high is None or k < high)
                )
            i = j
            if len(rows) >= ITER_PAGE_ROWS:
                break
        rows.sort()
        more = i < len(state.ids) and (high is None or state.bounds[i] < high)
        if len(rows) > ITER_PAGE_ROWS:
            rows, more = rows[:ITER_PAGE_ROWS], True
        return rows, more

    def apply(
        self,
        side: str,
        upserts: Iterable[Entry] = (),
        deletes: Iterable[str] = (),
        delete_trees: Iterable[str] = (),
    ) -> None:
        check_side(side)
        # Everything is read and encoded before Redis is touched: a failing iterable or a bad
        # entry leaves nothing applied.
        trees = [_tree_range(top) for top in _paths("delete_trees", delete_trees)]
        dels = [path_sort_key(check_path(p)) for p in _paths("deletes", deletes)]
        ups = {}
        for e in upserts:
            value = pack(e)  # first: it refuses what is not an Entry
            ups[path_sort_key(e.path)] = value
        with self._mutex, self._errors():
            self._apply_keys(side, trees, dels, ups)

    def _apply_keys(
        self,
        side: str,
        trees: list[tuple[bytes, bytes]],
        dels: list[bytes],
        ups: dict[bytes, bytes],
    ) -> None:
        if not (trees or dels or ups):
            return
        state = self._state(side)
        plan: Plan = plan_writes(state, trees, dels, ups)
        contents = []  # the write script checks the lock: no read round trip unless needed
        if plan.reads:
            contents = self._read(
                [("HGETALL", self._bucket_key(side, state.ids[i])) for i in plan.reads]
            )
        commands, new_state = plan.commands(
            dict(zip(plan.reads, contents, strict=True)),
            lambda bucket_id: self._bucket_key(side, bucket_id),
            f"{self.prefix}:{side}:idx",
        )
        results = self._write(commands) if commands else []
        assert self._buckets is not None
        self._buckets[side] = new_state(results)

    def rename_tree(self, side: str, old: str, new: str) -> None:
        check_side(side)
        old_lo, old_hi = _tree_range(old)
        new_lo, new_hi = _tree_range(new)
        if is_within(new, old) or is_within(old, new):
            raise ValueError(f"cannot rename {old!r} to {new!r}: one is inside the other")
        with self._mutex, self._errors():
            moved: dict[bytes, bytes] = {}
            rows, more = self._page(side, old_lo, old_hi, True)
            while rows:
                moved.update((new_lo + k[len(old_lo) :], v) for k, v in rows)
                if not more:
                    break
                rows, more = self._page(side, rows[-1][0], old_hi, False)
            if moved:
                self._apply_keys(side, [(old_lo, old_hi), (new_lo, new_hi)], [], moved)

    def get_meta(self, key: str) -> str | None:
        with self._mutex, self._errors():
            self._state("local")
            (value,) = self._read([("HGET", f"{self.prefix}:meta", key)])
        return None if value is None else value.decode()

    def set_meta(self, key: str, value: str | None) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"meta key must be a non-empty str, got {key!r}")
        if value is not None and not isinstance(value, str):
            raise TypeError(f"meta value must be a str or None, got {type(value).__name__}")
        with self._mutex, self._errors():
            self._state("local")
            args: list[object] = [key] if value is None else [key, value]
            self._write([("HDEL" if value is None else "HSET", f"{self.prefix}:meta", args)])

    def count(self, side: str) -> int:
        check_side(side)
        with self._mutex, self._errors():
            return sum(self._state(side).counts)

    def size_bytes(self) -> int:
        """Redis memory of the pair's keys: MEMORY USAGE of every key, or of an even sample of
        SIZE_SAMPLE buckets per side scaled to all of them."""
        with self._mutex, self._errors():
            total = 0.0
            fixed = [
                f"{self.prefix}:{name}" for name in ("info", "meta", "local:idx", "remote:idx")
            ]
            queue = [("MEMORY", "USAGE", k) for k in fixed]
            scale: list[float] = [1.0] * len(fixed)
            for side in ("local", "remote"):
                ids = self._state(side).ids
                step = max(1, -(-len(ids) // SIZE_SAMPLE))
                sample = ids[::step]
                queue += [("MEMORY", "USAGE", self._bucket_key(side, b)) for b in sample]
                scale += [len(ids) / len(sample)] * len(sample)
            for used, factor in zip(self._read(queue), scale, strict=True):
                total += int(used or 0) * factor
            return int(total)

    def reset(self) -> None:
        with self._mutex, self._errors():
            doomed: list[str] = [f"{self.prefix}:meta"]
            for side in ("local", "remote"):
                doomed.append(f"{self.prefix}:{side}:idx")
                doomed += [self._bucket_key(side, b) for b in self._state(side).ids]
            for i in range(0, len(doomed), 1000):
                self._write([("UNLINK", k, []) for k in doomed[i : i + 1000]])
            self._buckets = {s: Buckets([b""], [0], [0], [0]) for s in ("local", "remote")}

    def close(self) -> None:
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._buckets = None
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.release()
                self._lock = lock  # kept for the token checks, which now say "closed"
            if self._owns_client:
                self._r.close()

    def __enter__(self) -> RedisSnapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisSnapshot({self._where!r}, {'closed' if self._closed else 'open'})"
