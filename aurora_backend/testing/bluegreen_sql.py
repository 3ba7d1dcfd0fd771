"""SQL of a local Blue/Green deployment: the metadata function, logical replication.

``pg_catalog.get_blue_green_fast_switchover_metadata(text)`` returns what the AWS
wrappers read (their query: ``SELECT version, endpoint, port, role, status FROM
pg_catalog.get_blue_green_fast_switchover_metadata('<driver>-<version>')``; the ODBC
wrapper lists the columns id, endpoint, port, role, status, version, update_stamp). Each
environment's writer keeps the rows in ``aurora_local.blue_green`` (a table outside
``public``, so logical replication never copies it); readers get them by streaming
replication. No row: ``NOT_CREATED``.
"""

from __future__ import annotations

#: Aurora's status strings, and the phase the AWS wrappers map each to
#: (aws-advanced-python-wrapper, blue_green_plugin.py, BlueGreenPhase.parse_phase).
STATUS_OF_PHASE = {
    "CREATED": "AVAILABLE",
    "PREPARATION": "SWITCHOVER_INITIATED",
    "IN_PROGRESS": "SWITCHOVER_IN_PROGRESS",
    "POST": "SWITCHOVER_IN_POST_PROCESSING",
    "COMPLETED": "SWITCHOVER_COMPLETED",
}
PHASES = ("NOT_CREATED",) + tuple(STATUS_OF_PHASE)
SOURCE, TARGET = "BLUE_GREEN_DEPLOYMENT_SOURCE", "BLUE_GREEN_DEPLOYMENT_TARGET"
#: The only metadata version the wrappers accept (BlueGreenRole.parse_role).
VERSION = "1.0"
COLUMNS = ("id", "endpoint", "port", "role", "status", "version", "update_stamp")

INSTALL_SQL = """
CREATE SCHEMA IF NOT EXISTS aurora_local;
CREATE TABLE IF NOT EXISTS aurora_local.blue_green (
  id text NOT NULL, endpoint text NOT NULL, port integer NOT NULL, role text NOT NULL,
  status text NOT NULL, version text NOT NULL, update_stamp timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION pg_catalog.get_blue_green_fast_switchover_metadata(client text)
  RETURNS TABLE (id text, endpoint text, port integer, role text, status text, version text,
                 update_stamp timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $fn$
  SELECT id, endpoint, port, role, status, version, update_stamp FROM aurora_local.blue_green
  ORDER BY role, endpoint
$fn$;
GRANT EXECUTE ON FUNCTION pg_catalog.get_blue_green_fast_switchover_metadata(text) TO PUBLIC;
"""

#: Replace every row (one per endpoint of both environments) in one transaction.
CLEAR_SQL = "DELETE FROM aurora_local.blue_green"
INSERT_SQL = (
    "INSERT INTO aurora_local.blue_green (id, endpoint, port, role, status, version) VALUES (%s, %s, %s, %s, %s, %s)"
)

PUBLICATION = "aurora_blue_green"
SUBSCRIPTION = "aurora_blue_green"

PUBLISH_SQL = "CREATE PUBLICATION %s FOR TABLES IN SCHEMA public" % PUBLICATION


def subscribe_sql(blue_port: int, database: str, passfile: str) -> str:
    """CREATE SUBSCRIPTION on green: blue's writer (direct, not through its simulator)."""
    conninfo = "host=127.0.0.1 port=%d dbname=%s user=postgres passfile=%s application_name=%s" % (
        blue_port,
        database,
        passfile,
        SUBSCRIPTION,
    )
    return "CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION %s" % (SUBSCRIPTION, conninfo, PUBLICATION)


#: Blue's WAL position has reached green: the subscription's slot confirmed it.
CAUGHT_UP_SQL = (
    "SELECT coalesce(bool_and(confirmed_flush_lsn >= %s::pg_lsn), false) "
    "FROM pg_replication_slots WHERE slot_name = '" + SUBSCRIPTION + "'"
)
#: Initial copy done: every table of the subscription is ready ('r').
SYNCED_SQL = "SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate <> 'r'"
