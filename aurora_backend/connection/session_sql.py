"""The SQL rules behind ``session_state``: what one statement does to session state.

Only ``session_state`` calls :func:`parse`, for statements its pre-filter let through;
use :func:`aurora_backend.connection.session_state.effects`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from aurora_backend.connection.session_calls import unknown_calls

#: The statement creates (or re-creates) session state ``kind``/``key``.
HOLD = "hold"
#: The statement removes session state ``kind``/``key`` (if it was there).
RELEASE = "release"
#: The statement removes all session state of ``kind`` ("*" for every kind: DISCARD ALL).
RELEASE_ALL = "release_all"
#: Nothing outlives the statement's transaction, but a connection pooler may still care.
NOTE = "note"

#: Kinds of session state (``Effect.name`` of HOLD/RELEASE effects), with what sets them.
STATE_KINDS: dict[str, str] = {
    "set": "SET / set_config(..., false) of a setting (key: the setting's name)",
    "set_role": "SET ROLE (key: 'role')",
    "session_authorization": "SET SESSION AUTHORIZATION (key: 'session_authorization')",
    "advisory_lock": "pg_advisory_lock & friends (key: the arguments; 'shared:' prefix for shared locks)",
    "temp_table": "CREATE TEMP TABLE/VIEW/SEQUENCE, SELECT INTO TEMP (key: the name)",
    "listen": "LISTEN (key: the channel)",
    "prepare": "PREPARE (key: the statement name)",
    "cursor": "DECLARE ... WITH HOLD (key: the cursor name)",
    "temp_object": "CREATE of a temporary function, type, domain or other object (key: the name)",
    "unknown": "a statement that may change session state in a way the text does not show: a DO "
    "block, CALL, a function outside the known built-ins, a quoted session function, "
    "dblink (key: what)",
}
#: Other names: "discard_all" (RELEASE_ALL of every kind); "set_config" (HOLD, when the
#: setting or is_local is a query parameter: SessionState.apply resolves it to "set" or
#: nothing); NOTE effects "set_local", "set_transaction", "advisory_xact_lock", "sequence",
#: "cursor" (without hold), "temp_table" (ON COMMIT DROP), "discard" (PLANS, SEQUENCES).


class Effect(NamedTuple):
    """One effect of a statement on session state."""

    #: Short name of the kind of state (a key of STATE_KINDS, or a NOTE name).
    name: str
    #: HOLD, RELEASE, RELEASE_ALL or NOTE.
    op: str
    #: Which one: a setting, lock, table, channel, statement or cursor name ("" if none).
    #: It may name query parameters (%s, %(name)s): see ``param_index``.
    key: str = ""
    #: Number of positional parameters (%s) in the statement before ``key``, to resolve them.
    param_index: int = 0


# ----- the parser ------------------------------------------------------------------------

_LITERALS = re.compile(
    r"""[eE]'(?:[^'\\]|\\.|'')*'?|'(?:[^']|'')*'?|\$(\w*)\$.*?(?:\$\1\$|$)|--[^\n]*|/\*.*?(?:\*/|$)""",
    re.S,
)
_PARAM = re.compile(r"%(?:\((\w+)\))?s|%%")
_NAME = r'(?:"(?:[^"]|"")+"|[\w$]+)(?:\s*\.\s*(?:"(?:[^"]|"")+"|[\w$]+))*'
_KEYWORD = re.compile(r"\s*([A-Za-z_]+)")

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
    masked = _LITERALS.sub(lambda m: " " * len(m.group()), sql)
    found: list[Effect] = []
    start = 0
    for end in [m.start() for m in re.finditer(";", masked)] + [len(masked)]:
        _statement(sql, masked, start, end, found)
        start = end + 1
    return found


def _statement(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    word = _KEYWORD.match(masked, start, end)
    if word is not None:
        first = word.group(1).upper()
        if first in _OPAQUE:  # code that may run SET/set_config/advisory locks unseen
            found.append(Effect("unknown", HOLD, first))
            return
        rule = _RULES.get(first)
        if rule is not None:
            rule(sql, masked, word.start(1), end, found)
    if word is None or word.group(1).upper() in ("SELECT", "WITH"):  # SELECT ... INTO TEMP t
        into = _INTO_TEMP.search(masked, start, end)
        if into is not None:
            found.append(Effect("temp_table", HOLD, _ident(into.group("name")), _params_before(sql, into.start())))
    for call in _FUNCTION.finditer(masked, start, end):
        _function(sql, masked, call, end, found)
    if "(" in masked[start:end]:
        found.extend(
            Effect("unknown", HOLD, "call %s()" % name) for name in unknown_calls(masked, start, end, _FUNCTION)
        )


def _set(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _SET.match(masked, start, end)
    if m is None:
        return
    value = sql[m.start("value") : m.end("value")].strip() if m.group("value") is not None else ""
    default = value.upper() == "DEFAULT" or (bool(m.group("tz")) and value.upper() == "LOCAL")
    if m.group("txn"):
        found.append(Effect("set_transaction", NOTE))
        return
    if m.group("local"):
        found.append(Effect("set_local", NOTE, _setting_name(m)))
        return
    if m.group("auth"):
        found.append(
            Effect("session_authorization", RELEASE if value.upper() == "DEFAULT" else HOLD, "session_authorization")
        )
        return
    if m.group("chars"):
        found.append(Effect("set", HOLD, "session_characteristics"))
        return
    name = _setting_name(m)
    if name == "role":
        found.append(Effect("set_role", RELEASE if value.upper() in ("NONE", "DEFAULT") else HOLD, "role"))
    elif name == "session_authorization":
        found.append(Effect("session_authorization", RELEASE if default else HOLD, name))
    else:
        found.append(Effect("set", RELEASE if default else HOLD, name))


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
        found.append(Effect("set", RELEASE_ALL))
    elif m.group("auth"):
        found.append(Effect("session_authorization", RELEASE, "session_authorization"))
    elif m.group("tz"):
        found.append(Effect("set", RELEASE, "timezone"))
    else:
        name = _ident(m.group("name"))
        if name == "role":
            found.append(Effect("set_role", RELEASE, "role"))
        elif name == "session_authorization":
            found.append(Effect("session_authorization", RELEASE, name))
        else:
            found.append(Effect("set", RELEASE, name))


def _create(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _CREATE_TEMP.match(masked, start, end)
    if m is None:
        other = _CREATE_TEMP_OBJECT.match(masked, start, end)
        if other is not None:  # a function, type, domain, ... in pg_temp: gone with the session
            found.append(Effect("temp_object", HOLD, _ident(other.group("name"))))
        return
    name = _ident(m.group("name"))
    if not m.group("temp"):
        if not name.startswith("pg_temp."):
            return
    name = name[len("pg_temp.") :] if name.startswith("pg_temp.") else name
    dropped = _ON_COMMIT_DROP.search(masked, m.end(), end) is not None
    found.append(Effect("temp_table", NOTE if dropped else HOLD, name))


def _drop(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _DROP.match(masked, start, end)
    if m is None:
        return
    names = re.sub(r"\b(?:CASCADE|RESTRICT)\b", "", masked[m.start("names") : end], flags=re.I)
    for name in names.split(","):
        name = _ident(name.strip())
        if name:
            found.append(
                Effect("temp_table", RELEASE, name[len("pg_temp.") :] if name.startswith("pg_temp.") else name)
            )


def _listen(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _LISTEN.match(masked, start, end)
    if m is None:
        return
    if m.group("un"):
        found.append(
            Effect("listen", RELEASE_ALL) if m.group("all") else Effect("listen", RELEASE, _ident(m.group("name")))
        )
    else:
        found.append(Effect("listen", HOLD, _ident(m.group("name") or "")))


def _prepare(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _PREPARE.match(masked, start, end)
    if m is not None:
        found.append(Effect("prepare", HOLD, _ident(m.group("name"))))


def _deallocate(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _DEALLOCATE.match(masked, start, end)
    if m is not None:
        found.append(
            Effect("prepare", RELEASE_ALL) if m.group("all") else Effect("prepare", RELEASE, _ident(m.group("name")))
        )


def _declare(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _DECLARE.match(masked, start, end)
    if m is not None:
        found.append(Effect("cursor", HOLD if m.group("hold") else NOTE, _ident(m.group("name"))))


def _close(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _CLOSE.match(masked, start, end)
    if m is not None:
        found.append(
            Effect("cursor", RELEASE_ALL) if m.group("all") else Effect("cursor", RELEASE, _ident(m.group("name")))
        )


def _discard(sql: str, masked: str, start: int, end: int, found: list[Effect]) -> None:
    m = _DISCARD.match(masked, start, end)
    if m is None:
        return
    what = m.group("what").upper()
    if what == "ALL":
        found.append(Effect("discard_all", RELEASE_ALL, "*"))
    elif what.startswith("TEMP"):
        found.append(Effect("temp_table", RELEASE_ALL))
    else:
        found.append(Effect("discard", NOTE, what.lower()))


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
        found.append(Effect("sequence", NOTE, args[0] if args else "", index))
    elif fn == "set_config":
        _set_config(args, index, found)
    elif fn == "pg_advisory_unlock_all":
        found.append(Effect("advisory_lock", RELEASE_ALL))
    elif "xact" in fn:
        found.append(Effect("advisory_xact_lock", NOTE, ",".join(args), index))
    else:
        key = ("shared:" if fn.endswith("_shared") else "") + ",".join(args)
        found.append(Effect("advisory_lock", RELEASE if "unlock" in fn else HOLD, key, index))


def _set_config(args: Sequence[str], index: int, found: list[Effect]) -> None:
    name = args[0] if args else ""
    is_local = args[2].lower() if len(args) > 2 else "'?'"
    if _PARAM.fullmatch(is_local) or _PARAM.fullmatch(name):
        # Which setting, or local or not, comes from a parameter: SessionState.apply decides.
        found.append(Effect("set_config", HOLD, "\x00".join(args[:3]), index))
    elif is_local.strip("'") in _TRUE:
        found.append(Effect("set_local", NOTE, _unquote(name), index))
    else:  # false, or an expression we cannot judge: held, the safe side
        found.append(_setting_effect(_unquote(name), HOLD))


def _setting_effect(name: str, op: str) -> Effect:
    kind = {"role": "set_role", "session_authorization": "session_authorization"}.get(name, "set")
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
    if effect.name != "set_config":
        return effect._replace(key=key) if key is not effect.key else effect
    name, _value, is_local = (key.split("\x00") + ["", ""])[:3]
    if is_local.strip("'").lower() in _TRUE:
        return None
    # false, or a parameter we could not fill: count it as held, the safe side.
    return _setting_effect(_unquote(name), HOLD)
