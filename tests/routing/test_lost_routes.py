"""Route jobs the queue broker lost are published again; jobs it holds anywhere are left alone.

Real Redis and RQ, real `gateway worker` subprocesses for the states only a worker produces (started by a
worker that died, failed).  The end-to-end proof under SIGKILL is tests/routing/test_multi_instance.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import select

from gateway.adapters import build_redis
from gateway.metrics import DOMAIN
from gateway.outbox import UNSETTLED_ROUTE, OutboxMessage
from gateway.routing import relay
from gateway.routing.dispatch import RecordingDispatcher, RqDispatcher
from gateway.routing.queues import MAINTENANCE
from gateway.routing.reconcile import LostRoutes
from tests.factories import make_tenant
from tests.routing.helpers import run_worker, submitted

JOBS = "tests.routing.worker_jobs"


@pytest.fixture
def redis_connection(settings):
    """An empty Redis, left empty: what the looks below publish again for other tests' rows goes too."""
    connection = build_redis(settings)
    connection.flushdb()
    yield connection
    connection.flushdb()


def _route_of(db, request_id) -> OutboxMessage:
    with db.transaction() as session:
        (message,) = session.scalars(select(OutboxMessage).where(OutboxMessage.request_id == request_id,
                                                                  OutboxMessage.kind == "route")).all()
        session.expunge(message)
        return message


def republished_count() -> float:
    return DOMAIN.get_sample_value("gateway_route_jobs_republished_total") or 0.0


