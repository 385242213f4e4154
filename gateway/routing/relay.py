"""The outbox relay: publishes due outbox rows and marks them sent (`gateway outbox relay`).

Route rows become RQ jobs on their queue; notify rows become webhook
deliveries (one per subscribed webhook) and notification e-mails (one per
portal user of the organization who wants them, see gateway.mail.service).  It tolerates Redis being down (route
rows go back with a growing delay and wait; notifications still go out) and
running twice at once (claims are exclusive).  A pass enqueues its route rows,
then marks them all sent and records each request's entry into its queue in
one transaction, under the requests' locks (taken in id order).

Woken on commit: on PostgreSQL the relay LISTENs on `outbox.CHANNEL` and the
transaction that writes a route row NOTIFYs it (`outbox.wake_relays`), so
a submit is picked up within milliseconds of its commit (notify rows wake
nobody: the poll finds them).  The short poll
(`GATEWAY_OUTBOX_POLL_INTERVAL`) stays: it is what finds rows due later
(backoff, expired leases), what SQLite relies on, and the fallback while the
listening connection is down (it is reopened on the next wait).  `gateway
outbox relay` fans out notifications, and runs its housekeeping, in a
companion thread of the relay (polling), so the woken passes only claim,
enqueue and mark route rows.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.exc import DBAPIError

from gateway import outbox
from gateway.db import Database
from gateway.intake.lifecycle import lock_many
from gateway.intake.submission import enter_queue
from gateway.routing.dispatch import Dispatcher, DispatchUnavailable

log = logging.getLogger("gateway.routing.relay")

ROUTE_JOB = "gateway.routing.jobs.deliver_routed"


@dataclass
class PublishResult:
    """What one pass of the relay did."""

    published: int = 0  # queue jobs enqueued
    deferred: int = 0  # queue jobs waiting for the broker
    notified: int = 0  # webhook events fanned out

    @property
    def done(self) -> int:
        """Rows this pass settled (jobs enqueued and events fanned out)."""
        return self.published + self.notified


def relay_name() -> str:
    """Identifies this relay process in claims (host and pid)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 10000}"


def publish_due(db: Database, dispatcher: Dispatcher, *, relay: str | None = None, batch: int = 100,
                max_backoff: float = 60.0, lease: float | None = None,
                kinds: tuple[str, ...] | None = None) -> PublishResult:
    """Publish one batch of due rows; on a broker outage the rest of the batch waits.

    Work first: the pass enqueues its route rows and marks them (one transaction) before it fans out
    the notifications (one more), so a hand-over never waits behind e-mail and webhook bookkeeping."""
    result = PublishResult()
    claimed = outbox.claim(db, relay=relay or relay_name(), limit=batch, kinds=kinds,
                           lease=outbox.LEASE if lease is None else timedelta(seconds=lease))
    routes = [m for m in claimed if m.kind == outbox.ROUTE]
    published: list[tuple[outbox.Claimed, str]] = []
    try:
        _enqueue(db, dispatcher, routes, published, result, max_backoff)
    finally:
        mark_published(db, published)  # also when the broker went away mid-pass: what was enqueued is sent
    notifications = [m for m in claimed if m.kind == outbox.NOTIFY]
    fan_out_all(db, notifications)  # notifications need no broker: they go out during an outage too
    result.notified += len(notifications)
    return result


def _enqueue(db: Database, dispatcher: Dispatcher, routes: list[outbox.Claimed],
             published: list[tuple[outbox.Claimed, str]], result: PublishResult, max_backoff: float) -> None:
    for index, message in enumerate(routes):
        job_id = f"route-{message.id}"
        try:
            dispatcher.enqueue(message.queue, ROUTE_JOB, [message.request_id, message.step], job_id=job_id,
                               at_front=message.at_front)
        except DispatchUnavailable as error:
            waiting = [m.id for m in routes[index:]]
            outbox.release(db, waiting, error=str(error), max_backoff=max_backoff)
            result.deferred += len(waiting)
            log.warning("queue broker unavailable; outbox rows wait", extra={"rows": len(waiting)})
            return
        published.append((message, job_id))
        result.published += 1


def mark_published(db: Database, published: list[tuple[outbox.Claimed, str]]) -> None:
    """Rows enqueued in this pass: sent, and each request entered its queue, in one transaction.

    The requests are locked in id order, so two relays (or a relay and a clerk, who lock one request)
    cannot deadlock.  If this transaction fails, the rows stay claimed until their lease runs out and are
    published again; consumers deduplicate on the step."""
    if not published:
        return
    try:
        _mark(db, published)
    except DBAPIError as error:
        # Already enqueued: marking again beats waiting out the lease and publishing everything twice.  A
        # deadlock or a dropped connection is what this meets; a second failure propagates (lease applies).
        log.warning("marking published rows failed; once more", extra={"exception_type": type(error).__name__})
        _mark(db, published)


