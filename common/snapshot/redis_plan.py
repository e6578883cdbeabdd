"""Planning one write of the Redis snapshot store (common/snapshot/redis.py): which buckets an
``apply`` deletes whole, which it must read first (tree deletes that cut through a bucket,
buckets that would pass BUCKET_MAX, upserts outside a bucket's shared prefix), and the Redis
commands that carry it out.

A bucket's fields are its keys without the prefix they all share: the common prefix of the
bucket's range when it was last written (``plen`` bytes of its bound, kept in the index).  In a
bucket of one directory's files that leaves little more than the file names, so long paths stay
within Redis's 64-byte listpack limit.

Pure: the caller reads the buckets in :attr:`Plan.reads`, passes their contents to
:meth:`Plan.commands`, runs the commands atomically and hands the replies to the returned
function, which gives the new bucket cache.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = ["BUCKET_FILL", "BUCKET_MAX", "HDEL_ARGS", "Buckets", "Plan", "idx_value", "plan_writes"]

BUCKET_MAX: Final = 128
"""Fields per bucket at most: Redis keeps hashes of up to 128 fields (hash-max-listpack-entries)
in the compact listpack encoding."""
BUCKET_FILL: Final = 96
"""Fields per bucket after a split: room for updates before the next split."""
HDEL_ARGS: Final = 1000
"""Fields per HDEL command in the write script (Lua's unpack() takes ~8000 at most)."""

Command = tuple[str, str | bytes, list[object]]


def idx_value(bucket_id: int, plen: int) -> bytes:
    """The index hash's value for a bucket: ``b"<id>:<plen>"``."""
    return b"%d:%d" % (bucket_id, plen)


def _plen(lo: bytes, hi: bytes | None) -> int:
    """Length of the prefix every key in ``[lo, hi)`` shares (none when unbounded above)."""
    if hi is None:
        return 0
    n = 0
    for a, b in zip(lo, hi, strict=False):
        if a != b:
            break
        n += 1
    return n


@dataclass
class Buckets:
    """One side's bucket index: sorted lower bounds (``bounds[0] == b""``), ids, field counts,
    and the length of the bound prefix stripped from every field."""

    bounds: list[bytes]
    ids: list[int]
    counts: list[int]
    plens: list[int]

    def index(self, key: bytes) -> int:
        return bisect.bisect_right(self.bounds, key) - 1

    def prefix(self, i: int) -> bytes:
        return self.bounds[i][: self.plens[i]]


@dataclass
class Plan:
    state: Buckets
    trees: list[tuple[bytes, bytes]]
    """Deleted key ranges, sorted and disjoint."""
    dropped: list[int]
    """Bucket indexes wholly inside a deleted tree, or empty: deleted, range merged leftwards."""
    upper: dict[int, bytes | None]
    """Surviving bucket index -> the next surviving bound (None for the last)."""
    reads: list[int] = field(default_factory=list)
    """Bucket indexes to read (HGETALL) before :meth:`commands`; all rewritten."""
    ups: dict[int, dict[bytes, bytes]] = field(default_factory=dict)
    dels: dict[int, list[bytes]] = field(default_factory=dict)

    def commands(
        self,
        contents: dict[int, dict[bytes, bytes]],
        key_of: Callable[[int], str],
        idx_key: str,
    ) -> tuple[list[Command], Callable[[list[int]], Buckets]]:
        """The write's commands, and the function that turns their replies into the new cache.
        ``contents``: the HGETALL replies of :attr:`reads`, by bucket index."""
        s = self.state
        w = _Writer(key_of, idx_key, max(s.ids) + 1)
        w.cmds.append(("HSETNX", idx_key, [b"", idx_value(s.ids[0], 0)]))
        for i in self.dropped:
            w.cmds += [("UNLINK", key_of(s.ids[i]), []), ("HDEL", idx_key, [s.bounds[i]])]
        rows = {i: _Row(s.bounds[i], s.ids[i], s.counts[i], s.plens[i]) for i in self.upper}
        for i, row in rows.items():
            ups, dels = self.ups.get(i, {}), self.dels.get(i, [])
            if i not in contents:
                w.in_place(row, ups, dels)
                continue
            prefix = s.prefix(i)
            chunks = self._rewrite({prefix + f: v for f, v in contents[i].items()}, ups, dels)
            if chunks is not None:
                w.rewrite(row, chunks, self.upper[i])

        def finish(results: list[int]) -> Buckets:
            for at, row, sign in w.counted:
                row.count += sign * int(results[at])
            table = sorted([*rows.values(), *w.added], key=lambda r: r.bound)
            return Buckets([r.bound for r in table], [r.id for r in table],
                           [r.count for r in table], [r.plen for r in table])  # fmt: skip

        return w.cmds, finish

    def _rewrite(
        self, content: dict[bytes, bytes], ups: dict[bytes, bytes], dels: list[bytes]
    ) -> list[dict[bytes, bytes]] | None:
        """The bucket's new contents cut into chunks of at most BUCKET_MAX, or None if unchanged."""
        before = len(content)
        if self.trees:
            lows = [lo for lo, _ in self.trees]
            for k in list(content):
                i = bisect.bisect_right(lows, k) - 1
                if i >= 0 and k < self.trees[i][1]:
                    del content[k]
        for k in dels:
            content.pop(k, None)
        if not ups and len(content) == before:
            return None
        content.update(ups)
        keys = sorted(content)
        if len(keys) <= BUCKET_MAX:
            return [content]
        n = -(-len(keys) // BUCKET_FILL)
        size = -(-len(keys) // n)
        return [{k: content[k] for k in keys[j : j + size]} for j in range(0, len(keys), size)]


@dataclass
class _Row:
    bound: bytes
    id: int
    count: int
    plen: int


@dataclass
class _Writer:
    """Collects the commands of one write and what their replies change in the cache."""

    key_of: Callable[[int], str]
    idx_key: str
    next_id: int
    cmds: list[Command] = field(default_factory=list)
    counted: list[tuple[int, _Row, int]] = field(default_factory=list)
    """(command index, bucket, sign): HDEL/HSET replies that change the bucket's count."""
    added: list[_Row] = field(default_factory=list)

    def in_place(self, row: _Row, ups: dict[bytes, bytes], dels: list[bytes]) -> None:
        """Deletes and upserts of keys within the bucket's prefix, without reading it."""
        key, cut = self.key_of(row.id), row.plen
        for at in range(0, len(dels), HDEL_ARGS):
            self.counted.append((len(self.cmds), row, -1))
            self.cmds.append(("HDEL", key, [k[cut:] for k in dels[at : at + HDEL_ARGS]]))
        if ups:
            self.counted.append((len(self.cmds), row, 1))
            self.cmds.append(("HSET", key, [x for k, v in ups.items() for x in (k[cut:], v)]))

    def rewrite(self, row: _Row, chunks: list[dict[bytes, bytes]], upper: bytes | None) -> None:
        """The bucket replaced by ``chunks``: the first keeps its bound and id, the others become
        new buckets; each strips the prefix its own range shares."""
        self.cmds.append(("DEL", self.key_of(row.id), []))
        lows = [row.bound, *(min(c) for c in chunks[1:])]
        for lo, hi, chunk in zip(lows, [*lows[1:], upper], chunks, strict=True):
            target = row
            if lo != row.bound:
                target = _Row(lo, self.next_id, 0, 0)
                self.added.append(target)
                self.next_id += 1
            target.count, target.plen = len(chunk), _plen(lo, hi)
            self.cmds.append(("HSET", self.idx_key, [lo, idx_value(target.id, target.plen)]))
            if chunk:
                fields: list[object] = [x for k, v in chunk.items() for x in (k[target.plen :], v)]
                self.cmds.append(("HSET", self.key_of(target.id), fields))


def plan_writes(
    state: Buckets,
    trees: list[tuple[bytes, bytes]],
    dels: list[bytes],
    ups: dict[bytes, bytes],
) -> Plan:
    """Tree deletes, then exact deletes, then upserts (``ups`` already holds the last per key)."""
    n = len(state.bounds)
    dropped: set[int] = set()
    edges: set[int] = set()
    for lo, hi in trees:
        for i in range(state.index(lo), bisect.bisect_left(state.bounds, hi)):
            inside = i > 0 and state.bounds[i] >= lo and i + 1 < n and state.bounds[i + 1] <= hi
            (dropped if inside else edges).add(i)
    dropped.update(i for i in range(1, n) if state.counts[i] == 0)
    survivors = [i for i in range(n) if i not in dropped]
    bounds = [state.bounds[i] for i in survivors]
    upper = dict(zip(survivors, [*bounds[1:], None], strict=True))
    plan = Plan(state, _merged(trees), sorted(dropped), upper)
    outside: set[int] = set()  # buckets getting a key that does not share their prefix
    for k in dels:
        i = survivors[bisect.bisect_right(bounds, k) - 1]
        if k.startswith(state.prefix(i)):  # else it cannot be in the bucket
            plan.dels.setdefault(i, []).append(k)
    for k, v in ups.items():
        i = survivors[bisect.bisect_right(bounds, k) - 1]
        plan.ups.setdefault(i, {})[k] = v
        if not k.startswith(state.prefix(i)):
            outside.add(i)
    full = {i for i, u in plan.ups.items() if state.counts[i] + len(u) > BUCKET_MAX}
    plan.reads = sorted((edges - dropped) | full | outside)
    return plan


def _merged(ranges: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
