"""Converters from the text of ``surge sync`` options to values. Each raises
:class:`~coordinator.sync._optparse.OptionError` with a one-line message naming the option.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from common.units import (
    Rate,
    UnitError,
    parse_duration,
    parse_rate,
    parse_size,
    parse_utc_timestamp,
)
from coordinator.optcommon import MAX_TAGS_BYTES, parse_proxy, parse_sshfp, parse_tags

from ._optparse import OptionError

__all__ = [
    "MAX_ENV_VALUE",
    "MAX_LOG_MB",
    "MAX_TAGS_BYTES",
    "async_rate",
    "check_sshfp",
    "cipher",
    "env_value",
    "exclude_dirs_older_than",
    "integer",
    "log_location",
    "proxy",
    "split_remote",
    "tags",
    "transfer_threads",
    "watchd",
]

MAX_ENV_VALUE = 4096  # "Each environment variable value must not exceed 4096 characters"
MAX_LOG_MB = 100_000  # -L/-R DIR:MB
MAX_INT_DIGITS = 12



def _show(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def integer(text: str, option: str, low: int, high: int | None = None) -> int:
    """A whole number in ``low..high``."""
    if not re.fullmatch(rf"[0-9]{{1,{MAX_INT_DIGITS}}}", text.strip()):
        raise OptionError(f"{option}: invalid number {_show(text)}: expected a whole number")
    value = int(text)
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f"at least {low}"
        raise OptionError(f"{option}: {value} out of range {bound}")
    return value


_ASYNC_RATE_RE = re.compile(r"(?P<num>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<prefix>[gGmMkK])?"
                            r"(?:bps)?")


def async_rate(text: str, option: str, *, allow_zero: bool) -> Rate:
    """async's rate: a number with units of G/g, M/m, K/k or bps (a bare number is bps)."""
    match = _ASYNC_RATE_RE.fullmatch(text.strip())
    if match is None:
        raise OptionError(f"{option}: invalid rate {_show(text)}: expected a number with a "
                          "G/g, M/m or K/k suffix, or bps (e.g. 500m, 10M, 200k)")
    return parse_rate(f"{match['num']}{match['prefix'] or ''}bps", option, allow_zero=allow_zero)


def cipher(text: str) -> str:
    """``AES-128``, ``aes_256_gcm`` -> ``aes128``, ``aes256gcm`` (checked by the caller)."""
    return re.sub(r"[-_\s]", "", text.lower())


def log_location(text: str, option: str) -> tuple[str, int | None]:
    """``DIR[:MB]`` -> (DIR, bytes or None). A one-letter head is a drive (``C:/logs``); a tail
    with a path separator is part of the directory."""
    head, colon, tail = text.rpartition(":")
    if colon and head and not (len(head) == 1 and head.isalpha()) and not re.search(r"[/\\]", tail):
        megabytes = integer(tail, option, 1, MAX_LOG_MB) if tail.strip() else 0
        if not megabytes:
            raise OptionError(f"{option}: invalid log size in {_show(text)}: expected DIR[:MB]")
        return head, megabytes << 20
    if not text.strip():
        raise OptionError(f"{option}: empty log directory")
    return text, None


_REMOTE_RE = re.compile(
    r"(?:(?P<user>[^/\\:]*)@)?(?P<host>\[[^\]/\\\s]*\]|[^:/\\@\[\]\s]*):(?P<path>.*)", re.S)


def split_remote(text: str, host: str | None, user: str | None
                 ) -> tuple[str | None, str | None, str]:
    """(user, host, directory) of ``-r``; host None means a local directory.

    With ``--host`` the text is the directory as is. Otherwise ``[[USER@]HOST:]DIR``; a
    one-letter HOST is a Windows drive (``-r C:/data``); with ``--user``, '@' is not special.
    """
    if host is not None:  # --host=[v6 address], as the reference writes it
        return user, host[1:-1] if host.startswith("[") and host.endswith("]") else host, text
    match = _REMOTE_RE.fullmatch(text)
    if match is None:
        return user, None, text
    name, login, path = match["host"], match["user"], match["path"]
    if login is not None and user is not None:
        raise OptionError("-r: give the user either in -r (USER@HOST:DIR) or with --user, "
                          "not both")
    if len(name) == 1 and name.isalpha():
        if login is not None:
            raise OptionError(f"-r: one-letter host {name!r} reads as a Windows drive; "
                              f"use --host={name}")
        return user, None, text
    if login == "":
        raise OptionError("-r: empty user name before '@'")
    if name in ("", "[]"):
        raise OptionError("-r: empty host name before ':'")
    if not path:
        raise OptionError(f"-r: empty remote directory after {name!r}")
    return (user if login is None else login), name.strip("[]"), path


