"""One round of topology probes: every instance in parallel, never waiting on a hung one.

A host that hangs (a dead instance, a partitioned Availability Zone: no FIN, no RST, no
refusal) answers a probe only when the probe's 2 s connect timeout runs out. Waiting for
every probe would make every routed connect of the suspicion window cost those 2 s, on
the healthy writer too. So once the first instance that is what the alias needs (the
writer; for a reader alias, a reader) has answered, the round waits for the others only
a short grace (``GRACE`` or twice the first answer's time, whichever is longer: a live
instance answers about as fast as that one did), then decides with what it has. An
instance still silent then is remembered as hung for ``HUNG_SECONDS`` and left out of the
rounds meanwhile (unless nothing else is left to probe), so only the first round after a
host hangs pays the grace; a hung instance whose probe answers later is taken back.

The probes still running finish in their own threads (bounded by the probe's connect
timeout and the alias's ``silent_host_timeout``; no thread outlives them) and their
connections are closed, their answers unused (they may describe a later moment). Split
brain: two writers among a round's answers take the DNS path (never guess); a writer slower
to answer than the grace is left out of that round, and looked for by the next ones (a
full round at least once a second while routing, topology/router.py).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("aurora_backend")

#: (instance, connection or None, pg_is_in_recovery() or None, address or None)
Result = tuple[str, Any, bool | None, str | None]

MAX_PARALLEL = 8
#: How long an instance that did not answer in its round is left out of the rounds (seconds).
HUNG_SECONDS = 10.0
#: Shortest wait for the other instances once the needed one answered (seconds).
GRACE = 0.05


def candidates(instances: list[str], hung: dict[str, float], now: float) -> list[str]:
    """The instances worth probing now: those not remembered as hung (all, if none is left)."""
    live = [name for name in instances if hung.get(name, 0.0) <= now]
    return live or list(instances)


def race(
    instances: list[str],
    probe: Callable[[str], Result],
    accept: Callable[[Result], bool],
    on_late: Callable[[Result], None],
) -> tuple[list[Result], list[str]]:
    """Probe ``instances`` in parallel; return ``(answers, silent)``.

    ``answers``: every probe that finished by the end of the grace that follows the first
    answer ``accept`` takes (every probe, when none is taken). ``silent``: the instances
    still probing then; their results go to ``on_late`` in the probing thread, which must
    close their connections.
    """
    if not instances:
        return [], []
    pool = concurrent.futures.ThreadPoolExecutor(min(MAX_PARALLEL, len(instances)), thread_name_prefix="aurora-probe")
    futures = {pool.submit(probe, name): name for name in instances}
    pool.shutdown(wait=False)  # its threads end with their probes; none is kept
    began = time.monotonic()
    answers: list[Result] = []
    deadline: float | None = None
    pending = set(futures)
    while pending:
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        done, pending = concurrent.futures.wait(pending, timeout, concurrent.futures.FIRST_COMPLETED)
        if not done:
            break  # the grace is over
        for future in done:
            result = future.result()
            answers.append(result)
            if deadline is None and result[1] is not None and accept(result):
                now = time.monotonic()
                deadline = now + max(GRACE, 2 * (now - began))
    for future in pending:
        future.add_done_callback(lambda f: on_late(f.result()))
    return answers, [futures[f] for f in pending]
