"""The one SQL lexer: where comments, literals and statements are in a PostgreSQL text.

Every classifier in :mod:`aurora_backend.sql` reads a statement through :func:`lex`, so
they agree on what is code and what is not:

- comments, ``-- to end of line`` and ``/* block */`` (nested, as PostgreSQL nests them),
  are blanked;
- string literals, ``'it''s'``, ``E'it\\'s'`` (backslash escapes) and dollar quotes
  (``$$...$$``, ``$tag$...$tag$``), are blanked;
- quoted identifiers (``"it's"``) are kept as they are, but what is inside them ends no
  statement and starts no literal;
- statements are split on the semicolons outside all of those.

Blanking keeps every offset: ``masked[i]`` and ``sql[i]`` are the same place, so a
classifier matches on the masked text and reads names and values from the original. An
unterminated comment or literal runs to the end of the text (PostgreSQL would reject it).
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Lexed", "lex", "statements", "first_keyword", "KEYWORD"]

#: Characters without which a text has no comment, literal or second statement (one
#: ``in`` test each, in C): the usual ORM text takes the fast path of :func:`lex`.
_SPECIAL_CHARS = ("'", "--", "/*", "$", ";")

# The next place where a comment, literal, quoted identifier or statement end starts. A
# quoted identifier, a standard string and a line comment are matched whole here.
_NEXT = re.compile(
    r"""(?P<ident>"(?:[^"]|"")*"?)"""
    r"""|(?P<e>(?<![\w$])[eE]'(?:[^'\\]|\\.|'')*'?)"""
    r"""|(?P<str>'(?:[^']|'')*'?)"""
    r"""|(?P<dollar>(?<![\w$])\$(?P<tag>[^\W\d]\w*)?\$)"""
    r"""|(?P<line>--[^\n]*)"""
    r"""|(?P<block>/\*)"""
    r"""|(?P<semi>;)""",
    re.S,
)
_BLOCK_EDGE = re.compile(r"/\*|\*/")
#: The first word of a (masked) statement.
KEYWORD = re.compile(r"\s*([A-Za-z_]+)")


class Lexed(NamedTuple):
    """A SQL text with its comments and literals blanked, and where its statements end."""

    #: The original text.
    sql: str
    #: The text with comments and literals replaced by spaces (same length, same offsets).
    masked: str
    #: Offsets of the semicolons that end statements (outside comments, literals, names).
    ends: tuple[int, ...]

    def spans(self) -> list[tuple[int, int]]:
        """(start, end) of each statement, including empty ones (the caller skips them)."""
        out, start = [], 0
        for end in self.ends:
            out.append((start, end))
            start = end + 1
        out.append((start, len(self.sql)))
        return out


def _block_end(sql: str, start: int) -> int:
    """Where the (nested) block comment opened at ``start`` ends."""
    depth, pos = 0, start
    while True:
        edge = _BLOCK_EDGE.search(sql, pos)
        if edge is None:
            return len(sql)
        depth += 1 if edge.group() == "/*" else -1
        pos = edge.end()
        if depth == 0:
            return pos


def lex(sql: str) -> Lexed:
    """``sql`` lexed: comments and literals blanked, statement ends found."""
    if not any(ch in sql for ch in _SPECIAL_CHARS):
        return Lexed(sql, sql, ())
    pieces: list[str] = []
    ends: list[int] = []
    kept = pos = 0  # sql[kept:pos] is code to copy as is
    length = len(sql)
    while True:
        m = _NEXT.search(sql, pos)
        if m is None:
            break
        kind, start = m.lastgroup, m.start()
        if kind == "ident":
            pos = m.end()
            continue
        if kind == "semi":
            ends.append(start)
            pos = m.end()
            continue
        if kind == "block":
            end = _block_end(sql, start)
        elif kind == "dollar":
            close = sql.find(m.group("dollar"), m.end())
            end = length if close < 0 else close + len(m.group("dollar"))
        else:  # a string or a line comment, matched whole
            end = m.end()
        pieces.append(sql[kept:start])
        pieces.append(" " * (end - start))
        kept = pos = end
    if not pieces:
        return Lexed(sql, sql, tuple(ends))
    pieces.append(sql[kept:])
    return Lexed(sql, "".join(pieces), tuple(ends))


def statements(sql: str) -> list[tuple[str, str]]:
    """(masked, original) text of each non-empty statement of ``sql``, stripped."""
    lexed = lex(sql)
    out = []
    for start, end in lexed.spans():
        masked = lexed.masked[start:end]
        if masked.strip():
            out.append((masked.strip(), sql[start:end].strip()))
    return out


def first_keyword(sql: str) -> str | None:
    """The first word of ``sql`` upper-cased, past comments (None: none, e.g. ``(SELECT``)."""
    m = KEYWORD.match(lex(sql).masked)
    return m.group(1).upper() if m is not None else None
