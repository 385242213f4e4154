"""The outbox: written with the submit, published once by the relay, surviving a Redis outage and two relays."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time

import pytest
from sqlalchemy import func, select, update

from gateway import outbox
from gateway.adapters import build_redis
from gateway.app import create_app
from gateway.db import utcnow
from gateway.intake.models import RecordsRequest
from gateway.outbox import OutboxMessage
from gateway.routing import relay
from gateway.routing.dispatch import RqDispatcher
from tests.factories import bearer, make_tenant
from tests.routing.helpers import queued_jobs, submitted


@pytest.fixture(scope="module")
def busy_app(settings):
    """The app with a rate limit high enough for hundreds of requests from one key."""
    return create_app(dataclasses.replace(settings, api_rate_limit="100000 per minute"))


@pytest.fixture(autouse=True)
def empty_queues(settings, db):
    """Each test starts with an empty backlog on Redis (the session Redis is shared), and with every outbox row
    other tests left behind due now: rows released with a backoff, or claimed by a relay since stopped, would
    otherwise outlast `drain`'s patience."""
    build_redis(settings).flushdb()
    now = utcnow()
    with db.transaction() as session:
        session.execute(update(OutboxMessage).where(OutboxMessage.state != "sent")
                        .values(state="pending", next_attempt_at=now, claimed_by=None, claim_expires_at=None))
    yield


def drain(db, settings, *, timeout=30.0, relays=1):
    dispatcher = RqDispatcher(build_redis(settings))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _ in range(relays):
            relay.publish_due(db, dispatcher, batch=50, max_backoff=0.2)
        with db.transaction() as session:
            if not session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.state != "sent")):
                return
        time.sleep(0.05)
    raise AssertionError("outbox did not drain")


def test_submit_writes_an_outbox_row_and_the_relay_routes_it(client, db, settings):
    tenant = make_tenant(db)
    request_id = submitted(client, tenant, "lowell-general")
    with db.transaction() as session:
        (message,) = session.scalars(select(OutboxMessage).where(OutboxMessage.request_id == request_id,
                                                                 OutboxMessage.kind == "route")).all()
        assert (message.state, message.queue) == ("pending", "facility.lowell-general")
        assert session.get(RecordsRequest, request_id).status == "submitted"
    drain(db, settings)
    (job,) = [j for j in queued_jobs(settings, "facility.lowell-general") if j.args[0] == request_id]
    assert job.func_name == "gateway.routing.jobs.deliver_routed"
    assert job.args == [request_id, f"facility.lowell-general#{message.id}"]  # ids only, JSON
    body = client.get(f"/v1/requests/{request_id}", headers=bearer(tenant.api_key)).get_json()
    assert body["status"] == "routed" and body["routing"]["queue"] == "facility.lowell-general"
    events = client.get(f"/v1/requests/{request_id}/events", headers=bearer(tenant.api_key)).get_json()["items"]
    assert [e["type"] for e in events][-1] == "routed"


def test_review_queues_come_first(client, db, settings):
    tenant = make_tenant(db)
    sensitive = submitted(client, tenant, records__sensitive=["mental_health"])
    drain(db, settings)
    assert [j.args[0] for j in queued_jobs(settings, "sensitive-review")] == [sensitive]


@pytest.mark.slow
def test_redis_down_200_submits_succeed_and_each_reaches_its_queue_once(busy_app, settings, redis_service):
    client, db = busy_app.test_client(), busy_app.extensions["gateway"].db
    tenants = [make_tenant(db) for _ in range(4)]
    facilities = ["lowell-general", "melrosewakefield", "tufts-mc", "community-practices"]
    redis_service.stop()
    try:
        ids = {submitted(client, tenants[i % 4], facilities[i % 4]): facilities[i % 4] for i in range(200)}
        result = relay.publish_due(db, RqDispatcher(build_redis(settings)), batch=500, max_backoff=0.2)
        # Queue work waits for Redis; the webhook notifications of the 200 submits need no broker.
        assert (result.published, result.deferred, result.notified) == (0, 200, 200)
    finally:
        redis_service.start()
    drain(db, settings)
    seen = collections.Counter()
    for facility in facilities:
        for job in queued_jobs(settings, f"facility.{facility}"):
            assert ids[job.args[0]] == facility  # exactly its own queue
            seen[job.args[0]] += 1
    assert set(seen) == set(ids) and set(seen.values()) == {1}


