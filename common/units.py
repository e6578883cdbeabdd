"""Parse and format the units that ascp and async options take: rates, sizes, durations, mtimes.

Every parser is pure (the current time is passed in) and raises exactly one error type,
:class:`UnitError`, whose message starts with the option name and says what was expected, e.g.
``-l: invalid rate '10x': expected a number with an optional G/M/K/P/% suffix``.

Conventions, from the ascp and async references:

* Rates (``-l``, ``-m``) are bits per second. A bare number is **Kbps**; ``G/g``, ``M/m`` and
  ``K/k`` multiply by powers of 1000; ``P``, ``p`` or ``%`` make it a percentage of a reference
  rate. Decimals are allowed. As an extension a trailing ``bps`` is accepted (``10Mbps``,
  ``500bps``), so that :func:`format_rate` output parses back.
* Sizes (``-g``, ``-G``, ``-L dir:size``) are bytes. A bare number is bytes; ``K/M/G/T`` (either
  case, optionally followed by ``B`` or ``iB``) multiply by powers of 1024, as ascp's "1M is one
  MB". The result must be a whole number of bytes.
* Durations follow async's ``--scan-interval``: a plain number of seconds, the unit form
  ``WWw DDd HHh MMm SSs XXms XXus`` (any subset, in that order, spaces optional) or the clock form
  ``[DDd ]HH:MM:SS[.mmm]`` with leading fields omittable. Only seconds may carry a fraction
  (async writes ``SS.mmm``; smaller units are spelled ``ms``/``us``).
* mtime bounds (``--exclude-newer-than``/``--exclude-older-than``): a positive number is seconds
  since the epoch, a negative one is seconds before now.
* UTC timestamps (async's ``--exclude-dirs-older-than``): ``YYYY-MM-DDTHH:MM:SS``, optionally
  followed by ``Z``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

__all__ = [
    "MAX_DURATION_SECONDS",
    "MAX_EPOCH_SECONDS",
    "MAX_RATE_BPS",
    "MAX_TEXT_LENGTH",
    "Rate",
    "UnitError",
    "format_bytes",
    "format_duration",
    "format_rate",
    "parse_duration",
    "parse_mtime_bound",
    "parse_rate",
    "parse_size",
    "parse_utc_timestamp",
]

MAX_RATE_BPS = 1_000_000_000_000
"""Largest accepted absolute rate: 1000 Gbps. Anything above is a typo, not a link."""
MAX_TEXT_LENGTH = 256
"""Longest option value any parser here looks at; longer text is rejected unread."""
MAX_DURATION_SECONDS = 100 * 365 * 86_400
"""Longest accepted duration: about a century."""
MAX_EPOCH_SECONDS = 253_402_300_799
"""Latest accepted mtime bound: 9999-12-31T23:59:59Z."""

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_RATE_RE = re.compile(
    rf"(?P<num>{_NUMBER})\s*(?:(?P<pct>[pP%])|(?P<prefix>[gGmMkK])?(?P<bps>bps)?)"
)
_RATE_MULTIPLIER = {"g": 1_000_000_000, "m": 1_000_000, "k": 1_000}
_SIZE_RE = re.compile(rf"(?P<num>{_NUMBER})\s*(?:(?P<prefix>[kKmMgGtT])(?:i?B)?|B)?")
_SIZE_MULTIPLIER = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SECONDS_RE = re.compile(_NUMBER)
_CLOCK_RE = re.compile(
    r"(?:(?P<d>[0-9]+)\s*d\s*(?=[0-9]+:[0-9]+:))?"
    r"(?:(?P<h>[0-9]+):(?=[0-9]+:))?(?P<m>[0-9]+):(?P<s>[0-9]+(?:\.[0-9]+)?)"
)
_UNIT_TOKEN_RE = re.compile(r"\s*(?P<num>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|us|w|d|h|m|s)")
_UNIT_SECONDS: dict[str, float] = {
    "w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6,
}
_UNIT_ORDER = tuple(_UNIT_SECONDS)
_MTIME_RE = re.compile(rf"(?P<sign>[+-])?(?P<num>{_NUMBER})")
_UTC_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z?")


class UnitError(ValueError):
    """An option value that does not parse; the message names the option and the problem."""


def _show(text: str) -> str:
    """Quote user text for an error message, shortened and with control characters escaped."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _checked_text(text: str, option: str, what: str) -> str:
    if not isinstance(text, str):
        raise UnitError(f"{option}: invalid {what}: expected text, got {type(text).__name__}")
    if len(text) > MAX_TEXT_LENGTH:
        raise UnitError(f"{option}: invalid {what}: longer than {MAX_TEXT_LENGTH} characters")
    stripped = text.strip()
    if not stripped:
        raise UnitError(f"{option}: invalid {what}: empty value")
    return stripped


# --------------------------------------------------------------------------------------- rates


