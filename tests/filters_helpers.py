"""Shared helpers of the filter tests (tests/test_filters_*.py): the bare glob of the reference's
tables and one-rule constructors."""

from __future__ import annotations

import re

from common.filters import (
    FilterRule,
    translate,
)


def glob(pattern: str, text: str) -> bool:
    """The bare glob of the reference's tables, matched against the whole string."""
    return re.fullmatch(translate(pattern), text) is not None


def ex(pattern: str, origin: str = "--exclude") -> FilterRule:
    return FilterRule("exclude", pattern, origin)


def inc(pattern: str, origin: str = "--include") -> FilterRule:
    return FilterRule("include", pattern, origin)
