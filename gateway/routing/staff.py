"""The records-staff workflow: the facility queue, claiming, and status transitions with reasons.

    routed ──claim──▶ in_progress ──▶ fulfilled (needs a `release` document)
       │                 │  ▲  └─────▶ returned | denied (need reason codes)
       │                 ▼  │
       │               on_hold ──────▶ returned | denied
       └─(review queue)─▶ routed on the facility queue ("forward"), or returned | denied

A request in `legal-review` or `sensitive-review` is worked by the facility's
staff as reviewers; forwarding it writes a new outbox row for the facility
queue, so the hand-over is as reliable as the first routing.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.auth.principal import Principal
from gateway.auth.tenancy import visible_select
from gateway.errors import Conflict, FieldError, Forbidden, Unprocessable
from gateway.intake.models import Document, RecordsRequest
from gateway.intake.service import add_event, transition
from gateway.routing import outbox
from gateway.routing.decide import RoutingDecision
from gateway.routing.queues import LEGAL_REVIEW, SENSITIVE_REVIEW, facility_queue

REASONS = ("UNREADABLE", "INCOMPLETE", "PATIENT_NOT_FOUND", "NO_RECORDS_FOUND", "NEEDS_PHYSICIAN_APPROVAL",
           "AUTHORIZATION_INVALID", "OTHER")
TRANSITIONS = {  # from → the statuses staff may move it to
    "routed": ("in_progress", "returned", "denied", "routed"),
    "in_progress": ("on_hold", "fulfilled", "returned", "denied", "routed"),
    "on_hold": ("in_progress", "returned", "denied"),
}
NEEDS_REASONS = ("returned", "denied")
REVIEW_QUEUES = (LEGAL_REVIEW, SENSITIVE_REVIEW)


def require_staff_of(principal: Principal, facility: str) -> None:
    """Only records staff bound to this facility work its queue."""
    if not principal.has_role("facility_staff") or facility not in principal.facilities:
        raise Forbidden("Only records staff of this facility work its queue.")


def queue_page(session: Session, principal: Principal, facility: str, *, status: str | None, queue: str | None,
               limit: int, cursor: str | None, today: date):
    """The facility's routed work, oldest due date first; returns (items, next_cursor)."""
    from gateway.pagination import keyset_page

    require_staff_of(principal, facility)
    query = visible_select(principal, RecordsRequest).where(RecordsRequest.facility == facility)
    query = query.where(RecordsRequest.status == status) if status else query.where(
        RecordsRequest.status.in_(("routed", "in_progress", "on_hold")))
    if queue:
        query = query.where(RecordsRequest.routing_queue == (queue if queue in REVIEW_QUEUES
                                                             else facility_queue(facility)))
    items, next_cursor = keyset_page(session, query, columns=[RecordsRequest.due_on, RecordsRequest.id],
                                     limit=limit, cursor=cursor, descending=False)
    return [queue_item(r, today) for r in items], next_cursor


def queue_item(req: RecordsRequest, today: date) -> dict:
    """One line of the staff queue: what to work next, and whether it is late."""
    return {"id": req.id, "reference": req.reference, "status": req.status, "queue": req.routing_queue,
            "pathway": req.pathway, "purpose": req.purpose, "due_on": req.due_on, "routed_at": req.routed_at,
            "assigned_to": req.assigned_to, "documents": len(req.documents),
            "overdue": bool(req.due_on and req.due_on < today)}


def claim(session: Session, *, principal: Principal, req: RecordsRequest, audit_ctx: dict) -> None:
    """Take a routed request: it becomes in_progress, assigned to the caller."""
    require_staff_of(principal, req.facility)
    transition(session, req, "in_progress", actor=principal.audit_actor, allowed_from=("routed",),
               audit_ctx=audit_ctx, org_id=None, assigned_to=principal.audit_actor)
    req.assigned_to = principal.audit_actor


def change_status(session: Session, *, principal: Principal, req: RecordsRequest, to: str, reasons: list[str],
                  note: str | None, audit_ctx: dict) -> None:
    """Apply a staff transition, with reason codes where the status needs them."""
    require_staff_of(principal, req.facility)
    allowed = TRANSITIONS.get(req.status, ())
    if to not in allowed:
        raise Conflict(f"A {req.status} request cannot become {to}.", code="INVALID_TRANSITION")
    unknown = sorted(set(reasons) - set(REASONS))
    if unknown:
        raise Unprocessable("Unknown reason codes.",
                            errors=[FieldError("INVALID_FIELD", "reasons", ", ".join(unknown))])
    if to in NEEDS_REASONS and not reasons:
        raise Unprocessable(f"Say why the request is {to}: give at least one reason code.", code="REASONS_REQUIRED",
                            errors=[FieldError("REASONS_REQUIRED", "reasons", "at least one reason code")])
    if to == "fulfilled" and not _has_release(session, req):
        raise Conflict("Upload the released records (kind `release`) before fulfilling.", code="RELEASE_REQUIRED")
    if to == "routed":
        _forward_from_review(session, principal=principal, req=req, audit_ctx=audit_ctx)
        return
    transition(session, req, to, actor=principal.audit_actor, allowed_from=(req.status,), audit_ctx=audit_ctx,
               org_id=None, reasons=sorted(set(reasons)), note=note)
    if to == "in_progress":
        req.assigned_to = req.assigned_to or principal.audit_actor


def _forward_from_review(session: Session, *, principal: Principal, req: RecordsRequest, audit_ctx: dict) -> None:
    if req.routing_queue not in REVIEW_QUEUES:
        raise Conflict("Only requests in a review queue are forwarded.", code="INVALID_TRANSITION")
    target = facility_queue(req.facility)
    if req.status != "routed":  # a reviewer who claimed it hands it on unassigned
        transition(session, req, "routed", actor=principal.audit_actor, allowed_from=("in_progress",),
                   audit_ctx=audit_ctx, org_id=None)
        req.assigned_to = None
    add_event(session, req, "review_passed", principal.audit_actor, review=req.routing_queue, next_queue=target)
    outbox.add_routing(session, request_id=req.id,
                       decision=RoutingDecision(queue=target, at_front=False, final_queue=target))
    from gateway.audit.service import record

    record(session, actor=principal.audit_actor, action="request.review_passed", object_type="request",
           object_id=req.id, **audit_ctx)


def _has_release(session: Session, req: RecordsRequest) -> bool:
    return bool(session.scalar(select(func.count()).select_from(Document).where(
        Document.request_id == req.id, Document.kind == "release", Document.scan_status == "clean")))
