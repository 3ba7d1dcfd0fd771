"""The names the SQL classifiers answer with, as enums (like ``errors.ErrorKind``).

Each is a ``str`` enum: a member equals its value (``Op.HOLD == "hold"``), prints as it
(``"%s" % Kind.SET`` is ``"set"``) and encodes to JSON as it, so logs, signals and the
``Effect`` tuples read the same as when they were bare strings.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Op", "Kind", "PinCause", "STATE_KINDS"]


class _StrEnum(str, Enum):
    """A str enum that formats as its value on every Python (3.11 changed format())."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(str.__str__(self), format_spec)


class Op(_StrEnum):
    """What a statement does to one kind of session state."""

    #: The statement creates (or re-creates) session state ``kind``/``key``.
    HOLD = "hold"
    #: The statement removes session state ``kind``/``key`` (if it was there).
    RELEASE = "release"
    #: The statement removes all session state of ``kind`` ("*" for every kind: DISCARD ALL).
    RELEASE_ALL = "release_all"
    #: Nothing outlives the statement's transaction, but a connection pooler may still care.
    NOTE = "note"


class Kind(_StrEnum):
    """The kind of session state an effect is about (``Effect.name``)."""

    SET = "set"
    SET_ROLE = "set_role"
    SESSION_AUTHORIZATION = "session_authorization"
    ADVISORY_LOCK = "advisory_lock"
    TEMP_TABLE = "temp_table"
    LISTEN = "listen"
    PREPARE = "prepare"
    CURSOR = "cursor"
    TEMP_OBJECT = "temp_object"
    UNKNOWN = "unknown"
    #: DISCARD ALL: RELEASE_ALL of every kind.
    DISCARD_ALL = "discard_all"
    #: set_config() whose setting or is_local is a query parameter (resolved at apply time).
    SET_CONFIG = "set_config"
    # NOTE kinds: nothing held past the transaction.
    SET_LOCAL = "set_local"
    SET_TRANSACTION = "set_transaction"
    ADVISORY_XACT_LOCK = "advisory_xact_lock"
    SEQUENCE = "sequence"
    DISCARD = "discard"


#: Kinds of session state (``Effect.name`` of HOLD/RELEASE effects), with what sets them.
STATE_KINDS: dict[str, str] = {
    Kind.SET: "SET / set_config(..., false) of a setting (key: the setting's name)",
    Kind.SET_ROLE: "SET ROLE (key: 'role')",
    Kind.SESSION_AUTHORIZATION: "SET SESSION AUTHORIZATION (key: 'session_authorization')",
    Kind.ADVISORY_LOCK: "pg_advisory_lock & friends (key: the arguments; 'shared:' prefix for shared locks)",
    Kind.TEMP_TABLE: "CREATE TEMP TABLE/VIEW/SEQUENCE, SELECT INTO TEMP (key: the name)",
    Kind.LISTEN: "LISTEN (key: the channel)",
    Kind.PREPARE: "PREPARE (key: the statement name)",
    Kind.CURSOR: "DECLARE ... WITH HOLD (key: the cursor name)",
    Kind.TEMP_OBJECT: "CREATE of a temporary function, type, domain or other object (key: the name)",
    Kind.UNKNOWN: "a statement that may change session state in a way the text does not show: a DO "
    "block, CALL, a function outside the known built-ins, a quoted session function, "
    "dblink (key: what)",
}


class PinCause(_StrEnum):
    """Why RDS Proxy pins a session (``Pin.reason``), from AWS's PostgreSQL conditions."""

    SIZE = "statement over 16 KB"
    NAMED_PARSE = "named prepared statement (Parse)"
    SET = "SET / set_config (session setting)"
    RESET = "RESET / SET ... TO DEFAULT (session setting)"
    SET_ROLE = "SET ROLE"
    SESSION_AUTHORIZATION = "SET SESSION AUTHORIZATION"
    ADVISORY_LOCK = "session-level advisory lock"
    TEMP_TABLE = "temporary table, sequence or view"
    LISTEN = "LISTEN"
    PREPARE = "prepared statement (SQL)"
    CURSOR = "cursor declared (DECLARE)"
    DISCARD = "DISCARD (session state)"
    SEQUENCE = "sequence function"
    LOAD = "LOAD (library)"
