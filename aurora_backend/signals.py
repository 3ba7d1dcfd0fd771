"""Django signals sent by aurora_backend, so that users can wire metrics and alerts.

Every signal is sent with ``sender`` = the DatabaseWrapper class and keyword
arguments ``alias`` and ``connection`` (the DatabaseWrapper), plus:

- ``reconnected``: ``reason`` (why the previous connection was replaced: "disconnect",
  "expired", "idle", "stale", "read_only"), ``address`` (the address connected to).
- ``connect_retry``: ``attempt``, ``error`` (the exception), ``delay`` (seconds before the
  next attempt), ``elapsed`` (seconds since the first attempt).
- ``scale_event``: ``error`` (an Aurora scale message was seen).
- ``statement_retried``: ``sql``, ``error`` (a read re-run on a new connection).
- ``transaction_retry``: ``attempt``, ``error``, ``delay`` (retry_atomic re-runs a block).
- ``connection_closed``: ``reason`` ("expired", "idle", "disconnect", "stale", "read_only"):
  closed on purpose (it reached its age or idle limit, or it is dead or on a demoted writer),
  not replaced yet; ``reconnected`` follows when the next connection opens.
- ``session_state_kept``: ``reason``, ``state``, ``error``: the connection holds session state
  the app set (``state``: e.g. ``["advisory_lock 42", "set search_path"]``), so it was kept
  past ``reason`` ("expired", "idle", "read_only"; once per connection and reason, ``error``
  None), or (``reason`` "rerun") the statement that failed with ``error`` on a dead
  connection was not re-run on a new one: the app gets the error.
- ``reader_fallback``: ``reason`` ("unreachable", "lagging"), ``lag`` (seconds or None),
  ``error``: reader routing sends the reader alias's reads to the writer from now on.
- ``reader_restored``: ``reason`` (of the episode that ended): reads go to the reader again.
- ``topology_failover``: ``old_writer``, ``new_writer`` (instance identifiers), ``how``
  ("topology": found by probing instance endpoints; "dns": the endpoint moved), ``seconds``
  (from the first sign of trouble to the new writer's connection, or None).
- ``transaction_finished``: ``attempts``, ``outcome`` ("committed", "failed": an error that is
  not retried, "gave_up": attempts or time used up): a ``retry_atomic`` block ended after at
  least one retry, or gave up.
- ``lost_commit``: ``verdict`` ("committed", "aborted", "unknown", "no_writes"), ``txid``:
  what ``retry_atomic`` concluded about a COMMIT that got no answer.
- ``blue_green_phase``: ``phase``, ``previous`` (NOT_CREATED, CREATED, PREPARATION, IN_PROGRESS,
  POST, COMPLETED): the RDS Blue/Green phase of the alias's endpoint changed; ``connection``
  is None (sent by the watcher thread, docs/bluegreen.md).
"""

from django.dispatch import Signal

reconnected = Signal()
connect_retry = Signal()
scale_event = Signal()
statement_retried = Signal()
transaction_retry = Signal()
connection_closed = Signal()
session_state_kept = Signal()
reader_fallback = Signal()
reader_restored = Signal()
topology_failover = Signal()
transaction_finished = Signal()
lost_commit = Signal()
blue_green_phase = Signal()
