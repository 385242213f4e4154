"""RQ jobs of routing: plain functions of ids, safe to run twice.

`deliver_routed(request_id, step)` hands a routed request to its facility's
sink.  The effect is recorded as a JobEffect row unique on (request, step), in
the same transaction as the timeline event: a second delivery of the same job
(a relay re-publish, an RQ retry after a crash) finds the row and does nothing.
A worker killed after the sink acted but before the commit makes the retry act
again; sinks are idempotent for exactly that case (the webhook carries an
Idempotency-Key, the folder drop compares what is already there).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway import metrics
from gateway.clock import Clock
from gateway.crypto import unseal
from gateway.db import Database, utcnow
from gateway.intake.assessment import resource
from gateway.intake.lifecycle import AUTH_REVOKED, add_event
from gateway.intake.models import CLOSED_STATUSES, RecordsRequest
from gateway.intake.routing_policy import REVIEW_QUEUES
from gateway.intake.schemas import RequestSchema
from gateway.routing.dispatch import give_up_current_job
from gateway.routing.models import FacilitySink, JobEffect
from gateway.routing.sinks import Handoff, HandoffDocument, SinkRejected, sink_from_config
from gateway.settings import Settings
from gateway.webhooks.sender import Sender

log = logging.getLogger("gateway.routing.jobs")
SINK_SECRET_PURPOSE = "facility-sink"


def deliver_routed(request_id: str, step: str) -> dict:
    """RQ entry point: hand the request over on the worker's runtime (engine, S3 client, sender built once
    per worker process, not per job: rebuilding them was most of a hand-over's cost)."""
    from gateway.runtime import runtime

    rt = runtime()
    try:
        return hand_over(rt.db, rt.store, rt.settings, clock=rt.clock, request_id=request_id, step=step,
                         sender=rt.sender)
    except SinkRejected:
        # The sender's verdict was "give up" (the facility system refused it): retrying cannot help, so the
        # job lands in the failed registry now, for an operator to requeue once the cause is fixed.
        give_up_current_job()
        raise


def noop(request_id: str, step: str) -> dict:
    """A job that does nothing on the runtime: the floor `bench/handoff.py` sets a hand-over beside."""
    from gateway.runtime import runtime

    runtime()
    return {"noop": True}


def sink_for(session, facility: str, store, settings: Settings, sender: Sender | None = None):
    """The configured sink of a facility (the staff inbox when none is configured)."""
    config = session.get(FacilitySink, facility)
    if config is None:
        return sink_from_config("inbox", url=None, secret=None, folder=None, open_document=store.open)
    secret = unseal(settings.secret_key, config.secret_sealed, purpose=SINK_SECRET_PURPOSE) \
        if config.secret_sealed else None
    return sink_from_config(config.kind, url=config.url, secret=secret, folder=config.folder,
                            open_document=store.open, sender=sender or Sender.from_settings(settings))


def handoff_of(session, req: RecordsRequest, queue: str, *, clock: Clock, with_resource: bool = True) -> Handoff:
    """What the sink receives: ids, clean documents, and the request resource (for file pickups only: rendering
    it evaluates every rule, which the inbox and webhook sinks, sending ids, do not need)."""
    documents = tuple(HandoffDocument(d.id, d.kind, d.filename, d.content_type, d.size, d.sha256, d.storage_key)
                      for d in req.documents if d.scan_status == "clean" and d.kind != "release")
    return Handoff(request_id=req.id, facility=req.facility, queue=queue, status=req.status,
                   due_on=req.due_on.isoformat() if req.due_on else None, documents=documents,
                   resource=RequestSchema().dump(resource(session, req, on=clock.today(), viewer=None))
                   if with_resource else {})


def hand_over(db: Database, store, settings: Settings, *, clock: Clock, request_id: str, step: str,
              sender: Sender | None = None) -> dict:
    """Deliver once: skip a step already done or a request closed meanwhile; a sink failure raises (retry).

    A sink that does I/O (webhook, folder) is called outside any transaction, so a slow facility system
    never holds the database; its effect is recorded in a second transaction.  Where nothing leaves the
    process (the inbox, a review queue, a skip), the effect is recorded in the same transaction as the
    checks: one transaction per hand-over.  It is a write transaction (BEGIN IMMEDIATE on SQLite), so the
    read-then-write cannot fail on a snapshot another writer moved.
    """
    queue = step.rsplit("#", 1)[0]
    try:
        with db.write_transaction() as session:
            if session.scalar(select(JobEffect.id).where(JobEffect.request_id == request_id,
                                                         JobEffect.step == step)) is not None:
                return {"duplicate": True}
            req = session.get(RecordsRequest, request_id)
            sink = handoff = None
            if req is None or req.status in CLOSED_STATUSES:
                receipt = {"skipped": req.status if req else "missing"}
            elif req.hold_reason == AUTH_REVOKED:  # the patient revoked the authorization: nothing goes out
                receipt = {"skipped": "revoked"}
            elif queue in REVIEW_QUEUES:
                receipt = {"sink": "review"}  # reviewers work it through the staff API
            else:
                sink = sink_for(session, req.facility, store, settings, sender)
                handoff = handoff_of(session, req, queue, clock=clock,
                                     with_resource=getattr(sink, "needs_resource", True))
                receipt = None
            if sink is None or not getattr(sink, "does_io", True):
                receipt = receipt if sink is None else sink.deliver(handoff)
                _record(session, req, step=step, queue=queue, receipt=receipt, request_id=request_id)
                return receipt
    except IntegrityError:  # a concurrent delivery of the same step recorded it first
        return {"duplicate": True}
    receipt = sink.deliver(handoff)
    try:
        with db.transaction() as session:
            _record(session, session.get(RecordsRequest, request_id), step=step, queue=queue, receipt=receipt,
                    request_id=request_id)
    except IntegrityError:
        return {"duplicate": True}
    return receipt


def _record(session, req: RecordsRequest | None, *, request_id: str, step: str, queue: str, receipt: dict) -> None:
    """The step's effect (unique per request and step) and, for a real hand-over, the timeline event."""
    session.add(JobEffect(request_id=request_id, step=step, receipt=receipt))
    session.flush()
    if req is not None and "skipped" not in receipt:
        add_event(session, req, "handed_over", "worker", queue=queue, **receipt)
        metrics.observe_handover(queue, req.submitted_at, utcnow())
