"""The SQL behind ``aurora_health``: server, capacity, scaling blockers and Aurora readers.

Each function takes a cursor (autocommit, statement_timeout set), the thresholds and
the list of findings to append to, and returns one typed section. Aurora-only
functions are looked up in pg_proc first and called only when they exist, so the
same code runs on plain PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

INSUFFICIENT_PRIVILEGE = "<insufficient privilege>"
AURORA_FUNCTIONS = ("aurora_version", "aurora_db_instance_identifier", "aurora_replica_status")
#: Lock modes only taken by LOCK TABLE, DDL or REFRESH MATERIALIZED VIEW, not by plain DML/SELECT.
EXPLICIT_LOCK_MODES = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
QUERY_CHARS = 120


@dataclass
class Finding:
    """One thing worth saying: ``level`` info (exit 0), warning (exit 1) or error (exit 2)."""

    level: str
    code: str
    message: str


@dataclass
class ServerInfo:
    version: str
    version_num: int
    aurora: bool
    aurora_functions: list[str]
    aurora_version: str | None
    instance_id: str | None
    role: str
    started_at: str
    uptime_seconds: float
    recent_restart: bool


@dataclass
class Capacity:
    connections: int
    max_connections: int
    percent: float


@dataclass
class Blocker:
    kind: str
    pid: int | None
    user: str | None
    application: str | None
    database: str | None
    state: str | None
    age_seconds: float | None
    query: str | None
    detail: str


@dataclass
class Blockers:
    complete: bool
    hidden_sessions: int
    note: str | None
    items: list[Blocker]


@dataclass
class Reader:
    server_id: str
    session_id: str
    role: str
    replica_lag_ms: float | None
    cpu: float | None
    last_update: str | None


# Without pg_read_all_stats, other users' rows have backend_type NULL too: count a row
# with a database and a user as a client session.
_CLIENT = "(backend_type = 'client backend' OR (backend_type IS NULL AND datname IS NOT NULL AND usename IS NOT NULL))"

_SERVER_SQL = """
SELECT version(), current_setting('server_version_num')::int, pg_is_in_recovery(),
       pg_postmaster_start_time(),
       extract(epoch FROM now() - pg_postmaster_start_time())::float8,
       coalesce((SELECT setting LIKE '%aurora_stat_utils%' FROM pg_settings
                 WHERE name = 'rds.extensions'), false)
"""
_FUNCTIONS_SQL = """
SELECT DISTINCT proname::text FROM pg_proc
WHERE proname = ANY(%s) AND pronargs = 0 AND pg_function_is_visible(oid)
"""


def server_info(cursor: Any, thresholds: Any, findings: list[Finding]) -> ServerInfo:
    """Version, Aurora or not (detected, never guessed by calling), role, start time."""
    cursor.execute(_SERVER_SQL)
    version, version_num, in_recovery, started, uptime, rds_aurora = cursor.fetchone()
    cursor.execute(_FUNCTIONS_SQL, [list(AURORA_FUNCTIONS)])
    functions = sorted(row[0] for row in cursor.fetchall())
    aurora = bool(rds_aurora) or "aurora_version" in functions
    info = ServerInfo(
        version=version,
        version_num=version_num,
        aurora=aurora,
        aurora_functions=functions,
        aurora_version=_scalar(cursor, "SELECT aurora_version()::text", "aurora_version" in functions),
        instance_id=_scalar(
            cursor, "SELECT aurora_db_instance_identifier()::text", "aurora_db_instance_identifier" in functions
        ),
        role="reader" if in_recovery else "writer",
        started_at=started.isoformat(),
        uptime_seconds=round(uptime, 3),
        recent_restart=uptime < thresholds.recent_restart_seconds,
    )
    if info.recent_restart:
        findings.append(
            Finding(
                "info",
                "recent_restart",
                "the server started %s ago: a resume, scale event, failover or reboot happened" % human_seconds(uptime),
            )
        )
    return info


def _scalar(cursor: Any, sql: str, exists: bool) -> str | None:
    if not exists:
        return None
    cursor.execute(sql)
    return cursor.fetchone()[0]


def capacity(cursor: Any, thresholds: Any, findings: list[Finding]) -> Capacity:
    """Client connections in use against max_connections (Aurora scales up near 90%)."""
    cursor.execute(
        "SELECT count(*) FILTER (WHERE %s), current_setting('max_connections')::int FROM pg_stat_activity" % _CLIENT
    )
    used, maximum = cursor.fetchone()
    percent = round(100.0 * used / maximum, 1) if maximum else 0.0
    if percent >= thresholds.capacity_warn_percent:
        findings.append(
            Finding(
                "warning",
                "capacity",
                "%d of %d connections in use (%.1f%%, warning at %g%%)"
                % (used, maximum, percent, thresholds.capacity_warn_percent),
            )
        )
    return Capacity(used, maximum, percent)


_SESSIONS_SQL = (
    """
