"""Include/exclude filter rules: one test per rule and example of the reference pages
(seeds 003/004 "Include/Exclude Filtering Rules", 000 async options, 002 ascp -E/-N), error and
rule-file tests, and property tests against a naive matcher written from the reference's words."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

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


def glob(pattern: str, text: str) -> bool:
    """The bare glob of the reference's tables, matched against the whole string."""
    return re.fullmatch(translate(pattern), text) is not None


def ex(pattern: str, origin: str = "--exclude") -> FilterRule:
    return FilterRule("exclude", pattern, origin)


def inc(pattern: str, origin: str = "--include") -> FilterRule:
    return FilterRule("include", pattern, origin)


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


# --- Properties --------------------------------------------------------------------------------

ATOMS = ["a", "b", ".", "/", "*", "?", "[ab]", "[!a]", "[.]", "\\*", "/**"]


def _valid(atoms: list[str]) -> bool:
    for i, atom in enumerate(atoms):
        if atom.endswith("*") and i + 1 < len(atoms) and atoms[i + 1].startswith("*"):
            return False  # would join into an (unintended) '**'
        if atom == "/**" and i + 1 < len(atoms) and not atoms[i + 1].startswith("/"):
            return False
    return True


patterns = st.lists(st.sampled_from(ATOMS), min_size=1, max_size=7).filter(_valid)
subjects = st.text(alphabet="ab./", max_size=9)


def naive_match(atoms: list[str], text: str) -> bool:
    """The reference's words, literally: wildcards match no '/' and no '.' right after '/';
    '/**/' is '/' or '/anything/'; a final '/**' is '/' and at least one more character."""

    def wild_ok(k: int, allowed: str | None) -> bool:
        c = text[k]
        if c == "/" or (c == "." and k > 0 and text[k - 1] == "/"):
            return False
        if allowed is None:
            return True
        negate = allowed.startswith("!")
        return (c in allowed.removeprefix("!")) != negate

    @functools.cache
    def at(i: int, j: int) -> bool:
        if i == len(atoms):
            return j == len(text)
        atom = atoms[i]
        if atom == "/**":
            if i + 1 == len(atoms):
                return text[j:j + 1] == "/" and len(text) - j >= 2
            return at(i + 1, j) or (text[j:j + 1] == "/"
                                    and any(at(i + 1, k) for k in range(j + 1, len(text) + 1)))
        if atom == "*":
            k = j
            while True:
                if at(i + 1, k):
                    return True
                if k < len(text) and wild_ok(k, None):
                    k += 1
                else:
                    return False
        if atom == "?" or atom.startswith("["):
            allowed = None if atom == "?" else atom[1:-1]
            return j < len(text) and wild_ok(j, allowed) and at(i + 1, j + 1)
        literal = atom[-1]
        return text[j:j + 1] == literal and at(i + 1, j + 1)

    return at(0, 0)


@settings(max_examples=800, deadline=None)
@given(patterns, subjects)
@example(["*", "?", "?"], ".a")
@example(["a", "/**", "/", "*"], "a/.b/c")
def test_translation_agrees_with_naive_matcher(atoms: list[str], text: str) -> None:
    assert glob("".join(atoms), text) == naive_match(atoms, text)


path_strategy = st.lists(st.text(alphabet="ab.", min_size=1, max_size=3), min_size=1,
                         max_size=4).map("/".join)


@settings(max_examples=800, deadline=None)
@given(patterns, path_strategy, st.booleans())
@example(["*", "?", "?"], ".a", False)
@example(["a", "*"], "b/ba", False)
@example(["b", "/", "*", "a"], "b/.a", False)
def test_filter_shortcuts_agree_with_rooted_glob(atoms: list[str], path: str,
                                                 is_dir: bool) -> None:
    pattern = "".join(atoms)
    anchored = pattern.startswith("/")
    body = pattern[1:] if anchored else pattern
    dirs_only = body.endswith("/")
    body = body[:-1] if dirs_only else body
    assume(body)
    both = body.endswith("*") and not body.endswith("\\*")
    kind_ok = is_dir if dirs_only else (True if both else not is_dir)
    rooted = ("/" if anchored else "/**/") + body
    expected = kind_ok and glob(rooted, "/" + path)
    assert compile_filters([ex(pattern)]).excluded_entry(path, is_dir) == expected


