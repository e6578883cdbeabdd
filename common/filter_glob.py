"""Glob syntax of async/ascp filter rules: tokens, bracket expressions, translation to ``re``.

Helper of :mod:`common.filters` (which owns the public API); docs/FILTERS.md has the semantics.
The one rule that makes these globs differ from ``fnmatch``: a wildcard (``*``, ``?``, ``[...]``)
never matches ``/``, nor a ``.`` immediately after a ``/``.  The extension ``/**`` also matches
``/``: ``/**/`` stands for zero or more whole directory levels, a final ``/**`` for one or more.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final, TypeAlias

__all__ = [
    "GLOBSTAR",
    "STAR",
    "CharSet",
    "Lit",
    "PatternError",
    "Token",
    "Wild",
    "literal_text",
    "required_text",
    "to_regex",
    "tokenize",
]

MAX_CODE_POINT: Final = 0x10FFFF
_SLASH: Final = ord("/")
_DOT: Final = ord(".")

Intervals: TypeAlias = tuple[tuple[int, int], ...]
"""Sorted, disjoint, non-adjacent inclusive code-point ranges."""


class PatternError(ValueError):
    """A malformed glob; the message states the problem (the caller adds where it came from)."""


@dataclass(frozen=True, slots=True)
class Lit:
    """One literal character (escaped or not)."""

    char: str


@dataclass(frozen=True, slots=True)
class CharSet:
    """``?`` or a bracket expression: one character from ``intervals`` (``/`` is never matched)."""

    intervals: Intervals


class Wild(Enum):
    STAR = "*"
    GLOBSTAR = "**"


STAR: Final = Wild.STAR
GLOBSTAR: Final = Wild.GLOBSTAR
Token: TypeAlias = Lit | CharSet | Wild
_ANY: Final = CharSet(((0, MAX_CODE_POINT),))


# --- code-point interval sets -------------------------------------------------------------------

def _union(parts: Iterable[tuple[int, int]]) -> Intervals:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(parts):
        if merged and lo <= merged[-1][1] + 1:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _complement(iv: Intervals) -> Intervals:
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in iv:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODE_POINT:
        out.append((nxt, MAX_CODE_POINT))
    return tuple(out)


def _difference(a: Intervals, b: Intervals) -> Intervals:
    return _complement(_union(_complement(a) + b))


def _contains(iv: Intervals, cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in iv)


@functools.cache
def _scan(predicate: str) -> Intervals:
    """Code points for which ``str.<predicate>`` holds (computed once, on first use)."""
    test: Callable[[str], bool] = getattr(str, predicate)
    ranges: list[tuple[int, int]] = []
    start = -1
    for cp in range(MAX_CODE_POINT + 2):
        ok = cp <= MAX_CODE_POINT and not 0xD800 <= cp <= 0xDFFF and test(chr(cp))
        if ok and start < 0:
            start = cp
        elif not ok and start >= 0:
            ranges.append((start, cp - 1))
            start = -1
    return tuple(ranges)


_DIGIT: Final[Intervals] = ((0x30, 0x39),)
_BLANK: Final[Intervals] = ((0x09, 0x09), (0x20, 0x20))
_CNTRL: Final[Intervals] = ((0x00, 0x1F), (0x7F, 0x9F))
_SPACE: Final[Intervals] = ((0x09, 0x0D), (0x20, 0x20))  # \t \n \v \f \r and space
_XDIGIT: Final[Intervals] = ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66))


def _alnum() -> Intervals:
    return _union(_scan("isalpha") + _DIGIT)


def _graph() -> Intervals:
    return _complement(_union(_BLANK + _CNTRL))


# The classes the reference lists, with the reference's definitions.
_NAMED: Final[dict[str, Callable[[], Intervals]]] = {
    "alnum": _alnum,
    "alpha": lambda: _scan("isalpha"),
    "blank": lambda: _BLANK,
    "cntrl": lambda: _CNTRL,
    "digit": lambda: _DIGIT,
    "graph": _graph,
    "lower": lambda: _scan("islower"),
    "punct": lambda: _difference(_graph(), _alnum()),
    "space": lambda: _SPACE,
    "upper": lambda: _scan("isupper"),
    "xdigit": lambda: _XDIGIT,
}


# --- tokenizer ----------------------------------------------------------------------------------

def tokenize(pattern: str) -> list[Token]:
    """Split a glob into tokens; ``\\`` quotes any character, including ``\\`` itself."""
    tokens: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 == n:
                raise PatternError("unpaired '\\' at the end")
            tokens.append(Lit(pattern[i + 1]))
            i += 2
        elif c == "*":
            double = i + 1 < n and pattern[i + 1] == "*"
            tokens.append(GLOBSTAR if double else STAR)
            i += 2 if double else 1
        elif c == "?":
            tokens.append(_ANY)
            i += 1
        elif c == "[":
            charset, i = _bracket(pattern, i)
            tokens.append(charset)
        else:
            tokens.append(Lit(c))
            i += 1
    return tokens


def _bracket(p: str, opening: int) -> tuple[CharSet, int]:
    """Parse ``[...]`` starting at ``p[opening] == '['``; return it and the index after ``]``."""
    j = opening + 1
    negate = j < len(p) and p[j] in "!^"
    j += negate
    first = j
    parts: list[tuple[int, int]] = []
    while True:
        if j >= len(p):
            raise PatternError(f"unterminated '[' at offset {opening}")
        if p[j] == "]" and j > first:  # a ']' first in the set is a literal
            break
        low, j = _bracket_item(p, j, opening)
        if isinstance(low, tuple):
            parts.extend(low)
        elif j + 1 < len(p) and p[j] == "-" and p[j + 1] != "]":
            high, j = _bracket_item(p, j + 1, opening)
            if isinstance(high, tuple):
                raise PatternError(f"range ends in a character class at offset {opening}")
            if high < low:
                raise PatternError(f"reversed range {chr(low)!r}-{chr(high)!r}")
            parts.append((low, high))
        else:
            parts.append((low, low))
    members = _union(parts)
    return CharSet(_complement(members) if negate else members), j + 1


def _bracket_item(p: str, j: int, opening: int) -> tuple[int | Intervals, int]:
    """One bracket member at ``p[j]``: a code point, or the intervals of a named class."""
    c = p[j]
    if c == "\\":
        if j + 1 >= len(p):
            raise PatternError(f"unterminated '[' at offset {opening}")
        return ord(p[j + 1]), j + 2
    if c == "[" and j + 1 < len(p) and p[j + 1] in ":=.":
        kind = p[j + 1]
        end = p.find(kind + "]", j + 2)
        if end < 0:
            raise PatternError(f"unterminated '[{kind}' at offset {j}")
        name = p[j + 2 : end]
        if kind == ":":
            make = _NAMED.get(name)
            if make is None:
                known = ", ".join(f"[:{k}:]" for k in _NAMED)
                raise PatternError(f"unknown character class '[:{name}:]' (known: {known})")
            return make(), end + 2
        if len(name) != 1:  # no locale tables: only single-character [=c=] and [.c.]
            what = "equivalence class" if kind == "=" else "collating symbol"
            raise PatternError(f"unsupported {what} '[{kind}{name}{kind}]'")
        return ord(name), end + 2
    return ord(c), j + 1


def literal_text(tokens: Sequence[Token]) -> str | None:
    """The plain text the tokens spell, or None if any of them is a wildcard."""
    if all(isinstance(t, Lit) for t in tokens):
        return "".join(t.char for t in tokens if isinstance(t, Lit))
    return None


def required_text(tokens: Sequence[Token]) -> str:
    """The longest literal run every match must contain (a cheap test before the regex).

    A '/' before '**' belongs to it: '/**' is either final or followed by another '/'."""
    best, run = "", []
    for tok in tokens:
        if isinstance(tok, Lit):
            run.append(tok.char)
            continue
        best = max(best, "".join(run), key=len)
        run = []
    return max(best, "".join(run), key=len)


# --- translation --------------------------------------------------------------------------------

class _Before(Enum):
    """What precedes the next character to match: known not '/', known '/', or either."""

    OTHER = 0
    SLASH = 1
    MAYBE = 2


def _char(cp: int) -> str:
    ch = chr(cp)
    if ch.isascii() and ch.isalnum():
        return ch
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def _class_source(iv: Intervals) -> str:
    if not iv:
        return "(?!)"
    if len(iv) == 1 and iv[0][0] == iv[0][1]:
        return re.escape(chr(iv[0][0]))
    comp = _complement(iv)
    negate = len(comp) < len(iv)
    body = "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}"
                   for lo, hi in (comp if negate else iv))
    return f"[^{body}]" if negate else f"[{body}]"


def _globstar_at(tokens: Sequence[Token], k: int) -> bool:
    """Whether a '/**' starts at ``tokens[k]``."""
    return tokens[k] == Lit("/") and k + 1 < len(tokens) and tokens[k + 1] is GLOBSTAR


def _star_follows(tokens: Sequence[Token], k: int) -> bool:
    """Whether another '*' comes at or after ``k`` before any '**'."""
    for j in range(k, len(tokens)):
        if tokens[j] is GLOBSTAR or _globstar_at(tokens, j):
            return False
        if tokens[j] is STAR:
            return True
    return False


def _next_globstar(tokens: Sequence[Token], k: int) -> int:
    """Index of the next '/**' at or after ``k``, or -1."""
    return next((j for j in range(k, len(tokens)) if _globstar_at(tokens, j)), -1)


def to_regex(tokens: Sequence[Token], after_slash: bool) -> str:
    """Regex source (for ``fullmatch`` with ``re.DOTALL``) matching what ``tokens`` match.

    ``after_slash``: the subject is a path tail that follows a ``/`` (its first character counts
    as "after /"); otherwise the subject is a whole string and its start follows nothing.

    No catastrophic backtracking: a '*' followed (before any '**') by another '*' is matched
    lazily inside an atomic group, and so is a '/**/' followed by another '/**', because the
    earliest match of what lies between is then always the best one; only the last '*' of a
    level and the last '/**' backtrack.
    """
    out = _Translation(tokens, after_slash)
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if i == out.level_group_end:
            out.parts.append("(?=/))")
        if tok is GLOBSTAR or _globstar_at(tokens, i):
            i = out.globstar(i)
            continue
        if isinstance(tok, Lit):
            out.literal(tok)
        elif tok is STAR:
            out.star(i)
        else:
            assert isinstance(tok, CharSet)
            out.charset(tok)
        i += 1
    return "".join(out.parts)


class _Translation:
    """The regex of :func:`to_regex` as it grows, and what the next token needs to know."""

    def __init__(self, tokens: Sequence[Token], after_slash: bool) -> None:
        self.tokens = tokens
        self.after_slash = after_slash
        self.guard = r"(?!(?<![^/])\.)" if after_slash else r"(?!(?<=/)\.)"
        self.before = _Before.SLASH if after_slash else _Before.OTHER
        self.parts: list[str] = []
        self.star_group = False  # an atomic group opened at a '*' waits for the next '*'
        self.level_group_end = -1  # index of the '/**' closing the atomic group opened at a '/**/'

    def globstar(self, i: int) -> int:
        """A '**' (at the start) or '/**' at ``tokens[i]``; returns the index of the next token."""
        tokens, n = self.tokens, len(self.tokens)
        lead = tokens[i] is GLOBSTAR  # '**' at the very start stands for '/**' after the start
        at = i if lead else i + 1
        if lead and i != 0:
            raise PatternError("'**' must follow a '/' or start the pattern")
        if at + 1 < n and tokens[at + 1] != Lit("/"):
            raise PatternError("'**' must be followed by '/' or end the pattern")
        if at + 1 == n:  # final '/**': one or more further characters, anything goes
            self.parts.append(".+" if lead else "/.+")
            return n
        nxt = _next_globstar(tokens, at + 1)
        atomic = nxt > at + 1
        if atomic:
            self.parts.append("(?>")
            self.level_group_end = nxt
        lazy = "?" if atomic else ""
        if lead:  # '**/': zero or more leading levels, the '/' consumed here
            self.parts.append(f"(?:.+{lazy}/)?{lazy}")
            self.before = _Before.SLASH if self.after_slash else _Before.MAYBE
            return at + 2
        # '/**' then '/': zero or more levels; the '/' is matched next
        self.parts.append(f"(?:/.*{lazy})?{lazy}")
        return at + 1

    def literal(self, tok: Lit) -> None:
        self.parts.append(re.escape(tok.char))
        self.before = _Before.SLASH if tok.char == "/" else _Before.OTHER

    def star(self, i: int) -> None:
        """The '*' at ``tokens[i]``: any run of characters within one level."""
        if self.star_group:
            self.parts.append(")")
        self.star_group = _star_follows(self.tokens, i + 1)
        lazy = "?" if self.star_group else ""
        self.parts.append("(?>" if self.star_group else "")
        if self.before is _Before.OTHER:
            self.parts.append(f"[^/]*{lazy}")
        elif self.before is _Before.SLASH:
            self.parts.append(f"(?:[^/.][^/]*{lazy})?{lazy}")
            self.before = _Before.MAYBE
        else:
            self.parts.append(f"(?:{self.guard}[^/]+{lazy})?{lazy}")

    def charset(self, tok: CharSet) -> None:
        """'?' or a bracket expression: never '/', nor a '.' right after one."""
        members = _difference(tok.intervals, ((_SLASH, _SLASH),))
        if self.before is _Before.SLASH:
            members = _difference(members, ((_DOT, _DOT),))
        source = _class_source(members)
        if self.before is _Before.MAYBE and _contains(members, _DOT):
            source = self.guard + source
        self.parts.append(source)
        self.before = _Before.OTHER