def _duration_form_ok(text: str) -> bool:
    """async's rule for --exclude-dirs-older-than durations: fields to the right of the
    largest unit given are required (``24h 00m 00s``, not ``24h``; ``1d 0:0:0``, not ``1d``)."""
    compact = re.sub(r"\s+", "", text)
    if ":" in compact:
        return re.fullmatch(r"(?:[0-9]+d)?(?:[0-9]+:)?[0-9]+:[0-9]+(?:\.[0-9]+)?",
                            compact) is not None
    units = re.findall(r"[a-z]+", compact)
    order = ["w", "d", "h", "m", "s"]
    return bool(units) and units[-1] == "s" and units[0] in order and \
        units == order[order.index(units[0]):]


def exclude_dirs_older_than(text: str, now: float) -> float:
    """Epoch seconds for the three forms of ``--exclude-dirs-older-than``: positive epoch
    seconds, a UTC timestamp ``YYYY-MM-DDTHH:MM:SS``, or a duration before ``now``."""
    option = "--exclude-dirs-older-than"
    stripped = text.strip()
    try:
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", stripped):
            value = float(stripped)
            if value <= 0:
                raise OptionError(f"{option}: epoch seconds must be positive")
            return value
        if re.fullmatch(r"[0-9]{4}-.*", stripped):
            return parse_utc_timestamp(stripped, option)
        seconds = parse_duration(stripped, option)
    except UnitError as error:
        raise OptionError(str(error)) from None
    if not _duration_form_ok(stripped):
        raise OptionError(f"{option}: invalid duration {_show(text)}: fields right of the "
                          "largest unit are required (1d 0:0:0, 24:00:00 or 24h 00m 00s, not 1d)")
    if seconds > now:
        raise OptionError(f"{option}: duration {_show(text)} reaches before 1970")
    return now - seconds


def transfer_threads(items: Sequence[str], max_threads: int
                     ) -> tuple[tuple[int, int | None], ...]:
    """``--transfer-threads=N[:SIZE]``, repeatable; at most one group per size bound."""
    groups: list[tuple[int, int | None]] = []
    for text in items:
        count, colon, size = text.partition(":")
        option = "--transfer-threads"
        threads = integer(count, option, 1, max_threads)
        try:
            bound = parse_size(size, option) if colon else None
        except UnitError as error:
            raise OptionError(str(error)) from None
        if any(previous == bound for _, previous in groups):
            what = "without a size" if bound is None else f"for size {bound}"
            raise OptionError(f"{option}: two thread groups {what}")
        groups.append((threads, bound))
    return tuple(groups)


def tags(given: list[tuple[str, str, str]] | None) -> str | None:
    """The last of ``--tags``/``--tags64`` as JSON text of a JSON object of at most 4 KB."""
    if not given:
        return None
    kind, text, option = given[-1]
    return parse_tags(kind, text, option)


def check_sshfp(text: str) -> str:
    return parse_sshfp(text, _show(text))


def proxy(text: str) -> str:
    """``dnat[s]://USER:PASSWORD@HOST[:PORT]``; the text is a secret, so never quoted."""
    return parse_proxy(text)


def watchd(text: str) -> str:
    """``DATASTORE:HOST:PORT[:DOMAIN]`` with DATASTORE redis or scalekv."""
    match = re.fullmatch(r"(redis|scalekv):([^:\s]+):([0-9]{1,5})(?::([^:\s]+))?", text.strip())
    if match is None:
        raise OptionError(f"--watchd: invalid value {_show(text)}: expected "
                          "redis|scalekv:HOST:PORT[:DOMAIN]")
    integer(match[3], "--watchd", 1, 65535)
    return text.strip()


def env_value(env: Mapping[str, str], *names: str) -> str | None:
    """The first non-empty of the variables ``names``; too long a value is an error."""
    for name in names:
        value = env.get(name)
        if value:
            if len(value) > MAX_ENV_VALUE:
                raise OptionError(f"{name}: longer than {MAX_ENV_VALUE} characters")
            return value
    return None