name_chars = st.characters(codec="utf-8", blacklist_characters="/\\*?[")
names = st.text(alphabet=name_chars, min_size=1, max_size=12)


@given(names, st.lists(names, max_size=3), names)
def test_plain_name_matches_exactly_itself_at_any_depth(name: str, dirs: list[str],
                                                        other: str) -> None:
    f = compile_filters([ex(name)])
    assert f.excluded("/".join([*dirs, name]), False)
    assert f.excluded(name, False) and not f.excluded(name, True)
    assert f.excluded("/".join([*dirs, other]), False) == (other == name)


@given(names, names, st.text(alphabet=name_chars, max_size=5), st.text(max_size=5))
def test_star_never_crosses_slash(head: str, tail: str, left: str, right: str) -> None:
    pattern = head + "*" + tail
    assert glob(pattern, head + left + right.replace("/", "") + tail)
    assert not glob(pattern, head + left + "/" + right + tail)


@given(st.characters(codec="utf-8"), st.characters(codec="utf-8"))
def test_escaped_character_matches_only_itself(char: str, other: str) -> None:
    assert glob("\\" + char, char)
    assert glob("\\" + char, other) == (other == char)
    assert not glob("\\" + char, "\\" + char)


@settings(max_examples=500)
@given(st.text(max_size=30), st.sampled_from(["include", "exclude", "other"]))
def test_compile_raises_only_filter_error(pattern: str, kind: str) -> None:
    try:
        f = compile_filters([FilterRule(kind, pattern, "fuzz")])  # type: ignore[arg-type]
    except FilterError as exc:
        assert str(exc).startswith("fuzz: ")
    else:
        f.excluded("a/b.c", False)
        f.excluded("a/.b", True)


@given(patterns, path_strategy, path_strategy)
def test_unanchored_rule_matches_at_any_depth(atoms: list[str], path: str, above: str) -> None:
    pattern = "".join(atoms)
    assume(not pattern.startswith("/"))
    try:
        f = compile_filters([ex(pattern)])
    except FilterError:
        assume(False)
        return
    if f.excluded_entry(path, False):
        assert f.excluded_entry(above + "/" + path, False)


@given(st.lists(st.tuples(st.sampled_from(["include", "exclude"]),
                          st.sampled_from(["a/", "b*", "*.c", "/a/b/", "a/**", "[ab]/", ".*"])),
                max_size=5),
       path_strategy, st.booleans())
def test_excluded_is_entry_decision_plus_every_directory_above(
        rules: list[tuple[str, str]], path: str, is_dir: bool) -> None:
    f = compile_filters([FilterRule(k, p) for k, p in rules])  # type: ignore[arg-type]
    levels = path.split("/")
    above = ["/".join(levels[:i]) for i in range(1, len(levels))]
    expected = any(f.excluded_entry(d, True) for d in above) or f.excluded_entry(path, is_dir)
    assert f.excluded(path, is_dir) == expected


@given(st.lists(st.tuples(st.sampled_from(["+", "-"]),
                          st.text(alphabet=name_chars, min_size=1, max_size=8)
                          .filter(lambda s: s[0] not in " \t#" and "\n" not in s
                                  and "\r" not in s)), max_size=6))
def test_rule_file_round_trip(tmp_path_factory: pytest.TempPathFactory,
                              lines: list[tuple[str, str]]) -> None:
    f = tmp_path_factory.mktemp("rules") / "r"
    f.write_text("".join(f"{sign} {pattern}\n" for sign, pattern in lines), encoding="utf-8")
    expected = [("include" if sign == "+" else "exclude", pattern) for sign, pattern in lines]
    assert [(r.kind, r.pattern) for r in read_rule_file(f, "exclude")] == expected
