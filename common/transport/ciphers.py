"""Cipher names and the client/server cipher negotiation of the ascp reference.

Client requests (`-c`): ``aes128|aes192|aes256`` (mode chosen by the server), ``aesNNNgcm``,
``aesNNNcfb`` or ``none``. Server settings (the role of aspera.conf): ``any``, ``none``, a key
length (``aes128``...: any mode), or a key length with a mode (``aes128gcm``, ``aes256cfb``...),
or a bare mode (``gcm``/``cfb``: any key length). The rules, from the reference:

* a key shorter than the server's is upgraded to the server's length;
* a server that requires GCM refuses CFB; a server that requires CFB (or is too old for GCM)
  refuses GCM; a mode left to the server is GCM unless the server requires CFB or cannot do GCM;
* a server set to ``none`` refuses any cipher; a server that requires a cipher refuses ``none``;
* a server set to ``any`` accepts every request, ``none`` included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "CIPHER_CHOICES",
    "CipherRefused",
    "CipherRequest",
    "ServerCipherPolicy",
    "negotiate",
    "normalize_cipher",
]

CIPHER_CHOICES = (
    "aes128", "aes192", "aes256",
    "aes128gcm", "aes192gcm", "aes256gcm",
    "aes128cfb", "aes192cfb", "aes256cfb",
    "none",
)  # fmt: skip

_NAME = re.compile(r"^aes-?(128|192|256)(?:-?(gcm|cfb))?$")


class CipherRefused(ValueError):
    """The server's cipher policy does not allow the requested cipher."""


def normalize_cipher(text: str) -> str:
    """Canonical spelling of a cipher name (``AES-128-GCM`` -> ``aes128gcm``); ValueError if unknown."""
    name = text.strip().lower()
    if name in ("none", "no", "null"):
        return "none"
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"unknown cipher {text!r}: expected one of {', '.join(CIPHER_CHOICES)}")
    return f"aes{m.group(1)}{m.group(2) or ''}"


@dataclass(frozen=True)
class CipherRequest:
    """A client's `-c` value, split into key length and mode (``None`` = the server's choice)."""

    bits: int | None  # None means "none": no encryption
    mode: str | None  # "gcm", "cfb" or None (let the server decide)

    @classmethod
    def parse(cls, text: str) -> CipherRequest:
        name = normalize_cipher(text)
        if name == "none":
            return cls(None, None)
        mode = name[6:] or None
        return cls(int(name[3:6]), mode)


@dataclass(frozen=True)
class ServerCipherPolicy:
    """What the server allows: ``any``, ``none``, or a minimum key length and/or a required mode."""

    setting: str = "any"
    gcm_capable: bool = True  # False models a server older than 3.8.1 (CFB only)

    def __post_init__(self) -> None:
        self._split()  # validate

    def _split(self) -> tuple[int | None, str | None]:
        s = self.setting.strip().lower()
        if s in ("any", "none"):
            return None, None
        if s in ("gcm", "cfb"):
            return None, s
        try:
            name = normalize_cipher(s)
        except ValueError:
            raise ValueError(
                f"server cipher setting {self.setting!r}: expected any, none, gcm, cfb or a cipher name"
            ) from None
        return int(name[3:6]), (name[6:] or None)


def negotiate(request: CipherRequest | str, policy: ServerCipherPolicy) -> str:
    """The cipher both sides use, e.g. ``aes192gcm`` or ``none``; raises CipherRefused."""
    req = CipherRequest.parse(request) if isinstance(request, str) else request
    setting = policy.setting.strip().lower()
    if setting == "none":
        if req.bits is not None:
            raise CipherRefused("server refuses the transfer: it allows only unencrypted transfers (-c none)")
        return "none"
    if req.bits is None:
        if setting == "any":
            return "none"
        raise CipherRefused(f"server refuses the transfer: it requires encryption ({setting}), not -c none")
    server_bits, server_mode = policy._split()
    if not policy.gcm_capable:
        server_mode = "cfb"
    bits = max(req.bits, server_bits or 0)
    if req.mode is None:
        mode = server_mode or "gcm"
    elif server_mode is None or server_mode == req.mode:
        mode = req.mode
    else:
        why = "does not support GCM" if not policy.gcm_capable else f"requires {server_mode.upper()}"
        raise CipherRefused(f"server refuses the transfer: it {why}, but {req.mode.upper()} was requested")
    return f"aes{bits}{mode}"
