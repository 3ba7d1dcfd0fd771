"""Function calls whose effect on session state the text cannot show (for session_sql).

A user function may call ``set_config(..., false)``, ``SET``, take an advisory lock or open
a dblink connection: nothing in ``SELECT enter_tenant('a')`` says so. So a call of any
function not known to leave session state alone counts as state held (session_sql's
"unknown"): the fail-safe side (docs/session_state.md, "The fail-safe rule"). Known:
PostgreSQL's own functions (pg_builtins.py, less the few that set session state), those of
common extensions, and SQL syntax that looks like a call (``IN (``, ``VALUES (``,
``varchar(100)``, ``INSERT INTO t (``).
"""

from __future__ import annotations

import re
from re import Pattern

from aurora_backend.connection import pg_builtins

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
    when where window with within set vacuum analyze explain reindex cluster
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
#: Built-in functions (lower case) that change no session state: PostgreSQL's pg_catalog
#: (pg_builtins.py), common extensions', and the prefixes below.
_BUILTINS = pg_builtins.NAMES | frozenset(
    """
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
""".split()
)
_BUILTIN_PREFIXES = (
    "array_",
    "json_",
    "jsonb_",
    "to_",
    "ts_",
    "date_",
    "regexp_",
    "string_",
    "st_",
    "has_",
    "int4",
    "int8",
    "num",
    "range",
    "lower_",
    "upper_",
    "isempty",
    "pg_",
    "aurora_",
    "current_",
    "inet_",
    "txid_",
    "generate_",
    "gen_",
    "uuid_",
    "row_to_",
    "convert",
    "cardinality",
    "width_bucket",
)
#: Built-in names that do change session state (never taken as harmless, whatever the prefix).
_SESSION_FUNCTIONS = re.compile(
    r"advisory|set_config|setseed|dblink|^lo_|replication_origin_session|"
    r"replication_slot",
    re.I,
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
        if not quoted and (name in _NOT_CALLS or name in _BUILTINS or name.startswith(_BUILTIN_PREFIXES)):
            if not _SESSION_FUNCTIONS.search(name):
                continue
        if not quoted and known.match(masked, call.start()):
            continue  # set_config, nextval, advisory locks: the caller's
        before = _BEFORE.search(masked, max(start, call.start() - 80), call.start())
        if before is not None and before.group("word").lower() in _NAMES_AFTER:
            continue  # INSERT INTO t (...), CREATE INDEX i ON t (...): names, not calls
        found.append(name)
    return found
