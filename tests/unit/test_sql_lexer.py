"""The one SQL lexer and the classifiers on it (aurora_backend.sql): pure, no database.

``sql_lexer_cases.json`` holds the answers of the classifiers this package replaced
(``connection/session_sql.py`` + ``session_state.py`` for ``effects``,
``connection/statements.py`` for ``is_read``, ``routing/writes.py`` for ``writes``,
``simulator/pinning.py`` for the pins), run before the change over every SQL string in
tests/ and hand-written edge cases. The new code must give the same answers, except the
deliberate changes in ``CHANGED`` (each with why).

    python -m pytest tests/unit/test_sql_lexer.py -p no:django --noconftest
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from aurora_backend.simulator.pinning import query_pins
from aurora_backend.sql import Effect, Kind, Op, PinCause, first_keyword, is_read, lex, statements
from aurora_backend.sql.effects import effects
from aurora_backend.sql.writes import writes

with open(os.path.join(os.path.dirname(__file__), "sql_lexer_cases.json"), encoding="utf-8") as _f:
    CASES = json.load(_f)

_NESTED = "/* outer /* nested */ SET x = 1 */ SELECT 1"
_NESTED_ONLY = "/* outer /* nested */ still comment */ SELECT 1"
_IN_LITERALS = "SELECT 'pg_advisory_lock(1)', 'SET x = 1'"
_E_STRING = "SELECT E'a\\'b; SELECT pg_advisory_lock(1)'"

#: (sql, answer): the new answer, and why the old one was wrong or disagreed.
CHANGED: dict[tuple[str, str], tuple[Any, str]] = {
    (_IN_LITERALS, "is_read"): (True, "words in string literals are data: is_read matched them as code"),
    (_IN_LITERALS, "writes"): (False, "same: writes() followed is_read's misreading of the literal"),
    ("/* tenant */ SET search_path TO a", "writes"): (
        False,
        "a leading comment hid the first word from writes(); SET changes no row",
    ),
    (_NESTED_ONLY, "is_read"): (True, "block comments nest in PostgreSQL; the old lexers ended it at the first */"),
    (_NESTED_ONLY, "writes"): (False, "same: nested comment"),
    (_NESTED, "effects"): ([], "same: the SET is inside the nested comment"),
    (_NESTED, "is_read"): (True, "same: nested comment"),
    (_NESTED, "writes"): (False, "same: nested comment"),
    (_NESTED, "pins"): ([], "same: nested comment"),
    (_E_STRING, "is_read"): (True, "E'' backslash escapes: is_read did not know the literal went on past \\'"),
    (_E_STRING, "writes"): (False, "same: E'' literal"),
    ('SELECT "it\'s" FROM t; SET search_path TO a', "effects"): (
        [["set", "hold", "search_path", 0]],
        "a quote in a quoted identifier opened a literal in session_sql (pinning.py already saw the SET)",
    ),
    ("COPY (SELECT * FROM t) TO STDOUT", "effects"): (
        [],
        "COPY ( is syntax, not a call of a function copy() (like COPY t (...))",
    ),
    ("select x from t -- FOR UPDATE", "is_read"): (True, "UPDATE only in a comment: is_read matched it as code"),
}


def answers(sql: str) -> dict[str, Any]:
    return {
        "effects": [[e.name, e.op, e.key, e.param_index] for e in effects(sql)],
        "is_read": is_read(sql),
        "writes": writes(sql),
        "pins": [p.reason for p in query_pins(sql)],
    }


@pytest.mark.parametrize("case", CASES, ids=[c["sql"][:60] for c in CASES])
def test_the_old_classifiers_answers_are_kept(case):
    got = json.loads(json.dumps(answers(case["sql"])))  # enums compare and encode as their text
    for field in ("effects", "is_read", "writes", "pins"):
        expected = case[field]
        if (case["sql"], field) in CHANGED:
            expected = CHANGED[(case["sql"], field)][0]
        assert got[field] == expected, field


def test_every_deliberate_change_is_a_case_that_changed():
    by_sql = {c["sql"]: c for c in CASES}
    for (sql, field), (new, _why) in CHANGED.items():
        assert sql in by_sql
        assert by_sql[sql][field] != new


@pytest.mark.parametrize(
    "sql, masked",
    [
        ("SELECT 1", "SELECT 1"),
        ("SELECT 'a;b' -- c\nx", "SELECT " + " " * 5 + " " + " " * 4 + "\nx"),
        ("/* a /* b */ c */x", " " * 17 + "x"),
        ("SELECT $t$ $$ ; $t$, $1", "SELECT " + " " * 12 + ", $1"),
        ("SELECT E'\\'' , 1", "SELECT " + " " * 5 + " , 1"),
        ('SELECT "it\'s", a$b$', 'SELECT "it\'s", a$b$'),
        ("SELECT 'open", "SELECT " + " " * 5),
        ("SELECT 1 /* open", "SELECT 1 " + " " * 7),
    ],
)
def test_lex_blanks_comments_and_literals_in_place(sql, masked):
    assert lex(sql).masked == masked
    assert len(lex(sql).masked) == len(sql)


def test_statements_split_on_semicolons_outside_quotes():
    sql = "SELECT ';'; SELECT \"a;b\"; /* ; */ SELECT $$;$$;;"
    assert [original for _masked, original in statements(sql)] == [
        "SELECT ';'",
        'SELECT "a;b"',
        "/* ; */ SELECT $$;$$",
    ]


@pytest.mark.parametrize(
    "sql, word",
    [
        ("select 1", "SELECT"),
        ("  -- c\n/* d /* e */ */ Set x = 1", "SET"),
        ("(SELECT 1)", None),
        ("", None),
    ],
)
def test_first_keyword(sql, word):
    assert first_keyword(sql) == word


def test_kinds_are_enums_equal_to_their_text():
    effect = effects("SET search_path TO a")[0]
    assert effect == Effect(Kind.SET, Op.HOLD, "search_path") == ("set", "hold", "search_path", 0)
    assert isinstance(effect.name, Kind) and isinstance(effect.op, Op)
    assert "%s %s" % (effect.name, effect.op) == "set hold" and f"{Op.NOTE}" == "note"
    assert json.dumps([Kind.UNKNOWN, PinCause.LOAD]) == '["unknown", "LOAD (library)"]'
    assert [p.reason for p in query_pins("LOAD 'x'")] == [PinCause.LOAD]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE IF NOT EXISTS x (a int)",
        "COPY t (a, b) FROM STDIN",
        "COPY (SELECT 1) TO STDOUT",
        "UPDATE t SET (a, b) = (1, 2)",
        "VACUUM (ANALYZE) t",
        "ANALYZE t (a)",
        "EXPLAIN (ANALYZE) SELECT 1",
        "REINDEX (VERBOSE) TABLE t",
        "SELECT xmlelement(name foo)",
    ],
)
def test_syntax_with_parentheses_is_no_function_call(sql):
    assert [e for e in effects(sql) if e.name == Kind.UNKNOWN] == []
