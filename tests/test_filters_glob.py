"""Include/exclude filter matching, one test per rule and example of the reference pages (seeds
003/004 "Include/Exclude Filtering Rules", 000 async options): standard globbing, POSIX sets and
classes, the '/**' extension, file-type specificity, anchoring and name-vs-path matching."""

from __future__ import annotations

import os
import sys

import pytest

from common.filters import (
    FilterError,
    compile_filters,
)

sys.path.insert(0, os.path.dirname(__file__))
from filters_helpers import ex, glob


def matches(pattern: str, path: str, is_dir: bool = False) -> bool:
    """Whether the single rule ``--exclude pattern`` catches ``path`` (root-relative)."""
    return compile_filters([ex(pattern)]).excluded(path, is_dir)


# --- 003 "Examples of Standard Globbing" (bare glob against the example string) -------------------

STANDARD_GLOBBING = [
    # (row, pattern, matches, does not match)
    ("slash", "abc/def/xyz", ["abc/def/xyz"], ["abc/def"]),
    ("backslash", "abc\\?", ["abc?"], ["abc\\?", "abc/D", "abcD"]),
    ("star", "abc*f", ["abcdef", "abc.def"], ["abc/f", "abc/def", "abc/.def"]),
    ("question", "abc??", ["abcde"], ["abcdef", "abc/d", "abc/."]),
    ("set", "[abc]def", ["adef", "bdef", "cdef"], ["abcdef", "ade"]),
    ("caret_set", "[^abc]def", ["zdef", ".def", "2def"], ["adef", "bdef", "cdef", "/def", "/.def"]),
    ("bang_set", "[!abc]def", ["zdef", ".def", "2def"], ["adef", "bdef", "cdef", "/def", "/.def"]),
    ("range", "[a-z]def", ["cdef", "ydef"], ["Adef", "2def", ".def"]),
]


@pytest.mark.parametrize(("pattern", "good", "bad"), [row[1:] for row in STANDARD_GLOBBING],
                         ids=[row[0] for row in STANDARD_GLOBBING])
def test_standard_globbing_table(pattern: str, good: list[str], bad: list[str]) -> None:
    assert [t for t in good if not glob(pattern, t)] == []
    assert [t for t in bad if glob(pattern, t)] == []


# --- 004 "Additional Notes on Standard Globbing" ------------------------------------------------

@pytest.mark.parametrize("pattern", ["abc*def", "abc[/]def", "abc?def"])
def test_wildcards_never_match_slash(pattern: str) -> None:
    assert not glob(pattern, "abc/def")
    assert not matches(pattern, "abc/def")


@pytest.mark.parametrize("pattern", ["abc/*", "abc/[![:alpha:]]def", "abc/?def"])
def test_wildcards_never_match_dot_after_slash(pattern: str) -> None:
    assert not glob(pattern, "abc/.def")
    assert not matches(pattern, "abc/.def")


def test_literal_slash_dot_then_wildcards_match_hidden_name() -> None:
    assert glob("*/.???", "abc/.def")
    assert matches("*/.???", "abc/.def")


def test_backslash_quotes_every_special_character() -> None:
    pattern = "a\\*b\\[c[\\]]d\\?e\\\\f"
    assert glob(pattern, "a*b[c]d?e\\f")
    assert not glob(pattern, "aXb[c]d?e\\f")
    assert not glob(pattern, "a*b[c]dXe\\f")
    assert matches(pattern, "dir/a*b[c]d?e\\f")


def test_backslash_is_not_a_path_separator() -> None:
    assert glob("abc\\def", "abcdef")
    assert not glob("abc\\def", "abc/def")
    assert matches("a\\\\b", "a\\b")
    assert not matches("a\\\\b", "a/b")


@pytest.mark.parametrize("pattern", ["voilà", "voil[àáâ]", "voil[[:alpha:]]"])
def test_multibyte_names_are_matched_by_characters(pattern: str) -> None:
    assert glob(pattern, "voilà")
    assert matches(pattern, "chansons/voilà")
    assert not matches(pattern, "chansons/voil1")


def test_equivalence_class_is_only_the_character_itself() -> None:
    assert not glob("voil[[=a=]]", "voilà")
    assert glob("voil[[=a=]]", "voila")


def test_named_collating_symbol_is_refused() -> None:
    with pytest.raises(FilterError, match=r"-E: .*collating symbol '\[\.a-grave\.\]'"):
        compile_filters([ex("voil[[.a-grave.]]", "-E")])
    assert glob("voil[[.a.]]", "voila")


def test_case_always_matters() -> None:
    f = compile_filters([ex("DEBUG")])
    assert f.excluded("DEBUG", False)
    assert not f.excluded("Debug", False) and not f.excluded("debug", False)
    g = compile_filters([ex("[Dd]ebug")])
    assert g.excluded("Debug", False) and g.excluded("debug", False)
    assert not g.excluded("DEBUG", False)


# --- 004 "Standard Globbing, as in POSIX sh(1) and find(1)" -------------------------------------

def test_star_matches_any_number_of_characters() -> None:
    assert glob("*", "") and glob("*", "x") and glob("*", "a.b.c")


