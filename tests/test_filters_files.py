"""Filter rule files (-I/--include-from, -E/--exclude-from): line syntax, nested files, limits and
errors naming the file and line."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from common import filters
from common.filters import (
    FilterError,
    FilterRule,
    compile_filters,
    read_rule_file,
)

sys.path.insert(0, os.path.dirname(__file__))


# --- Rule files (-I/--include-from, -E/--exclude-from) -----------------------------------------

def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def test_rule_file_plus_and_minus_lines(tmp_path: Path) -> None:
    f = write(tmp_path / "r", "+ a\n- b\n")
    assert read_rule_file(f, "exclude") == [FilterRule("include", "a", f"{f}:1"),
                                            FilterRule("exclude", "b", f"{f}:2")]


def test_rule_file_white_space_after_command_is_skipped(tmp_path: Path) -> None:
    f = write(tmp_path / "r", "+   a\n-\tb\n+\t \tc d \n")
    assert [(r.kind, r.pattern) for r in read_rule_file(f, "exclude")] == [
        ("include", "a"), ("exclude", "b"), ("include", "c d ")]


def test_rule_file_other_lines_take_the_file_default(tmp_path: Path) -> None:
    f = write(tmp_path / "r", "a\n+b\n-\n")
    assert [(r.kind, r.pattern) for r in read_rule_file(f, "include")] == [
        ("include", "a"), ("include", "+b"), ("include", "-")]
    assert {r.kind for r in read_rule_file(f, "exclude")} == {"exclude"}


def test_rule_file_skips_blank_comment_and_leading_white_space(tmp_path: Path) -> None:
    f = write(tmp_path / "r", "\n   \n# a comment\n  # indented comment\n \t- x\n  y  \n\\#z\n")
    rules = read_rule_file(f, "exclude")
    assert [(r.pattern, r.origin) for r in rules] == [("x", f"{f}:5"), ("y  ", f"{f}:6"),
                                                      ("\\#z", f"{f}:7")]
    assert compile_filters(rules).excluded("#z", False)


def test_rule_file_crlf_line_ends_and_bom(tmp_path: Path) -> None:
    f = write(tmp_path / "r", "\ufeff+ a\r\nb\r\n")
    assert [(r.kind, r.pattern) for r in read_rule_file(f, "exclude")] == [("include", "a"),
                                                                          ("exclude", "b")]


def test_rule_file_dot_plus_reads_include_file(tmp_path: Path) -> None:
    write(tmp_path / "inner", "x\n- y\n")
    f = write(tmp_path / "outer", "- first\n.+ inner\nlast\n")
    rules = read_rule_file(f, "exclude")
    assert [(r.kind, r.pattern) for r in rules] == [
        ("exclude", "first"), ("include", "x"), ("exclude", "y"), ("exclude", "last")]
    assert rules[1].origin == f"{tmp_path / 'inner'}:1"


def test_rule_file_dot_minus_reads_exclude_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "inner", "x\n")
    f = write(tmp_path / "outer", ".- sub/inner\n")
    assert [(r.kind, r.pattern) for r in read_rule_file(f, "include")] == [("exclude", "x")]


def test_rule_file_dot_reads_file_without_default(tmp_path: Path) -> None:
    write(tmp_path / "strict", "+ a\n- b\n")
    f = write(tmp_path / "outer", ". strict\n")
    assert [(r.kind, r.pattern) for r in read_rule_file(f, "include")] == [("include", "a"),
                                                                         ("exclude", "b")]


def test_rule_file_without_default_needs_a_command_on_every_line(tmp_path: Path) -> None:
    strict = write(tmp_path / "strict", "+ a\nplain\n")
    f = write(tmp_path / "outer", ". strict\n")
    with pytest.raises(FilterError, match=re.escape(f"{strict}:2: ")):
        read_rule_file(f, "include")


def test_rule_file_that_includes_itself(tmp_path: Path) -> None:
    f = write(tmp_path / "loop", "a\n.- loop\n")
    with pytest.raises(FilterError, match=re.escape(f"{f}:2: ") + ".*includes itself"):
        read_rule_file(f, "exclude")


def test_rule_file_nesting_depth_is_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filters, "MAX_RULE_FILE_DEPTH", 3)
    for i in range(4):
        write(tmp_path / f"f{i}", f".- f{i + 1}\n")
    write(tmp_path / "f4", "x\n")
    assert [r.pattern for r in read_rule_file(tmp_path / "f2", "exclude")] == ["x"]  # 3 files
    with pytest.raises(FilterError, match=re.escape(f"{tmp_path / 'f3'}:1: ") + ".*deeper than 3"):
        read_rule_file(tmp_path / "f1", "exclude")  # 4 files


def test_rule_file_missing(tmp_path: Path) -> None:
    with pytest.raises(FilterError, match=r"cannot read rule file .*nope"):
        read_rule_file(tmp_path / "nope", "exclude")
    f = write(tmp_path / "outer", "a\n.+ nope\n")
    with pytest.raises(FilterError, match=re.escape(f"{f}:2: cannot read")):
        read_rule_file(f, "exclude")


def test_rule_file_command_without_argument(tmp_path: Path) -> None:
    f = write(tmp_path / "r", "a\n+ \n")
    with pytest.raises(FilterError, match=re.escape(f"{f}:2: '+' needs")):
        read_rule_file(f, "exclude")


def test_rule_file_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "r"
    f.write_bytes(b"a\nb\n\xff\n")
    with pytest.raises(FilterError, match=re.escape(f"{f}:3: not valid UTF-8")):
        read_rule_file(f, "exclude")


def test_rule_file_size_is_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filters, "MAX_RULE_FILE_BYTES", 10)
    with pytest.raises(FilterError, match="larger than 10 bytes"):
        read_rule_file(write(tmp_path / "r", "x" * 11), "exclude")
    assert len(read_rule_file(write(tmp_path / "s", "x" * 10), "exclude")) == 1


def test_rule_file_bad_pattern_is_reported_with_file_and_line(tmp_path: Path) -> None:
    f = write(tmp_path / "r", "ok\n\n- bad[\n")
    with pytest.raises(FilterError, match=re.escape(f"{f}:3: unterminated")):
        compile_filters(read_rule_file(f, "exclude"))


def test_rule_file_kind_must_be_include_or_exclude(tmp_path: Path) -> None:
    with pytest.raises(FilterError, match="rule kind"):
        read_rule_file(write(tmp_path / "r", "x\n"), "skip")  # type: ignore[arg-type]
