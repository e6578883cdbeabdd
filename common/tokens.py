"""Credentials the server checks besides SSH keys: transfer tokens and password hashes.

Transfer tokens play the role of ascp's ``-W`` / ``ASPERA_SCP_TOKEN`` authorization tokens.

A token is made by something that holds the server's token secret (a web portal, an operator)
and handed to a client, which passes it with ``-W``. The server then allows the transfer it names
without any other authorization::

    surge1.<base64url(JSON payload)>.<base64url(HMAC-SHA256(secret, "surge1." + payload part))>

The payload is ``{"u": user, "d": direction, "p": [paths], "exp": expiry, "iat": issued at,
"n": nonce}``, times in whole epoch seconds. ``d`` is ``push`` (upload), ``pull`` (download) or
``bidi`` (either). A requested path is covered when, after :func:`posixpath.normpath`, it equals
one of the token's paths or lies under it component-wise (``/data`` covers ``/data/x`` but not
``/database``; ``/`` covers everything). Paths are in the docroot's namespace, where ``a`` and
``/a`` name the same file (the reference takes absolute remote paths relative to the docroot).

:func:`verify_token` checks, in order: the shape, the signature (constant time, before the payload
is parsed), the payload's fields, the expiry, the user, the direction and the paths. Whatever the
token string holds, it raises only :class:`TokenError`, whose ``reason`` says which check failed.

Passwords (a user's ``password`` in the server configuration) are stored as
``scrypt$N$r$p$salt$hash`` (base64) made by :func:`hash_password`, never in plain text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import posixpath
import re
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

__all__ = [
    "DIRECTIONS",
    "MAX_PATHS",
    "MAX_TOKEN_LENGTH",
    "MIN_SECRET_BYTES",
    "PREFIX",
    "TokenError",
    "check_password",
    "create_token",
    "hash_password",
    "normalize_direction",
    "validate_password_hash",
    "verify_token",
]

PREFIX: Final = "surge1"
DIRECTIONS: Final = ("push", "pull", "bidi")
_ALIASES: Final = {"upload": "push", "download": "pull"}
_VERBS: Final = {"push": "upload", "pull": "download"}

MIN_SECRET_BYTES: Final = 16
"""Shortest secret accepted for signing or verifying."""
MAX_TOKEN_LENGTH: Final = 64 * 1024
"""Longest token looked at; longer text is refused unread."""
MAX_PATHS: Final = 1024
"""Most paths one token may name."""
_MAX_EPOCH: Final = 253_402_300_799  # 9999-12-31T23:59:59Z
_SCRYPT_N: Final = 1 << 14
_SCRYPT_R: Final = 8
_HASH: Final = re.compile(r"scrypt\$(\d{1,7})\$(\d{1,2})\$(\d{1,2})"
                          r"\$([A-Za-z0-9+/]{22}==)\$([A-Za-z0-9+/]{43}=)")  # 16 and 32 bytes


class TokenError(ValueError):
    """A token that does not allow the transfer; ``reason`` is one of ``malformed``,
    ``signature``, ``expired``, ``user``, ``direction``, ``path``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def normalize_direction(direction: str, *, allow_bidi: bool = True) -> str:
    """``push``/``pull``/``bidi``, with the aliases ``upload`` and ``download``."""
    name = _ALIASES.get(direction, direction) if isinstance(direction, str) else direction
    allowed = DIRECTIONS if allow_bidi else DIRECTIONS[:2]
    if name not in allowed:
        raise ValueError(f"unknown direction {direction!r}: expected one of "
                         f"{', '.join(allowed)} (or upload, download)")
    return str(name)


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"token secret must be at least {MIN_SECRET_BYTES} bytes")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str, what: str) -> bytes:
    """Strict base64url without padding: the only spelling :func:`_b64encode` produces."""
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        data = None
    if data is None or _b64encode(data) != text:
        raise TokenError("malformed", f"malformed token: the {what} is not base64url")
    return data


def _mac(secret: bytes, signed: str) -> bytes:
    return hmac.new(bytes(secret), signed.encode("ascii"), hashlib.sha256).digest()


def _rooted(path: str) -> str:
    """``path`` in the docroot's namespace: normalized, starting with ``/``."""
    return posixpath.normpath("/" + path.lstrip("/"))


