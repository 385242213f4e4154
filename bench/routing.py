"""Routing latency: from a submit's 202 to its RQ job on the facility queue, beside a raw RQ enqueue.

    .venv/bin/python -m bench.routing [--submits 1000] [--idle 0.05,0.01] [--batch 100]

One pass per --idle value, each on the same stack (bench/_stack.py: clamd,
moto S3, Redis db 15 or a throwaway redis-server, SQLite migrated to head):

1. N drafts are created and their authorization PDF uploaded through the
   in-process app (`create_app(settings).test_client()`); not timed.  A few
   extra drafts are submitted and relayed first as a warm-up, not counted.
2. The outbox relay runs in a background thread of this process
   (`relay.run(..., idle=IDLE)`), the N drafts are submitted one after another
   from the main thread, and the UTC wall-clock time right after each 202 is
   recorded.  Then the outbox is drained and the relay stopped.
3. Each request's RQ job is looked up on its facility queue (JSON serializer,
   matched by args[0]); latency = job.enqueued_at - the 202's time.  RQ stamps
   enqueued_at just before it writes the job to Redis.  A negative value means
   the relay enqueued before the client took its timestamp; it is reported
   as measured.
4. The raw floor, in the same pass: N plain
   `Queue("bench-raw", ..., serializer=JSONSerializer).enqueue(...)` calls,
   each timed; the ratio gateway latency / raw enqueue is printed for p50 and p99.

The gateway latency includes the relay's polling interval: an idle relay
sleeps --idle seconds between passes, so a row written just after a pass waits
up to that long.  Comparing passes with different --idle shows that share.

To show where the rest goes, the relay is handed thin timing wrappers around
its Database and RqDispatcher (and an on_idle hook): each pass's claim
transaction, each enqueue call and each mark-sent transaction are timed, and
every request's latency is split into "202 → its pass's claim began" and
"claim began → enqueued_at".  The relay shares this process (and its GIL)
with the submitting client, and SQLite's single writer with the app.

Nothing is asserted; only loopback traffic.  Every rq:* key (and the app's
rate-limit counters) is deleted at the end; the stack is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import select

from bench._stack import BenchStack
from gateway.adapters import build_redis
from gateway.app import create_app
from gateway.outbox import OutboxMessage
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from gateway.routing.queues import LEGAL_REVIEW, SENSITIVE_REVIEW, facility_queue
from tests.factories import bearer, request_body
from tests.samples import minimal_pdf

FACILITIES = ("lowell-general", "melrosewakefield", "tufts-mc", "community-practices")  # drafts rotate over them
RAW_QUEUE = "bench-raw"
WARMUP_SUBMITS = 5
RAW_WARMUP = 50
DRAIN_TIMEOUT = 300.0


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def spread(values: list[float], unit: str = "ms") -> str:
    """p50/p90/p99/max of a list, fixed width."""
    if not values:
        return "(none)"
    return (f"p50 {percentile(values, 50):7.2f}  p90 {percentile(values, 90):7.2f}  "
            f"p99 {percentile(values, 99):7.2f}  max {max(values):7.2f} {unit}")


class RelayProbe:
    """Watches the relay thread from outside: its transactions, its enqueue calls and its pass ends.

    The relay is handed `probe.db` and `probe.dispatcher` (thin wrappers around the real Database
    and RqDispatcher) and `probe.pass_done` as on_idle; every event lands, in the relay thread's
    order, in `events` as (kind, perf_counter start, perf_counter end, request id or "").
    A pass is: one claim transaction, then per row an enqueue and a mark-sent transaction.
    """

    def __init__(self, db, dispatcher: RqDispatcher):
        self.events: list[tuple[str, float, float, str]] = []
        self.db = _TimedDatabase(db, self.events)
        self.dispatcher = _TimedDispatcher(dispatcher, self.events)
        # perf_counter → UTC wall clock, to set relay moments beside the client's 202 timestamps
        self._perf0, self._wall0 = time.perf_counter(), datetime.now(UTC)

    def pass_done(self) -> None:
        now = time.perf_counter()
        self.events.append(("pass_end", now, now, ""))

    def wall(self, perf: float) -> datetime:
        return self._wall0 + timedelta(seconds=perf - self._perf0)

    def analyse(self) -> RelayFigures:
        figures = RelayFigures()
        claim_start = None  # of the current pass
        rows_in_pass = 0
        last_pass_end = None
        for kind, started, ended, request_id in self.events:
            if kind == "pass_end":
                figures.passes += 1
                if rows_in_pass:
                    figures.rows_per_pass.append(rows_in_pass)
                claim_start, rows_in_pass, last_pass_end = None, 0, ended
            elif kind == "txn" and claim_start is None:
                claim_start = started
                figures.claim_ms.append((ended - started) * 1e3)
                if last_pass_end is not None:
                    figures.idle_wait_ms.append((started - last_pass_end) * 1e3)
            elif kind == "txn":
                figures.mark_ms.append((ended - started) * 1e3)
            elif kind == "enqueue":
                rows_in_pass += 1
                figures.enqueue_ms.append((ended - started) * 1e3)
                figures.claim_started[request_id] = self.wall(claim_start if claim_start is not None else started)
        if rows_in_pass:
            figures.rows_per_pass.append(rows_in_pass)
        return figures


@dataclass
class RelayFigures:
    """What the relay thread spent its time on during one pass of the benchmark."""

    passes: int = 0
    rows_per_pass: list[int] = field(default_factory=list)  # passes that published
    claim_ms: list[float] = field(default_factory=list)
    enqueue_ms: list[float] = field(default_factory=list)
    mark_ms: list[float] = field(default_factory=list)
    idle_wait_ms: list[float] = field(default_factory=list)
    claim_started: dict[str, datetime] = field(default_factory=dict)  # request id -> its pass's claim start (UTC)


class _TimedDatabase:
    """The real Database, with each transaction() timed (the relay only uses transaction())."""

    def __init__(self, inner, events: list):
        self._inner, self._events = inner, events

    @contextlib.contextmanager
    def transaction(self):
        started = time.perf_counter()
        try:
            with self._inner.transaction() as session:
                yield session
        finally:
            self._events.append(("txn", started, time.perf_counter(), ""))

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


class _TimedDispatcher:
    """The real RqDispatcher, with each enqueue call timed (two perf_counter calls of overhead)."""

    def __init__(self, inner: RqDispatcher, events: list):
        self._inner, self._events = inner, events

    def enqueue(self, queue: str, function: str, args: list, *, job_id: str, at_front: bool = False) -> str:
        started = time.perf_counter()
        try:
            return self._inner.enqueue(queue, function, args, job_id=job_id, at_front=at_front)
        finally:
            self._events.append(("enqueue", started, time.perf_counter(), args[0]))


@dataclass
class Pass:
    """The figures of one --idle value."""

    idle: float
    submits: int
    submit_seconds: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    raw_us: list[float] = field(default_factory=list)
    missing: int = 0
    drained: bool = True
    lines: list[str] = field(default_factory=list)


# --- the gateway side -------------------------------------------------------------------

def create_drafts(client, headers: dict, count: int, offset: int = 0) -> list[str]:
    """`count` drafts, each with its authorization PDF attached; their ids."""
    pdf = minimal_pdf()
    ids = []
    for index in range(count):
        created = client.post("/v1/requests", json=request_body(FACILITIES[(offset + index) % len(FACILITIES)]),
                              headers=headers)
        if created.status_code != 201:
            raise RuntimeError(f"creating a draft answered {created.status_code}: {created.get_json()}")
        request_id = created.get_json()["id"]
        uploaded = client.post(f"/v1/requests/{request_id}/documents", headers=headers,
                               content_type="multipart/form-data",
                               data={"kind": "authorization", "file": (io.BytesIO(pdf), "authorization.pdf")})
        if uploaded.status_code != 201:
            raise RuntimeError(f"uploading answered {uploaded.status_code}: {uploaded.get_json()}")
        ids.append(request_id)
    return ids


def submit(client, headers: dict, request_id: str) -> tuple[datetime, float]:
    """POST submit; the UTC time right after the 202 and the request's own seconds."""
    started = time.perf_counter()
    response = client.post(f"/v1/requests/{request_id}/submit", headers=headers)
    returned = datetime.now(UTC)
    took = time.perf_counter() - started
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.get_json()}")
    return returned, took