@dataclass(frozen=True)
class Rate:
    """A transfer rate as ascp parses it: exactly one of an absolute rate or a percentage."""

    bits_per_second: float | None = None
    """Absolute rate in bits per second."""
    percent: float | None = None
    """Percentage (0-100] of a reference rate (``P``, ``p`` or ``%`` suffix)."""

    def __post_init__(self) -> None:
        if (self.bits_per_second is None) == (self.percent is None):
            raise ValueError("Rate needs exactly one of bits_per_second and percent")
        value = self.bits_per_second if self.percent is None else self.percent
        assert value is not None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"Rate value must be finite and non-negative, got {value!r}")

    @property
    def is_percent(self) -> bool:
        """True when the rate is relative to a reference rate."""
        return self.percent is not None

    def resolve(self, reference_bps: float) -> int:
        """Absolute bits per second; a percentage is taken of ``reference_bps``."""
        if self.bits_per_second is not None:
            return round(self.bits_per_second)
        if not math.isfinite(reference_bps) or reference_bps < 0:
            raise ValueError(f"reference rate must be finite and non-negative: {reference_bps!r}")
        assert self.percent is not None
        return round(reference_bps * self.percent / 100)

    def __str__(self) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        assert self.bits_per_second is not None
        return format_rate(self.bits_per_second)


def parse_rate(text: str, option: str = "-l", *, allow_zero: bool = False) -> Rate:
    """Parse an ascp rate: ``100`` (Kbps), ``1.5G``, ``300m``, ``40k``, ``50%``, ``75P``.

    A bare number is Kbps. ``allow_zero`` admits ``0`` (as ``-m`` does); otherwise the rate must
    be positive. Absolute rates must be at least 1 bps and at most :data:`MAX_RATE_BPS`;
    percentages at most 100.
    """
    stripped = _checked_text(text, option, "rate")
    match = _RATE_RE.fullmatch(stripped)
    if match is None:
        raise UnitError(
            f"{option}: invalid rate {_show(text)}: expected a number with an optional "
            "G/M/K/P/% suffix (a bare number is Kbps)"
        )
    number = Decimal(match["num"])
    if number == 0 and not allow_zero:
        raise UnitError(f"{option}: invalid rate {_show(text)}: must be greater than zero")
    if match["pct"] is not None:
        if number > 100:
            raise UnitError(f"{option}: invalid rate {_show(text)}: a percentage is at most 100")
        return Rate(percent=float(number))
    prefix = match["prefix"]
    if prefix is not None:
        bps = number * _RATE_MULTIPLIER[prefix.lower()]
    elif match["bps"] is not None:
        bps = number
    else:
        bps = number * 1000  # ascp: the default unit is Kbps
    if bps > MAX_RATE_BPS:
        raise UnitError(
            f"{option}: invalid rate {_show(text)}: above the maximum of "
            f"{format_rate(MAX_RATE_BPS)}"
        )
    if 0 < bps < 1:
        raise UnitError(f"{option}: invalid rate {_show(text)}: below 1 bps")
    return Rate(bits_per_second=float(bps))


def _three_digits(value: float) -> str:
    """Three significant digits, without scientific notation: 934, 93.4, 9.34."""
    if round(value, 2) >= 100:
        return f"{value:.0f}"
    if round(value, 2) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_rate(bps: float) -> str:
    """Human-readable rate with decimal prefixes: ``"93.4 Mbps"``, ``"512 bps"``."""
    if not math.isfinite(bps) or bps < 0:
        raise ValueError(f"rate must be finite and non-negative: {bps!r}")
    for scale, unit in ((1e12, "Tbps"), (1e9, "Gbps"), (1e6, "Mbps"), (1e3, "Kbps")):
        if bps >= scale:
            return f"{_three_digits(bps / scale)} {unit}"
    return f"{bps:.0f} bps"


# --------------------------------------------------------------------------------------- sizes