def _covers(granted: str, path: str) -> bool:
    return granted == "/" or path == granted or path.startswith(granted + "/")


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_token(secret: bytes, *, user: str, direction: str, paths: Sequence[str],
                 ttl: float, now: float | None = None) -> str:
    """A token letting ``user`` transfer ``paths`` in ``direction`` for ``ttl`` seconds.

    ``direction`` is ``push``, ``pull``, ``bidi``, ``upload`` or ``download``. Raises ValueError
    for a short secret, an empty user, no paths, more than :data:`MAX_PATHS` or a ttl < 1 s.
    """
    _check_secret(secret)
    if not isinstance(user, str) or not user:
        raise ValueError("token user must be a non-empty string")
    name = normalize_direction(direction)
    if isinstance(paths, str) or not paths or len(paths) > MAX_PATHS:
        raise ValueError(f"token paths must be a list of 1 to {MAX_PATHS} paths, not {paths!r}")
    normalized: list[str] = []
    for path in paths:
        if not isinstance(path, str) or not path or "\0" in path:
            raise ValueError(f"invalid token path {path!r}")
        normalized.append(_rooted(path))
    issued = time.time() if now is None else now
    if not math.isfinite(ttl) or ttl < 1 or not math.isfinite(issued) or issued < 0:
        raise ValueError(f"token ttl must be at least one second, not {ttl!r}")
    expiry = math.floor(issued + ttl)
    if expiry > _MAX_EPOCH:
        raise ValueError(f"token would expire after the year 9999 (ttl {ttl!r})")
    payload = {"u": user, "d": name, "p": normalized, "exp": expiry, "iat": math.floor(issued),
               "n": secrets.token_urlsafe(12)}
    body = _b64encode(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    signed = f"{PREFIX}.{body}"
    return f"{signed}.{_b64encode(_mac(secret, signed))}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _payload(data: bytes) -> dict[str, Any]:
    """The payload's fields, checked; TokenError("malformed") otherwise."""
    try:
        payload = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise TokenError("malformed", "malformed token: the payload is not JSON") from None
    problem = _payload_problem(payload)
    if problem:
        raise TokenError("malformed", f"malformed token: {problem}")
    return dict(payload)


def _payload_problem(payload: object) -> str | None:
    if not isinstance(payload, dict):
        return "the payload is not a JSON object"
    missing = {"u", "d", "p", "exp", "iat", "n"} - payload.keys()
    if missing:
        return f"the payload lacks {', '.join(sorted(missing))}"
    if not isinstance(payload["u"], str) or not payload["u"]:
        return "the user is not a non-empty string"
    if payload["d"] not in DIRECTIONS:
        return f"unknown direction {payload['d']!r}"
    paths = payload["p"]
    if (not isinstance(paths, list) or not paths or len(paths) > MAX_PATHS
            or not all(isinstance(p, str) and p for p in paths)):
        return f"the paths are not a list of 1 to {MAX_PATHS} non-empty strings"
    for key in ("iat", "exp"):
        value = payload[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_EPOCH:
            return f"{key} is not a time in whole epoch seconds"
    if payload["iat"] > payload["exp"]:
        return "it was issued after it expires"
    if not isinstance(payload["n"], str):
        return "the nonce is not a string"
    return None


def verify_token(secret: bytes, token: str, *, user: str, direction: Literal["push", "pull"],
                 paths: Sequence[str], now: float | None = None) -> dict[str, Any]:
    """The token's payload if it lets ``user`` transfer ``paths`` in ``direction`` at ``now``.

    Raises TokenError saying what is wrong; ValueError for a short secret or an unknown
    ``direction`` (``upload``/``download`` are accepted), which are the caller's mistakes.
    """
    _check_secret(secret)
    wanted = normalize_direction(direction, allow_bidi=False)
    if isinstance(paths, str):
        raise ValueError("paths must be a sequence of paths, not one string")
    if not isinstance(token, str):
        raise TokenError("malformed", f"malformed token: expected text, not {type(token).__name__}")
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenError("malformed", f"malformed token: longer than {MAX_TOKEN_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1].isascii() or not parts[2].isascii():
        raise TokenError("malformed",
                         f"malformed token: expected '{PREFIX}.<payload>.<signature>'")
    data = _b64decode(parts[1], "payload")
    mac = _b64decode(parts[2], "signature")
    if not data or len(mac) != hashlib.sha256().digest_size:
        raise TokenError("malformed", "malformed token: empty payload or short signature")
    if not hmac.compare_digest(mac, _mac(secret, f"{PREFIX}.{parts[1]}")):
        raise TokenError("signature",
                         "bad token signature: made with another secret, or altered")
    payload = _payload(data)
    moment = time.time() if now is None else now
    if moment >= payload["exp"]:
        raise TokenError("expired", f"token expired at {_when(payload['exp'])} "
                                    f"({moment - payload['exp']:.0f} s ago)")
    if payload["u"] != user:
        raise TokenError("user", f"token is for user {payload['u']!r}, not {user!r}")
    if payload["d"] not in (wanted, "bidi"):
        raise TokenError("direction",
                         f"direction {wanted} ({_VERBS[wanted]}) not allowed: the token "
                         f"allows {payload['d']} ({_VERBS[payload['d']]}) only")
    granted = [_rooted(p) for p in payload["p"]]
    for path in paths:
        if (not isinstance(path, str) or "\0" in path
                or not any(_covers(g, _rooted(path)) for g in granted)):
            raise TokenError("path", f"path {path!r} not covered by the token, which allows "
                                     f"{', '.join(map(repr, granted))}")
    return payload


# --------------------------------------------------------------------------------- passwords


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64) for ``password``, with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=1, dklen=32)
    encoded = (base64.b64encode(part).decode("ascii") for part in (salt, digest))
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}$1$" + "$".join(encoded)


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    match = _HASH.fullmatch(stored) if isinstance(stored, str) else None
    if match is None:
        raise ValueError("not a hash made by hash_password ('scrypt$N$r$p$salt$hash'); "
                         "plaintext passwords are not accepted")
    n, r, p = int(match[1]), int(match[2]), int(match[3])
    if n < 2 or n & (n - 1) or not 1 <= r <= 32 or n * r > 1 << 21 or not 1 <= p <= 16:
        raise ValueError(f"scrypt parameters N={n} r={r} p={p} out of range "
                         "(N a power of two, N*r at most 2**21, p at most 16)")
    return n, r, p, base64.b64decode(match[4]), base64.b64decode(match[5])


def validate_password_hash(stored_hash: str) -> str:
    """``stored_hash`` if it has the form :func:`hash_password` makes; ValueError otherwise."""
    _parse_hash(stored_hash)
    return stored_hash


def check_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``, compared in constant time; ValueError if
    the hash is malformed."""
    n, r, p, salt, digest = _parse_hash(stored_hash)
    memory = 128 * r * (n + p + 2) * 2  # OpenSSL's need, with room to spare
    candidate = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32,
                               maxmem=memory)
    return hmac.compare_digest(candidate, digest)
