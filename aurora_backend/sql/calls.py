"""Function calls whose effect on session state the text cannot show (for ``sql.effects``).

A user function may call ``set_config(..., false)``, ``SET``, take an advisory lock or open
a dblink connection: nothing in ``SELECT enter_tenant('a')`` says so. So a call of any
function not known to leave session state alone counts as state held (``Kind.UNKNOWN``),
and as a possible write (``sql.reads``, ``sql.writes``): the fail-safe side
(docs/session_state.md, "The fail-safe rule"). Known: PostgreSQL's own functions
(``sql.builtins``, less the few that set session state), those of common extensions, and
SQL syntax that looks like a call (``IN (``, ``VALUES (``,
``varchar(100)``, ``INSERT INTO t (``).
"""

from __future__ import annotations

import re
from re import Pattern

from aurora_backend.sql.builtins import KNOWN, PREFIXES, SESSION_FUNCTIONS

__all__ = ["unknown_calls"]

# A call: a name (quoted or not, maybe qualified) and "(".
_CALL = re.compile(r'(?P<name>"[^"]+"|(?<![\w$])[A-Za-z_][\w$]*)\s*\(')
# The word before a (maybe qualified) name: "INTO", "ON", "FUNCTION"...
_BEFORE = re.compile(r'(?P<word>[A-Za-z_]+)\s*(?:(?:"(?:[^"]|"")+"|[\w$]+)\s*\.\s*)*$')
#: Words followed by "(" that are not calls (SQL syntax, type modifiers).
_NOT_CALLS = frozenset(
    """
    all and any array as between bit by case cast char character check collate constraint cube
    decimal default distinct double else except exists extract fetch filter float from group grouping
    having ilike in include intersect interval is join key lateral like limit not numeric offset on
    or over overlay partition position precision primary references returning rollup row select
    sets some substring table then time timestamp to trim union unique using values varchar varying
    when where window with within set vacuum analyze explain reindex cluster copy
    xmlelement xmlforest xmlattributes xmlconcat xmlparse xmlpi xmlroot xmlserialize xmlexists xmltable
""".split()
)
#: Words after which "name (" is an object name, not a call (INSERT INTO t (...), DDL).
_NAMES_AFTER = frozenset(
    """
    into table references index on view function procedure aggregate type trigger constraint key
    using as with sequence domain cursor prepare exists copy analyze only of
""".split()
)


def unknown_calls(masked: str, start: int, end: int, known: Pattern[str]) -> list[str]:
    """The functions called in ``masked[start:end]`` (literals and comments blanked) that are
    not known to leave session state alone; ``known`` matches the calls the caller parses
    itself (set_config, advisory locks, sequences) at a call's start."""
    found = []
    for call in _CALL.finditer(masked, start, end):
        raw = call.group("name")
        quoted = raw.startswith('"')
        name = raw[1:-1].replace('""', '"') if quoted else raw.lower()
        if not quoted and (name in _NOT_CALLS or name in KNOWN or name.startswith(PREFIXES)):
            if not SESSION_FUNCTIONS.search(name):
                continue
        if not quoted and known.match(masked, call.start()):
            continue  # set_config, nextval, advisory locks: the caller's
        before = _BEFORE.search(masked, max(start, call.start() - 80), call.start())
        if before is not None and before.group("word").lower() in _NAMES_AFTER:
            continue  # INSERT INTO t (...), CREATE INDEX i ON t (...): names, not calls
        found.append(name)
    return found
