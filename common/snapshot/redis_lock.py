"""The pair lock of the Redis snapshot store: one Redis string per pair, ``SET NX PX`` with a
token naming the holder, renewed by a daemon thread while held, so that two syncs of one pair
are refused and a killed sync blocks the pair for one TTL at most.

Renewal and release compare the token first (in a Lua script), so a holder whose lock expired
never extends or deletes the next holder's lock; it notices (``lost``) and its store refuses
further work.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from typing import Final

import redis

from common.snapshot.base import SnapshotError

__all__ = ["PairLock"]

_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class PairLock:
    """Held from :meth:`acquire` to :meth:`release`; ``token`` is what the lock key holds."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError(f"lock TTL must be positive, got {ttl_s}")
        self.key: Final = key
        self.ttl_ms: Final = max(1, int(ttl_s * 1000))
        self.token: Final = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}".encode()
        self._client = client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False
        """Set when a renewal found the key gone or held by another (expired, Redis restarted)."""

    def acquire(self) -> None:
        if not self._client.set(self.key, self.token, nx=True, px=self.ttl_ms):
            holder = self._client.get(self.key)
            left = self._client.pttl(self.key)
            who = holder.decode(errors="replace") if isinstance(holder, bytes) else "unknown"
            raise SnapshotError(
                f"another sync of this pair is running (Redis lock {self.key} held by {who},"
                f" expires in {max(left, 0) / 1000:.1f} s unless renewed)"
            )
        self._thread = threading.Thread(target=self._keep, name=f"lock {self.key}", daemon=True)
        self._thread.start()

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                renewed = self._renew(keys=[self.key], args=[self.token, self.ttl_ms])
            except redis.RedisError:
                continue  # Redis away for now: the next store call reports it
            if not renewed:
                self.lost = True
                return

    def release(self) -> None:
        """Stop renewing and delete the key if it is still ours; never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            try:
                self._release(keys=[self.key], args=[self.token])
            except redis.RedisError:
                pass  # unreachable: the key expires by itself
