"""Aurora's SQL functions for a local cluster, computed from the live replication state.

``aurora_version()``, ``aurora_db_instance_identifier()`` and ``aurora_replica_status()``
with Aurora's column list (AWS docs, "aurora_replica_status"), created where Aurora has
them, in ``pg_catalog`` (clients such as the AWS Python wrapper call them qualified,
``pg_catalog.aurora_replica_status()``; unqualified calls find them too, pg_catalog being
first on every search_path), in ``template1``, ``postgres`` and the cluster's database on
the writer, so every instance and every database created later has them. PostgreSQL 15
lets a superuser create a *function* in pg_catalog without ``allow_system_table_mods``
(that setting guards system *relations* only); the helpers they call stay in ``public``. Each instance learns who it
is from its ``cluster_name`` setting; the instance map (identifier -> PostgreSQL port)
is baked into the function so a reader can name the writer it streams from
(``pg_stat_wal_receiver.sender_port``).

What a local cluster cannot know, it reports as NULL (Aurora's storage-daemon figures:
cpu, iops, read_ios...). The writer lists itself and every streaming reader; a lagging
reader's lag is asked of the reader itself (dblink). A reader answers what the writer
answers (dblink), or, without dblink or writer, the writer and itself only.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Aurora's columns, in Aurora's order, with the types Aurora PostgreSQL returns.
COLUMNS = (
    ("server_id", "text"),
    ("session_id", "text"),
    ("durable_lsn", "bigint"),
    ("highest_lsn_rcvd", "bigint"),
    ("current_read_lsn", "bigint"),
    ("cur_replay_latency_in_usec", "bigint"),
    ("active_txns", "bigint"),
    ("is_current", "boolean"),
    ("last_transport_error", "integer"),
    ("last_error_timestamp", "timestamptz"),
    ("last_update_timestamp", "timestamptz"),
    ("feedback_xmin", "bigint"),
    ("feedback_epoch", "integer"),
    ("replica_lag_in_msec", "real"),
    ("log_stream_speed_in_kib_per_second", "real"),
    ("log_buffer_sequence_number", "bigint"),
    ("oldest_read_view_trx_id", "bigint"),
    ("oldest_read_view_lsn", "bigint"),
    ("pending_read_ios", "bigint"),
    ("read_ios", "bigint"),
    ("iops", "bigint"),
    ("cpu", "real"),
)

MASTER_SESSION_ID = "MASTER_SESSION_ID"

_LSN = "(%s - '0/0'::pg_lsn)::bigint"

# One row per instance; the columns a local cluster cannot know are NULL.
_ROW = """
SELECT {server_id}, {session_id}, {durable}, {received}, {replayed},
       {latency_usec}, {active}, NULL::boolean, NULL::integer, NULL::timestamptz, {updated},
       {feedback_xmin}, NULL::integer, {lag_ms}::real, NULL::real, NULL::bigint, NULL::bigint,
       {replayed}, NULL::bigint, NULL::bigint, NULL::bigint, NULL::real
"""

# How far this reader's replay is behind (ms): 0 when it has replayed all it received.
_OWN_LAG = (
    "CASE WHEN NOT pg_is_in_recovery() THEN NULL WHEN pg_last_wal_receive_lsn() IS NULL "
    "OR pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0 "
    "ELSE 1000 * extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
)

_ACTIVE = (
    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND backend_xid IS NOT NULL)::bigint"
)

# The writer: itself (Aurora 13.9+ reports NULL last_update_timestamp for the instance
# you are connected to) and every reader streaming from it.
_WRITER_ROWS = (
    _ROW.format(
        server_id="current_setting('cluster_name')",
        session_id="'%s'" % MASTER_SESSION_ID,
        durable=_LSN % "pg_current_wal_flush_lsn()",
        received="NULL::bigint",
        replayed="NULL::bigint",
        latency_usec="NULL::bigint",
        active=_ACTIVE,
        updated="NULL::timestamptz",
        feedback_xmin="NULL::bigint",
        lag_ms="NULL",
    )
    + " UNION ALL "
    + _ROW.format(
        server_id="r.application_name::text",
        session_id="md5(r.application_name || r.backend_start::text)::uuid::text",
        durable=_LSN % "r.replay_lsn",
        received=_LSN % "r.flush_lsn",
        replayed=_LSN % "r.replay_lsn",
        latency_usec="(extract(epoch FROM coalesce(r.replay_lag, '0'::interval)) * 1e6)::bigint",
        active="NULL::bigint",
        updated="coalesce(r.reply_time, now())",
        feedback_xmin="r.backend_xmin::text::bigint",
        lag_ms="CASE WHEN r.replay_lsn >= pg_current_wal_lsn() THEN 0 "
        "ELSE coalesce(public.aurora_local_reader_lag(i.port), "
        "1000 * extract(epoch FROM coalesce(r.replay_lag, r.write_lag, '0'::interval))) END",
    )
    + " FROM pg_stat_replication r JOIN instances i ON i.id = r.application_name"
)

# A reader: the writer it streams from (by port) and itself, its lag measured here.
_READER_ROWS = (
    _ROW.format(
        server_id="i.id",
        session_id="'%s'" % MASTER_SESSION_ID,
        durable=_LSN % "w.flushed_lsn",
        received="NULL::bigint",
        replayed="NULL::bigint",
        latency_usec="NULL::bigint",
        active="NULL::bigint",
        updated="w.last_msg_receipt_time",
        feedback_xmin="NULL::bigint",
        lag_ms="NULL",
    )
    + """ FROM pg_stat_wal_receiver w JOIN instances i ON i.port = w.sender_port
