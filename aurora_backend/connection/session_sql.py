"""The SQL rules behind ``session_state``: what one statement does to session state.

Only ``session_state`` calls :func:`parse`, for statements its pre-filter let through;
use :func:`aurora_backend.connection.session_state.effects`.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

from aurora_backend.connection import pg_builtins

#: The statement creates (or re-creates) session state ``kind``/``key``.
HOLD = "hold"
#: The statement removes session state ``kind``/``key`` (if it was there).
RELEASE = "release"
#: The statement removes all session state of ``kind`` ("*" for every kind: DISCARD ALL).
RELEASE_ALL = "release_all"
#: Nothing outlives the statement's transaction, but a connection pooler may still care.
NOTE = "note"

#: Kinds of session state (``Effect.name`` of HOLD/RELEASE effects), with what sets them.
STATE_KINDS: Dict[str, str] = {
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
_RESET = re.compile(r"RESET\s+(?:(?P<all>ALL)\b|(?P<auth>SESSION\s+AUTHORIZATION)\b|(?P<tz>TIME\s+ZONE)\b"
                    r"|(?P<name>" + _NAME + "))", re.I)
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
# A call: a name (quoted or not, maybe qualified) and "(".
_CALL = re.compile(r'(?P<name>"[^"]+"|(?<![\w$])[A-Za-z_][\w$]*)\s*\(')
# The word before a (maybe qualified) name: "INTO", "ON", "FUNCTION"...
_BEFORE = re.compile(r'(?P<word>[A-Za-z_]+)\s*(?:(?:"(?:[^"]|"")+"|[\w$]+)\s*\.\s*)*$')
#: Words followed by "(" that are not calls (SQL syntax, type modifiers).
_NOT_CALLS = frozenset("""
    all and any array as between bit by case cast char character check collate constraint cube
    decimal default distinct double else except exists extract fetch filter float from group grouping
    having ilike in include intersect interval is join key lateral like limit not numeric offset on
    or over overlay partition position precision primary references returning rollup row select
    sets some substring table then time timestamp to trim union unique using values varchar varying
    when where window with within
""".split())
#: Words after which "name (" is an object name, not a call (INSERT INTO t (...), DDL).
_NAMES_AFTER = frozenset("""
    into table references index on view function procedure aggregate type trigger constraint key
    using as with sequence domain cursor prepare
""".split())
#: Built-in functions (lower case) that change no session state: PostgreSQL's pg_catalog
#: (pg_builtins.py), common extensions', and the prefixes below.
_BUILTINS = pg_builtins.NAMES | frozenset("""
    abs acos asin atan atan2 avg bool_and bool_or bit_and bit_or btrim cbrt ceil ceiling chr coalesce
    concat concat_ws cos cot count cume_dist degrees dense_rank div encode decode every exp first_value
    floor format generate_series gen_random_uuid greatest initcap lag last_value lead least left length
    ln log lower lpad ltrim max md5 min mod now nth_value ntile nullif octet_length percent_rank pi
    power radians random rank repeat replace reverse right round row_number rpad rtrim sha224 sha256
    sha384 sha512 sign sin sqrt statement_timestamp stddev stddev_pop stddev_samp strpos substr sum tan
    trunc unnest upper uuid_generate_v4 var_pop var_samp variance version clock_timestamp
    transaction_timestamp timeofday age isfinite justify_days justify_hours make_date make_interval
    make_time make_timestamp make_timestamptz quote_ident quote_literal quote_nullable split_part
    translate starts_with ascii bit_length char_length character_length current_setting
    currval lastval obj_description col_description format_type setweight plainto_tsquery
    phraseto_tsquery websearch_to_tsquery similarity word_similarity unaccent
    int4range int8range numrange tsrange tstzrange daterange multirange geometry geography box2d
