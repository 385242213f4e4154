"""The request resource: create, read, list, cancel, and its timeline.

Service functions take the session and the principal; every read goes through
the tenant guard, and every change writes its timeline event and its audit
entry in the same transaction, so neither can be lost without the other.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.audit.service import record, record_now
from gateway.auth.principal import Principal
from gateway.auth.tenancy import get_visible, visible_select
from gateway.db import Database, utcnow
from gateway.errors import Conflict, Forbidden
from gateway.intake import access  # noqa: F401  (registers the tenant rules)
from gateway.intake.models import CLOSED_STATUSES, RecordsRequest, RequestEvent
from gateway.intake.schemas import SECTIONS, RequestCreateSchema
from gateway.pagination import keyset_page

CANCELLABLE = ("draft", "submitted", "routed")
EDITABLE = ("draft", "returned")  # requesters may add documents while they can still fix the request
_BODY = RequestCreateSchema()


def duplicate_reference() -> Conflict:
    """The 409 for a reused open reference."""
    return Conflict("You already have an open request with this reference.", code="DUPLICATE_REFERENCE")


def create_request(session: Session, *, principal: Principal, body: dict, audit_ctx: dict) -> RecordsRequest:
    """Store a new draft from a validated create body."""
    if not principal.is_requester or not principal.org_id:
        raise Forbidden("Only requester organizations create requests.")
    if _open_reference_exists(session, principal.org_id, body["reference"]):
        raise duplicate_reference()
    stored = _BODY.dump(body)  # dates as ISO strings: what the JSON columns can hold
    req = RecordsRequest(
        org_id=principal.org_id, created_by=principal.audit_actor, reference=body["reference"],
        facility=body["facility"], pathway=body["pathway"], purpose=body["purpose"],
        public_benefit_claim=body["public_benefit_claim"], fee_waiver_requested=body["fee_waiver_requested"],
        instructions=body["instructions"], **{section: stored[section] for section in SECTIONS})
    try:
        with session.begin_nested():
            session.add(req)
            session.flush()
    except IntegrityError:  # a concurrent create won the race for this reference
        raise duplicate_reference() from None
    add_event(session, req, "created", principal.audit_actor)
    record(session, actor=principal.audit_actor, org_id=principal.org_id, action="request.create",
           object_type="request", object_id=req.id, **audit_ctx)
    return req


def _open_reference_exists(session: Session, org_id: str, reference: str) -> bool:
    return session.scalar(select(RecordsRequest.id).where(
        RecordsRequest.org_id == org_id, RecordsRequest.reference == reference,
        RecordsRequest.status.not_in(CLOSED_STATUSES)).limit(1)) is not None


def body_of(req: RecordsRequest) -> dict:
    """The request as the rules read it: the create body with real dates."""
    stored = {section: getattr(req, section) for section in SECTIONS}
    stored.update(reference=req.reference, facility=req.facility, pathway=req.pathway, purpose=req.purpose,
                  public_benefit_claim=req.public_benefit_claim, fee_waiver_requested=req.fee_waiver_requested,
                  instructions=req.instructions)
    return _BODY.load(stored)


def add_event(session: Session, req: RecordsRequest, type_: str, actor: str, **detail) -> RequestEvent:
    """Append to the request's timeline (status is the request's status after the event)."""
    event = RequestEvent(request_id=req.id, type=type_, status=req.status, actor=actor, detail=detail, at=utcnow())
    session.add(event)
    return event


def get_request(session: Session, principal: Principal, request_id: str, *, db: Database,
                audit_ctx: dict) -> RecordsRequest:
    """A request the principal may see, or NotFound (missing and foreign look alike)."""
    return get_visible(session, principal, RecordsRequest, request_id, db=db, audit_context=audit_ctx)


def audit_read(db: Database, principal: Principal, action: str, object_type: str, object_id: str | None,
               audit_ctx: dict) -> None:
    """Record a PHI read before the data leaves; raises AuditUnavailable (503) if it cannot."""
    record_now(db, actor=principal.audit_actor, org_id=principal.org_id, action=action,
               object_type=object_type, object_id=object_id, **audit_ctx)


def list_requests(session: Session, principal: Principal, *, status: str | None = None,
                  facility: str | None = None, reference: str | None = None,
                  created_after: datetime | None = None, limit: int = 25, cursor: str | None = None):
    """The principal's visible requests, newest first, filtered; returns (items, next_cursor)."""
    query = visible_select(principal, RecordsRequest)
    if status:
        query = query.where(RecordsRequest.status == status)
    if facility:
        query = query.where(RecordsRequest.facility == facility)
    if reference:
        query = query.where(RecordsRequest.reference == reference)
    if created_after:
        query = query.where(RecordsRequest.created_at > created_after)
    return keyset_page(session, query, columns=[RecordsRequest.created_at, RecordsRequest.id],
                       limit=limit, cursor=cursor)


