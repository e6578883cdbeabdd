"""Shared helpers of the `surge cp` option tests (tests/test_cp_options_*.py): parse at a fixed
time, and the one-line error of a refused command line."""

from __future__ import annotations

import pytest

from coordinator.cp.options import (
    CopyOptions,
    OptionError,
    parse_cp_args,
)

NOW = 1_700_000_000.0


def parse(*argv: str, env: dict[str, str] | None = None) -> CopyOptions:
    return parse_cp_args(list(argv), env={} if env is None else env, now=NOW)


def parse_error(*argv: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(OptionError) as caught:
        parse(*argv, env=env)
    message = str(caught.value)
    assert "\n" not in message
    return message