WHERE w.status = 'streaming' UNION ALL """
    + _ROW.format(
        server_id="current_setting('cluster_name')",
        session_id="md5(current_setting('cluster_name') || pg_postmaster_start_time()::text)::uuid::text",
        durable=_LSN % "pg_last_wal_replay_lsn()",
        received=_LSN % "pg_last_wal_receive_lsn()",
        replayed=_LSN % "pg_last_wal_replay_lsn()",
        latency_usec="NULL::bigint",
        active=_ACTIVE,
        updated="NULL::timestamptz",
        feedback_xmin="NULL::bigint",
        lag_ms=_OWN_LAG,
    )
)


def install_sql(instances: Mapping[str, int], version: str) -> str:
    """The CREATE FUNCTION statements for a cluster of ``instances`` (identifier -> port)."""
    if not instances:
        raise ValueError("install_sql() needs at least one instance")
    values = ", ".join("(%s, %d)" % (_literal(name), int(port)) for name, port in instances.items())
    columns = ", ".join("%s %s" % column for column in COLUMNS)
    return """
CREATE OR REPLACE FUNCTION pg_catalog.aurora_version() RETURNS text
  LANGUAGE sql STABLE AS $$ SELECT %(version)s::text $$;
CREATE OR REPLACE FUNCTION pg_catalog.aurora_db_instance_identifier() RETURNS text
  LANGUAGE sql STABLE AS $$ SELECT current_setting('cluster_name') $$;
CREATE OR REPLACE FUNCTION public.aurora_local_conninfo(port integer) RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $fn$
  SELECT format('host=127.0.0.1 port=%%s dbname=postgres user=postgres connect_timeout=2 passfile=%%s',
                port, regexp_replace(current_setting('data_directory'), '/[^/]*$', '') || '/pgpass')
$fn$;
REVOKE ALL ON FUNCTION public.aurora_local_conninfo(integer) FROM PUBLIC;
CREATE OR REPLACE FUNCTION public.aurora_local_own_lag() RETURNS real
  LANGUAGE sql STABLE AS $fn$ SELECT (%(own_lag)s)::real $fn$;
CREATE OR REPLACE FUNCTION public.aurora_local_reader_lag(port integer) RETURNS real
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE
  lag real;
BEGIN
  -- Ask the reader itself (dblink, only when it is behind): the writer's replay_lag only
  -- moves when the reader reports, so it cannot tell how long a paused replay has waited.
  SELECT t.lag INTO lag FROM aurora_local.dblink(
    public.aurora_local_conninfo(port),
    'SELECT public.aurora_local_own_lag()') AS t(lag real);
  RETURN lag;
EXCEPTION WHEN OTHERS THEN
  RETURN NULL;  -- no dblink here, or the reader is unreachable: the writer's own estimate
END $fn$;
CREATE OR REPLACE FUNCTION pg_catalog.aurora_replica_status() RETURNS TABLE (%(columns)s)
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $fn$
BEGIN
  IF pg_is_in_recovery() THEN
    BEGIN  -- the whole cluster, as the writer sees it (dblink), as on Aurora
      RETURN QUERY SELECT * FROM aurora_local.dblink(
        public.aurora_local_conninfo((SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming')),
        'SELECT * FROM pg_catalog.aurora_replica_status()') AS t(%(columns)s);
      IF FOUND THEN
        RETURN;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      NULL;  -- no dblink, or the writer is unreachable: what this reader knows itself
    END;
    RETURN QUERY WITH instances(id, port) AS (VALUES %(values)s) %(reader)s;
  ELSE
    RETURN QUERY WITH instances(id, port) AS (VALUES %(values)s) %(writer)s;
  END IF;
END $fn$;
GRANT EXECUTE ON FUNCTION pg_catalog.aurora_replica_status() TO PUBLIC;
-- Older local clusters installed them in public, where they would shadow nothing but confuse.
DROP FUNCTION IF EXISTS public.aurora_version(), public.aurora_db_instance_identifier(),
  public.aurora_replica_status();
""" % {
        "version": _literal(version),
        "columns": columns,
        "values": values,
        "reader": _READER_ROWS,
        "writer": _WRITER_ROWS,
        "own_lag": _OWN_LAG,
    }


#: Optional (postgresql-contrib): lets the writer ask a lagging reader for its own lag.
DBLINK_SQL = """
CREATE SCHEMA IF NOT EXISTS aurora_local;
CREATE EXTENSION IF NOT EXISTS dblink SCHEMA aurora_local;
"""


def _literal(text: str) -> str:
    return "'%s'" % str(text).replace("'", "''")
