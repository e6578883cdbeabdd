"""Planning one write of the Redis snapshot store (common/snapshot/redis.py): which buckets an
``apply`` deletes whole, which it must read first (tree deletes that cut through a bucket,
buckets that would pass BUCKET_MAX), and the Redis commands that carry it out.

Pure: the caller reads the buckets in :attr:`Plan.reads`, passes their contents to
:meth:`Plan.commands`, runs the commands atomically and hands the replies to the returned
function, which gives the new bucket cache.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = ["BUCKET_FILL", "BUCKET_MAX", "Buckets", "Plan", "plan_writes"]

BUCKET_MAX: Final = 128
"""Fields per bucket at most: Redis keeps hashes of up to 128 fields (hash-max-listpack-entries)
in the compact listpack encoding."""
BUCKET_FILL: Final = 96
"""Fields per bucket after a split: room for updates before the next split."""

Command = tuple[str, str | bytes, list[object]]


@dataclass
class Buckets:
    """One side's bucket index: sorted lower bounds (``bounds[0] == b""``), ids, field counts."""

    bounds: list[bytes]
    ids: list[int]
    counts: list[int]

    def index(self, key: bytes) -> int:
        return bisect.bisect_right(self.bounds, key) - 1

    def find(self, key: bytes) -> int:
        return self.ids[self.index(key)]


@dataclass
class Plan:
    state: Buckets
    trees: list[tuple[bytes, bytes]]
    dropped: list[int]
    """Bucket indexes wholly inside a deleted tree, or empty: deleted, range merged leftwards."""
    reads: list[int]
    """Bucket indexes to read (HGETALL) before :meth:`commands`; all rewritten."""
    ups: dict[int, dict[bytes, bytes]] = field(default_factory=dict)
    dels: dict[int, list[bytes]] = field(default_factory=dict)

    def commands(
        self,
        contents: dict[int, dict[bytes, bytes]],
        key_of: Callable[[int], str],
        idx_key: str,
    ) -> tuple[list[Command], Callable[[list[int]], Buckets]]:
        s = self.state
        cmds: list[Command] = [("HSETNX", idx_key, [b"", s.ids[0]])]
        for i in self.dropped:
            cmds += [("UNLINK", key_of(s.ids[i]), []), ("HDEL", idx_key, [s.bounds[i]])]
        counted: list[tuple[int, int, int]] = []  # (command index, bucket index, sign)
        gone = set(self.dropped)
        counts = {i: s.counts[i] for i in range(len(s.ids)) if i not in gone}
        added: list[tuple[bytes, int, int]] = []
        next_id = max(s.ids) + 1
        for i in sorted(counts):
            key, ups, dels = key_of(s.ids[i]), self.ups.get(i, {}), self.dels.get(i, [])
            if i in contents:
                chunks = self._rewrite(contents[i], ups, dels)
                if chunks is None:
                    continue
                cmds.append(("DEL", key, []))
                for n, chunk in enumerate(chunks):
                    if n:
                        added.append((min(chunk), next_id, len(chunk)))
                        cmds.append(("HSET", idx_key, [min(chunk), next_id]))
                        key, next_id = key_of(next_id), next_id + 1
                    if chunk:
                        cmds.append(("HSET", key, [x for kv in chunk.items() for x in kv]))
                counts[i] = len(chunks[0])
                continue
            if dels:
                counted.append((len(cmds), i, -1))
                cmds.append(("HDEL", key, list(dels)))
            if ups:
                counted.append((len(cmds), i, 1))
                cmds.append(("HSET", key, [x for kv in ups.items() for x in kv]))

        def finish(results: list[int]) -> Buckets:
            for at, i, sign in counted:
                counts[i] += sign * int(results[at])
            rows = sorted([(s.bounds[i], s.ids[i], c) for i, c in counts.items()] + added)
            return Buckets([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])

        return cmds, finish

    def _rewrite(
        self, content: dict[bytes, bytes], ups: dict[bytes, bytes], dels: list[bytes]
    ) -> list[dict[bytes, bytes]] | None:
        """The bucket's new contents cut into chunks of at most BUCKET_MAX, or None if unchanged."""
        before = len(content)
        for lo, hi in self.trees:
            for k in [k for k in content if lo <= k < hi]:
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
    plan = Plan(state, trees, sorted(dropped), [])
    for k in dels:
        plan.dels.setdefault(survivors[bisect.bisect_right(bounds, k) - 1], []).append(k)
    for k, v in ups.items():
        plan.ups.setdefault(survivors[bisect.bisect_right(bounds, k) - 1], {})[k] = v
    full = {i for i, u in plan.ups.items() if state.counts[i] + len(u) > BUCKET_MAX}
    plan.reads = sorted((edges - dropped) | full)
    return plan
