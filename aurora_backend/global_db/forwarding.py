"""Write forwarding on a secondary region: what Aurora refuses is routed or refused clearly.

With ``apg_write_forward.consistency_mode`` set, an Aurora secondary cluster forwards DML
to the primary, but refuses SAVEPOINT (Django's nested ``atomic()``), DDL, LOCK, TRUNCATE,
sequence updates and more: AWS, "Limitations and considerations of local write forwarding
in Aurora PostgreSQL" and "Using write forwarding in an Aurora PostgreSQL global database"
(URLs in docs/global_database.md).
An execute wrapper on an alias with ``OPTIONS["aurora"]["write_forwarding"]`` looks at
each statement before it is sent:

- ``"error"``: a refused statement raises :class:`WriteForwardingRefused` (Django's
  ``NotSupportedError``) naming the setting; inside ``atomic()`` the whole transaction is
  rolled back by Django, as for any error: never a partial transaction.
- ``"route"``: outside a transaction, it runs on ``primary_alias`` (the global writer
  endpoint) and its results are read from there; inside a transaction it raises as
  ``"error"`` does (moving part of a transaction elsewhere would split it).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from django.db import NotSupportedError, connections

from aurora_backend.drivers import is_idle

logger = logging.getLogger("aurora_backend")

_COMMENTS = re.compile(r"^(\s+|--[^\n]*\n?|/\*.*?\*/)+", re.DOTALL)
_REFUSED_FIRST = re.compile(
    r"^(SAVEPOINT|RELEASE|ROLLBACK\s+(?:WORK\s+|TRANSACTION\s+)?TO|CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE|"
    r"REASSIGN|SECURITY\s+LABEL|LOCK|TRUNCATE|ANALYZE|ANALYSE|CLUSTER|COPY|LISTEN|UNLISTEN|NOTIFY|"
    r"SET\s+CONSTRAINTS|PREPARE\s+TRANSACTION|COMMIT\s+PREPARED|ROLLBACK\s+PREPARED|VACUUM|REINDEX|REFRESH|"
    r"DECLARE|CALL)\b",
    re.IGNORECASE,
)
_SEQUENCE = re.compile(r"\b(nextval|setval)\s*\(", re.IGNORECASE)
_SELECT_INTO = re.compile(r"^SELECT\b(?:(?!\bFROM\b).)*?\bINTO\b", re.IGNORECASE | re.DOTALL)

SETTING = "apg_write_forward.consistency_mode"


class WriteForwardingRefused(NotSupportedError):
    """A statement Aurora write forwarding does not run, stopped before it was sent."""


def refused(sql: Any) -> str | None:
    """The kind of statement write forwarding refuses (``"SAVEPOINT"``...), or None."""
    if not isinstance(sql, str):
        return None
    text = _COMMENTS.sub("", sql)
    first = _REFUSED_FIRST.match(text)
    if first is not None:
        return " ".join(first.group(1).upper().split())
    if _SELECT_INTO.match(text):
        return "SELECT INTO"
    sequence = _SEQUENCE.search(text)
    if sequence is not None:
        return sequence.group(1).lower() + "()"
    return None


class Forwarding:
    """The execute wrapper of one alias (``connection.execute_wrappers``)."""

    def __init__(self, wrapper: Any) -> None:
        self.alias = wrapper.alias
        self.mode = wrapper.aurora_options.write_forwarding
        self.primary = wrapper.aurora_options.primary_alias

    def __call__(self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
        kind = refused(sql)
        if kind is None:
            return execute(sql, params, many, context)
        db = context["connection"]
        in_transaction = db.in_atomic_block or not db.get_autocommit() or not is_idle(db.connection)
        if self.mode == "route" and not in_transaction and not many:
            return self._route(sql, params, context, kind)
        logger.info("write forwarding on %r: %s refused before it was sent", self.alias, kind)
        raise WriteForwardingRefused(self._message(kind, in_transaction))

    def _route(self, sql: str, params: Any, context: Any, kind: str) -> Any:
        primary = connections[self.primary]
        cursor = primary.cursor()
        result = cursor.execute(sql, params)
        # The caller reads this statement's results from its own cursor: hand it the primary's.
        context["cursor"].cursor = cursor.cursor
        logger.info("write forwarding on %r: %s sent to %r (the primary)", self.alias, kind, self.primary)
        return result

    def _message(self, kind: str, in_transaction: bool) -> str:
        where = (
            "inside a transaction on %r (moving part of it to the primary would split it)" % self.alias
            if in_transaction
            else "on %r" % self.alias
        )
        fix = (
            "run the whole transaction on %r (atomic(using=%r))" % (self.primary, self.primary)
            if self.primary
            else "run it on the alias of the global writer endpoint"
        )
        return (
            "%s is not run %s: Aurora write forwarding (%s) refuses it on a secondary cluster; %s, or see "
            "OPTIONS['aurora']['write_forwarding'] in docs/global_database.md." % (kind, where, SETTING, fix)
        )


def install(wrapper: Any) -> None:
    """Add the forwarding check to ``wrapper`` (once) when its alias has write_forwarding set."""
    if wrapper.aurora_options.write_forwarding is None:
        return
    if not any(isinstance(w, Forwarding) for w in wrapper.execute_wrappers):
        wrapper.execute_wrappers.append(Forwarding(wrapper))
