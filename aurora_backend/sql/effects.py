"""What a SQL statement does to session state, known from its text alone.

A PostgreSQL session keeps state between statements: settings (``SET``), the current
role, session advisory locks, temporary tables, ``LISTEN`` channels, prepared
statements and ``WITH HOLD`` cursors. A new connection has none of it, so a connection
carrying it must not be silently replaced. :func:`effects` says what one text (one or
more statements) does to that state, as :class:`Effect` tuples; ``SessionState``
(``connection/session_state.py``) adds them up for one connection.

The same list is what makes RDS Proxy pin a session (``sql.pins``), so :func:`effects`
also reports, as ``Op.NOTE`` effects, statements that hold nothing beyond their
transaction but that a proxy cares about (``SET LOCAL``, transaction-level advisory
locks, sequences, cursors without ``WITH HOLD``).

Cost: :func:`effects` runs on every statement. The answer for a text is kept (``seen``,
bounded), so a text the ORM sent before costs one dict lookup; a new one costs an anchored
match of its first word and a few substring tests (the pre-filter); only a statement that
may touch session state is lexed (``sql.lexer``) and parsed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from aurora_backend.sql.calls import unknown_calls
from aurora_backend.sql.kinds import STATE_KINDS, Kind, Op
from aurora_backend.sql.lexer import KEYWORD, lex

__all__ = [
    "Effect",
    "effects",
    "parse",
    "resolve",
    "seen",
    "HOLD",
    "RELEASE",
    "RELEASE_ALL",
    "NOTE",
    "STATE_KINDS",
]

HOLD = Op.HOLD
RELEASE = Op.RELEASE
RELEASE_ALL = Op.RELEASE_ALL
NOTE = Op.NOTE
# Other kinds than STATE_KINDS: Kind.DISCARD_ALL (RELEASE_ALL of every kind);
# Kind.SET_CONFIG (HOLD, when the setting or is_local is a query parameter:
# SessionState.apply resolves it to "set" or nothing); NOTE effects SET_LOCAL,
# SET_TRANSACTION, ADVISORY_XACT_LOCK, SEQUENCE, CURSOR (without hold), TEMP_TABLE (ON
# COMMIT DROP), DISCARD (PLANS, SEQUENCES).


class Effect(NamedTuple):
    """One effect of a statement on session state."""

    #: The kind of state (a ``Kind``; equal to its string value).
    name: str
    #: HOLD, RELEASE, RELEASE_ALL or NOTE (an ``Op``).
    op: str
    #: Which one: a setting, lock, table, channel, statement or cursor name ("" if none).
    #: It may name query parameters (%s, %(name)s): see ``param_index``.
    key: str = ""
    #: Number of positional parameters (%s) in the statement before ``key``, to resolve them.
    param_index: int = 0


# ----- the cache and the pre-filter --------------------------------------------------------

# A statement whose first word may set or clear session state (or that starts with a comment).
_FIRST_WORD = re.compile(
    r"\s*(?:/\*|--|(?:SET|RESET|CREATE|DROP|LISTEN|UNLISTEN|PREPARE|DEALLOCATE|DECLARE|CLOSE|DISCARD"
    r"|DO|CALL|EXECUTE|LOAD|IMPORT)\b)",
    re.I,
)
_INTO_TEMP_HINT = re.compile(r"into\s+temp")

# The answers for recent statement texts. An ORM sends the same few texts again and again
# (parameters apart), so most statements cost one dict lookup (hashing the text).
#: ``seen.get(sql)`` is ``effects(sql)`` for a text seen before (the cursor wrapper inlines it).
seen: dict[str, tuple[Effect, ...]] = {}
_KNOWN_MAX = 2048
_KNOWN_LONGEST = 8192  # longer texts (bulk inserts with inlined values) are not kept


def effects(sql: str) -> tuple[Effect, ...]:
    """What ``sql`` (one or more statements) does to session state, in order; () for most SQL."""
    found = seen.get(sql)
    if found is None:
        found = _effects(sql)
        if len(sql) <= _KNOWN_LONGEST:
            if len(seen) >= _KNOWN_MAX:
                seen.clear()
            seen[sql] = found
    return found


def _effects(sql: str) -> tuple[Effect, ...]:
    if _FIRST_WORD.match(sql) is None:
        # Anywhere: function calls (a user function may SET or lock: Kind.UNKNOWN),
        # SELECT INTO TEMP, a second statement. Generous on purpose: a false alarm costs one
        # parse, once per text.
        probe = _without_values(sql)
        if "(" not in probe and ";" not in probe:
            low = probe.lower()
            if not ("temp" in low and _INTO_TEMP_HINT.search(low)):
                return ()
        if probe is not sql and not parse(probe):
            return ()  # a bulk INSERT: only its head and tail can name a function
    return tuple(parse(sql))


# The VALUES lists of a bulk INSERT the ORM wrote: placeholders only.
_PLACEHOLDERS = re.compile(r"(?:[\s(),]*%s)*[\s(),]*")


def _without_values(sql: str) -> str:
    """``sql`` without the placeholder-only VALUES lists of a long INSERT (a bulk_create of
    thousands of rows is parsed in microseconds, not milliseconds); else ``sql`` itself."""
    if len(sql) < 1024:
        return sql
    at = sql.find(" VALUES (")
    if at < 0:
        return sql
    placeholders = _PLACEHOLDERS.match(sql, at + 8)  # matches the empty string at least
    end = placeholders.end() if placeholders is not None else at + 8
    return sql[:at] + " VALUES (%s) " + sql[end:]


# ----- the parser ------------------------------------------------------------------------

_PARAM = re.compile(r"%(?:\((\w+)\))?s|%%")
_NAME = r'(?:"(?:[^"]|"")+"|[\w$]+)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[\w$]+))*'

_SET = re.compile(
    r"SET\s+(?:(?P<local>LOCAL)\s+|SESSION\s+(?!AUTHORIZATION\b|CHARACTERISTICS\b))?"
    r"(?:(?P<auth>SESSION\s+AUTHORIZATION)\b|(?P<chars>SESSION\s+CHARACTERISTICS)\b"
    r"|(?P<txn>TRANSACTION|CONSTRAINTS)\b|(?P<tz>TIME\s+ZONE)\b|(?P<schema>SCHEMA)\b|(?P<names>NAMES)\b"
    r"|(?P<xml>XML\s+OPTION)\b|(?P<name>" + _NAME + r"))\s*(?:(?:TO\b|=)\s*)?(?P<value>.*)",
    re.I | re.S,
)
_RESET = re.compile(
    r"RESET\s+(?:(?P<all>ALL)\b|(?P<auth>SESSION\s+AUTHORIZATION)\b|(?P<tz>TIME\s+ZONE)\b"
    r"|(?P<name>" + _NAME + "))",
    re.I,
)
_CREATE_TEMP = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:GLOBAL|LOCAL)\s+)?(?:(?P<temp>TEMP|TEMPORARY)\s+)?(?:UNLOGGED\s+)?"
    r"(?:RECURSIVE\s+)?(?:TABLE|VIEW|SEQUENCE)\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>" + _NAME + ")",
    re.I,
)
_ON_COMMIT_DROP = re.compile(r"\bON\s+COMMIT\s+DROP\b", re.I)
_INTO_TEMP = re.compile(r"\bINTO\s+(?:TEMP|TEMPORARY)\s+(?:TABLE\s+)?(?P<name>" + _NAME + ")", re.I)
_DROP = re.compile(r"DROP\s+(?:TABLE|VIEW|SEQUENCE)\s+(?:IF\s+EXISTS\s+)?(?P<names>.*)", re.I | re.S)
_LISTEN = re.compile(r"(?P<un>UN)?LISTEN\s+(?:(?P<all>\*)|(?P<name>" + _NAME + "))", re.I)
_PREPARE = re.compile(r"PREPARE\s+(?!TRANSACTION\b)(?P<name>" + _NAME + ")", re.I)
_DEALLOCATE = re.compile(r"DEALLOCATE\s+(?:PREPARE\s+)?(?:(?P<all>ALL)\b|(?P<name>" + _NAME + "))", re.I)
_DECLARE = re.compile(r"DECLARE\s+(?P<name>" + _NAME + r")\s.*?\bCURSOR\s+(?P<hold>WITH\s+HOLD\b)?", re.I | re.S)
_CLOSE = re.compile(r"CLOSE\s+(?:(?P<all>ALL)\b|(?P<name>" + _NAME + "))", re.I)
_DISCARD = re.compile(r"DISCARD\s+(?P<what>ALL|TEMP|TEMPORARY|PLANS|SEQUENCES)\b", re.I)
_FUNCTION = re.compile(
    r"\b(?P<fn>pg_(?:try_)?advisory_(?:xact_)?lock(?:_shared)?|pg_advisory_unlock(?:_shared|_all)?"
    r"|set_config|nextval|setval)\s*\(",
    re.I,
)
_CREATE_TEMP_OBJECT = re.compile(
    r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:GLOBAL|LOCAL)\s+)?(?:(?:TEMP|TEMPORARY)\s+(?:\w+\s+)+?|"
    r"(?:\w+\s+)+?(?=pg_temp\s*\.))(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>" + _NAME + ")",
    re.I,
)
#: Statements that run code the text does not show (which may SET, set_config, lock...).
_OPAQUE = frozenset(("DO", "CALL", "EXECUTE", "LOAD", "IMPORT"))
_SPECIAL_SETTINGS = {"tz": "timezone", "schema": "search_path", "names": "client_encoding", "xml": "xmloption"}
_TRUE = {"true", "t", "on", "1", "yes"}


def parse(sql: str) -> list[Effect]:
    """The effects of every statement of ``sql``, in order (uncached: see :func:`effects`)."""
    lexed = lex(sql)
    found: list[Effect] = []
    for start, end in lexed.spans():
        _statement(sql, lexed.masked, start, end, found)
    return found


def _statement(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    word = KEYWORD.match(masked, start, end)
    if word is not None:
        first = word.group(1).upper()
        if first in _OPAQUE:  # code that may run SET/set_config/advisory locks unseen
            found.append(Effect(Kind.UNKNOWN, HOLD, first))
            return
        rule = _RULES.get(first)
        if rule is not None:
            rule(sql, masked, word.start(1), end, found)
    if word is None or word.group(1).upper() in ("SELECT", "WITH"):  # SELECT ... INTO TEMP t
        into = _INTO_TEMP.search(masked, start, end)
        if into is not None:
            found.append(Effect(Kind.TEMP_TABLE, HOLD, _ident(into.group("name")), _params_before(sql, into.start())))
    for call in _FUNCTION.finditer(masked, start, end):
        _function(sql, masked, call, end, found)
    if "(" in masked[start:end]:
        found.extend(
            Effect(Kind.UNKNOWN, HOLD, "call %s()" % name) for name in unknown_calls(masked, start, end, _FUNCTION)
        )


def _set(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _SET.match(masked, start, end)
    if m is None:
        return
    value = sql[m.start("value") : m.end("value")].strip() if m.group("value") is not None else ""
    default = value.upper() == "DEFAULT" or (bool(m.group("tz")) and value.upper() == "LOCAL")
    if m.group("txn"):
        found.append(Effect(Kind.SET_TRANSACTION, NOTE))
        return
    if m.group("local"):
        found.append(Effect(Kind.SET_LOCAL, NOTE, _setting_name(m)))
        return
    if m.group("auth"):
        found.append(
            Effect(Kind.SESSION_AUTHORIZATION, RELEASE if value.upper() == "DEFAULT" else HOLD, "session_authorization")
        )
        return
    if m.group("chars"):
        found.append(Effect(Kind.SET, HOLD, "session_characteristics"))
        return
    name = _setting_name(m)
    if name == "role":
        found.append(Effect(Kind.SET_ROLE, RELEASE if value.upper() in ("NONE", "DEFAULT") else HOLD, "role"))
    elif name == "session_authorization":
        found.append(Effect(Kind.SESSION_AUTHORIZATION, RELEASE if default else HOLD, name))
    else:
        found.append(Effect(Kind.SET, RELEASE if default else HOLD, name))


def _setting_name(m: re.Match[str]) -> str:
    for group, setting in _SPECIAL_SETTINGS.items():
        if m.group(group):
            return setting
    return _ident(m.group("name") or "")


def _reset(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _RESET.match(masked, start, end)
    if m is None:
        return
    if m.group("all"):  # role and session_authorization are not reset by RESET ALL
        found.append(Effect(Kind.SET, RELEASE_ALL))
    elif m.group("auth"):
        found.append(Effect(Kind.SESSION_AUTHORIZATION, RELEASE, "session_authorization"))
    elif m.group("tz"):
        found.append(Effect(Kind.SET, RELEASE, "timezone"))
    else:
        name = _ident(m.group("name"))
        if name == "role":
            found.append(Effect(Kind.SET_ROLE, RELEASE, "role"))
        elif name == "session_authorization":
            found.append(Effect(Kind.SESSION_AUTHORIZATION, RELEASE, name))
        else:
            found.append(Effect(Kind.SET, RELEASE, name))


def _create(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _CREATE_TEMP.match(masked, start, end)
    if m is None:
        other = _CREATE_TEMP_OBJECT.match(masked, start, end)
        if other is not None:  # a function, type, domain, ... in pg_temp: gone with the session
            found.append(Effect(Kind.TEMP_OBJECT, HOLD, _ident(other.group("name"))))
        return
    name = _ident(m.group("name"))
    if not m.group("temp"):
        if not name.startswith("pg_temp."):
            return
    name = name[len("pg_temp.") :] if name.startswith("pg_temp.") else name
    dropped = _ON_COMMIT_DROP.search(masked, m.end(), end) is not None
    found.append(Effect(Kind.TEMP_TABLE, NOTE if dropped else HOLD, name))


def _drop(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _DROP.match(masked, start, end)
    if m is None:
        return
    names = re.sub(r"\b(?:CASCADE|RESTRICT)\b", "", masked[m.start("names") : end], flags=re.I)
    for name in names.split(","):
        name = _ident(name.strip())
        if name:
            found.append(
                Effect(Kind.TEMP_TABLE, RELEASE, name[len("pg_temp.") :] if name.startswith("pg_temp.") else name)
            )


def _listen(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _LISTEN.match(masked, start, end)
    if m is None:
        return
    if m.group("un"):
        found.append(
            Effect(Kind.LISTEN, RELEASE_ALL)
            if m.group("all")
            else Effect(Kind.LISTEN, RELEASE, _ident(m.group("name")))
        )
    else:
        found.append(Effect(Kind.LISTEN, HOLD, _ident(m.group("name") or "")))


def _prepare(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _PREPARE.match(masked, start, end)
    if m is not None:
        found.append(Effect(Kind.PREPARE, HOLD, _ident(m.group("name"))))


def _deallocate(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _DEALLOCATE.match(masked, start, end)
    if m is not None:
        found.append(
            Effect(Kind.PREPARE, RELEASE_ALL)
            if m.group("all")
            else Effect(Kind.PREPARE, RELEASE, _ident(m.group("name")))
        )


def _declare(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _DECLARE.match(masked, start, end)
    if m is not None:
        found.append(Effect(Kind.CURSOR, HOLD if m.group("hold") else NOTE, _ident(m.group("name"))))


def _close(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _CLOSE.match(masked, start, end)
    if m is not None:
        found.append(
            Effect(Kind.CURSOR, RELEASE_ALL)
            if m.group("all")
            else Effect(Kind.CURSOR, RELEASE, _ident(m.group("name")))
        )


def _discard(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _DISCARD.match(masked, start, end)
    if m is None:
        return
    what = m.group("what").upper()
    if what == "ALL":
        found.append(Effect(Kind.DISCARD_ALL, RELEASE_ALL, "*"))
    elif what.startswith("TEMP"):
        found.append(Effect(Kind.TEMP_TABLE, RELEASE_ALL))
    else:
        found.append(Effect(Kind.DISCARD, NOTE, what.lower()))


_RULES = {
    "SET": _set,
    "RESET": _reset,
    "CREATE": _create,
    "DROP": _drop,
    "LISTEN": _listen,
    "UNLISTEN": _listen,
    "PREPARE": _prepare,
    "DEALLOCATE": _deallocate,
    "DECLARE": _declare,
    "CLOSE": _close,
    "DISCARD": _discard,
}


def _function(sql: str, masked: str, call: re.Match[str], end: int, found: list[Effect]) -> None:
    fn = call.group("fn").lower()
    args = _arguments(sql, masked, call.end(), end)
    index = _params_before(sql, call.end())
    if fn in ("nextval", "setval"):
        found.append(Effect(Kind.SEQUENCE, NOTE, args[0] if args else "", index))
    elif fn == "set_config":
        _set_config(args, index, found)
    elif fn == "pg_advisory_unlock_all":
        found.append(Effect(Kind.ADVISORY_LOCK, RELEASE_ALL))
    elif "xact" in fn:
        found.append(Effect(Kind.ADVISORY_XACT_LOCK, NOTE, ",".join(args), index))
    else:
        key = ("shared:" if fn.endswith("_shared") else "") + ",".join(args)
        found.append(Effect(Kind.ADVISORY_LOCK, RELEASE if "unlock" in fn else HOLD, key, index))


def _set_config(args: Sequence[str], index: int, found: list[Effect]) -> None:
    name = args[0] if args else ""
    is_local = args[2].lower() if len(args) > 2 else "'?'"
    if _PARAM.fullmatch(is_local) or _PARAM.fullmatch(name):
        # Which setting, or local or not, comes from a parameter: SessionState.apply decides.
        found.append(Effect(Kind.SET_CONFIG, HOLD, "\x00".join(args[:3]), index))
    elif is_local.strip("'") in _TRUE:
        found.append(Effect(Kind.SET_LOCAL, NOTE, _unquote(name), index))
    else:  # false, or an expression we cannot judge: held, the safe side
        found.append(_setting_effect(_unquote(name), HOLD))


def _setting_effect(name: str, op: Op) -> Effect:
    kind = {"role": Kind.SET_ROLE, "session_authorization": Kind.SESSION_AUTHORIZATION}.get(name, Kind.SET)
    return Effect(kind, op, name)


def _unquote(literal: str) -> str:
    return literal.strip("'").replace("''", "'").lower()


def _arguments(sql: str, masked: str, start: int, end: int) -> list[str]:
    """The top-level, comma-separated arguments of a call whose "(" ends at ``start``."""
    depth, pieces, begin = 0, [], start
    for i in range(start, end):
        ch = masked[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                pieces.append(sql[begin:i])
                break
            depth -= 1
        elif ch == "," and depth == 0:
            pieces.append(sql[begin:i])
            begin = i + 1
    return [re.sub(r"\s+", "", p) for p in pieces if p.strip()]


def _params_before(sql: str, position: int) -> int:
    return sum(1 for m in _PARAM.finditer(sql, 0, position) if m.group() == "%s")


def _ident(name: str) -> str:
    """A name as PostgreSQL folds it: unquoted parts lowercased, quotes removed."""
    parts = re.findall(r'"((?:[^"]|"")+)"|([\w$]+)', name)
    return ".".join(q.replace('""', '"') if q else w.lower() for q, w in parts)


def resolve(effect: Effect, params: Any) -> Effect | None:
    """The effect with query parameters filled into its key (None: it holds nothing)."""
    key = effect.key
    if "%" in key and params is not None:
        positional = iter(params[effect.param_index :]) if isinstance(params, (list, tuple)) else iter(())

        def fill(m: re.Match[str]) -> str:
            if m.group() == "%%":
                return "%"
            try:
                value = params[m.group(1)] if m.group(1) else next(positional)
            except (KeyError, StopIteration, TypeError, IndexError):
                return m.group()
            return str(value)

        key = _PARAM.sub(fill, key)
    if effect.name != Kind.SET_CONFIG:
        return effect._replace(key=key) if key is not effect.key else effect
    name, _value, is_local = (key.split("\x00") + ["", ""])[:3]
    if is_local.strip("'").lower() in _TRUE:
        return None
    # false, or a parameter we could not fill: count it as held, the safe side.
    return _setting_effect(_unquote(name), HOLD)
