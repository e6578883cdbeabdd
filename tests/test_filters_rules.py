"""Include/exclude rule lists: ascp -E/-N (seed 002), rule composition and first-match order,
aspera.conf rules, the Filter object's limits, and errors naming the option, problem and pattern."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from common import filters
from common.filters import (
    Filter,
    FilterError,
    FilterRule,
    compile_filters,
    parse_conf_rule,
    read_rule_file,
    translate,
)

sys.path.insert(0, os.path.dirname(__file__))
from filters_helpers import ex, inc

# --- ascp -E / -N (seed 002) -------------------------------------------------------------------

def test_ascp_star_tmp_matches_dot_tmp_and_longer_names() -> None:
    f = compile_filters([ex("*.tmp", "-E")])
    assert f.excluded(".tmp", False) and f.excluded("abcde.tmp", False)
    assert not f.excluded(".x.tmp", False)


def test_ascp_question_matches_one_character() -> None:
    f = compile_filters([ex("t?p", "-E")])
    assert f.excluded("tmp", False) and not f.excluded("temp", False)


def test_ascp_include_protects_from_following_exclude() -> None:
    f = compile_filters([inc("*.jpg", "-N"), ex("*", "-E")])
    assert not f.excluded("a.jpg", False) and f.excluded("a.png", False)


def test_ascp_include_alone_excludes_nothing() -> None:
    f = compile_filters([inc("*.jpg", "-N")])
    assert not f.excluded("a.png", False) and not f.excluded("d/a.png", False)


def test_ascp_include_dirs_then_exclude_everything_else() -> None:
    f = compile_filters([inc("*.jpg", "-N"), inc("/**/", "-N"), ex("/**", "-E")])
    assert not f.excluded("a/b/c.jpg", False) and not f.excluded("a/b", True)
    assert f.excluded("a/b/c.png", False) and f.excluded("a/.hidden", False)


# --- Rule composition and order ----------------------------------------------------------------

def test_include_a_include_b_keeps_everything() -> None:
    f = compile_filters([inc("*.a"), inc("*.b")])
    assert not any(f.excluded(p, False) for p in ["x.a", "x.b", "x.c"])


def test_include_a_exclude_b_excludes_b_except_a() -> None:
    f = compile_filters([inc("keep*"), ex("*.log")])
    assert not f.excluded("keep.log", False) and f.excluded("other.log", False)
    assert not f.excluded("other.txt", False)


def test_exclude_b_include_a_first_match_wins() -> None:
    f = compile_filters([ex("*.log"), inc("keep*")])
    assert f.excluded("keep.log", False) and not f.excluded("keep.txt", False)


def test_rules_apply_in_order_across_options_and_files(tmp_path: Path) -> None:
    rules = tmp_path / "aspera-test"
    rules.write_text("+ w*\n- x*\ny*\n")  # W, X, Y; a plain line of an -E file excludes
    f = compile_filters([inc("v*"), *read_rule_file(rules, "exclude"), inc("z*")])
    assert [r.pattern for r in f.rules] == ["v*", "w*", "x*", "y*", "z*"]
    assert [f.excluded(n, False) for n in ["v", "w", "x", "y", "z"]] == [False, False, True,
                                                                        True, False]


def test_contents_of_excluded_directory_are_never_considered() -> None:
    f = compile_filters([ex("/above/"), inc("/above/below")])
    assert f.excluded("above", True)
    assert f.excluded("above/below", False)
    assert not f.excluded_entry("above/below", False)


def test_included_file_inside_excluded_directory_is_excluded() -> None:
    f = compile_filters([inc("*.jpg"), ex("tmp/")])
    assert f.excluded("a/tmp/x.jpg", False) and not f.excluded("a/x.jpg", False)


def test_unmatched_names_are_tracked() -> None:
    f = compile_filters([ex("*.o")])
    assert not f.excluded("a.c", False) and not f.excluded(".profile", False)


def test_final_exclude_star_and_dot_star_exclude_all_unmatched() -> None:
    only_star = compile_filters([inc("*.c"), ex("*")])
    assert only_star.excluded("a.h", False) and not only_star.excluded(".h", False)
    both = compile_filters([inc("*.c"), ex("*"), ex(".*")])
    assert both.excluded("a.h", False) and both.excluded(".h", False)
    assert not both.excluded("a.c", False)


def test_aspera_conf_rules_come_before_command_line_rules() -> None:
    conf = [parse_conf_rule("+ *.jpg"), parse_conf_rule("- *.png")]
    f = compile_filters([*conf, ex("*.jpg", "-E"), inc("*.png", "-N")])
    assert not f.excluded("a.jpg", False) and f.excluded("a.png", False)
    assert conf[0] == FilterRule("include", "*.jpg", "aspera.conf")


@pytest.mark.parametrize("text", ["*.jpg", "+*.jpg", "+ ", "* x"])
def test_aspera_conf_rule_needs_plus_or_minus_and_space(text: str) -> None:
    with pytest.raises(FilterError, match=r"aspera\.conf"):
        parse_conf_rule(text)


# --- Filter object -----------------------------------------------------------------------------

def test_empty_filter_is_false_and_excludes_nothing() -> None:
    assert not Filter() and not compile_filters([]) and len(Filter()) == 0
    assert not Filter().excluded("a/b", False)
    assert compile_filters([ex("x")]) and len(compile_filters([ex("x"), inc("y")])) == 2


def test_root_is_never_excluded() -> None:
    assert not compile_filters([ex("/**"), ex("*")]).excluded("", True)


def test_directory_memo_is_bounded_and_stays_correct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filters, "DIR_CACHE_LIMIT", 3)
    f = compile_filters([ex("/d1/"), ex("skip/")])
    for _ in range(3):
        for top in ["d0", "d1", "d2", "d3", "d4"]:
            assert f.excluded(f"{top}/a/b/c", False) is (top == "d1")
            assert f.excluded(f"{top}/skip/b", False)
    assert len(f._dir_memo) <= 3


def test_very_deep_path_does_not_recurse() -> None:
    deep = "/".join(["d"] * 5000)
    f = compile_filters([ex("x/"), ex("/**/y")])
    assert not f.excluded(deep + "/f", False)
    assert f.excluded(deep + "/x/f", False) and f.excluded(deep + "/y", False)


def test_pathological_patterns_do_not_backtrack_forever() -> None:
    f = compile_filters([ex("*a*a*a*a*a*a*a*b"), ex("/**/a/**/a/**/a/**/a/**/b")])
    assert not f.excluded("a" * 250, False)
    assert not f.excluded("/".join(["a"] * 2000) + "/c", False)
    assert f.excluded("x" + "a" * 20 + "b", False)


# --- Errors name the option, the problem and the pattern ---------------------------------------

BAD_PATTERNS = [
    ("unterminated_bracket", "a[bc", "unterminated '\\['"),
    ("unterminated_negated_bracket", "[!", "unterminated '\\['"),
    ("empty_bracket", "[]", "unterminated '\\['"),
    ("lone_backslash", "abc\\", "unpaired"),
    ("backslash_in_bracket", "[a\\", "unterminated"),
    ("reversed_range", "[z-a]", "reversed range"),
    ("reversed_adjacent_range", "[b-a]", "reversed range"),
    ("unknown_class", "[[:word:]]", "unknown character class"),
    ("unterminated_class", "[[:alpha]", "unterminated '\\[:'"),
    ("range_to_class", "[a-[:digit:]]", "range ends in a character class"),
    ("multichar_equivalence", "[[=ae=]]", "equivalence class"),
    ("empty", "", "nothing to match"),
    ("only_root", "/", "nothing to match"),
    ("only_slashes", "//", "nothing to match"),
]


@pytest.mark.parametrize(("pattern", "problem"), [row[1:] for row in BAD_PATTERNS],
                         ids=[row[0] for row in BAD_PATTERNS])
def test_bad_pattern_error_names_origin_problem_and_pattern(pattern: str, problem: str) -> None:
    with pytest.raises(FilterError, match=problem) as info:
        compile_filters([inc("ok"), ex(pattern, "rules.txt:3")])
    assert str(info.value).startswith("rules.txt:3: ")
    assert repr(pattern) in str(info.value)


def test_bad_rule_kind_and_pattern_type() -> None:
    with pytest.raises(FilterError, match="--skip: rule kind"):
        compile_filters([FilterRule("skip", "x", "--skip")])  # type: ignore[arg-type]
    with pytest.raises(FilterError, match="-E: pattern must be a string"):
        compile_filters([FilterRule("exclude", b"x", "-E")])  # type: ignore[arg-type]


def test_translate_raises_filter_error() -> None:
    with pytest.raises(FilterError, match="unterminated"):
        translate("a[")
