"""Set up and run testproject: a throwaway PostgreSQL (unless AURORA_DSN names one),
migrations, seeded accounts, then Django's development server on 127.0.0.1:8000.

    python testproject/run.py [--port 8000] [--check]

``--check`` does everything but serve: it requests each view once and exits (used by
the test suite and handy as a smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--check", action="store_true", help="request each view once and exit")
    args = parser.parse_args(argv)

    # SIGTERM (a process manager, `kill`) unwinds like Ctrl-C, so the cluster is removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    cluster = None
    if not os.environ.get("AURORA_DSN"):
        from aurora_backend.testing import PostgresCluster

        cluster = PostgresCluster().start()
        os.environ["AURORA_DSN"] = cluster.address.dsn.rsplit("/", 1)[0] + "/ledger"
        _create_database(cluster)
        print("testproject: throwaway PostgreSQL on 127.0.0.1:%d (removed on exit)" % cluster.port)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        call_command("seed_ledger")
        if args.check:
            return _check()
        call_command("runserver", "127.0.0.1:%d" % args.port, use_reloader=False)
        return 0
    finally:
        if cluster is not None:
            cluster.destroy()


def _create_database(cluster) -> None:
    from aurora_backend.testing.drivers import select_driver

    select_driver()  # AURORA_TEST_DRIVER, before the driver is imported (as settings.py does)
    from aurora_backend import drivers

    conn = drivers.connect(cluster.address.dsn)
    conn.autocommit = True
    conn.cursor().execute("CREATE DATABASE ledger")
    conn.close()


def _check() -> int:
    from django.test import Client

    client = Client()
    accounts = client.get("/accounts/").json()["accounts"]
    moved = client.post(
        "/transfer/",
        json.dumps({"source": accounts[0]["id"], "destination": accounts[1]["id"], "amount": 5}),
        content_type="application/json",
    )
    total = client.get("/total/").json()
    print("testproject check: transfer %d, totals %s" % (moved.status_code, total))
    return 0 if moved.status_code == 201 and total["transfers"] >= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
