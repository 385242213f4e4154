"""Queue search cost: one call of `routing.queue.queue_page(text=...)` over a facility's open queue of N requests.

    .venv/bin/python -m bench.queue_search [--sizes 1000,5000,20000] [--rounds 5] [--database-url URL]

The search judges the patient's names in Python (the patient is a JSON column), reading the queue in its
own order a batch at a time and at most `SEARCH_SCAN_LIMIT` rows a call.  For each queue size N (open,
routed requests of one facility, inserted directly; names varied, due dates spread over 30 days) this
prints, per call: a name that matches nothing (the worst case: the call reads up to the bound), a name
that matches one request in twenty (a page fills early), a reference fragment, and, as the floor, the
same filtered page without search terms (pure SQL keyset paging).  Figures are medians of --rounds calls.

SQLite in a temporary directory by default; --database-url points it at an empty PostgreSQL database
(migrated here).  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from gateway import migrate
from gateway.auth.principal import Principal
from gateway.clock import SystemClock
from gateway.db import Database, utcnow
from gateway.intake.models import RecordsRequest
from gateway.routing import queue as queues
from gateway.settings import Settings
from tests.factories import make_tenant

FACILITY = "tufts-mc"
FIRST = ("Ana", "José", "Mary", "Wei", "Fatima", "Olusegun", "Chloé", "Dmitri", "Priya", "Seán")
LAST = ("Silva", "Núñez", "O'Brien", "Nguyen", "Kowalski", "Okafor", "Dubois", "Haddad", "Müller", "Tanaka")


def fill(db: Database, org_id: str, start: int, stop: int, today: date) -> None:
    """Routed requests number `start` to `stop` of FACILITY, patients varied (every twentieth a "Zielinski")."""
    rng = random.Random(start)
    now = utcnow()
    with db.transaction() as session:
        for n in range(start, stop):
            last = "Zielinski" if n % 20 == 0 else f"{rng.choice(LAST)}-{rng.choice(LAST)}"
            session.add(RecordsRequest(
                org_id=org_id, created_by="bench", reference=f"BENCH-{n:06d}", status="routed",
                facility=FACILITY, pathway="authorization", purpose="litigation",
                patient={"first_name": rng.choice(FIRST), "last_name": last, "date_of_birth": "1980-02-29",
                         "other_names": [f"{rng.choice(FIRST)} {rng.choice(LAST)}"] if n % 7 == 0 else []},
                records={"types": ["visit_notes"]}, delivery={"method": "secure_download"},
                routing_queue=f"facility.{FACILITY}", routed_at=now, due_on=today + timedelta(days=n % 30)))


def timed(call, rounds: int) -> tuple[float, int]:
    """Median milliseconds of `rounds` calls, and the number of items the call returned."""
    laps, found = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        found = len(call()[0])
        laps.append((time.perf_counter() - started) * 1000)
    return statistics.median(laps), found


def main(argv: list[str] | None = None) -> int:
    """Fill the queue size by size and print one table row per size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-queue-search-"))
    url = args.database_url or f"sqlite:///{workdir / 'gateway.db'}"
    migrate.upgrade(url)
    db = Database.from_settings(Settings.from_env({}, env="test", data_dir=workdir, database_url=url))
    org_id = make_tenant(db).org_id
    staff = Principal(kind="user", id="bench", org_id=None, org_kind=None, roles=frozenset({"facility_staff"}),
                      facilities=frozenset({FACILITY}))
    today = SystemClock().today()
    print(f"{'queue':>7} {'no terms (SQL)':>15} {'no match':>10} {'1 in 20':>9} {'reference':>10}   "
          f"(ms per call of 25 items, median of {args.rounds}; scan bound {queues.SEARCH_SCAN_LIMIT})")
    filled = 0
    for size in [int(s) for s in args.sizes.split(",")]:
        fill(db, org_id, filled, size, today)
        filled = size
        with db.sessions() as session:
            def page(text, session=session):
                return queues.queue_page(session, staff, FACILITY, text=text, limit=25, cursor=None, today=today)
            plain, _ = timed(lambda page=page: page(None), args.rounds)
            nothing, _ = timed(lambda page=page: page("Fitzgerald"), args.rounds)
            some, hits = timed(lambda page=page: page("zielinski"), args.rounds)
            ref, _ = timed(lambda page=page: page("bench-000123"), args.rounds)
        print(f"{size:>7} {plain:>15.1f} {nothing:>10.1f} {some:>9.1f} {ref:>10.1f}   ({hits} items)")
    db.dispose()
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
