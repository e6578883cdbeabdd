"""Per-datagram protection: AES-GCM, AES-CFB with HMAC (encrypt-then-MAC), or none.

Keys come from a secret agreed over the control channel (SSH), expanded with HKDF-SHA256 into
one key and IV per direction, so the two directions never share a nonce space. The nonce of a
datagram is the direction's IV XOR its 64-bit packet number; the sender's `Sealer` draws packet
numbers from a counter it alone owns, so a nonce is never reused under a key. The clear header
is associated data: a flipped header bit fails authentication just like a flipped payload bit.

`-c none` neither encrypts nor authenticates (as with ascp); the session id and the replay
window still drop foreign and repeated datagrams.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

try:  # CFB moved to the "decrepit" namespace in cryptography 47
    from cryptography.hazmat.decrepit.ciphers.modes import CFB as _CFB
except ImportError:  # pragma: no cover - older cryptography
    _CFB = modes.CFB  # type: ignore[misc]
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["AuthenticationError", "PacketProtection", "ReplayWindow", "derive_protection"]

TAG_SIZE: Final = 16
_PN_LIMIT: Final = (1 << 62)  # stop long before the 64-bit packet number could wrap


class AuthenticationError(Exception):
    """A datagram failed authentication (forged, corrupted, or under another key)."""


class PacketProtection:
    """Seals and opens datagrams of one direction. Subclasses implement one cipher family.

    Plaintext and ciphertext never share memory (cryptography >= 51 refuses overlapping
    buffers): the sender reads file data into a buffer of its own and seals it into the
    datagram; the receiver opens a datagram into a buffer of its own. Only `none`, which
    transforms nothing, works in place (`in_place`), so its driver reads and writes the
    datagram buffers directly."""

    overhead = 0
    name = "none"
    in_place = True

    def seal_into(self, buf: bytearray | memoryview, hdr_len: int, payload_len: int, pn: int,
                  plain: bytes | bytearray | memoryview | None = None) -> int:  # fmt: skip
        """Protect the payload into ``buf[hdr_len:]``, the header ``buf[:hdr_len]`` as associated
        data, and write the tag after it; returns the datagram length. The payload is `plain`
        (``payload_len`` bytes, not overlapping `buf`), or with `plain` None the bytes already
        at ``buf[hdr_len:hdr_len+payload_len]``."""
        if plain is not None:
            memoryview(buf)[hdr_len : hdr_len + payload_len] = plain
        return hdr_len + payload_len

    def open(self, datagram: memoryview, hdr_len: int, pn: int,
             out: memoryview | None = None) -> memoryview:  # fmt: skip
        """Verify and decrypt; returns the plaintext payload. With `out` (writable, not
        overlapping the datagram, at least as long) the payload is decrypted into it and lives
        as long as that buffer; without, it is valid until the next call. Raises
        AuthenticationError."""
        return datagram[hdr_len:]


class _Gcm(PacketProtection):
    overhead = TAG_SIZE
    in_place = False

    def __init__(self, key: bytes, iv: bytes) -> None:
        self._aead = AESGCM(key)
        self._iv = int.from_bytes(iv, "big")
        self._scratch = memoryview(bytearray(1 << 16))  # reused: open() results live until the next call
        self.name = f"aes{len(key) * 8}gcm"

    def seal_into(self, buf: bytearray | memoryview, hdr_len: int, payload_len: int, pn: int,
                  plain: bytes | bytearray | memoryview | None = None) -> int:  # fmt: skip
        mv = memoryview(buf)
        end = hdr_len + payload_len
        if plain is None:
            plain = bytes(mv[hdr_len:end])
        nonce = (self._iv ^ pn).to_bytes(12, "big")
        self._aead.encrypt_into(nonce, plain, mv[:hdr_len], mv[hdr_len : end + TAG_SIZE])
        return end + TAG_SIZE

    def open(self, datagram: memoryview, hdr_len: int, pn: int,
             out: memoryview | None = None) -> memoryview:  # fmt: skip
        size = len(datagram) - hdr_len - TAG_SIZE
        if size < 0:
            raise AuthenticationError("datagram shorter than its tag")
        nonce = (self._iv ^ pn).to_bytes(12, "big")
        dest = (self._scratch if out is None else out)[:size]
        try:
            self._aead.decrypt_into(nonce, datagram[hdr_len:], datagram[:hdr_len], dest)
        except InvalidTag:
            raise AuthenticationError("bad tag") from None
        return dest


class _Cfb(PacketProtection):
    """AES-CFB128 then HMAC-SHA256 (truncated to 16 bytes) over header and ciphertext."""

    overhead = TAG_SIZE
    in_place = False

    def __init__(self, key: bytes, iv: bytes, mac_key: bytes) -> None:
        self._algo = algorithms.AES(key)
        self._iv = int.from_bytes(iv, "big")
        self._mac_key = mac_key
        self.name = f"aes{len(key) * 8}cfb"

    def _cipher(self, pn: int) -> Cipher[_CFB]:
        return Cipher(self._algo, _CFB((self._iv ^ pn).to_bytes(16, "big")))

    def seal_into(self, buf: bytearray | memoryview, hdr_len: int, payload_len: int, pn: int,
                  plain: bytes | bytearray | memoryview | None = None) -> int:  # fmt: skip
        mv = memoryview(buf)
        end = hdr_len + payload_len
        if plain is None:
            plain = bytes(mv[hdr_len:end])
        enc = self._cipher(pn).encryptor()
        enc.update_into(plain, mv[hdr_len:end])
        mv[end : end + TAG_SIZE] = hmac.digest(self._mac_key, mv[:end], hashlib.sha256)[:TAG_SIZE]
        return end + TAG_SIZE

    def open(self, datagram: memoryview, hdr_len: int, pn: int,
             out: memoryview | None = None) -> memoryview:  # fmt: skip
        end = len(datagram) - TAG_SIZE
        if end < hdr_len:
            raise AuthenticationError("datagram shorter than its tag")
        want = hmac.digest(self._mac_key, datagram[:end], hashlib.sha256)[:TAG_SIZE]
        if not hmac.compare_digest(want, datagram[end:]):
            raise AuthenticationError("bad MAC")
        dec = self._cipher(pn).decryptor()
        if out is None:
            return memoryview(dec.update(datagram[hdr_len:end]))
        dest = out[: end - hdr_len]
        dec.update_into(datagram[hdr_len:end], dest)
        return dest


def derive_protection(cipher: str, secret: bytes, label: str) -> PacketProtection:
    """Protection for one direction (`label`, e.g. ``"data"`` or ``"feedback"``) of a session."""
    if cipher == "none":
        return PacketProtection()
    bits = int(cipher[3:6])
    mode = cipher[6:]
    if len(secret) < 32:
        raise ValueError("session secret must be at least 32 bytes")
    key_len = bits // 8
    out_len = key_len + 16 + (32 if mode == "cfb" else 0)
    okm = HKDF(hashes.SHA256(), out_len, salt=None, info=f"surge/1 {cipher} {label}".encode()).derive(secret)
    key, iv = okm[:key_len], okm[key_len : key_len + 16]
    if mode == "gcm":
        return _Gcm(key, iv[:12])
    if mode == "cfb":
        return _Cfb(key, iv, okm[key_len + 16 :])
    raise ValueError(f"unknown cipher {cipher!r}")


class ReplayWindow:
    """Remembers which packet numbers arrived, to drop replays in O(1).

    Packet numbers more than `size` below the highest seen are too old and dropped: the sender
    only uses each number once, so such a datagram is a replay or hopelessly late."""

    __slots__ = ("_mask", "_size", "_slots", "highest")

    def __init__(self, size: int = 1 << 16) -> None:
        if size & (size - 1):
            raise ValueError("replay window size must be a power of two")
        self._slots = [-1] * size
        self._mask = size - 1
        self._size = size
        self.highest = -1

    def check_and_mark(self, pn: int) -> bool:
        """True (and remembered) if `pn` is new; False if seen before or too old."""
        if pn >= _PN_LIMIT:
            return False
        if pn <= self.highest - self._size:
            return False
        i = pn & self._mask
        if self._slots[i] == pn:
            return False
        self._slots[i] = pn
        if pn > self.highest:
            self.highest = pn
        return True
