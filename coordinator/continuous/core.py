"""The change queue of continuous sync, sans-I/O: changes in, batches of paths ready to sync out.
Every call takes the clock (`now`, seconds) explicitly; nothing here sleeps, stats or reads a
watcher, so the rules are tested with a fake clock.

Rules:
- Cooloff: a change is ready once its path has been quiet for `cooloff` seconds (each new
  change of the path restarts the wait), so a file being written is sent once, complete.
- Coalescing: one entry per (side, path). A `tree` change (a new, renamed or deleted directory:
  its whole subtree is looked at) absorbs the pending changes below it, and later changes below
  it only restart its cooloff.
- Linked changes (both ends of a rename) share their cooloff, so they are synced together and
  the rename is seen as a rename; a ready path takes along the pending changes of the same path
  on the other side (and their partners).
- `cooloff_max` (> 0): a path still changing that long after its first change is given up on
  (`expired`: the caller reports it as an error); it stays queued, so it is synced once quiet
  (no later event may come), and is given up on again after each further `cooloff_max`.
- `pending_max`: at most that many entries; a change beyond it is dropped and the queue
  remembers it overflowed (the caller rescans to find what was dropped).
- `delete_delay`: deletions wait until no other change is pending.
- Sharing retries: a change whose sync failed is queued again (after a cooloff) up to
  `sharing_retry_max` times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Batch", "Change", "ChangeQueue", "QueueConfig"]

Key = tuple[str, str]  # (side, path)


@dataclass(frozen=True)
class QueueConfig:
    cooloff: float = 3.0
    cooloff_max: float = 0.0  # 0: wait as long as it takes
    pending_max: int = 2000
    sharing_retry_max: int = 3
    delete_delay: bool = False


@dataclass
class Change:
    side: str  # "local" | "remote"
    path: str  # relative to the side's root, "/"-separated
    tree: bool = False  # the whole subtree is to be looked at
    gone: bool = False  # the last event said the path was removed
    first: float = 0.0  # when the path first changed (lag is measured from here)
    last: float = 0.0  # when it last changed (cooloff is measured from here)
    retries: int = 0
    sig: Any = None  # what a forced stat last saw (size, mtime), to notice silent writes
    given_up: float | None = None  # when cooloff_max last gave up on it (the next wait starts here)

    @property
    def key(self) -> Key:
        return (self.side, self.path)

    @property
    def waiting_since(self) -> float:
        """Where the cooloff_max wait starts: the first change, or the last give-up."""
        return self.first if self.given_up is None else self.given_up


@dataclass
class Batch:
    ready: list[Change] = field(default_factory=list)
    expired: list[Change] = field(default_factory=list)  # still changing after cooloff_max


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class ChangeQueue:
    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self._pending: dict[Key, Change] = {}
        self._trees: set[Key] = set()
        self._links: dict[Key, Key] = {}
        self._overflowed = False
        self.dropped = 0
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._pending)

    def pending(self) -> list[Change]:
        return list(self._pending.values())

    # -- input -----------------------------------------------------------------------------
    def note(
        self, side: str, path: str, now: float, *, tree: bool = False, gone: bool = False
    ) -> bool:
        """Record a change of `path` on `side`. False when it was dropped (the queue is full)."""
        for parent in _ancestors(path):
            if (side, parent) in self._trees:
                self._touch(self._pending[(side, parent)], now)
                self.coalesced += 1
                return True
        key = (side, path)
        current = self._pending.get(key)
        if current is None:
            if len(self._pending) >= self.config.pending_max:
                self._overflowed = True
                self.dropped += 1
                return False
            current = self._pending[key] = Change(side, path, first=now, last=now)
        else:
            self.coalesced += 1
        current.gone = gone
        if tree and not current.tree:
            current.tree = True
            self._trees.add(key)
            self._absorb(current)
        self._touch(current, now)
        return True

    def note_move(self, side: str, old: str, new: str, now: float, *, tree: bool = False) -> bool:
        """A rename inside the tree: both paths are looked at together, so the far end renames."""
        ok = self.note(side, old, now, tree=tree) and self.note(side, new, now, tree=tree)
        a, b = self._covering(side, old), self._covering(side, new)
        if ok and a is not None and b is not None and a is not b:
            self._links[a.key], self._links[b.key] = b.key, a.key
            self._touch(a, now)
        return ok

    def observe(self, change: Change, sig: Any, now: float) -> None:
        """A forced stat of a pending path saw `sig`: a difference is a change (restarts cooloff)."""
        if change.sig is not None and sig != change.sig:
            self._touch(change, now)
        change.sig = sig

    def retry(self, change: Change, now: float) -> bool:
        """Queue a failed change again after a cooloff; False once the retries are used up."""
        if change.retries >= self.config.sharing_retry_max:
            return False
        if not self.note(change.side, change.path, now, tree=change.tree, gone=change.gone):
            return False
        again = self._covering(change.side, change.path)
        if again is not None:
            again.retries = max(again.retries, change.retries + 1)
            again.first = min(again.first, change.first)
        return True

    # -- output ----------------------------------------------------------------------------
    def pop_due(self, now: float) -> Batch:
        """Remove and return the changes that are ready (quiet for `cooloff`); return, and keep,
        those given up on."""
        cfg = self.config
        batch = Batch()
        for change in list(self._pending.values()):
            if change.last + cfg.cooloff <= now:
                batch.ready.append(change)
            elif cfg.cooloff_max and now - change.waiting_since >= cfg.cooloff_max:
                change.given_up = now
                batch.expired.append(change)
        batch.ready = self._with_companions(batch.ready)
        if cfg.delete_delay:
            held = {c.key for c in batch.ready} | {c.key for c in batch.expired}
            if any(not c.gone for k, c in self._pending.items() if k not in held):
                batch.ready = [c for c in batch.ready if not c.gone]
        for change in batch.ready:
            self._remove(change.key)
        return batch

    def _with_companions(self, ready: list[Change]) -> list[Change]:
        """A ready path takes along the pending changes of the same path (or of a directory
        above it) on either side, and their rename partners: a path is never decided while
        half of what happened to it is still waiting (our own copy of a file echoing back
        while its original is renamed must not turn the rename into a delete)."""
        taken = {c.key: c for c in ready}
        todo = list(ready)
        while todo:
            change = todo.pop()
            near = [self._covering(side, change.path) for side in ("local", "remote")]
            near.append(self._pending.get(self._links.get(change.key, ("", ""))))
            for other in near:
                if other is not None and other.key not in taken:
                    taken[other.key] = other
                    todo.append(other)
        return list(taken.values())

    def next_deadline(self) -> float | None:
        """When the next change becomes ready or expires (None: nothing pending)."""
        cfg = self.config
        waiting = [c for c in self._pending.values() if not c.gone] if cfg.delete_delay else []
        candidates = waiting or list(self._pending.values())
        times = [c.last + cfg.cooloff for c in candidates]
        if cfg.cooloff_max:
            times += [c.waiting_since + cfg.cooloff_max for c in candidates]
        return min(times, default=None)

    def take_overflow(self) -> bool:
        """Whether changes were dropped since the last call (then a rescan is due)."""
        overflowed, self._overflowed = self._overflowed, False
        return overflowed

    def statistics(self, now: float) -> dict[str, float]:
        oldest = min((c.first for c in self._pending.values()), default=now)
        return {"pending": len(self._pending), "lag_seconds": max(0.0, now - oldest),
                "dropped": self.dropped, "coalesced": self.coalesced}  # fmt: skip

    # -- internals -------------------------------------------------------------------------
    def _covering(self, side: str, path: str) -> Change | None:
        for parent in _ancestors(path):
            if (side, parent) in self._trees:
                return self._pending[(side, parent)]
        return self._pending.get((side, path))

    def _touch(self, change: Change, now: float) -> None:
        change.last = max(change.last, now)
        partner = self._pending.get(self._links.get(change.key, ("", "")))
        if partner is not None and partner.last < change.last:
            partner.last = change.last
            partner.first = min(partner.first, change.first)

    def _absorb(self, tree: Change) -> None:
        prefix = tree.path + "/"
        for key in [k for k in self._pending if k[0] == tree.side and k[1].startswith(prefix)]:
            below = self._pending[key]
            tree.first = min(tree.first, below.first)
            if key in self._links:
                self._links[tree.key] = partner = self._links[key]
                self._links[partner] = tree.key
            self._remove(key)

    def _remove(self, key: Key) -> None:
        self._pending.pop(key, None)
        self._trees.discard(key)
        partner = self._links.pop(key, None)
        if partner is not None and self._links.get(partner) == key:
            del self._links[partner]
