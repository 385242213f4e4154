"""Submit → enqueued on PostgreSQL: the relay woken by NOTIFY beside the same relay polling, in one run.

    .venv/bin/python -m bench.relay [--submits 300] [--threads 2] [--poll 0.1,0.05]

On one throwaway stack (bench/_stack.py with a fresh PostgreSQL database on
127.0.0.1:5432, dropped at the end):

1. For each mode — `listen` (LISTEN/NOTIFY, the poll interval as fallback),
   then `poll P` for each --poll value (no LISTEN, the relay as on SQLite) —
   N drafts are created with their authorization (not timed).
2. The relay runs in a process of its own (`relay.run` on settings from the
   environment, as `gateway outbox relay` minus housekeeping), and
   --threads client threads submit the drafts through the in-process app,
   each waiting a random 0–20 ms between submits (seeded) so that submits
   do not line up with the poll.  The UTC time right after each 202 is kept.
3. latency = the RQ job's enqueued_at − that time (both clocks of this
   machine).  The raw floor of the same run: one plain RQ enqueue, timed.

Targets (issue 18): p50 ≤ 20 ms and p99 ≤ 100 ms with LISTEN/NOTIFY.
Nothing is asserted; every rq:* key is deleted at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime

from bench._stack import PrivateRedisStack
from bench.routing import create_drafts, delete_keys, percentile, queued_jobs, raw_enqueues, submit
from gateway.adapters import build_redis
from gateway.app import create_app
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from tests.factories import bearer
from tests.fixtures.live import settings_environment

GAP_MS = 20
LOG = os.path.join(tempfile.gettempdir(), f"bench-relay-{os.getpid()}.log")



def relay_child(listen: bool, poll: float) -> None:
    """The relay process: settings from the environment; says "ready" once it is about to relay."""
    from gateway.db import Database
    from gateway.settings import Settings

    settings = Settings.from_env()
    db = Database.from_settings(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    dispatcher = RqDispatcher(build_redis(settings), job_timeout=settings.job_timeout)
    relay.publish_due(db, dispatcher)  # warm: imports, connections
    print("ready", flush=True)
    relay.run(db, dispatcher, stop=stop, batch=100, idle=poll, listen=listen, notifications_apart=True)


def start_relay(settings, listen: bool, poll: float) -> subprocess.Popen:
    env = {**os.environ, **settings_environment(settings)}
    argv = [sys.executable, "-m", "bench.relay", "--relay-child", "listen" if listen else "poll", "--poll", str(poll)]
    log = open(LOG, "a")  # the relay's own log lines (errors among them), summarised after the run
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError("the relay process did not start")
    time.sleep(0.3)  # from "ready" to its first wait (LISTEN is issued there)
    return child


def run_mode(app, headers, connection, *, ids: list[str], threads: int, listen: bool, poll: float) -> list[float]:
    """Submit `ids` from `threads` clients while one relay process runs; latencies in ms."""
    db = app.extensions["gateway"].db
    child = start_relay(app.extensions["gateway"].settings, listen, poll)
    returned: dict[str, datetime] = {}
    shares = [ids[i::threads] for i in range(threads)]

    def client_thread(share: list[str], seed: int) -> None:
        client, rng = app.test_client(), random.Random(seed)
        for request_id in share:
            time.sleep(rng.uniform(0, GAP_MS) / 1e3)
            returned[request_id], _ = submit(client, headers, request_id)

    clients = [threading.Thread(target=client_thread, args=(share, i)) for i, share in enumerate(shares)]
    try:
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        relay.wait_for_drain(db, 120)
    finally:
        child.terminate()
        child.wait(timeout=30)
    jobs = queued_jobs(connection)
    latencies = [(jobs[r].enqueued_at - returned[r]).total_seconds() * 1e3
                 for r in ids if r in jobs and jobs[r].enqueued_at is not None]
    delete_keys(connection)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=300, help="submits per mode (default 300)")
    parser.add_argument("--threads", type=int, default=2, help="client threads submitting at once (default 2)")
    parser.add_argument("--relay-child", choices=("listen", "poll"), help=argparse.SUPPRESS)
    parser.add_argument("--poll", default="0.1,0.05", help="poll intervals in seconds; the first is also the "
                        "listening relay's fallback (default 0.1,0.05)")
    args = parser.parse_args()
    polls = [float(v) for v in args.poll.split(",") if v.strip()]
    if args.relay_child:
        relay_child(args.relay_child == "listen", polls[0])
        return
    modes = [("listen", True, polls[0])] + [(f"poll {p * 1e3:g} ms", False, p) for p in polls]

    from tests.fixtures.databases import create_pg_database, drop_pg_database

    database_url = create_pg_database()
    rows = []
    try:
        with PrivateRedisStack(database_url=database_url) as stack:
            settings = dataclasses.replace(stack.settings, log_level="WARNING")
            connection = build_redis(settings)
            delete_keys(connection)
            app = create_app(settings)
            headers = bearer(stack.api_key)
            print(f"stack: PostgreSQL {database_url.rsplit('/', 1)[-1]}, redis {settings.redis_url}; "
                  f"{os.cpu_count()} CPUs; relay in its own process; {args.threads} client threads, "
                  f"0–{GAP_MS} ms apart; {args.submits} submits per mode", flush=True)
            try:
                client = app.test_client()
                for index, (name, listen, poll) in enumerate(modes):
                    ids = create_drafts(client, headers, args.submits, offset=index * args.submits)
                    started = time.perf_counter()
                    latencies = run_mode(app, headers, connection, ids=ids, threads=args.threads, listen=listen,
                                         poll=poll)
                    rows.append((name, latencies, time.perf_counter() - started))
                raw = raw_enqueues(connection, args.submits)
            finally:
                delete_keys(connection)
                delete_keys(connection, "LIMITS:*")
                app.extensions["gateway"].db.dispose()
    finally:
        drop_pg_database(database_url)

    raw_p50, raw_p99 = percentile(raw, 50) / 1e3, percentile(raw, 99) / 1e3
    print(f"\nsubmit's 202 → RQ job enqueued_at, PostgreSQL ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)")
    print(f"{'mode':<14} {'N':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p50/raw':>8} "
          f"{'p99/raw':>8} {'wall s':>7}")
    for name, lat, wall in rows:
        if not lat:
            print(f"{name:<14} no latency measured")
            continue
        print(f"{name:<14} {len(lat):>5} {percentile(lat, 50):>8.2f} {percentile(lat, 90):>8.2f} "
              f"{percentile(lat, 99):>8.2f} {max(lat):>8.2f} {percentile(lat, 50) / raw_p50:>7.1f}× "
              f"{percentile(lat, 99) / raw_p99:>7.1f}× {wall:>7.1f}")
    print(f"{'RAW enqueue':<14} {len(raw):>5} {raw_p50:>8.3f} {'':>8} {raw_p99:>8.3f}")
    if os.path.exists(LOG):
        with open(LOG) as log:
            problems = sorted({line.split('"message": ')[-1][:100].strip() for line in log
                               if '"level": "error"' in line or '"level": "warning"' in line})
        os.unlink(LOG)
        for problem in problems:
            print(f"relay logged: {problem}")
    listen = rows[0][1]
    if listen:
        print(f"target with LISTEN/NOTIFY: p50 ≤ 20 ms ({percentile(listen, 50):.1f}), p99 ≤ 100 ms "
              f"({percentile(listen, 99):.1f})")


if __name__ == "__main__":
    main()
