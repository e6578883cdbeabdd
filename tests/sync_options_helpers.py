"""Shared helpers of the `surge sync` option tests (tests/test_sync_options_*.py): parse with the
required options, and the one-line error of a refused command line."""

from __future__ import annotations

import pytest

from coordinator.sync.options import (
    OptionError,
    SyncOptions,
    parse_sync_args,
)

NOW = 1_700_000_000.0
BASE = ("-N", "pair", "-d", "/l", "-r", "/r")


def parse_raw(*argv: str, env: dict[str, str] | None = None) -> SyncOptions:
    return parse_sync_args(list(argv), env={} if env is None else env, now=NOW)


def parse(*extra: str, env: dict[str, str] | None = None) -> SyncOptions:
    """The required options, then ``extra``."""
    return parse_raw(*BASE, *extra, env=env)


def error_of(*argv: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(OptionError) as caught:
        parse_raw(*argv, env=env)
    message = str(caught.value)
    assert "\n" not in message
    return message


def error(*extra: str, env: dict[str, str] | None = None) -> str:
    return error_of(*BASE, *extra, env=env)