def test_question_matches_exactly_one_character() -> None:
    assert glob("?", "x") and not glob("?", "") and not glob("?", "xy")


@pytest.mark.parametrize("pattern", ["*.[!cos]", "*.[^cos]"])
def test_negated_set_after_extension_dot(pattern: str) -> None:
    assert glob(pattern, "main.h") and glob(pattern, "main.x")
    assert not glob(pattern, "main.c") and not glob(pattern, "main.o")
    assert not glob(pattern, "main.s") and not glob(pattern, "main.cc")


def test_negation_only_when_first_in_set() -> None:
    assert glob("[a!]", "!") and glob("[a^]", "^") and not glob("[a!]", "b")


def test_range_between_first_and_last_characters() -> None:
    assert glob("[0-9]", "5") and not glob("[0-9]", "a")
    assert glob("[a-]", "-") and glob("[-a]", "-") and not glob("[a-]", "b")
    assert glob("[α-ω]", "λ") and not glob("[α-ω]", "Λ")


def test_close_bracket_first_in_set_is_literal() -> None:
    assert glob("[]a]", "]") and glob("[!]a]", "b") and not glob("[!]a]", "]")


def test_digit_and_blank_classes_negated_together() -> None:
    pattern = "[![:digit:][:blank:]]"
    assert glob(pattern, "x") and glob(pattern, "é")
    assert not glob(pattern, "7") and not glob(pattern, " ") and not glob(pattern, "\t")


NAMED_CLASSES = [
    # (class, members, non-members) -- the definitions the reference gives
    ("alnum", ["a", "Z", "0", "9", "é"], [" ", "-", "_", "."]),
    ("alpha", ["a", "Z", "é", "Ж", "à"], ["0", " ", "_", "-"]),
    ("blank", [" ", "\t"], ["\n", "a", "\r"]),
    ("cntrl", ["\x00", "\x1f", "\x7f", "\n"], ["a", " ", "é"]),
    ("digit", ["0", "5", "9"], ["a", "٣", " "]),
    ("graph", ["a", "!", "é", "0"], [" ", "\t", "\n", "\x7f"]),
    ("lower", ["a", "z", "é"], ["A", "É", "0"]),
    ("punct", ["!", "-", "_", ".", "~", "€"], ["a", "0", " ", "\n"]),
    ("space", [" ", "\t", "\n", "\v", "\f", "\r"], ["a", "\x00"]),
    ("upper", ["A", "Z", "É"], ["a", "é", "0"]),
    ("xdigit", ["0", "9", "a", "f", "A", "F"], ["g", "G", " "]),
]


@pytest.mark.parametrize(("name", "members", "others"), NAMED_CLASSES,
                         ids=[row[0] for row in NAMED_CLASSES])
def test_named_character_class(name: str, members: list[str], others: list[str]) -> None:
    pattern = f"x[[:{name}:]]"
    assert [c for c in members if not glob(pattern, "x" + c)] == []
    assert [c for c in others if glob(pattern, "x" + c)] == []
    assert [c for c in members if glob(f"x[![:{name}:]]", "x" + c)] == []


# --- Globbing extensions: '/**' (003 table, 004 bullets) ----------------------------------------

@pytest.mark.parametrize("text", ["abc/def", "abc/x/def", "abc/wxy/def", "abc/.wxy/def",
                                  "abc/wxy/tuv/def"])
def test_globstar_matches_zero_or_more_levels(text: str) -> None:
    assert glob("abc/**/def", text)
    assert matches("abc/**/def", text)


@pytest.mark.parametrize("text", ["zabc/wxy/def", "abc/wxy/.def", "abcdef", "abc/wxy/defg"])
def test_globstar_does_not_match(text: str) -> None:
    assert not glob("abc/**/def", text)
    assert not matches("abc/**/def", text)


def test_globstar_rule_without_trailing_slash_skips_directories() -> None:
    # 003: abc/**/def does not match abc/xyz/def/ (a directory)
    assert not matches("abc/**/def", "abc/xyz/def", is_dir=True)
    assert matches("abc/**/def/", "abc/xyz/def", is_dir=True)


@pytest.mark.parametrize(("path", "is_dir"), [("abc/.file", False), ("abc/dir", True),
                                              ("abc/wxy/.dir", True), ("abc/wxy/tuv/file", False)])
def test_final_globstar_matches_everything_below(path: str, is_dir: bool) -> None:
    assert matches("abc/**", path, is_dir)


def test_final_globstar_does_not_match_the_directory_itself() -> None:
    assert not glob("abc/**", "abc/")
    assert not matches("abc/**", "abc", is_dir=True)
    assert not matches("abc/**", "abc", is_dir=False)


@pytest.mark.parametrize("pattern", ["a**", "**b", "a/**b", "a**/b", "a/***", "x/*/**z"])
def test_globstar_must_be_bounded_by_slashes(pattern: str) -> None:
    with pytest.raises(FilterError, match=r"'\*\*'"):
        compile_filters([ex(pattern, "-E")])