def list_events(session: Session, principal: Principal, req: RecordsRequest, *, limit: int, cursor: str | None):
    """The request's timeline, oldest first."""
    query = visible_select(principal, RequestEvent).where(RequestEvent.request_id == req.id)
    return keyset_page(session, query, columns=[RequestEvent.id], limit=limit, cursor=cursor, descending=False)


def cancel_request(session: Session, *, principal: Principal, req: RecordsRequest, audit_ctx: dict) -> None:
    """Cancel from draft, submitted or routed; 409 from anything later."""
    if not principal.is_requester:
        raise Forbidden("Only the requesting organization cancels a request.")
    transition(session, req, "cancelled", actor=principal.audit_actor, allowed_from=CANCELLABLE,
               audit_ctx=audit_ctx, org_id=principal.org_id)


def transition(session: Session, req: RecordsRequest, to: str, *, actor: str, allowed_from, audit_ctx: dict,
               org_id: str | None, event_type: str = "status_changed", **detail) -> None:
    """Move a request to `to` if its current status allows it; timeline event and audit in this transaction."""
    if req.status not in allowed_from:
        raise Conflict(f"A {req.status} request cannot become {to}.", code="INVALID_TRANSITION")
    previous, req.status, req.updated_at = req.status, to, utcnow()
    add_event(session, req, event_type, actor, previous=previous, **detail)
    record(session, actor=actor, org_id=org_id, action=f"request.{to}", object_type="request", object_id=req.id,
           **audit_ctx)
    notify_status(session, req, previous, reasons=detail.get("reasons"))


def notify_status(session: Session, req: RecordsRequest, previous: str, *, reasons=None) -> None:
    """Tell the requester's systems (webhooks) about a status change, in the same transaction."""
    from gateway.webhooks.service import emit

    data = {"request_id": req.id, "status": req.status, "previous_status": previous,
            "occurred_at": req.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if reasons:
        data["reasons"] = list(reasons)
    emit(session, org_id=req.org_id, event_type="request.status_changed", data=data)


def ensure_editable(req: RecordsRequest) -> None:
    """Requesters change documents only while the request is a draft or was returned to them."""
    if req.status not in EDITABLE:
        raise Conflict(f"Documents cannot be added to a {req.status} request.", code="REQUEST_NOT_EDITABLE")


def merge_patch(target, patch):
    """RFC 7396 JSON merge patch: objects merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def stored_body(req: RecordsRequest) -> dict:
    """The request's create body in its JSON form (dates as ISO strings)."""
    return _BODY.dump(body_of(req))


def update_request(session: Session, *, principal: Principal, req: RecordsRequest, body: dict,
                   audit_ctx: dict) -> list[str]:
    """Replace a draft's or returned request's body with a validated new one; returns changed sections."""
    if not principal.is_requester:
        raise Forbidden("Only the requesting organization changes a request.")
    ensure_editable(req)
    if body["reference"] != req.reference and _open_reference_exists(session, req.org_id, body["reference"]):
        raise duplicate_reference()
    old, new = stored_body(req), _BODY.dump(body)
    changed = sorted(k for k in new if new[k] != old.get(k))
    for name in ("reference", "facility", "pathway", "purpose", "public_benefit_claim", "fee_waiver_requested",
                 "instructions", *SECTIONS):
        setattr(req, name, new[name] if name in SECTIONS else body[name])
    req.updated_at = utcnow()
    add_event(session, req, "updated", principal.audit_actor, fields=changed)
    record(session, actor=principal.audit_actor, org_id=principal.org_id, action="request.update",
           object_type="request", object_id=req.id, **audit_ctx)
    return changed


def mark_routed(session: Session, request_id: str, queue: str, *, now: datetime | None = None) -> RecordsRequest | None:
    """A queue now has the request: record where and when (first routing makes it `routed`)."""
    req = session.get(RecordsRequest, request_id)
    if req is None or req.status in CLOSED_STATUSES:
        return None  # cancelled meanwhile: the job will find it closed and do nothing
    previous = req.status
    req.routing_queue, req.routed_at, req.updated_at = queue, now or utcnow(), utcnow()
    if req.status == "submitted":
        req.status = "routed"
    add_event(session, req, "routed", "gateway", queue=queue, previous=previous)
    record(session, actor="gateway", org_id=req.org_id, action="request.routed", object_type="request",
           object_id=req.id)
    if req.status != previous:
        notify_status(session, req, previous)
    return req
