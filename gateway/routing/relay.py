"""The outbox relay: publishes due outbox rows and marks them sent (`gateway outbox relay`).

Route rows become RQ jobs on their queue; notify rows become webhook
deliveries (one per subscribed webhook) and notification e-mails (one per
portal user of the organization who wants them, see gateway.mail.service).  It tolerates Redis being down (route
rows go back with a growing delay and wait; notifications still go out) and
running twice at once (claims are exclusive).  Marking a route row sent and
recording the request's entry into the queue happen in one transaction, under
the request's lock.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from gateway import outbox
from gateway.db import Database
from gateway.intake.lifecycle import locked_for_system
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
                max_backoff: float = 60.0) -> PublishResult:
    """Publish one batch of due rows; on a broker outage the rest of the batch waits."""
    result = PublishResult()
    claimed = outbox.claim(db, relay=relay or relay_name(), limit=batch)
    for index, message in enumerate(claimed):
        if message.kind == outbox.NOTIFY:
            fan_out(db, message)
            result.notified += 1
            continue
        job_id = f"route-{message.id}"
        try:
            dispatcher.enqueue(message.queue, ROUTE_JOB, [message.request_id, message.step], job_id=job_id,
                               at_front=message.at_front)
        except DispatchUnavailable as error:
            waiting = [m.id for m in claimed[index:] if m.kind == outbox.ROUTE]
            outbox.release(db, waiting, error=str(error), max_backoff=max_backoff)
            for later in claimed[index:]:  # notifications need no broker: they go out now
                if later.kind == outbox.NOTIFY:
                    fan_out(db, later)
                    result.notified += 1
            result.deferred += len(waiting)
            log.warning("queue broker unavailable; outbox rows wait", extra={"rows": len(waiting)})
            return result
        # Marking the row sent and the request's entry into the queue are one change, under the request's lock.
        with locked_for_system(db, message.request_id) as (session, req):
            outbox.mark_sent(session, message.id, job_id=job_id)
            enter_queue(session, req, message.queue)
        result.published += 1
    return result


def fan_out(db: Database, message: outbox.Claimed) -> None:
    """A notify row becomes one webhook delivery per subscribed webhook and one e-mail per portal user who
    wants it, once each (the row's id is the event's), in one transaction with marking the row sent."""
    from gateway.mail.service import MAIL_EVENTS, queue_for_event
    from gateway.webhooks.service import emit

    payload = message.payload or {}
    event_id, event_type, data = f"evt-{message.id}", payload["type"], payload.get("data") or {}
    with db.transaction() as session:
        emit(session, org_id=payload["org_id"], event_type=event_type, data=data, event_id=event_id)
        label = request_label(session, message.request_id) if event_type in MAIL_EVENTS else None
        if label is not None:
            queue_for_event(session, event_id=event_id, event_type=event_type, org_id=payload["org_id"],
                            request_id=message.request_id, data=data, label=label, actor=payload.get("actor"))
        outbox.mark_sent(session, message.id, job_id=None)


def request_label(session, request_id: str):
    """How e-mails name a request: its reference and its facility's name (no patient data)."""
    from gateway.facilities.service import get_facility
    from gateway.intake.models import RecordsRequest
    from gateway.mail.service import RequestLabel

    req = session.get(RecordsRequest, request_id)
    if req is None:
        return None
    facility = get_facility(session, req.facility)
    return RequestLabel(reference=req.reference, facility=facility.name if facility else req.facility)


def run(db: Database, dispatcher: Dispatcher, *, stop: threading.Event, batch: int = 100, idle: float = 0.1,
        max_backoff: float = 60.0, on_idle=None) -> None:
    """Relay until `stop` is set; `on_idle` runs housekeeping between passes."""
    name = relay_name()
    while not stop.is_set():
        try:
            result = publish_due(db, dispatcher, relay=name, batch=batch, max_backoff=max_backoff)
        except Exception as error:  # a database hiccup must not kill the relay; it tries again
            log.error("relay pass failed", extra={"exception_type": type(error).__name__})
            result = PublishResult()
            stop.wait(min(max_backoff, 5.0))
        if on_idle is not None:
            on_idle()
        if result.done < batch:
            stop.wait(idle)
    log.info("relay stopped")


def wait_for_drain(db: Database, timeout: float) -> bool:
    """True once no outbox row is waiting (tests and the benchmark use it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if outbox.pending_count(db) == 0:
            return True
        time.sleep(0.05)
    return False
