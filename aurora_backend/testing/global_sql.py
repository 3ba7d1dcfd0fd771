"""Aurora Global Database's SQL functions for a local global database, from live replication.

``aurora_global_db_instance_status()`` and ``aurora_global_db_status()`` with the columns
AWS documents (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora_global_db_instance_status.html,
https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/aurora_global_db_status.html).
A separate SQL block from aurora_sql.py's, installed the same way (``public`` of the
admin databases and the app's database, on the global writer: every instance of every
region gets them by replication).

Each row is read from the instance itself (dblink, required here): whether it is in
recovery, what it received and replayed, its own replay lag. An instance that does not
answer is not listed (down, or detached from the global database). The instance map
(identifier -> (region, PostgreSQL port)) is baked into the function; the global writer
is whichever listed instance is not in recovery.
"""

from __future__ import annotations

from collections.abc import Mapping

from aurora_backend.testing.aurora_sql import MASTER_SESSION_ID, _literal

#: Where aurora_sql.py installs its functions (and where these go): one place to change it.
SCHEMA = "public"

INSTANCE_COLUMNS = (
    ("server_id", "text"),
    ("session_id", "text"),
    ("aws_region", "text"),
    ("durable_lsn", "bigint"),
    ("highest_lsn_rcvd", "bigint"),
    ("feedback_epoch", "integer"),
    ("feedback_xmin", "bigint"),
    ("oldest_read_view_lsn", "bigint"),
    ("visibility_lag_in_msec", "real"),
)

STATUS_COLUMNS = (
    ("aws_region", "text"),
    ("highest_lsn_written", "bigint"),
    ("durability_lag_in_msec", "bigint"),
    ("rpo_lag_in_msec", "bigint"),
    ("last_lag_calculation_time", "timestamptz"),
    ("feedback_epoch", "integer"),
    ("feedback_xmin", "bigint"),
)

# What one instance says of itself: in recovery, flushed/received, replayed, own lag (ms).
_SELF = (
    "SELECT pg_is_in_recovery(), "
    "(coalesce(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_flush_lsn() END,"
    " '0/0') - '0/0'::pg_lsn)::bigint, "
    "(coalesce(pg_last_wal_replay_lsn(), '0/0') - '0/0'::pg_lsn)::bigint, "
    "%s.aurora_local_own_lag()" % SCHEMA
)

_TEMPLATE = """
CREATE OR REPLACE FUNCTION %(schema)s.aurora_local_global_self(OUT recovering boolean, OUT received bigint,
    OUT replayed bigint, OUT lag real)
  LANGUAGE sql STABLE AS $fn$ %(self)s $fn$;
CREATE OR REPLACE FUNCTION %(schema)s.aurora_global_db_instance_status() RETURNS TABLE (%(icolumns)s)
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $fn$
DECLARE
  inst record;
  s record;
BEGIN
  FOR inst IN SELECT * FROM (VALUES %(values)s) AS v(id, region, port) LOOP
    BEGIN
      IF inst.id = current_setting('cluster_name') THEN
        SELECT * INTO s FROM %(schema)s.aurora_local_global_self();
      ELSE
        SELECT * INTO s FROM aurora_local.dblink(%(schema)s.aurora_local_conninfo(inst.port),
          'SELECT * FROM %(schema)s.aurora_local_global_self()')
          AS t(recovering boolean, received bigint, replayed bigint, lag real);
      END IF;
    EXCEPTION WHEN OTHERS THEN
      CONTINUE;  -- down or unreachable: not listed
    END;
    server_id := inst.id;
    aws_region := inst.region;
    feedback_epoch := NULL;
    feedback_xmin := NULL;
    IF s.recovering THEN
      session_id := md5(inst.id)::uuid::text;
      durable_lsn := s.replayed;
      highest_lsn_rcvd := s.received;
      oldest_read_view_lsn := s.replayed;
      visibility_lag_in_msec := s.lag;
    ELSE
      session_id := %(master)s;
      durable_lsn := s.received;
      highest_lsn_rcvd := NULL;
      oldest_read_view_lsn := NULL;
      visibility_lag_in_msec := NULL;
    END IF;
    RETURN NEXT;
  END LOOP;
END $fn$;
GRANT EXECUTE ON FUNCTION %(schema)s.aurora_global_db_instance_status() TO PUBLIC;
CREATE OR REPLACE FUNCTION %(schema)s.aurora_global_db_status() RETURNS TABLE (%(scolumns)s)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $fn$
  WITH i AS (SELECT * FROM %(schema)s.aurora_global_db_instance_status()),
       w AS (SELECT aws_region, durable_lsn FROM i WHERE session_id = %(master)s)
  SELECT i.aws_region,
         max(coalesce(i.highest_lsn_rcvd, i.durable_lsn)),
         CASE WHEN bool_or(i.session_id = %(master)s) THEN -1 ELSE min(i.visibility_lag_in_msec)::bigint END,
         CASE WHEN bool_or(i.session_id = %(master)s) THEN -1 ELSE min(i.visibility_lag_in_msec)::bigint END,
         CASE WHEN bool_or(i.session_id = %(master)s) THEN 'epoch'::timestamptz ELSE clock_timestamp() END,
         NULL::integer, NULL::bigint
  FROM i GROUP BY i.aws_region
  ORDER BY bool_or(i.session_id = %(master)s) DESC, i.aws_region
$fn$;
GRANT EXECUTE ON FUNCTION %(schema)s.aurora_global_db_status() TO PUBLIC;
"""


def install_global_sql(instances: Mapping[str, tuple[str, int]]) -> str:
    """CREATE FUNCTION statements for ``instances`` (identifier -> (aws_region, port))."""
    if not instances:
        raise ValueError("install_global_sql() needs at least one instance")
    values = ", ".join(
        "(%s, %s, %d)" % (_literal(name), _literal(region), int(port)) for name, (region, port) in instances.items()
    )
    return _TEMPLATE % {
        "schema": SCHEMA,
        "self": _SELF,
        "values": values,
        "master": _literal(MASTER_SESSION_ID),
        "icolumns": ", ".join("%s %s" % c for c in INSTANCE_COLUMNS),
        "scolumns": ", ".join("%s %s" % c for c in STATUS_COLUMNS),
    }