class Ticks:
    """A monotonic clock the test moves; every look is due at once."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 1.0
        return self.now


@pytest.mark.one_database  # RQ's side only; the database plays no part
def test_the_broker_holds_a_job_queued_taken_started_scheduled_or_failed_and_loses_one_popped_or_flushed(
        settings, redis_connection):
    queue = Queue(MAINTENANCE, connection=redis_connection, serializer=JSONSerializer)
    queue.enqueue(f"{JOBS}.crash", job_timeout=30, job_id="started")  # its worker dies mid-run: started
    queue.enqueue(f"{JOBS}.fail", job_id="failed")
    assert run_worker(settings, maintenance=True, timeout=60).returncode == 3  # the crash stops it first
    assert run_worker(settings, maintenance=True, timeout=60).returncode == 0  # a second one fails "failed"
    queue.enqueue(f"{JOBS}.pid", job_id="waiting")
    queue.enqueue(f"{JOBS}.pid", job_id="taken")
    redis_connection.lmove(queue.key, queue.intermediate_queue_key, "RIGHT", "LEFT")  # a single-queue worker's take
    queue.enqueue_in(timedelta(minutes=5), f"{JOBS}.pid", job_id="scheduled")
    queue.enqueue(f"{JOBS}.pid", job_id="popped")
    redis_connection.lrem(queue.key, 1, "popped")  # BLPOP by a multi-queue worker that then died
    queue.enqueue(f"{JOBS}.pid", job_id="flushed")
    Job.fetch("flushed", connection=redis_connection, serializer=JSONSerializer).delete()

    statuses = {job_id: Job.fetch(job_id, connection=redis_connection, serializer=JSONSerializer).get_status()
                for job_id in ("started", "failed", "waiting", "taken", "scheduled", "popped")}
    assert statuses == {"started": JobStatus.STARTED, "failed": JobStatus.FAILED, "waiting": JobStatus.QUEUED,
                        "taken": JobStatus.QUEUED, "scheduled": JobStatus.SCHEDULED, "popped": JobStatus.QUEUED}
    everything = ("started", "failed", "waiting", "taken", "scheduled", "popped", "flushed")
    lost = RqDispatcher(redis_connection).lost(dict.fromkeys(everything, MAINTENANCE))
    assert lost == {"popped", "flushed"}


def test_a_route_job_a_dead_worker_popped_is_published_again_at_the_second_look_and_only_then(
        client, db, settings, redis_connection):
    tenant = make_tenant(db)
    request_id = submitted(client, tenant, "lowell-general")
    dispatcher = RqDispatcher(redis_connection)
    while relay.publish_due(db, dispatcher, batch=100).published:
        pass
    route = _route_of(db, request_id)
    assert route.state == "sent" and route.job_id
    queue = Queue(route.queue, connection=redis_connection, serializer=JSONSerializer)
    # Batch wide enough for every row other tests left owed in the shared database (they are looked at too).
    looks = LostRoutes(db, dispatcher, clock=Ticks(), lost_after=0, every=0, batch=100_000)

    looks.tick()  # still queued: held
    assert redis_connection.lrange(queue.key, 0, -1).count(route.job_id.encode()) == 1

    redis_connection.lrem(queue.key, 1, route.job_id)  # a multi-queue worker's BLPOP, then SIGKILL
    looks.tick()  # the first look that misses it only suspects it (a live worker may be about to start it)
    assert redis_connection.lpos(queue.key, route.job_id) is None
    counted = republished_count()
    published = looks.tick()  # the second publishes it again, at the front of its queue, under its own id
    assert redis_connection.lrange(queue.key, 0, -1).count(route.job_id.encode()) == 1
    # Counted for the relay's exporter: this job and whatever other tests left owed, each once.
    assert published >= 1 and republished_count() - counted == published
    job = Job.fetch(route.job_id, connection=redis_connection, serializer=JSONSerializer)
    assert job.args == [request_id, f"{route.queue}#{route.id}"] and job.get_status() == JobStatus.QUEUED
    looks.tick()
    looks.tick()  # held again: not published a second time
    assert redis_connection.lrange(queue.key, 0, -1).count(route.job_id.encode()) == 1
    assert republished_count() - counted == published

    # Only this test's job goes to the worker: the looks also published again the rows other tests left owed
    # (their jobs went with earlier flushes), and handing those over is not this test's business.
    redis_connection.delete(queue.key)
    redis_connection.rpush(queue.key, route.job_id)
    assert run_worker(settings, "lowell-general", timeout=120).returncode == 0
    with db.transaction() as session:
        from gateway.routing.models import JobEffect

        effects = session.scalars(select(JobEffect.step).where(JobEffect.request_id == request_id)).all()
    assert effects == [f"{route.queue}#{route.id}"]
    redis_connection.delete(queue.key)
    looks.tick()
    looks.tick()  # handed over: owed no more, whatever Redis has lost since
    assert redis_connection.lpos(queue.key, route.job_id) is None


def test_a_job_that_turns_up_between_two_looks_is_not_published_again(client, db):
    """A suspect found held at the second look (it was a live worker's, between BLPOP and "started") stays a
    single job."""
    request_id = submitted(client, make_tenant(db), "tufts-mc")
    while relay.publish_due(db, RecordingDispatcher(), batch=100).published:
        pass
    route = _route_of(db, request_id)
    broker = RecordingDispatcher()  # a broker that holds nothing yet
    looks = LostRoutes(db, broker, clock=Ticks(), lost_after=0, every=0, batch=100_000)
    looks.tick()
    assert route.id in looks._suspects and broker.jobs == []
    for outbox_id in looks._suspects:  # ...then every suspect turns up held
        broker.jobs.append(("q", "f", [], f"route-{outbox_id}", False))
    held = list(broker.jobs)
    looks.tick()
    assert broker.jobs == held and looks._suspects == set()


def _sent_days_ago(db, outbox_id: int, days: int) -> None:
    with db.transaction() as session:
        message = session.get(OutboxMessage, outbox_id)
        message.sent_at -= timedelta(days=days)


def test_a_route_lost_days_ago_is_published_again_too(client, db, redis_connection):
    """No time window: a job Redis lost while no relay was looking (all of them down for days, say) is found."""
    request_id = submitted(client, make_tenant(db), "melrosewakefield")
    dispatcher = RqDispatcher(redis_connection)
    while relay.publish_due(db, dispatcher, batch=100).published:
        pass
    route = _route_of(db, request_id)
    _sent_days_ago(db, route.id, 3)
    redis_connection.flushdb()  # Redis restarted without persistence
    looks = LostRoutes(db, dispatcher, clock=Ticks(), lost_after=0, every=0, batch=100_000)
    looks.tick()
    looks.tick()
    queue = Queue(route.queue, connection=redis_connection, serializer=JSONSerializer)
    assert redis_connection.lrange(queue.key, 0, -1).count(route.job_id.encode()) == 1
    assert Job.fetch(route.job_id, connection=redis_connection, serializer=JSONSerializer).args == \
        [request_id, f"{route.queue}#{route.id}"]


def test_a_look_settles_the_routes_handed_over_and_reads_only_the_rest(client, db):
    """Settling is what keeps a look's cost to what is in flight or owed: a route seen handed over gets
    `settled_at` and drops out of the partial index the looks read; one still owed stays."""
    from gateway.routing.models import JobEffect

    tenant = make_tenant(db)
    handed, owed = submitted(client, tenant, "tufts-mc"), submitted(client, tenant, "lowell-general")
    while relay.publish_due(db, RecordingDispatcher(), batch=100).published:
        pass
    handed_route, owed_route = _route_of(db, handed), _route_of(db, owed)
    with db.transaction() as session:
        session.add(JobEffect(request_id=handed, step=f"{handed_route.queue}#{handed_route.id}",
                              receipt={"sink": "inbox"}))
    looks = LostRoutes(db, RecordingDispatcher(), clock=Ticks(), lost_after=0, every=0, batch=100_000,
                       settle_batch=100_000)
    assert looks.settle() >= 1
    assert _route_of(db, handed).settled_at is not None
    assert _route_of(db, owed).settled_at is None
    assert looks.settle() == 0  # nothing new handed over: nothing to settle
    looks.tick()
    assert owed_route.id in looks._suspects and handed_route.id not in looks._suspects
    with db.transaction() as session:
        unsettled = set(session.scalars(select(OutboxMessage.id).where(UNSETTLED_ROUTE)))
    assert owed_route.id in unsettled and handed_route.id not in unsettled