def queued_jobs(connection) -> dict[str, object]:
    """Every job on the facility (and review) queues, by its request id (args[0])."""
    jobs = {}
    for name in (*(facility_queue(code) for code in FACILITIES), LEGAL_REVIEW, SENSITIVE_REVIEW):
        for job in Queue(name, connection=connection, serializer=JSONSerializer).get_jobs():
            jobs[job.args[0]] = job
    return jobs


def delete_keys(connection, pattern: str = "rq:*") -> int:
    """Remove every rq:* key (queues, jobs, registries), or those matching pattern, from the bench database."""
    doomed = list(connection.scan_iter(pattern, count=1000))
    for start in range(0, len(doomed), 500):
        connection.delete(*doomed[start:start + 500])
    return len(doomed)


def raw_enqueues(connection, count: int) -> list[float]:
    """`count` plain RQ enqueues on bench-raw, each timed; microseconds (after a short warm-up)."""
    samples = []
    for index in range(RAW_WARMUP + count):
        request_id = str(uuid.uuid4())  # the same shape of payload as a routed job
        started = time.perf_counter()
        Queue(RAW_QUEUE, connection=connection, serializer=JSONSerializer).enqueue(
            relay.ROUTE_JOB, args=[request_id, "x#1"], job_id=f"raw-{request_id}")
        took = time.perf_counter() - started
        if index >= RAW_WARMUP:
            samples.append(took * 1e6)
    return samples