def _mark(db: Database, published: list[tuple[outbox.Claimed, str]]) -> None:
    with db.write_transaction() as session:
        locked = lock_many(session, (message.request_id for message, _ in published))
        outbox.mark_all_sent(session, {message.id: job_id for message, job_id in published})
        for message, _job_id in published:
            enter_queue(session, locked.get(message.request_id), message.queue)


def fan_out_all(db: Database, messages: list[outbox.Claimed]) -> None:
    """The pass's notify rows fanned out and marked in one transaction; should that fail, one transaction
    each, so that one bad row cannot hold the others back."""
    if not messages:
        return
    try:
        with db.transaction() as session:
            fan_out_batch(session, messages)
        return
    except Exception as error:
        if len(messages) == 1:
            raise
        log.warning("fan-out batch failed; one by one", extra={"exception_type": type(error).__name__})
    for message in messages:
        fan_out(db, message)


def fan_out(db: Database, message: outbox.Claimed) -> None:
    """A notify row becomes one webhook delivery per subscribed webhook and one e-mail per portal user who
    wants it, once each (the row's id is the event's), in one transaction with marking the row sent."""
    with db.transaction() as session:
        fan_out_batch(session, [message])


class _Audience:
    """What a batch of events reads once per organization and request rather than once per event: the
    subscribed webhooks, the users who want e-mail, how e-mails name a request."""

    def __init__(self, session):
        self.session = session
        self._webhooks: dict[str, list] = {}
        self._users: dict[str, list] = {}
        self._labels: dict[str, object] = {}

    def webhooks(self, org_id: str) -> list:
        from gateway.webhooks.service import active_webhooks

        if org_id not in self._webhooks:
            self._webhooks[org_id] = active_webhooks(self.session, org_id)
        return self._webhooks[org_id]

    def users(self, org_id: str) -> list:
        from gateway.mail.service import subscribers

        if org_id not in self._users:
            self._users[org_id] = subscribers(self.session, org_id)
        return self._users[org_id]

    def label(self, request_id: str):
        if request_id not in self._labels:
            self._labels[request_id] = request_label(self.session, request_id)
        return self._labels[request_id]


def fan_out_batch(session, messages: list[outbox.Claimed]) -> None:
    """Fan out notify rows in the caller's transaction and mark them sent (one statement for the lot).

    Everything the batch reads is read before its first write: on SQLite the write lock is taken at the first
    write and every other writer waits from then to the commit, so only the inserts and the marking fall
    inside it."""
    from gateway.mail.service import mailed_events, queue_for_event, wants_mail
    from gateway.webhooks.service import delivered_events, emit

    audience = _Audience(session)
    events = [(message, message.payload or {}, f"evt-{message.id}") for message in messages]
    for message, payload, _event_id in events:  # the audience of every event, read once per organization
        data = payload.get("data") or {}
        audience.webhooks(payload["org_id"])
        if wants_mail(payload["type"], data) and audience.users(payload["org_id"]):
            audience.label(message.request_id)
    event_ids = [event_id for _message, _payload, event_id in events]
    delivered, mailed = delivered_events(session, event_ids), mailed_events(session, event_ids)
    for message, payload, event_id in events:
        org_id, event_type, data = payload["org_id"], payload["type"], payload.get("data") or {}
        emit(session, org_id=org_id, event_type=event_type, data=data, event_id=event_id,
             webhooks=audience.webhooks(org_id), already=delivered.get(event_id, set()))
        if not wants_mail(event_type, data) or not audience.users(org_id):
            continue
        label = audience.label(message.request_id)
        if label is not None:
            queue_for_event(session, event_id=event_id, event_type=event_type, org_id=org_id,
                            request_id=message.request_id, data=data, label=label, actor=payload.get("actor"),
                            users=audience.users(org_id), already=mailed.get(event_id, set()))
    outbox.mark_all_sent(session, {message.id: None for message in messages})


def request_label(session, request_id: str):
    """How e-mails name a request: its reference and its facility's name (no patient data).

    One query for the three columns: loading the request row would bring its patient sections along."""
    from gateway.mail.service import RequestLabel

    row = session.execute(_label_statement(), {"request_id": request_id}).one_or_none()
    if row is None:
        return None
    reference, code, name = row
    return RequestLabel(reference=reference, facility=name or code)


@functools.lru_cache(maxsize=1)
def _label_statement():
    """Built once, on first use: the fan-out asks for every request it mails about."""
    from sqlalchemy import bindparam, select

    from gateway.facilities.models import Facility
    from gateway.intake.models import RecordsRequest

    return (select(RecordsRequest.reference, RecordsRequest.facility, Facility.name)
            .outerjoin(Facility, Facility.code == RecordsRequest.facility)
            .where(RecordsRequest.id == bindparam("request_id")))