SELECT pid, usename::text, application_name, datname::text, state,
       extract(epoch FROM now() - xact_start)::float8,
       extract(epoch FROM now() - state_change)::float8,
       extract(epoch FROM now() - backend_start)::float8,
       query
FROM pg_stat_activity
WHERE %s AND pid <> pg_backend_pid()
ORDER BY pid
"""
    % _CLIENT
)
_TEMP_TABLES_SQL = r"""
SELECT substring(n.nspname FROM 9)::int, count(*)::int,
       string_agg(c.relname::text, ', ' ORDER BY c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relpersistence = 't' AND c.relkind IN ('r', 'p') AND n.nspname ~ '^pg_temp_[0-9]+$'
GROUP BY 1 ORDER BY 1
"""
# pg_temp_N is named after the owner's backend number, which pg_locks shows in the
# virtualxid every transaction holds (all versions); PostgreSQL 16's backend idset
# maps it for idle sessions too.
_BACKEND_PIDS_SQL = """
SELECT split_part(virtualxid, '/', 1)::int, pid FROM pg_locks
WHERE locktype = 'virtualxid' AND granted AND pid IS NOT NULL
"""
_BACKEND_PIDS_16_SQL = "SELECT b, pg_stat_get_backend_pid(b) FROM pg_stat_get_backend_idset() AS b"
_LOCKS_SQL = """
SELECT l.pid, l.mode, coalesce(c.oid::regclass::text, 'relation ' || l.relation || ' of database ' || l.database)
FROM pg_locks l
LEFT JOIN pg_class c ON c.oid = l.relation
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
  AND l.mode = ANY(%s) AND coalesce(c.relpersistence, 'p') <> 't'
ORDER BY l.pid, 3
"""


def blockers(cursor: Any, thresholds: Any, findings: list[Finding]) -> Blockers:
    """Long and idle-in-transaction sessions, temp tables and explicit locks of other sessions."""
    cursor.execute(_SESSIONS_SQL)
    sessions = {row[0]: row for row in cursor.fetchall()}
    hidden = sum(1 for row in sessions.values() if row[8] == INSUFFICIENT_PRIVILEGE)
    items = _transaction_blockers(sessions, thresholds) + _temp_table_blockers(cursor, sessions)
    cursor.execute(_LOCKS_SQL, [list(EXPLICIT_LOCK_MODES)])
    for pid, mode, relation in cursor.fetchall():
        items.append(_blocker("table_lock", pid, sessions, "%s on %s" % (mode, relation), age_index=5))
    for item in items:
        findings.append(Finding("warning", item.kind, describe_blocker(item)))
    note = None
    if hidden:
        note = (
            "%d session(s) of other users are hidden (<insufficient privilege>): their transactions "
            "cannot be seen. Grant the role pg_read_all_stats (or pg_monitor) to see them." % hidden
        )
        findings.append(Finding("info", "insufficient_privilege", note))
    return Blockers(complete=not hidden, hidden_sessions=hidden, note=note, items=items)


def _transaction_blockers(sessions: dict[int, Any], thresholds: Any) -> list[Blocker]:
    items = []
    for pid, row in sessions.items():
        state, xact_age, state_age = row[4], row[5], row[6]
        if xact_age is not None and xact_age >= thresholds.long_transaction_seconds:
            items.append(
                _blocker(
                    "long_transaction", pid, sessions, "transaction open for %s" % human_seconds(xact_age), age_index=5
                )
            )
        if (
            state
            and state.startswith("idle in transaction")
            and state_age is not None
            and state_age >= thresholds.idle_in_transaction_seconds
        ):
            items.append(
                _blocker(
                    "idle_in_transaction",
                    pid,
                    sessions,
                    "idle in transaction for %s" % human_seconds(state_age),
                    age_index=6,
                )
            )
    return items


def _temp_table_blockers(cursor: Any, sessions: dict[int, Any]) -> list[Blocker]:
    cursor.execute(_TEMP_TABLES_SQL)
    groups = cursor.fetchall()
    if not groups:
        return []
    cursor.execute(_BACKEND_PIDS_SQL)
    owners = dict(cursor.fetchall())
    cursor.execute("SELECT current_setting('server_version_num')::int")
    if cursor.fetchone()[0] // 10000 == 16:
        cursor.execute(_BACKEND_PIDS_16_SQL)
        owners.update(dict(cursor.fetchall()))
    items = []
    for backend, count, names in groups:
        pid = owners.get(backend)
        detail = "%d temporary table(s): %s" % (count, names)
        if pid is None:
            detail += " (owner idle: its pid cannot be read on this PostgreSQL version)"
        items.append(_blocker("temp_table", pid, sessions, detail, age_index=7))
    return items


def _blocker(kind: str, pid: int | None, sessions: dict[int, Any], detail: str, age_index: int) -> Blocker:
    row = sessions.get(pid) if pid is not None else None
    if row is None:
        return Blocker(kind, pid, None, None, None, None, None, None, detail)
    query = row[8]
    if query is not None and query != INSUFFICIENT_PRIVILEGE:
        query = " ".join(query.split())[:QUERY_CHARS]
    age = row[age_index]
    return Blocker(kind, pid, row[1], row[2], row[3], row[4], None if age is None else round(age, 3), query, detail)


def describe_blocker(item: Blocker) -> str:
    """One line: what, who, and the start of the query."""
    who = "pid %s" % item.pid if item.pid is not None else "unknown session"
    if item.user:
        who += " (user %s, application %r)" % (item.user, item.application or "")
    text = "%s: %s" % (who, item.detail)
    if item.query:
        text += "; query: %s" % item.query
    return text


_READERS_SQL = """
SELECT server_id::text, session_id::text, replica_lag_in_msec::float8, cpu::float8,
       last_update_timestamp::timestamptz
FROM aurora_replica_status()
ORDER BY (session_id::text = 'MASTER_SESSION_ID') DESC, server_id::text
"""


def readers(cursor: Any, thresholds: Any, findings: list[Finding]) -> list[Reader]:
    """Aurora instances from aurora_replica_status(): the writer row first, readers with lag."""
    cursor.execute(_READERS_SQL)
    result = []
    for server_id, session_id, lag, cpu, updated in cursor.fetchall():
        writer = session_id == "MASTER_SESSION_ID"
        reader = Reader(
            server_id,
            session_id,
            "writer" if writer else "reader",
            None if writer else lag,
            cpu,
            updated.isoformat() if updated else None,
        )
        if reader.replica_lag_ms is not None and reader.replica_lag_ms > thresholds.replica_lag_warn_ms:
            findings.append(
                Finding(
                    "warning",
                    "replica_lag",
                    "reader %s lags %.0f ms behind the writer (warning above %g ms)"
                    % (server_id, reader.replica_lag_ms, thresholds.replica_lag_warn_ms),
                )
            )
        result.append(reader)
    return result


def human_seconds(seconds: float) -> str:
    """3.2 s, 4 min 10 s, 2 h 5 min, 3 d 4 h."""
    if seconds < 60:
        return "%.1f s" % seconds
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return "%d min %d s" % (minutes, secs)
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return "%d h %d min" % (hours, minutes)
    days, hours = divmod(hours, 24)
    return "%d d %d h" % (days, hours)
