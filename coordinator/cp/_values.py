"""Converters from the text of ``surge cp`` options to values (:mod:`coordinator.cp.options` calls
them). Each raises :class:`OptionError` with a one-line message that starts with the option."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from common.units import format_bytes, parse_size
from coordinator.optcommon import OptionError, parse_sshfp, parse_tags

__all__ = ["DEFAULT_LOG_SIZE", "MAX_TOKEN_FILE_BYTES", "byte_range", "checksum", "cipher", "cookie", "dest64",
           "integer", "log_location", "lower", "lower_or", "multi_session", "private_keys", "source_prefix", "split_host", "sshfp",
           "tags", "token", "with_prefix"]  # fmt: skip

MAX_TOKEN_FILE_BYTES = 64 << 10  # -W @file: a token is a few KB at most
DEFAULT_LOG_SIZE = 10 << 20  # -L dir[:size] default


def integer(text: str | None, option: str, default: int) -> int:
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,12}", text.strip()):
        raise OptionError(f"{option}: invalid number {text!r}: expected a whole number")
    return int(text)


def _pair(text: str, option: str, what: str, empty_ok: bool) -> tuple[str, str]:
    number = r"[0-9]{1,20}" + ("|" if empty_ok else "")
    match = re.fullmatch(rf"\s*({number})\s*:\s*({number})\s*", text)
    if match is None:
        raise OptionError(f"{option}: invalid value {text!r}: expected {what}")
    return match[1], match[2]


def byte_range(text: str | None) -> tuple[int | None, int | None] | None:
    if text is None:
        return None
    start, end = _pair(text, "-@", "START:END byte positions (either may be empty)", True)
    return (int(start) if start else None, int(end) if end else None)


def multi_session(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    node_id, node_count = _pair(text, "-C", "NODEID:NODECOUNT", False)
    return int(node_id), int(node_count)


def cipher(text: str | None, disabled: bool) -> str:
    cipher = "aes128" if text is None else re.sub(r"[-_]", "", text.strip().lower())
    if disabled:
        if text is not None and cipher != "none":
            raise OptionError(f"-T: conflicts with -c {text} (-T turns encryption off)")
        return "none"
    return cipher


def checksum(text: str | None) -> str:
    value = "none" if text is None else text.strip().lower()
    match = re.fullmatch(r"sha-?(1|256|384|512)", value)
    if match:
        return "sha1" if match[1] == "1" else f"sha-{match[1]}"
    return value


def log_location(text: str | None) -> tuple[str | None, int]:
    if text is None:
        return None, DEFAULT_LOG_SIZE
    head, colon, tail = text.rpartition(":")
    if colon and head and not (len(head) == 1 and head.isalpha()):
        return head, parse_size(tail, "-L", minimum=1)
    if not text:
        raise OptionError("-L: empty log directory")
    return text, DEFAULT_LOG_SIZE


def token(text: str | None, env: Mapping[str, str]) -> str | None:
    if text is None:
        return env.get("SURGE_TOKEN") or env.get("ASPERA_SCP_TOKEN") or None
    if not text.startswith("@"):
        if not text.strip():
            raise OptionError("-W: empty token")
        return text
    path = text[1:]
    if not path:
        raise OptionError("-W: missing token file name after '@'")
    try:
        with open(path, "rb") as stream:
            data = stream.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as error:
        raise OptionError(f"-W: cannot read token file {path!r}: {error.strerror}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise OptionError(
            f"-W: token file {path!r} is larger than {format_bytes(MAX_TOKEN_FILE_BYTES)}"
        )
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise OptionError(f"-W: token file {path!r} is not UTF-8 text") from None
    if not token:
        raise OptionError(f"-W: token file {path!r} is empty")
    return token


def tags(given: list[tuple[str, str]] | None) -> str | None:
    if not given:
        return None
    kind, text = given[-1]
    return parse_tags(kind, text, "--tags" if kind == "json" else "--tags64")


def sshfp(text: str | None) -> str | None:
    return None if text is None else parse_sshfp(text, repr(text))


def cookie(text: str | None, env: Mapping[str, str]) -> str | None:
    cookie = (
        text
        if text is not None
        else (env.get("SURGE_COOKIE") or env.get("ASPERA_SCP_COOKIE") or None)
    )
    if cookie is not None and re.search(r"[\r\n\0]", cookie):
        raise OptionError("--cookie: must not contain CR, LF or NUL")
    return cookie


def lower(text: str | None) -> str | None:
    return None if text is None else text.strip().lower()


def lower_or(text: str | None, default: str) -> str:
    return default if text is None else text.strip().lower()


def _b64(text: str, option: str) -> str:
    try:
        return base64.b64decode(text.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OptionError(f"{option}: {text[:40]!r} is not base64-encoded UTF-8 text") from None


def source_prefix(given: list[tuple[str, str]] | None) -> str | None:
    """The last of --source-prefix/--source-prefix64 (the reference: the last one wins)."""
    if not given:
        return None
    kind, text = given[-1]
    prefix = _b64(text, "--source-prefix64") if kind == "base64" else text
    if not prefix:
        raise OptionError("--source-prefix: empty prefix")
    return prefix


def with_prefix(prefix: str | None, path: str) -> str:
    """`prefix` prepended to `path`, with one '/' between them when neither has it."""
    if prefix is None:
        return path
    if prefix.endswith("/") or path.startswith("/"):
        return prefix + path
    return f"{prefix}/{path}"


_HOST_HEAD = re.compile(r"((?:[^@/:\[\]]+@)?(?:\[[0-9A-Fa-f:.%\w]+\]|[^@/:\[\]\s]{2,}):)(.*)", re.S)


def split_host(text: str) -> tuple[str, str]:
    """(``[user@]host:``, path) of a remote argument; ("", text) for a local one (``C:\\x`` too)."""
    match = None if text.startswith("faux://") else _HOST_HEAD.fullmatch(text)
    return (match[1], match[2]) if match else ("", text)


def dest64(text: str) -> str:
    """--dest64: the destination (the path part of HOST:PATH) is base64-encoded."""
    head, encoded = split_host(text)
    return head + _b64(encoded, "--dest64")


def private_keys(given: list[str] | None, env: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
    """(-i key files, key text): without -i, ASPERA_SCP_KEY (or SURGE_KEY) holds the private
    key itself ("-----BEGIN ...") or the path of a key file."""
    if given:
        return tuple(given), None
    value = env.get("SURGE_KEY") or env.get("ASPERA_SCP_KEY")
    if not value or not value.strip():
        return (), None
    if value.lstrip().startswith("-----BEGIN"):
        return (), value
    return (value.strip(),), None
