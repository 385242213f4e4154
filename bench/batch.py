"""Bulk submission: items per second of one N-item batch beside N single creates, same run, same stack.

    .venv/bin/python -m bench.batch [--items 1000] [--database-url URL]

A live gunicorn (one worker, the production config) and a real RQ worker
(`gateway worker --maintenance`) serve a PostgreSQL database (a throwaway one
on the local server the tests use; SQLite only if none answers, and the table
says so).  Three rows, each with fresh references:

- singles: N `POST /v1/requests` one after another over one keep-alive
  connection (what a client does without batches; the floor to beat);
- batch: `POST /v1/batches` with the N items, then `GET /v1/batches/{id}`
  every 20 ms until `done` (what the client waits for: upload, queue, job, poll);
- batch job: the job's own time, from the batch's creation to its last commit.

Items per second, and each row against the singles as a ratio.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._stack import BenchStack
from tests.factories import request_body, unique
from tests.fixtures.live import settings_environment


def post_singles(port: int, api_key: str, bodies: list[dict]) -> float:
    """Seconds for every body as its own POST /v1/requests, over one connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    started = time.perf_counter()
    for body in bodies:
        connection.request("POST", "/v1/requests", body=json.dumps(body), headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status != 201:
            raise RuntimeError(f"single create answered {response.status}")
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed


def post_batch(port: int, api_key: str, bodies: list[dict]) -> tuple[float, dict]:
    """Seconds from sending the batch to reading it `done`, and the batch as last read."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    started = time.perf_counter()
    connection.request("POST", "/v1/batches", body=json.dumps({"requests": bodies}), headers=headers)
    response = connection.getresponse()
    batch = json.loads(response.read())
    if response.status != 202:
        raise RuntimeError(f"batch answered {response.status}: {batch.get('code')}")
    while batch["status"] != "done":
        if time.perf_counter() - started > 300:
            raise RuntimeError("the batch was not done within 300 s (is the worker running?)")
        time.sleep(0.02)
        connection.request("GET", f"/v1/batches/{batch['id']}", headers=headers)
        response = connection.getresponse()
        batch = json.loads(response.read())
    elapsed = time.perf_counter() - started
    connection.close()
    return elapsed, batch


def job_seconds(stack: BenchStack, batch_id: str) -> float:
    """The job's own time: the batch's creation to its last commit (as the database recorded them)."""
    from gateway.batches.models import Batch

    with stack.db.transaction() as session:
        batch = session.get(Batch, batch_id)
        return (batch.finished_at - batch.created_at).total_seconds()


def start_worker(stack: BenchStack, log: Path) -> subprocess.Popen:
    """`gateway worker --maintenance` on the stack's settings, until stopped."""
    env = {**os.environ, **settings_environment(stack.settings)}
    return subprocess.Popen([str(Path(sys.executable).parent / "gateway"), "worker", "--maintenance"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def postgres_url() -> str | None:
    """A fresh database on the local PostgreSQL the tests use, or None when none answers."""
    from tests.fixtures.databases import create_pg_database, postgres_available

    return create_pg_database() if postgres_available() else None


def main(argv: list[str] | None = None) -> int:
    """Run the three legs and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--database-url", default=None, help="an empty database (default: a throwaway "
                                                             "PostgreSQL database, else SQLite)")
    args = parser.parse_args(argv)
    made = None if args.database_url else postgres_url()
    url = args.database_url or made
    try:
        with BenchStack(database_url=url) as stack:
            gateway = stack.start_gateway()
            worker = start_worker(stack, stack.workdir / "worker.log")
            try:
                # One warm-up of each path (imports, caches, the worker's first fork), not timed.
                post_singles(gateway.port, stack.api_key, [request_body()])
                post_batch(gateway.port, stack.api_key, [request_body()])
                singles = post_singles(gateway.port, stack.api_key,
                                       [request_body(reference=unique("S")) for _ in range(args.items)])
                batch_time, batch = post_batch(gateway.port, stack.api_key,
                                               [request_body(reference=unique("B")) for _ in range(args.items)])
                job = job_seconds(stack, batch["id"])
            finally:
                worker.terminate()
                worker.wait(timeout=30)
            backend = "PostgreSQL" if stack.settings.database_url.startswith("postgresql") else "SQLite"
    finally:
        if made:
            from tests.fixtures.databases import drop_pg_database

            drop_pg_database(made)
    if batch["counts"] != {"created": args.items, "rejected": 0}:
        print(f"the batch did not create every item: {batch['counts']}", file=sys.stderr)
        return 1
    n = args.items
    print(f"{n:,} creates, {backend}, one gunicorn worker, one RQ worker, {os.cpu_count()} cores")
    print(f"{'':<52} {'seconds':>8} {'items/s':>9} {'vs singles':>11}")
    rows = [(f"singles: {n:,} POST /v1/requests, one connection", singles),
            ("batch: POST /v1/batches, poll until done", batch_time),
            ("  of which the job (created → last commit)", job)]
    for label, seconds in rows:
        print(f"{label:<52} {seconds:>8.2f} {n / seconds:>9.0f} {singles / seconds:>10.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