def parse_size(text: str, option: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """Parse a byte count: ``4096``, ``64K``, ``1.5M``, ``2GiB`` (K/M/G/T are powers of 1024).

    The value must be a whole number of bytes between ``minimum`` and ``maximum`` (inclusive).
    """
    stripped = _checked_text(text, option, "size")
    match = _SIZE_RE.fullmatch(stripped)
    if match is None:
        raise UnitError(
            f"{option}: invalid size {_show(text)}: expected a number of bytes with an optional "
            "K/M/G/T suffix"
        )
    prefix = match["prefix"]
    value = Decimal(match["num"]) * (_SIZE_MULTIPLIER[prefix.lower()] if prefix else 1)
    if value != value.to_integral_value():
        raise UnitError(f"{option}: invalid size {_show(text)}: not a whole number of bytes")
    count = int(value)
    if count < minimum:
        raise UnitError(
            f"{option}: invalid size {_show(text)}: below the minimum of {format_bytes(minimum)}"
        )
    if maximum is not None and count > maximum:
        raise UnitError(
            f"{option}: invalid size {_show(text)}: above the maximum of {format_bytes(maximum)}"
        )
    return count


def format_bytes(n: float) -> str:
    """Human-readable size with binary prefixes: ``"1.50 GiB"``, ``"512 B"``."""
    if not math.isfinite(n) or n < 0:
        raise ValueError(f"size must be finite and non-negative: {n!r}")
    for shift, unit in ((50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return f"{_three_digits(n / (1 << shift))} {unit}"
    return f"{n:.0f} B"


# ----------------------------------------------------------------------------------- durations


def _unit_form(text: str) -> float | None:
    """Seconds for ``1w2d3h4m5s6ms7us``-style text, or None if it is not in that form."""
    position, total, last_index = 0, 0.0, -1
    while position < len(text):
        token = _UNIT_TOKEN_RE.match(text, position)
        if token is None:
            return None
        unit, number = token["unit"], token["num"]
        index = _UNIT_ORDER.index(unit)
        if index <= last_index:
            return None
        if "." in number and unit != "s":
            return None
        total += float(number) * _UNIT_SECONDS[unit]
        position, last_index = token.end(), index
    return total


def _clock_form(text: str) -> float | None:
    """Seconds for ``[DDd ]HH:MM:SS[.mmm]`` or ``MM:SS`` text, or None if not in that form."""
    match = _CLOCK_RE.fullmatch(text)
    if match is None:
        return None
    days, hours = int(match["d"] or 0), int(match["h"] or 0)
    minutes, seconds = int(match["m"]), float(match["s"])
    leading = "d" if match["d"] else "h" if match["h"] else "m"
    if seconds >= 60 or (leading != "m" and minutes >= 60) or (leading == "d" and hours >= 24):
        return None
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def parse_duration(text: str, option: str) -> float:
    """Parse an async duration into seconds: ``30``, ``1.5``, ``1w2d3h4m5s``, ``10m``, ``250ms``,
    ``1d 02:03:04.5``, ``5:00``.

    Unit fields appear at most once and in the order w, d, h, m, s, ms, us; only seconds may
    have a fraction. In the clock form, fields right of the leading one are below 60 (24 for
    hours after days).
    """
    stripped = _checked_text(text, option, "duration")
    if _SECONDS_RE.fullmatch(stripped):
        seconds: float | None = float(stripped)
    else:
        seconds = _unit_form(stripped)
        if seconds is None:
            seconds = _clock_form(stripped)
    if seconds is None:
        raise UnitError(
            f"{option}: invalid duration {_show(text)}: expected seconds, 'WWw DDd HHh MMm SSs' "
            "(units in that order, e.g. 1h30m) or '[DDd ]HH:MM:SS[.mmm]'"
        )
    if seconds > MAX_DURATION_SECONDS:
        raise UnitError(f"{option}: invalid duration {_show(text)}: longer than 100 years")
    return seconds


def format_duration(seconds: float) -> str:
    """Format seconds in async's unit form, leading zero units dropped: ``"1d0h0m5s"``,
    ``"2.5s"``. :func:`parse_duration` reads it back (to the microsecond)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration must be finite and non-negative: {seconds!r}")
    micros = round(seconds * 1_000_000)
    whole, fraction = divmod(micros, 1_000_000)
    parts: list[str] = []
    for unit in ("w", "d", "h", "m"):
        count, whole = divmod(whole, int(_UNIT_SECONDS[unit]))
        if count or parts:
            parts.append(f"{count}{unit}")
    tail = f"{whole}.{fraction:06d}".rstrip("0").rstrip(".") if fraction else str(whole)
    return "".join(parts) + tail + "s"


# --------------------------------------------------------------------------------- mtime bounds


def parse_mtime_bound(text: str, option: str, now: float) -> float:
    """Parse an ascp mtime bound into absolute epoch seconds.

    A positive (or zero) value is seconds since 1970-01-01 00:00:00 UTC; a negative value is
    that many seconds before ``now``.
    """
    stripped = _checked_text(text, option, "time")
    match = _MTIME_RE.fullmatch(stripped)
    if match is None:
        raise UnitError(
            f"{option}: invalid time {_show(text)}: expected seconds since the epoch, or "
            "negative seconds before now (e.g. -3600)"
        )
    value = float(match["num"])
    result = now - value if match["sign"] == "-" else value
    if result > MAX_EPOCH_SECONDS:
        raise UnitError(f"{option}: invalid time {_show(text)}: after the year 9999")
    if result < 0:
        raise UnitError(f"{option}: invalid time {_show(text)}: before 1970")
    return result


def parse_utc_timestamp(text: str, option: str) -> float:
    """Parse async's UTC timestamp ``YYYY-MM-DDTHH:MM:SS`` (``2015-01-01T08:00:00``, a trailing
    ``Z`` allowed) into seconds since the epoch."""
    stripped = _checked_text(text, option, "timestamp")
    match = _UTC_RE.fullmatch(stripped)
    if match is None:
        raise UnitError(
            f"{option}: invalid timestamp {_show(text)}: expected YYYY-MM-DDTHH:MM:SS (UTC)"
        )
    try:
        year, month, day, hour, minute, second = (int(field) for field in match.groups())
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise UnitError(f"{option}: invalid timestamp {_show(text)}: no such date or time") from None
    return moment.timestamp()