def test_two_relays_at_once_publish_each_row_once(busy_app, settings):
    client, db = busy_app.test_client(), busy_app.extensions["gateway"].db
    tenant = make_tenant(db)
    ids = [submitted(client, tenant) for _ in range(60)]
    real = RqDispatcher(build_redis(settings))
    calls, lock = collections.Counter(), threading.Lock()

    class Counting:
        def enqueue(self, queue, function, args, *, job_id, at_front=False):
            with lock:
                calls[job_id] += 1
            return real.enqueue(queue, function, args, job_id=job_id, at_front=at_front)

    barrier = threading.Barrier(2)

    def run():
        barrier.wait()
        for _ in range(20):
            relay.publish_due(db, Counting(), batch=7)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drain(db, settings)
    assert len(calls) == 60 and set(calls.values()) == {1}
    jobs = [j.args[0] for j in queued_jobs(settings, "facility.tufts-mc")]
    assert sorted(jobs) == sorted(ids)


def test_on_postgresql_a_commit_wakes_the_relay_and_a_pass_marks_its_rows_in_one_transaction(client, db, settings):
    """A relay polling only once a minute still routes a submit: the submit's transaction NOTIFYs it.
    On SQLite there is no NOTIFY, and the relay keeps to its poll.  Notify rows wake nobody (the poll
    finds them), so only the route rows are waited for."""
    if db.is_sqlite:
        assert relay.Waker(db).conninfo is None
        return
    tenant = make_tenant(db)
    drain(db, settings)
    stop = threading.Event()
    commits = []

    class CountingDatabase:  # the relay's own transactions, counted
        def __getattr__(self, name):
            return getattr(db, name)

        def write_transaction(self):
            commits.append("write")
            return db.write_transaction()

    thread = threading.Thread(target=relay.run, kwargs={
        "db": CountingDatabase(), "dispatcher": RqDispatcher(build_redis(settings)), "stop": stop,
        "idle": 60.0, "batch": 100})
    thread.start()
    try:
        time.sleep(0.5)  # the relay's first pass is done: it now waits up to a minute, or for a NOTIFY
        commits.clear()
        ids = [submitted(client, tenant) for _ in range(3)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _all_sent(db, ids, kind=outbox.ROUTE):
            time.sleep(0.05)
        assert _all_sent(db, ids, kind=outbox.ROUTE), "the relay was not woken by the submits' commits"
    finally:
        stop.set()
        thread.join(timeout=10)
    # Each pass marked what it published in one write transaction (at most one pass per submit here).
    assert 1 <= len(commits) <= len(ids)


def _all_sent(db, ids, kind: str | None = None) -> bool:
    with db.transaction() as session:
        query = (select(func.count()).select_from(OutboxMessage)
                 .where(OutboxMessage.request_id.in_(ids), OutboxMessage.state != "sent"))
        return not session.scalar(query if kind is None else query.where(OutboxMessage.kind == kind))


def test_with_notifications_apart_housekeeping_runs_beside_the_route_passes_not_between_them(db, settings):
    """`gateway outbox relay`: a pass woken by a submit never waits behind a housekeeping tick."""
    stop = threading.Event()
    ticks = collections.Counter()

    def on_idle():
        ticks[threading.current_thread().name] += 1

    thread = threading.Thread(name="route-passes", target=relay.run, kwargs={
        "db": db, "dispatcher": RqDispatcher(build_redis(settings)), "stop": stop, "idle": 0.02,
        "on_idle": on_idle, "notifications_apart": True})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and ticks["relay-notifications"] < 3:
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert ticks["relay-notifications"] >= 3
    assert set(ticks) == {"relay-notifications"}
