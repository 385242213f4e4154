"""Keep the garbage collector's full passes off the objects every long-running process builds at start.

A gateway process imports Flask, SQLAlchemy (every mapped model), boto3 and
marshmallow before it serves anything: a few hundred thousand objects that
live as long as the process.  Python's full (generation 2) collection walks
every tracked object: in bench.load on SQLite (2 gunicorn workers, 30 s,
gc callbacks timing every pass) each worker ran 2 full passes, 196-221 ms
the longest, holding the GIL throughout.  Every request of that process
stopped meanwhile, and one holding SQLite's writer turn
(gateway.sqlite_turns) stopped every writer of the database with it.  With
the start-up objects frozen, the full pass took 7 ms.  (Throughput and p99
moved less than the machine's noise in interleaved runs: it removes a rare
stall, not steady work.)

Called once each by the gunicorn workers (infra/gunicorn.conf.py,
post_worker_init), the RQ workers (gateway.routing.workers.run_worker) and
the outbox relay, when their start-up is done.  Objects frozen are never
freed, which is what start-up objects are for: a process's import-time state.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect what start-up left as garbage, then move every surviving object out of the collector's sight."""
    gc.collect()
    gc.freeze()
