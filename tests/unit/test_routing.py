"""Reader routing without a server: which statements count as writes.

Routing on a real writer + hot standby: tests/test_routing.py.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "sql, wrote",
    [
        ('INSERT INTO "ledger_account" ("name") VALUES (%s) RETURNING "ledger_account"."id"', True),
        ('SELECT "ledger_account"."id" FROM "ledger_account" WHERE "ledger_account"."id" = %s', False),
        ('SELECT "a"."id" FROM "a" WHERE "a"."id" = 1 FOR NO KEY UPDATE', False),
        ('SELECT "updated_at" FROM "t"', False),
        ("SELECT nextval('s')", True),
        ("SELECT * INTO t2 FROM t", True),
        ("WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", True),
        ("SELECT pg_advisory_lock(1)", True),
        ("EXPLAIN ANALYZE DELETE FROM t", True),
        ("/* app */ SELECT 1", False),
        ("/* app */ UPDATE t SET a = 1", True),
        ("  delete from t", True),
        ("SAVEPOINT s1", False),
        ("SET search_path = x", False),
        ("COMMIT", False),
    ],
)
def test_which_statements_count_as_writes(sql, wrote):
    from aurora_backend.routing.writes import writes

    assert writes(sql) is wrote
    assert writes(sql) is wrote  # remembered