def test_globstar_at_pattern_start_is_bounded() -> None:
    f = compile_filters([ex("**/def")])
    assert f.excluded("def", False) and f.excluded("a/b/def", False)
    assert not f.excluded("a/xdef", False)
    assert compile_filters([ex("**")]).excluded("a/.b/c", False)


def test_globstar_levels_between_other_globstars() -> None:
    # an earlier occurrence of the middle part must still be found when a later one fails
    assert glob("/**/a/**/b/**/c", "/a/b/x/a/c") and matches("a/**/b/**/c", "a/b/x/a/c")
    # ... and a part must cover whole levels: "a" is not the start of level "ab"
    assert glob("/**/a/**/b", "/ab/a/x/b") and matches("a/**/b", "ab/a/x/b")
    assert not glob("/**/a/**/b", "/ab/x/b") and not matches("a/**/b", "ab/x/b")


def test_leading_globstar_of_bare_glob_keeps_dot_rule() -> None:
    assert glob("**/*", ".x") and glob("**/*", "a/x")
    assert not glob("**/*", "a/.x")


def test_doubled_globstar_is_one_globstar() -> None:
    for text in ["abc/def", "abc/x/y/def"]:
        assert glob("abc/**/**/def", text) == glob("abc/**/def", text) is True


# --- File-type specificity ---------------------------------------------------------------------

def test_trailing_star_rule_matches_files_and_directories() -> None:
    f = compile_filters([ex("abc*")])
    assert f.excluded("abc", False) and f.excluded("abc", True) and f.excluded("abcdef", True)
    # ... and so, through the excluded directory abc, abc/file and abc/dir
    assert f.excluded("abc/file", False) and f.excluded("abc/dir", True)


def test_trailing_slash_rule_matches_directories_only() -> None:
    f = compile_filters([ex("abc/*/")])
    assert f.excluded("abc/dir", True)
    assert not f.excluded("abc/file", False)


def test_rule_without_trailing_slash_matches_files_only() -> None:
    f = compile_filters([ex("file")])
    assert f.excluded("file", False)
    assert not f.excluded("file", True)
    assert not f.excluded("file/inner", False)


@pytest.mark.parametrize(("pattern", "name"), [("ab?", "abc"), ("ab[c]", "abc"),
                                             ("abc\\*", "abc*")])
def test_rule_ending_in_other_wildcards_matches_files_only(pattern: str, name: str) -> None:
    assert matches(pattern, name, False)
    assert not matches(pattern, name, True)


def test_escaped_trailing_slash_is_not_a_directory_marker() -> None:
    assert not matches("abc\\/", "abc", True)
    assert not matches("abc\\/", "abc", False)


def test_slash_after_escaped_backslash_is_a_directory_marker() -> None:
    assert matches("abc\\\\/", "abc\\", True)
    assert not matches("abc\\\\/", "abc\\", False)


# --- Anchoring and name-vs-path matching --------------------------------------------------------

def test_leading_slash_anchors_at_the_root() -> None:
    f = compile_filters([ex("/abc/def")])
    assert f.excluded("abc/def", False)
    assert not f.excluded("x/abc/def", False)


def test_anchored_globstar_rule() -> None:
    f = compile_filters([ex("/abc/**/def")])
    assert f.excluded("abc/wxy/def", False)
    assert not f.excluded("xyz/abc/wxy/def", False)


def test_unanchored_rule_matches_the_last_levels() -> None:
    assert matches("abc/**/def", "xyz/abc/wxy/def")
    assert matches("b/c.txt", "a/b/c.txt") and matches("b/c.txt", "b/c.txt")
    assert not matches("b/c.txt", "a/xb/c.txt") and not matches("b/c.txt", "c.txt")


def test_one_level_rule_matches_the_name_at_any_depth() -> None:
    f = compile_filters([ex("*.jpg")])  # 000: --exclude="*.jpg"
    assert f.excluded("a.jpg", False) and f.excluded("photos/2024/a.jpg", False)
    assert not f.excluded("a.jpg.txt", False) and not f.excluded("a/jpg", False)


def test_anchored_one_level_rule_matches_top_level_only() -> None:
    f = compile_filters([ex("/*.jpg")])
    assert f.excluded("a.jpg", False) and not f.excluded("photos/a.jpg", False)


def test_wildcards_after_star_respect_dot_after_slash() -> None:
    assert not matches("*??", ".x") and not matches("*??", "d/.x")
    assert not matches("*[.a]?", ".x") and matches("*[.a]?", "a.x")
    assert matches("*??", "ax") and matches("*??", "d/abc")
    assert glob("*??", ".x")  # a bare string's start does not follow a '/'


def test_trailing_star_rule_must_match_from_the_name_start() -> None:
    assert matches("abc*", "abc.d") and matches("d/abc", "d/abc")
    assert not matches("abc*", "xabcd") and not matches("abc*", "d/xabc")


def test_star_does_not_match_hidden_names_anywhere() -> None:
    f = compile_filters([ex("*")])
    assert f.excluded("a", False) and f.excluded("a", True)
    assert not f.excluded(".hidden", False) and not f.excluded(".git", True)
    assert compile_filters([ex(".*")]).excluded("x/.hidden", False)
