"""Submitting a request, and its way into the queues.

Submit runs every rule at once, on the locked row: a request with any
deficiency stays where it is and the requester gets all of them in one 422
REQUEST_DEFICIENT.  A clean request becomes `submitted` with its fee estimate
and due date fixed, and its route and an outbox row are written in the same
transaction (there is no `routed` until the relay has put it on a queue, see
`enter_queue`).  Because an edit takes the same lock, the body the rules
checked is exactly the body that is routed.

A returned request that is cured and resubmitted keeps its first
`submitted_at` and its due date, so it keeps its place in the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from gateway import outbox
from gateway.auth.models import Organization
from gateway.auth.principal import Principal
from gateway.clock import Clock
from gateway.db import Database, commit_then, utcnow
from gateway.errors import FieldError, Forbidden, Unprocessable
from gateway.intake import lifecycle, readings
from gateway.intake.assessment import assess_request
from gateway.intake.models import CLOSED_STATUSES, RecordsRequest
from gateway.intake.routing_policy import Route, route_for

T = TypeVar("T")
SUBMITTABLE = ("draft", "returned")
ALREADY_SUBMITTED = ("submitted", "routed")


class RequestDeficient(Unprocessable):
    code, title = "REQUEST_DEFICIENT", "Request cannot be released as it stands"


def submit(db: Database, *, principal: Principal, request_id: str, clock: Clock, audit_ctx: dict,
           if_match: str | None = None, reading_wait: float = 0.0,
           present: Callable[[Session, RecordsRequest], T] | None = None) -> Route | T | None:
    """Submit a draft (or a returned request, cured); None when it was already submitted (no change).

    A signed form still being read is waited for, at most `reading_wait` seconds and without the lock (the
    reading job needs it to record its outcome); then the rules judge what is known.
    `present`, when given, is called with the submitted request right after the commit (in the same session,
    without the lock) and what it returns is returned instead of the route.
    """
    if not principal.is_requester:
        raise Forbidden("Only the requesting organization submits a request.")
    arguments = {"principal": principal, "request_id": request_id, "clock": clock, "audit_ctx": audit_ctx,
                 "if_match": if_match, "present": present}
    if reading_wait <= 0:
        return _submit(db, **arguments, await_readings=False)
    try:  # the locked row shows whether a reading is pending: no read of its own in the usual case
        return _submit(db, **arguments, await_readings=True)
    except _ReadingPending:  # rolled back untouched; wait with the lock released, then judge what is known
        readings.wait_for_readings(db, request_id, timeout=reading_wait)
        return _submit(db, **arguments, await_readings=False)


class _ReadingPending(Exception):
    """Raised inside the locked transaction (rolling it back) when a signed form is still being read."""


def _submit(db: Database, *, principal: Principal, request_id: str, clock: Clock, audit_ctx: dict,
            if_match: str | None, present, await_readings: bool):
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        if req.status in ALREADY_SUBMITTED:
            return None
        if await_readings and any(d.reading_status == readings.PENDING for d in req.documents):
            raise _ReadingPending()
        lifecycle.allowed(req, "submitted")
        today = clock.today()
        org = session.get(Organization, req.org_id)  # held here: the assessment and the route both need it
        assessment = assess_request(session, req, on=today, submitted_on=today, org=org)
        if assessment.deficiencies:
            raise RequestDeficient(
                f"The request has {len(assessment.deficiencies)} problem(s) a records team would send back; "
                "see errors.", errors=[FieldError(**d) for d in assessment.deficiencies])
        route = route_for(req, org.kind)
        cured = req.submitted_at is not None
        if not cured:  # a cured request keeps its first submission, its due date and its place in the queue
            req.submitted_at, req.due_on = utcnow(), assessment.due_on
            basis = assessment.due_basis
            req.due_basis, req.due_rule = (basis.basis, basis.rule) if basis else (None, None)
        req.fee_estimate, req.deficiencies = assessment.fee_estimate, []
        req.routing_queue = None
        lifecycle.move(session, req, "submitted", actor=principal.audit_actor, audit_ctx=audit_ctx,
                       org_id=principal.org_id, due_on=str(req.due_on), resubmitted=cured or None)
        lifecycle.add_event(session, req, "routing_decided", "gateway", queue=route.first, path=list(route.path),
                            at_front=route.at_front)
        outbox.add_route(session, request_id=req.id, queue=route.first, at_front=route.at_front)
        return route if present is None else commit_then(session, present, req)


def enter_queue(session: Session, req: RecordsRequest | None, queue: str) -> RecordsRequest | None:
    """A queue now has the request (called by the relay on the locked row): a submitted request becomes routed.

    A request closed or held meanwhile stays as it is; the job finds it so and does nothing.
    """
    if req is None or req.status in CLOSED_STATUSES or req.status == "on_hold":
        return None
    if req.status not in ("submitted", "routed"):
        return None  # claimed already (a quick clerk), or back with the requester: nothing to record
    req.routing_queue, req.routed_at = queue, utcnow()
    if req.status == "submitted":
        lifecycle.move(session, req, "routed", actor="gateway", audit_ctx={}, queue=queue)
    else:
        lifecycle.touch(req)
    lifecycle.add_event(session, req, "routed", "gateway", queue=queue)
    lifecycle.audit_change(session, req, "request.queue_entered", actor="gateway", audit_ctx={})
    return req
