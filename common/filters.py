"""Include/exclude filter rules of async (``--include``/``--exclude``/``-I``/``-E``) and ascp
(``-N``/``-E``): parse rule files, compile rules once, decide per scanned path.

Rules are tried in order and the first match wins; a path no rule matches is kept.  A path is
matched as ``"/" + path`` relative to the transfer/sync root: a rule starting with ``/`` must match
all of it, any other rule must match its last levels (a one-level rule matches the name).  A rule
ending in ``/`` matches directories only, one ending in ``*`` or ``/**`` files and directories, any
other rule files only.  Everything inside an excluded directory is excluded.  docs/FILTERS.md has
the details and the deliberate differences from the reference.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from common.filter_glob import (
    GLOBSTAR,
    STAR,
    Lit,
    PatternError,
    Token,
    literal_text,
    required_text,
    to_regex,
    tokenize,
)

__all__ = [
    "DIR_CACHE_LIMIT",
    "MAX_RULE_FILE_BYTES",
    "MAX_RULE_FILE_DEPTH",
    "Filter",
    "FilterError",
    "FilterRule",
    "Kind",
    "compile_filters",
    "parse_conf_rule",
    "read_rule_file",
    "translate",
]

Kind: TypeAlias = Literal["include", "exclude"]
_KINDS: Final = ("include", "exclude")

DIR_CACHE_LIMIT: Final = 65_536
"""Directory decisions remembered by one Filter; the memo is emptied when it reaches this size."""
MAX_RULE_FILE_DEPTH: Final = 16
"""How deeply rule files may name further rule files (``.+ F``, ``.- F``, ``. F``)."""
MAX_RULE_FILE_BYTES: Final = 16 * 1024 * 1024
"""Largest rule file read."""

_SLASH: Final = Lit("/")
_Test: TypeAlias = Callable[[str, str], bool]  # (path, name) -> the pattern matches


class FilterError(ValueError):
    """A bad rule or rule file; the message starts with the option or ``file:line``."""


@dataclass(frozen=True, slots=True)
class FilterRule:
    """One ``--include``/``--exclude`` rule; ``origin`` says where it came from, for errors."""

    kind: Kind
    pattern: str
    origin: str = "command line"


def _error(rule: FilterRule, problem: str) -> FilterError:
    return FilterError(f"{rule.origin}: {problem} in pattern {rule.pattern!r}")


def translate(pattern: str) -> str:
    """Regex source for ``re.fullmatch`` saying whether a whole string matches the glob.

    This is the bare glob of the reference's tables (a leading or trailing ``/`` is an ordinary
    character here, and the string's start does not count as following a ``/``).
    """
    try:
        return "(?s:" + to_regex(tokenize(pattern), after_slash=False) + ")"
    except PatternError as exc:
        raise FilterError(f"{exc} in pattern {pattern!r}") from None


def _name_test(body: Sequence[Token]) -> _Test:
    """Test for a one-level, unanchored rule: it is matched against the name alone."""
    literal = literal_text(body)
    if literal is not None:
        return lambda path, name: name == literal
    tail = literal_text(body[1:])
    if body[0] is STAR and tail is not None:  # "*.tmp": '*' may not start with '.'
        if not tail:
            return lambda path, name: name[:1] != "."
        size = len(tail)
        return lambda path, name: name.endswith(tail) and (len(name) == size or name[0] != ".")
    prefix = literal_text(body[:-1])
    if body[-1] is STAR and prefix:  # "abc*": the '*' follows a character other than '/'
        return lambda path, name: name.startswith(prefix)
    fullmatch = re.compile(to_regex(body, after_slash=True), re.DOTALL).fullmatch
    return lambda path, name: fullmatch(name) is not None


def _tail_test(body: Sequence[Token], levels: int) -> _Test:
    """Test for an unanchored rule without ``**``: it is matched against the last levels."""
    fullmatch = re.compile(to_regex(body, after_slash=True), re.DOTALL).fullmatch

    def test(path: str, name: str) -> bool:
        pos = len(path)
        for _ in range(levels):
            if pos < 0:
                return False
            pos = path.rfind("/", 0, pos)
        return fullmatch(path, pos + 1) is not None

    return test


def _build_test(body: list[Token], anchored: bool) -> _Test:
    if GLOBSTAR in body:  # may cross levels: match "/" + path as a whole
        rooted: list[Token] = [_SLASH] if anchored else [_SLASH, GLOBSTAR, _SLASH]
        fullmatch = re.compile(to_regex(rooted + body, after_slash=False), re.DOTALL).fullmatch
        needle = required_text(rooted + body)

        def rooted_test(path: str, name: str) -> bool:
            subject = "/" + path
            return needle in subject and fullmatch(subject) is not None

        return rooted_test
    if anchored:
        literal = literal_text(body)
        if literal is not None:
            return lambda path, name: path == literal
        fullmatch = re.compile(to_regex(body, after_slash=True), re.DOTALL).fullmatch
        return lambda path, name: fullmatch(path) is not None
    levels = 1 + body.count(_SLASH)
    return _name_test(body) if levels == 1 else _tail_test(body, levels)


def _compile_rule(rule: FilterRule) -> tuple[_Test, bool, bool]:
    """(test, applies to files, applies to directories) for one rule."""
    if rule.kind not in _KINDS:
        raise FilterError(f"{rule.origin}: rule kind must be 'include' or 'exclude', "
                          f"not {rule.kind!r}")
    if not isinstance(rule.pattern, str):
        raise FilterError(f"{rule.origin}: pattern must be a string, not {rule.pattern!r}")
    text = rule.pattern
    anchored = text.startswith("/")
    body_text = text[1:] if anchored else text
    before_last = body_text[:-1]
    escaped = (len(before_last) - len(before_last.rstrip("\\"))) % 2 == 1
    dirs_only = body_text.endswith("/") and not escaped
    if dirs_only:
        body_text = body_text[:-1]
    if not body_text:
        raise _error(rule, "nothing to match")
    try:
        body = tokenize(body_text)
        test = _build_test(body, anchored)
    except PatternError as exc:
        raise _error(rule, str(exc)) from None
    if dirs_only:
        return test, False, True
    return test, True, body[-1] in (STAR, GLOBSTAR)


class Filter:
    """Compiled rules, in order; ``excluded`` decides one path (a few string tests per rule)."""

    __slots__ = ("_dir_memo", "_dir_tests", "_file_tests", "_rules")

    def __init__(self, rules: Iterable[FilterRule] = ()) -> None:
        self._rules = tuple(rules)
        files: list[tuple[_Test, bool]] = []
        dirs: list[tuple[_Test, bool]] = []
        for rule in self._rules:
            test, on_files, on_dirs = _compile_rule(rule)
            entry = (test, rule.kind == "exclude")
            if on_files:
                files.append(entry)
            if on_dirs:
                dirs.append(entry)
        self._file_tests = tuple(files)
        self._dir_tests = tuple(dirs)
        self._dir_memo: dict[str, bool] = {}

    @property
    def rules(self) -> tuple[FilterRule, ...]:
        return self._rules

    def __bool__(self) -> bool:
        return bool(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"Filter({list(self._rules)!r})"

    def excluded(self, path: str, is_dir: bool) -> bool:
        """Whether ``path`` (root-relative, ``/``-separated, no leading ``/``) is filtered out:
        it or a directory above it is excluded.  The root itself (``""``) never is."""
        cut = path.rfind("/")
        if cut > 0 and self._dir_tests and self._directory_excluded(path[:cut]):
            return True
        return self.excluded_entry(path, is_dir)

    def excluded_entry(self, path: str, is_dir: bool) -> bool:
        """Whether the first matching rule for ``path`` itself excludes it, not looking at the
        directories above (for scanners that never descend into excluded directories)."""
        if not path:
            return False
        name = path[path.rfind("/") + 1 :]
        for test, exclude in self._dir_tests if is_dir else self._file_tests:
            if test(path, name):
                return exclude
        return False

    def _directory_excluded(self, directory: str) -> bool:
        memo = self._dir_memo
        known = memo.get(directory)
        if known is not None:
            return known
        pending: list[str] = []
        result = False
        current = directory
        while True:  # climb to the nearest directory already decided (or the top)
            known = memo.get(current)
            if known is not None:
                result = known
                break
            pending.append(current)
            cut = current.rfind("/")
            if cut <= 0:
                break
            current = current[:cut]
        for ancestor in reversed(pending):
            result = result or self.excluded_entry(ancestor, True)
            if len(memo) >= DIR_CACHE_LIMIT:
                memo.clear()
            memo[ancestor] = result
        return result


def compile_filters(rules: Iterable[FilterRule]) -> Filter:
    """Compile ``rules`` once, in order; raise FilterError naming the origin of a bad one."""
    return Filter(rules)


# --- rule files ---------------------------------------------------------------------------------

_COMMANDS: Final = (".+", ".-", "+", "-", ".")  # longest first
_NESTED_DEFAULT: Final[dict[str, Kind | None]] = {".+": "include", ".-": "exclude", ".": None}


def _split_command(line: str) -> tuple[str | None, str]:
    """(command, argument) of a rule line whose leading white space is gone; command may be None."""
    for command in _COMMANDS:
        size = len(command)
        if line.startswith(command) and len(line) > size and line[size] in " \t":
            return command, line[size + 1 :].lstrip(" \t")
    return None, line


def parse_conf_rule(text: str, origin: str = "aspera.conf") -> FilterRule:
    """An aspera.conf filter: ``+ PATTERN`` includes, ``- PATTERN`` excludes."""
    command, argument = _split_command(text.lstrip(" \t"))
    if command not in ("+", "-") or not argument:
        raise FilterError(f"{origin}: a filter must be '+ PATTERN' or '- PATTERN', not {text!r}")
    return FilterRule("include" if command == "+" else "exclude", argument, origin)


def read_rule_file(path: str | os.PathLike[str], kind: Kind) -> list[FilterRule]:
    """Rules of an ``-I``/``--include-from`` (kind "include") or ``-E``/``--exclude-from`` file.

    One rule a line: ``+ P`` and ``- P`` include and exclude; ``.+ F``, ``.- F`` and ``. F`` read
    file F (relative names from this file's directory) with default include, exclude or none;
    other lines are rules of ``kind``.  Leading white space, blank lines and lines starting with
    ``#`` are skipped; the rest of a line (trailing spaces included) is the pattern.
    """
    if kind not in _KINDS:
        raise FilterError(f"{os.fspath(path)}: rule kind must be 'include' or 'exclude', "
                          f"not {kind!r}")
    rules: list[FilterRule] = []
    _read_rules(os.fspath(path), kind, rules, (), None)
    return rules


def _read_rules(path: str, default: Kind | None, out: list[FilterRule],
                stack: tuple[str, ...], named_at: str | None) -> None:
    where = f"{named_at}: " if named_at else ""
    real = os.path.realpath(path)
    if real in stack:
        raise FilterError(f"{where}rule file {path!r} includes itself")
    if len(stack) >= MAX_RULE_FILE_DEPTH:
        raise FilterError(f"{where}rule files nested deeper than {MAX_RULE_FILE_DEPTH}")
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RULE_FILE_BYTES + 1)
    except OSError as exc:
        raise FilterError(f"{where}cannot read rule file {path!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_RULE_FILE_BYTES:
        raise FilterError(f"{where}rule file {path!r} is larger than {MAX_RULE_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        raise FilterError(f"{path}:{bad_line}: not valid UTF-8") from None
    text = text.removeprefix("\ufeff")
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r").lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        origin = f"{path}:{number}"
        command, argument = _split_command(line)
        if command is not None and not argument:
            raise FilterError(f"{origin}: {command!r} needs a pattern or file name")
        if command in ("+", "-"):
            out.append(FilterRule("include" if command == "+" else "exclude", argument, origin))
        elif command is not None:
            nested_default = _NESTED_DEFAULT[command]
            nested = os.path.join(os.path.dirname(path), argument)
            _read_rules(nested, nested_default, out, (*stack, real), origin)
        elif default is None:
            raise FilterError(f"{origin}: in a file named by '. ', every line must start with "
                              f"'+ ', '- ', '.+ ', '.- ' or '. '")
        else:
            out.append(FilterRule(default, line, origin))
