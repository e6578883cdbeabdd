"""What the `surge cp` and `surge sync` command lines share: the error and information
exceptions, the rate policies and ciphers, and the parsers of values both accept (--tags/--tags64,
--check-sshfp)."""

from __future__ import annotations

import base64
import json
import re

__all__ = ["CIPHERS", "MAX_TAGS_BYTES", "POLICIES", "InfoRequest", "OptionError", "ShowHelp", "ShowVersion",
           "parse_proxy", "parse_sshfp", "parse_tags"]

MAX_TAGS_BYTES = 4096  # --tags: "limited to 4 Kb" (--tags64: once decoded)
POLICIES = ("fixed", "high", "fair", "low")
CIPHERS = (
    "aes128",
    "aes192",
    "aes256",
    "aes128cfb",
    "aes192cfb",
    "aes256cfb",
    "aes128gcm",
    "aes192gcm",
    "aes256gcm",
    "none",
)


class OptionError(ValueError):
    """A bad command line; the message names the option and the problem."""


class InfoRequest(Exception):
    """The user asked for information instead of a transfer; print :attr:`text`, exit 0."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class ShowHelp(InfoRequest):
    """``-h``/``--help``."""


class ShowVersion(InfoRequest):
    """``-A``/``--version``."""


def parse_tags(kind: str, text: str, option: str) -> str:
    """--tags (`kind` "json") or --tags64 ("base64"): JSON text of an object of at most 4 KB."""
    if kind == "base64":
        if len(text) > (MAX_TAGS_BYTES + 2) // 3 * 4 + 4:
            raise OptionError(f"{option}: longer than {MAX_TAGS_BYTES} bytes once decoded")
        try:
            text = base64.b64decode(text.strip(), validate=True).decode("utf-8")
        except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII text
            raise OptionError(f"{option}: not base64-encoded UTF-8 text") from None
    if len(text.encode("utf-8")) > MAX_TAGS_BYTES:
        raise OptionError(f"{option}: longer than {MAX_TAGS_BYTES} bytes")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise OptionError(f"{option}: invalid JSON: {str(error)[:80]}") from None
    if not isinstance(value, dict):
        raise OptionError(f"{option}: expected a JSON object, got {type(value).__name__}")
    return text


def parse_sshfp(text: str, shown: str) -> str:
    """--check-sshfp: hex digits (colons allowed), lower-cased; `shown` is how to quote it."""
    digits = text.strip().replace(":", "").lower()
    if not re.fullmatch(r"(?:[0-9a-f]{2}){1,64}", digits):
        raise OptionError(f"--check-sshfp: invalid fingerprint {shown}: expected hex digits "
                          "(e.g. f74e5de9ed0d62feaf0616ed1e851133c42a0082)")  # fmt: skip
    return digits


def parse_proxy(text: str, password_env: str | None = None, password_in_env: bool = False) -> str:
    """--proxy ``dnat[s]://USER:PASSWORD@HOST[:PORT]``; the text holds a secret, so never quoted.
    `password_env` names the environment variable that may hold the password instead
    (``surge cp``: ASPERA_PROXY_PASS), `password_in_env` says whether it is set."""
    match = re.fullmatch(r"dnats?://([^:@/\s]+)(?::([^@/\s]+))?@([^:/@\s]+|\[[^\]\s]+\])"
                         r"(?::([0-9]{1,5}))?/?", text.strip(), re.IGNORECASE)  # fmt: skip
    if (match is None or (match[2] is None and not (password_env and password_in_env))
            or (match[4] is not None and not 1 <= int(match[4]) <= 65535)):  # fmt: skip
        where = f": in the URL or {password_env}" if password_env else ""
        raise OptionError(f"--proxy: expected dnat[s]://USER:PASSWORD@HOST[:PORT] (the proxy password is required{where})")
    return text.strip()