def run_pass(stack: BenchStack, client, headers: dict, connection, submits: int, idle: float,
             batch: int, offset: int) -> Pass:
    """One --idle value: drafts, warm-up, relay + N timed submits, drain, job lookup, raw floor."""
    result = Pass(idle=idle, submits=submits)
    started = time.perf_counter()
    ids = create_drafts(client, headers, submits + WARMUP_SUBMITS, offset)
    warmup, ids = ids[:WARMUP_SUBMITS], ids[WARMUP_SUBMITS:]
    drafts_seconds = time.perf_counter() - started
    # Warm-up: the submit path, a relay pass (claim, enqueue, mark sent) and RQ, then a clean slate.
    for request_id in warmup:
        submit(client, headers, request_id)
    relay.publish_due(stack.db, RqDispatcher(connection), batch=batch)
    delete_keys(connection)

    probe = RelayProbe(stack.db, RqDispatcher(build_redis(stack.settings)))
    stop = threading.Event()
    relay_thread = threading.Thread(
        target=relay.run, name="relay", daemon=True,
        kwargs={"db": probe.db, "dispatcher": probe.dispatcher, "stop": stop, "batch": batch, "idle": idle,
                "on_idle": probe.pass_done})
    returned: dict[str, datetime] = {}
    relay_thread.start()
    try:
        submit_started = time.perf_counter()
        for request_id in ids:
            returned[request_id], took = submit(client, headers, request_id)
            result.submit_seconds.append(took)
        submit_wall = time.perf_counter() - submit_started
        result.drained = relay.wait_for_drain(stack.db, DRAIN_TIMEOUT)
    finally:
        stop.set()
        relay_thread.join(timeout=30)
    figures = probe.analyse()

    jobs = queued_jobs(connection)
    with stack.db.transaction() as session:
        rows = {r.request_id: (r.created_at, r.sent_at)
                for r in session.scalars(select(OutboxMessage).where(OutboxMessage.request_id.in_(ids)))}
    row_to_stamp, stamp_to_sent, waiting, in_pass = [], [], [], []
    for request_id in ids:
        job = jobs.get(request_id)
        if job is None or job.enqueued_at is None:
            result.missing += 1
            continue
        result.latency_ms.append((job.enqueued_at - returned[request_id]).total_seconds() * 1e3)
        created_at, sent_at = rows[request_id]
        row_to_stamp.append((job.enqueued_at - created_at).total_seconds() * 1e3)
        if sent_at is not None:
            stamp_to_sent.append((sent_at - job.enqueued_at).total_seconds() * 1e3)
        if request_id in figures.claim_started:
            claimed = figures.claim_started[request_id]
            waiting.append((claimed - returned[request_id]).total_seconds() * 1e3)
            in_pass.append((job.enqueued_at - claimed).total_seconds() * 1e3)
    delete_keys(connection)

    result.raw_us = raw_enqueues(connection, submits)
    delete_keys(connection)

    rows_per_pass = figures.rows_per_pass or [0]
    result.lines = [
        f"  drafts: {submits + WARMUP_SUBMITS} created + authorization uploaded in {drafts_seconds:.1f} s "
        f"(not timed; {WARMUP_SUBMITS} of them submitted and relayed as warm-up, not counted)",
        f"  submits: {submits} in {submit_wall:.1f} s ({submits / submit_wall:.0f}/s, one client, sequential); "
        f"outbox drained: {'yes' if result.drained else 'NO (timed out)'}",
        f"  relay: {figures.passes} passes, {len(figures.rows_per_pass)} of them published "
        f"({sum(rows_per_pass) / max(len(figures.rows_per_pass), 1):.1f} rows per publishing pass, "
        f"max {max(rows_per_pass)})",
        "  relay thread, per operation:",
        f"    claim transaction                       {spread(figures.claim_ms)}",
        f"    RqDispatcher.enqueue call               {spread(figures.enqueue_ms)}",
        f"    mark-sent transaction (sent + routed)   {spread(figures.mark_ms)}",
        f"    idle wait between passes (asked {idle * 1e3:g} ms)  {spread(figures.idle_wait_ms)}",
        "  per request (the two parts add up to the gateway latency):",
        f"    202 returned → its pass's claim began   {spread(waiting)}",
        f"    claim began → RQ enqueued_at            {spread(in_pass)}",
        "  cross-checks from the outbox rows:",
        f"    row written (submit txn) → enqueued_at  {spread(row_to_stamp)}",
        f"    enqueued_at → row marked sent           {spread(stamp_to_sent)}",
    ]
    if result.missing:
        result.lines.append(f"  WARNING: {result.missing} requests had no RQ job on a facility/review queue")
    return result