""".split())
_BUILTIN_PREFIXES = ("array_", "json_", "jsonb_", "to_", "ts_", "date_", "regexp_", "string_", "st_",
                     "has_", "int4", "int8", "num", "range", "lower_", "upper_", "isempty", "pg_",
                     "aurora_", "current_", "inet_", "txid_", "generate_", "gen_", "uuid_", "row_to_",
                     "convert", "cardinality", "width_bucket")
#: Built-in names that do change session state (never taken as harmless, whatever the prefix).
_SESSION_FUNCTIONS = re.compile(r"advisory|set_config|setseed|dblink|^lo_|replication_origin_session|"
                                r"replication_slot", re.I)


def _unknown_calls(masked: str, start: int, end: int, found: List[Effect]) -> None:
    """Calls of functions not known to leave session state alone: "unknown" (held). A user
    function may call set_config() or take an advisory lock, and the text cannot show it."""
    for call in _CALL.finditer(masked, start, end):
        raw = call.group("name")
        quoted = raw.startswith('"')
        name = raw[1:-1].replace('""', '"') if quoted else raw.lower()
        if not quoted and (name in _NOT_CALLS or name in _BUILTINS or name.startswith(_BUILTIN_PREFIXES)):
            if not _SESSION_FUNCTIONS.search(name):
                continue
        if not quoted and _FUNCTION.match(masked, call.start()):
            continue  # set_config, nextval, advisory locks: parsed by _function()
        before = _BEFORE.search(masked, max(start, call.start() - 80), call.start())
        if before is not None and before.group("word").lower() in _NAMES_AFTER:
            continue  # INSERT INTO t (...), CREATE INDEX i ON t (...): names, not calls
        found.append(Effect("unknown", HOLD, "call %s()" % name))


_SPECIAL_SETTINGS = {"tz": "timezone", "schema": "search_path", "names": "client_encoding", "xml": "xmloption"}
_TRUE = {"true", "t", "on", "1", "yes"}


def parse(sql: str) -> List[Effect]:
    masked = _LITERALS.sub(lambda m: " " * len(m.group()), sql)
    found: List[Effect] = []
    start = 0
    for end in [m.start() for m in re.finditer(";", masked)] + [len(masked)]:
        _statement(sql, masked, start, end, found)
        start = end + 1
    return found


def _statement(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
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
        _unknown_calls(masked, start, end, found)


def _set(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
    m = _SET.match(masked, start, end)
    if m is None:
        return
    value = sql[m.start("value"):m.end("value")].strip() if m.group("value") is not None else ""
    default = value.upper() == "DEFAULT" or (bool(m.group("tz")) and value.upper() == "LOCAL")
    if m.group("txn"):
        found.append(Effect("set_transaction", NOTE))
        return
    if m.group("local"):
        found.append(Effect("set_local", NOTE, _setting_name(m)))
        return
    if m.group("auth"):
        found.append(Effect("session_authorization", RELEASE if value.upper() == "DEFAULT" else HOLD,
                            "session_authorization"))
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


def _setting_name(m: "re.Match[str]") -> str:
    for group, setting in _SPECIAL_SETTINGS.items():
        if m.group(group):
            return setting
    return _ident(m.group("name") or "")


def _reset(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
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


def _create(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
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
    name = name[len("pg_temp."):] if name.startswith("pg_temp.") else name
    dropped = _ON_COMMIT_DROP.search(masked, m.end(), end) is not None
    found.append(Effect("temp_table", NOTE if dropped else HOLD, name))


def _drop(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
    m = _DROP.match(masked, start, end)
    if m is None:
        return
    names = re.sub(r"\b(?:CASCADE|RESTRICT)\b", "", masked[m.start("names"):end], flags=re.I)
    for name in names.split(","):
        name = _ident(name.strip())
        if name:
            found.append(Effect("temp_table", RELEASE, name[len("pg_temp."):] if name.startswith("pg_temp.") else name))


def _listen(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
    m = _LISTEN.match(masked, start, end)
    if m is None:
        return
    if m.group("un"):
        found.append(Effect("listen", RELEASE_ALL) if m.group("all") else Effect("listen", RELEASE, _ident(m.group("name"))))
    else:
        found.append(Effect("listen", HOLD, _ident(m.group("name") or "")))


def _prepare(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
    m = _PREPARE.match(masked, start, end)
    if m is not None:
        found.append(Effect("prepare", HOLD, _ident(m.group("name"))))


def _deallocate(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
    m = _DEALLOCATE.match(masked, start, end)
    if m is not None:
        found.append(Effect("prepare", RELEASE_ALL) if m.group("all") else Effect("prepare", RELEASE, _ident(m.group("name"))))


def _declare(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
    m = _DECLARE.match(masked, start, end)
    if m is not None:
        found.append(Effect("cursor", HOLD if m.group("hold") else NOTE, _ident(m.group("name"))))


def _close(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
    m = _CLOSE.match(masked, start, end)
    if m is not None:
        found.append(Effect("cursor", RELEASE_ALL) if m.group("all") else Effect("cursor", RELEASE, _ident(m.group("name"))))


def _discard(sql: str, masked: str, start: int, end: int, found: List[Effect]) -> None:
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
    "SET": _set, "RESET": _reset, "CREATE": _create, "DROP": _drop, "LISTEN": _listen, "UNLISTEN": _listen,
    "PREPARE": _prepare, "DEALLOCATE": _deallocate, "DECLARE": _declare, "CLOSE": _close, "DISCARD": _discard,
}


def _function(sql: str, masked: str, call: "re.Match[str]", end: int, found: List[Effect]) -> None:
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


def _set_config(args: Sequence[str], index: int, found: List[Effect]) -> None:
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


def _arguments(sql: str, masked: str, start: int, end: int) -> List[str]:
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


def resolve(effect: Effect, params: Any) -> Optional[Effect]:
    """The effect with query parameters filled into its key (None: it holds nothing)."""
    key = effect.key
    if "%" in key and params is not None:
        positional = iter(params[effect.param_index:]) if isinstance(params, (list, tuple)) else iter(())

        def fill(m: "re.Match[str]") -> str:
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
