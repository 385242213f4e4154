"""The outbox: written with the submit, published once by the relay, surviving a Redis outage and two relays."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time

import pytest
from sqlalchemy import func, select, update

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