def print_pass(result: Pass) -> None:
    lat, raw, sub = result.latency_ms, result.raw_us, [s * 1e3 for s in result.submit_seconds]
    print(f"\n--idle {result.idle:g} s  ({result.submits} submits)")
    print("\n".join(result.lines))
    if not lat:
        print("  no latency measured")
        return
    negatives = sum(1 for v in lat if v < 0)
    print(f"  submit request itself (POST .../submit → 202, in-process test client): "
          f"p50 {percentile(sub, 50):.2f} ms  p99 {percentile(sub, 99):.2f} ms")
    print(f"  GATEWAY  202 returned → RQ job enqueued_at:  p50 {percentile(lat, 50):7.2f} ms  "
          f"p90 {percentile(lat, 90):7.2f} ms  p99 {percentile(lat, 99):7.2f} ms  max {max(lat):7.2f} ms  "
          f"(min {min(lat):.2f} ms; {negatives} negative, as measured)")
    print(f"  RAW      Queue('{RAW_QUEUE}').enqueue alone ({len(raw)} calls):  "
          f"p50 {percentile(raw, 50):7.1f} µs  p99 {percentile(raw, 99):7.1f} µs  max {max(raw):7.1f} µs")
    print(f"  RATIO    gateway / raw:  p50 {percentile(lat, 50) * 1e3 / percentile(raw, 50):7.1f}×  "
          f"p99 {percentile(lat, 99) * 1e3 / percentile(raw, 99):7.1f}×   "
          f"(gateway includes the relay's polling interval, --idle {result.idle:g} s = {result.idle * 1e3:g} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=1000, help="timed submits per --idle value (default 1000)")
    parser.add_argument("--idle", default="0.05",
                        help="relay sleep between passes in seconds; a comma-separated list runs one pass each "
                             "(default 0.05; e.g. 0.05,0.01)")
    parser.add_argument("--batch", type=int, default=100, help="relay claim batch (default 100)")
    args = parser.parse_args()
    idles = [float(v) for v in args.idle.split(",") if v.strip()]

    started = time.perf_counter()
    results = []
    with BenchStack() as stack:
        settings = dataclasses.replace(stack.settings, api_rate_limit="1000000 per minute", log_level="WARNING")
        connection = build_redis(settings)
        connection.flushdb()
        app = create_app(settings)
        client = app.test_client()
        headers = bearer(stack.api_key)
        print(f"stack: redis {settings.redis_url}, SQLite {settings.database_url.rsplit('/', 1)[-1]}, "
              f"clamd {stack.clamd.address}, moto {stack.moto.endpoint_url}; {os.cpu_count()} CPUs; "
              f"relay in a thread of this process (batch {args.batch}), submits from the main thread", flush=True)
        try:
            for index, idle in enumerate(idles):
                result = run_pass(stack, client, headers, connection, args.submits, idle, args.batch,
                                  offset=index * (args.submits + WARMUP_SUBMITS))
                print_pass(result)
                results.append(result)
        finally:
            removed = delete_keys(connection)
            limiter_keys = delete_keys(connection, "LIMITS:*")  # the app's rate-limit counters
            app.extensions["gateway"].db.dispose()
            connection.close()

    print("\nsummary (latency = RQ enqueued_at − submit's 202 wall-clock time; raw = one plain RQ enqueue)")
    header = (f"{'idle ms':>8} {'N':>5} {'submit p50':>11} {'submit p99':>11} {'gw p50 ms':>10} {'gw p90 ms':>10} "
              f"{'gw p99 ms':>10} {'gw max ms':>10} {'raw p50 µs':>11} {'raw p99 µs':>11} {'p50 ×':>7} {'p99 ×':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        if not r.latency_ms:
            continue
        lat, raw, sub = r.latency_ms, r.raw_us, [s * 1e3 for s in r.submit_seconds]
        print(f"{r.idle * 1e3:8g} {len(lat):5d} {percentile(sub, 50):8.2f} ms {percentile(sub, 99):8.2f} ms "
              f"{percentile(lat, 50):10.2f} {percentile(lat, 90):10.2f} {percentile(lat, 99):10.2f} {max(lat):10.2f} "
              f"{percentile(raw, 50):11.1f} {percentile(raw, 99):11.1f} "
              f"{percentile(lat, 50) * 1e3 / percentile(raw, 50):7.1f} "
              f"{percentile(lat, 99) * 1e3 / percentile(raw, 99):7.1f}")
    print("note: the gateway latency includes the relay's polling interval (--idle): a row committed just after "
          "an empty pass waits up to that long before it is claimed.")
    print(f"\n(cleanup: rq:* keys deleted after each pass and at the end ({removed} left over), "
          f"{limiter_keys} rate-limit keys deleted, stack stopped; "
          f"total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
