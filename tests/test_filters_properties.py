"""Property tests of the filters against a naive matcher written from the reference's words, and
of the compiled Filter's shortcuts, errors and rule-file round trip."""

from __future__ import annotations

import functools
import os
import sys

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from common.filters import (
    FilterError,
    FilterRule,
    compile_filters,
    read_rule_file,
)

sys.path.insert(0, os.path.dirname(__file__))
from filters_helpers import ex, glob

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