class Waker:
    """How the relay waits between passes: the poll interval, cut short by a NOTIFY on PostgreSQL.

    The LISTEN connection is psycopg's own (autocommit, outside SQLAlchemy's pool: it sits idle for as
    long as the relay runs).  If it breaks, the relay polls and opens it again on a later wait.
    """

    RETRY_LISTEN = 5.0  # seconds between attempts to reopen a broken listening connection
    STOP_CHECK = 0.5  # a long wait looks at the stop event this often

    def __init__(self, db: Database, *, listen: bool = True):
        self.conninfo = None
        if listen and not db.is_sqlite:
            from sqlalchemy.engine import make_url

            self.conninfo = make_url(db.url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection = None
        self._retry_at = 0.0

    @property
    def listening(self) -> bool:
        return self._connection is not None

    def _listen(self) -> None:
        if self.conninfo is None or self._connection is not None or time.monotonic() < self._retry_at:
            return
        import psycopg

        try:
            self._connection = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
            self._connection.execute(f"LISTEN {outbox.CHANNEL}")
        except psycopg.Error as error:
            log.warning("relay cannot LISTEN; polling", extra={"exception_type": type(error).__name__})
            self.close()
            self._retry_at = time.monotonic() + self.RETRY_LISTEN

    def wait(self, stop: threading.Event, timeout: float) -> None:
        """Return after `timeout` seconds, when a commit notifies, or when `stop` is set."""
        self._listen()
        if self._connection is None:
            stop.wait(timeout)
            return
        import psycopg

        deadline = time.monotonic() + timeout
        try:
            woken = False
            while not woken and not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                for _ in self._connection.notifies(timeout=min(left, self.STOP_CHECK), stop_after=1):
                    woken = True
            if woken:  # fold the notifications that came meanwhile into this wake-up
                for _ in self._connection.notifies(timeout=0.0):
                    pass
        except psycopg.Error as error:
            log.warning("relay lost its LISTEN connection; polling", extra={"exception_type": type(error).__name__})
            self.close()
            self._retry_at = time.monotonic() + self.RETRY_LISTEN

    def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None


def run(db: Database, dispatcher: Dispatcher, *, stop: threading.Event, batch: int = 100, idle: float = 0.1,
        max_backoff: float = 60.0, on_idle=None, listen: bool = True, lease: float | None = None,
        notifications_apart: bool = False) -> None:
    """Relay until `stop` is set; `on_idle` runs housekeeping between passes.

    Between passes it waits up to `idle` seconds, less when a commit NOTIFYs it (PostgreSQL, `listen`).
    `notifications_apart` (what `gateway outbox relay` does) fans out notify rows in a thread of their own,
    polling, and `on_idle` runs there too, so that a pass woken by a submit only claims, enqueues and marks
    route rows: hand-overs never wait behind webhook and e-mail bookkeeping or housekeeping."""
    name = relay_name()
    waker = Waker(db, listen=listen)
    kinds = (outbox.ROUTE,) if notifications_apart else None
    companion = None
    if notifications_apart:
        companion = threading.Thread(target=_run, name="relay-notifications", daemon=True, args=(
            db, dispatcher, Waker(db, listen=False), f"{name}n"), kwargs={
            "stop": stop, "batch": batch, "idle": idle, "max_backoff": max_backoff, "on_idle": on_idle,
            "lease": lease, "kinds": (outbox.NOTIFY,)})
        companion.start()
        on_idle = None  # the companion's to run
    try:
        _run(db, dispatcher, waker, name, stop=stop, batch=batch, idle=idle, max_backoff=max_backoff,
             on_idle=on_idle, lease=lease, kinds=kinds)
    finally:
        waker.close()
        if companion is not None:
            stop.set()  # the companion ends with this loop, however it ended
            companion.join(timeout=30)
    log.info("relay stopped")


def _run(db, dispatcher, waker: Waker, name: str, *, stop, batch, idle, max_backoff, on_idle, lease,
         kinds=None) -> None:
    while not stop.is_set():
        try:
            result = publish_due(db, dispatcher, relay=name, batch=batch, max_backoff=max_backoff, lease=lease,
                                 kinds=kinds)
        except Exception as error:  # a database hiccup must not kill the relay; it tries again
            log.error("relay pass failed", extra={"exception_type": type(error).__name__})
            result = PublishResult()
            stop.wait(min(max_backoff, 5.0))
        if on_idle is not None:
            on_idle()
        if result.done < batch:
            waker.wait(stop, idle)


def wait_for_drain(db: Database, timeout: float) -> bool:
    """True once no outbox row is waiting (tests and the benchmark use it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if outbox.pending_count(db) == 0:
            return True
        time.sleep(0.05)
    return False
