"""Tests for common.units: ascp/async rate, size, duration and mtime parsing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.units import (
    MAX_RATE_BPS,
    Rate,
    UnitError,
    format_bytes,
    format_duration,
    format_rate,
    parse_duration,
    parse_mtime_bound,
    parse_rate,
    parse_size,
)

# ------------------------------------------------------------------------------------- rates


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("10000", 10_000_000),  # bare number is Kbps (ascp's default unit)
        ("1", 1_000),
        ("0.5", 500),
        ("100K", 100_000),
        ("100k", 100_000),
        ("10M", 10_000_000),
        ("10m", 10_000_000),
        ("1.5G", 1_500_000_000),
        ("2g", 2_000_000_000),
        (" 7M ", 7_000_000),
        ("93.4 Mbps", 93_400_000),
        ("500bps", 500),
        ("3Kbps", 3_000),
        ("1000G", MAX_RATE_BPS),
        (".5M", 500_000),
    ],
)
def test_parse_rate_absolute(text: str, bps: int) -> None:
    rate = parse_rate(text)
    assert rate == Rate(bits_per_second=float(bps))
    assert rate.resolve(123.0) == bps
    assert not rate.is_percent


@pytest.mark.parametrize(("text", "pct"), [("50%", 50.0), ("75P", 75.0), ("12.5p", 12.5)])
def test_parse_rate_percent(text: str, pct: float) -> None:
    rate = parse_rate(text)
    assert rate == Rate(percent=pct)
    assert rate.is_percent
    assert rate.resolve(1_000_000) == round(1_000_000 * pct / 100)


def test_zero_rate_only_when_allowed() -> None:
    assert parse_rate("0", "-m", allow_zero=True) == Rate(bits_per_second=0.0)
    assert parse_rate("0%", "-m", allow_zero=True) == Rate(percent=0.0)
    with pytest.raises(UnitError, match=r"^-l: .*greater than zero"):
        parse_rate("0", "-l")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10x", "expected a number with an optional G/M/K/P/% suffix"),
        ("", "empty"),
        ("   ", "empty"),
        ("-5", "expected a number"),
        ("nan", "expected a number"),
        ("inf", "expected a number"),
        ("1e3", "expected a number"),
        ("10MM", "expected a number"),
        ("5%bps", "expected a number"),
        ("1001G", "above the maximum"),
        ("101%", "at most 100"),
        ("0.0001", "below 1 bps"),
        ("1" * 300, "longer than"),
    ],
)
def test_parse_rate_rejects(text: str, problem: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_rate(text, "-l")
    assert str(caught.value).startswith("-l: ")
    assert problem in str(caught.value)


def test_rate_error_message_format() -> None:
    with pytest.raises(UnitError) as caught:
        parse_rate("10x", "-m")
    assert str(caught.value).startswith(
        "-m: invalid rate '10x': expected a number with an optional G/M/K/P/% suffix"
    )


def test_rate_requires_exactly_one_value() -> None:
    with pytest.raises(ValueError):
        Rate()
    with pytest.raises(ValueError):
        Rate(bits_per_second=1.0, percent=1.0)
    with pytest.raises(ValueError):
        Rate(bits_per_second=-1.0)
    with pytest.raises(ValueError):
        Rate(percent=math.nan)


def test_rate_str() -> None:
    assert str(Rate(percent=50.0)) == "50%"
    assert str(Rate(bits_per_second=10_000_000)) == "10.0 Mbps"


@pytest.mark.parametrize(
    ("bps", "text"),
    [
        (0, "0 bps"),
        (999, "999 bps"),
        (1_000, "1.00 Kbps"),
        (93_400_000, "93.4 Mbps"),
        (934_000_000, "934 Mbps"),
        (1_500_000_000, "1.50 Gbps"),
        (1e12, "1.00 Tbps"),
        (9_999_999, "10.0 Mbps"),
    ],
)
def test_format_rate(bps: float, text: str) -> None:
    assert format_rate(bps) == text


@given(st.floats(min_value=1, max_value=MAX_RATE_BPS * 0.99))
def test_format_rate_round_trips(bps: float) -> None:
    parsed = parse_rate(format_rate(bps)).resolve(0)
    assert abs(parsed - bps) <= max(1.0, bps * 0.005)


@given(st.text(max_size=40))
def test_parse_rate_only_raises_unit_error(text: str) -> None:
    for allow_zero in (False, True):
        try:
            rate = parse_rate(text, "-l", allow_zero=allow_zero)
        except UnitError as error:
            assert str(error).startswith("-l: ")
        else:
            assert rate.is_percent or 0 <= rate.resolve(0) <= MAX_RATE_BPS


# ------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("0", 0),
        ("4096", 4096),
        ("1K", 1024),
        ("1k", 1024),
        ("1M", 1 << 20),
        ("1m", 1 << 20),
        ("2G", 2 << 30),
        ("1T", 1 << 40),
        ("1.5M", 3 << 19),
        ("0.5K", 512),
        ("64KB", 64 << 10),
        ("1.50 GiB", 3 << 29),
        ("100B", 100),
    ],
)
def test_parse_size(text: str, count: int) -> None:
    assert parse_size(text, "-G") == count


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("-1", "expected a number of bytes"),
        ("1X", "expected a number of bytes"),
        ("", "empty"),
        ("1.5", "whole number of bytes"),
        ("0.1K", "whole number of bytes"),
        ("NaN", "expected a number"),
        ("1Mb", "expected a number"),
    ],
)
def test_parse_size_rejects(text: str, problem: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_size(text, "-g")
    assert str(caught.value).startswith("-g: invalid size")
    assert problem in str(caught.value)


def test_parse_size_bounds() -> None:
    assert parse_size("500M", "-G", maximum=500 << 20) == 500 << 20
    with pytest.raises(UnitError, match=r"^-G: .*above the maximum of 500 MiB"):
        parse_size("501M", "-G", maximum=500 << 20)
    with pytest.raises(UnitError, match=r"^-L: .*below the minimum of 1 B"):
        parse_size("0", "-L", minimum=1)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (3 << 29, "1.50 GiB"),
        (500 << 20, "500 MiB"),
        (1 << 50, "1.00 PiB"),
    ],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


def test_format_rejects_negative() -> None:
    for formatter in (format_bytes, format_rate, format_duration):
        with pytest.raises(ValueError):
            formatter(-1)


@given(st.integers(min_value=0, max_value=1 << 52))
def test_format_bytes_round_trips(count: int) -> None:
    text = format_bytes(count)
    try:
        parsed = parse_size(text, "-G")
    except UnitError:  # "1.37 KiB" is not a whole number of bytes; that is fine
        return
    assert abs(parsed - count) <= max(1, count * 0.005)


@given(st.integers(min_value=0, max_value=1 << 40), st.sampled_from(["", "K", "M", "G"]))
def test_parse_size_exact_integers(number: int, suffix: str) -> None:
    factor = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[suffix]
    assert parse_size(f"{number}{suffix}", "-G") == number * factor


@given(st.text(max_size=40))
def test_parse_size_only_raises_unit_error(text: str) -> None:
    try:
        count = parse_size(text, "-G")
    except UnitError as error:
        assert str(error).startswith("-G: ")
    else:
        assert isinstance(count, int) and count >= 0


# --------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30),
        ("1.5", 1.5),
        ("0", 0),
        ("1w0d0h0m0s", 604_800),
        ("1w2d3h4m5s", 604_800 + 2 * 86_400 + 3 * 3_600 + 4 * 60 + 5),
        ("3h", 10_800),
        ("10m", 600),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("1s500ms", 1.5),
        ("20us", 20e-6),
        ("1h 30m", 5_400),
        ("2d 1m", 2 * 86_400 + 60),
        ("24:00:00", 86_400),
        ("1:02:03", 3_723),
        ("5:00", 300),
        ("90:00", 5_400),
        ("1d 02:03:04.5", 86_400 + 7_384.5),
        ("1d0:0:0", 86_400),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "--scan-interval") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-5",
        "5x",
        "1s1m",  # units out of order
        "1m1m",  # unit repeated
        "1.5m",  # only seconds take a fraction
        "1d 5:00",  # days need HH:MM:SS
        "1:60:00",  # minutes after hours below 60
        "1d 24:00:00",  # hours after days below 24
        "5:60",
        "nan",
        "1e3",
        "h",
        "1000000w",
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_duration(text, "--cooloff")
    assert str(caught.value).startswith("--cooloff: invalid duration")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5, "5s"), (60, "1m0s"), (86_405, "1d0h0m5s"), (604_800, "1w0d0h0m0s"),
     (2.5, "2.5s"), (0.000001, "0.000001s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10 * 365 * 86_400))
def test_format_duration_round_trips_exactly(seconds: int) -> None:
    assert parse_duration(format_duration(seconds), "-x") == seconds


@given(st.floats(min_value=0, max_value=1e8, allow_nan=False))
def test_format_duration_round_trips_to_microseconds(seconds: float) -> None:
    assert parse_duration(format_duration(seconds), "-x") == pytest.approx(seconds, abs=1e-6)


@given(st.text(max_size=40))
def test_parse_duration_only_raises_unit_error(text: str) -> None:
    try:
        seconds = parse_duration(text, "-x")
    except UnitError as error:
        assert str(error).startswith("-x: ")
    else:
        assert math.isfinite(seconds) and seconds >= 0


# ------------------------------------------------------------------------------ mtime bounds

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("1600000000", 1_600_000_000),
        ("+1600000000", 1_600_000_000),
        ("0", 0),
        ("-3600", NOW - 3600),
        ("-0", NOW),
        ("-1.5", NOW - 1.5),
    ],
)
def test_parse_mtime_bound(text: str, epoch: float) -> None:
    assert parse_mtime_bound(text, "--exclude-newer-than", NOW) == epoch


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("yesterday", "expected seconds since the epoch"),
        ("", "empty"),
        ("--5", "expected seconds"),
        ("-1700000001", "before 1970"),
        ("999999999999", "after the year 9999"),
    ],
)
def test_parse_mtime_bound_rejects(text: str, problem: str) -> None:
    with pytest.raises(UnitError) as caught:
        parse_mtime_bound(text, "--exclude-older-than", NOW)
    assert str(caught.value).startswith("--exclude-older-than: invalid time")
    assert problem in str(caught.value)


@given(st.integers(min_value=0, max_value=int(NOW)))
def test_negative_mtime_is_relative_to_now(age: int) -> None:
    assert parse_mtime_bound(f"-{age}", "--exclude-older-than", NOW) == NOW - age


@given(st.text(max_size=40))
def test_parse_mtime_only_raises_unit_error(text: str) -> None:
    try:
        epoch = parse_mtime_bound(text, "-x", NOW)
    except UnitError as error:
        assert str(error).startswith("-x: ")
    else:
        assert epoch >= 0
