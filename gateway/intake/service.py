"""The request resource: create, read, list, edit, cancel, and its timeline.

Service functions own their transactions: the ones that change a request take
the database and run inside the lifecycle's row lock (`lifecycle.locked_request`),
so an edit, a submit, a claim and a cancel of one request never interleave.
Every read goes through the tenant guard, and every change writes its timeline
event and its audit entry in the same transaction, so neither can be lost
without the other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import TypeVar

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from gateway.audit.service import record, record_many, record_now
from gateway.auth.principal import Principal
from gateway.auth.tenancy import get_visible, visible_select
from gateway.db import Database, commit_then, new_id
from gateway.errors import BadRequest, Conflict, Forbidden, Unprocessable, flatten_messages
from gateway.intake import (
    access,  # noqa: F401  (registers the tenant rules)
    caseload,
    lifecycle,
)
from gateway.intake.models import OPEN_REQUEST, RecordsRequest, RequestEvent
from gateway.intake.schemas import SECTIONS, RequestCreateSchema, RequestGroupCreateSchema
from gateway.pagination import keyset_page

CANCELLABLE = ("draft", "submitted", "routed", "returned")
EDITABLE = ("draft", "returned")  # requesters change a request only while it is theirs to fix
# Fixed once a request has been submitted: a different facility or legal basis is a new request.
LOCKED_AFTER_SUBMIT = ("facility", "pathway")
T = TypeVar("T")
_BODY = RequestCreateSchema()
_GROUP_BODY = RequestGroupCreateSchema()


def duplicate_reference() -> Conflict:
    """The 409 for a reused open reference."""
    return Conflict("You already have an open request with this reference.", code="DUPLICATE_REFERENCE")


def load_create_body(data, *, schema=_BODY) -> dict:
    """Validate a create body (JSON already decoded); 422 with one error per field."""
    if not isinstance(data, dict):
        raise BadRequest("The body must be a JSON object.", code="BODY_NOT_JSON")
    try:
        return schema.load(data)
    except ValidationError as error:
        raise Unprocessable("The request body has invalid fields; see errors.",
                            errors=flatten_messages(error.messages)) from None


def load_group_body(data) -> dict:
    """Validate a create body naming several `facilities` instead of one `facility`; 422 per field."""
    return load_create_body(data, schema=_GROUP_BODY)


def create_request(db: Database, *, principal: Principal, body: dict, audit_ctx: dict,
                   present: Callable[[Session, RecordsRequest], T] | None = None) -> str | T:
    """Store a new draft from a validated create body; returns its id, or what `present` makes of it (called
    with the new draft right after the commit, in the same session: no second read of the row)."""
    require_requester(principal)
    with db.transaction() as session:
        req = add_request(session, principal=principal, body=body, audit_ctx=audit_ctx)
        return req.id if present is None else commit_then(session, present, req)


def require_requester(principal: Principal) -> None:
    """403 unless the principal acts for a requester organization (only they create requests)."""
    if not principal.is_requester or not principal.org_id:
        raise Forbidden("Only requester organizations create requests.")


def create_requests(session: Session, *, principal: Principal, bodies: list[dict], audit_ctx: dict) -> list[str | None]:
    """Add many validated create bodies as drafts inside the caller's transaction, each exactly as
    `create_request` adds one (the same row, timeline event and audit entry), in a few statements for all.

    Returns each body's new id, or None where its reference is already taken at its facility by an open
    request or by an earlier body of the list (DUPLICATE_REFERENCE).  Should a concurrent create take one of
    the references meanwhile, the bodies are added one at a time instead, each under its own savepoint.
    """
    require_requester(principal)
    wanted = {body["reference"] for body in bodies}
    taken = {tuple(row) for row in session.execute(select(RecordsRequest.reference, RecordsRequest.facility).where(
        RecordsRequest.org_id == principal.org_id, RecordsRequest.reference.in_(wanted),
        OPEN_REQUEST))} if wanted else set()
    made: list[RecordsRequest | None] = []
    for body in bodies:
        key = (body["reference"], body["facility"])
        fresh = key not in taken
        taken.add(key)
        made.append(_new_request(principal, body) if fresh else None)
    added = [req for req in made if req is not None]
    try:
        with session.begin_nested():
            session.add_all(added)
            session.flush()
    except IntegrityError:  # a concurrent create won the race for one of these references
        return [_add_or_none(session, principal, body, audit_ctx) if req is not None else None
                for body, req in zip(bodies, made, strict=True)]
    for req in added:
        lifecycle.add_event(session, req, "created", principal.audit_actor)
    record_many(session, [{"actor": principal.audit_actor, "org_id": principal.org_id, "action": "request.create",
                           "object_type": "request", "object_id": req.id, **audit_ctx} for req in added])
    return [req.id if req is not None else None for req in made]


def _add_or_none(session: Session, principal: Principal, body: dict, audit_ctx: dict) -> str | None:
    try:
        return add_request(session, principal=principal, body=body, audit_ctx=audit_ctx).id
    except Conflict:
        return None


def _new_request(principal: Principal, body: dict, group_id: str | None = None) -> RecordsRequest:
    """The draft row of a validated create body (not yet added to a session)."""
    stored = _BODY.dump(body)  # dates as ISO strings: what the JSON columns can hold
    return RecordsRequest(
        # documents=[]: a new draft has none, and saying so spares a query when it is presented.
        id=new_id(), documents=[], org_id=principal.org_id, created_by=principal.audit_actor,
        reference=body["reference"],
        group_id=group_id, facility=body["facility"], pathway=body["pathway"], purpose=body["purpose"], version=1,
        public_benefit_claim=body["public_benefit_claim"], fee_waiver_requested=body["fee_waiver_requested"],
        instructions=body["instructions"], **{section: stored[section] for section in SECTIONS})


def add_request(session: Session, *, principal: Principal, body: dict, audit_ctx: dict,
                group_id: str | None = None) -> RecordsRequest:
    """Add a new draft inside the caller's transaction (409 DUPLICATE_REFERENCE for an open reference)."""
    if _open_reference_exists(session, principal.org_id, body["reference"], facility=body["facility"]):
        raise duplicate_reference()
    req = _new_request(principal, body, group_id)
    try:
        with session.begin_nested():
            session.add(req)
            session.flush()
    except IntegrityError:  # a concurrent create won the race for this reference
        raise duplicate_reference() from None
    lifecycle.add_event(session, req, "created", principal.audit_actor, **({"group_id": group_id} if group_id else {}))
    record(session, actor=principal.audit_actor, org_id=principal.org_id, action="request.create",
           object_type="request", object_id=req.id, **audit_ctx)
    return req


def _open_reference_exists(session: Session, org_id: str, reference: str, *, facility: str,
                           other_than: str | None = None) -> bool:
    # Per organization and facility: the requests of one group share their reference (API.md).
    query = select(RecordsRequest.id).where(
        RecordsRequest.org_id == org_id, RecordsRequest.reference == reference, RecordsRequest.facility == facility,
        OPEN_REQUEST)
    if other_than:
        query = query.where(RecordsRequest.id != other_than)
    return session.scalar(query.limit(1)) is not None


def body_of(req: RecordsRequest) -> dict:
    """The request as the rules read it: the create body with real dates."""
    stored = {section: getattr(req, section) for section in SECTIONS}
    stored.update(reference=req.reference, facility=req.facility, pathway=req.pathway, purpose=req.purpose,
                  public_benefit_claim=req.public_benefit_claim, fee_waiver_requested=req.fee_waiver_requested,
                  instructions=req.instructions)
    return _BODY.load(stored)


def stored_body(req: RecordsRequest) -> dict:
    """The request's create body in its JSON form (dates as ISO strings)."""
    return _BODY.dump(body_of(req))


# One request and its documents in one query (the relationship's own selectin load is a second round trip,
# which pays off only for lists).
WITH_DOCUMENTS = (joinedload(RecordsRequest.documents),)


def get_request(session: Session, principal: Principal, request_id: str, *, db: Database,
                audit_ctx: dict) -> RecordsRequest:
    """A request the principal may see, or NotFound (missing and foreign look alike); with its documents."""
    return get_visible(session, principal, RecordsRequest, request_id, db=db, audit_context=audit_ctx,
                       options=WITH_DOCUMENTS)


def audit_read(db: Database, principal: Principal, action: str, object_type: str, object_id: str | None,
               audit_ctx: dict) -> None:
    """Record a PHI read before the data leaves; raises AuditUnavailable (503) if it cannot."""
    record_now(db, actor=principal.audit_actor, org_id=principal.org_id, action=action,
               object_type=object_type, object_id=object_id, **audit_ctx)


def list_requests(session: Session, principal: Principal, *, status: str | None = None,
                  facility: str | None = None, reference: str | None = None,
                  created_after: datetime | None = None, updated_after: datetime | None = None,
                  overdue: bool = False, today: date | None = None, sort: str = caseload.DEFAULT_SORT,
                  limit: int = 25, cursor: str | None = None):
    """The principal's visible requests, filtered, newest first unless `sort` says otherwise (`today`, the
    facilities' calendar, judges `overdue`); returns (items, next_cursor)."""
    if overdue and today is None:
        raise ValueError("overdue needs today")
    query = caseload.filtered(principal, today=today, status=status, facility=facility, reference=reference,
                              created_after=created_after, updated_after=updated_after, overdue=overdue)
    return caseload.page(session, query, sort=sort, limit=limit, cursor=cursor)


def list_events(session: Session, principal: Principal, req: RecordsRequest, *, limit: int, cursor: str | None):
    """The request's timeline as the principal may see it, oldest first."""
    query = visible_select(principal, RequestEvent).where(RequestEvent.request_id == req.id)
    return keyset_page(session, query, columns=[RequestEvent.id], limit=limit, cursor=cursor, descending=False)


def ensure_editable(req: RecordsRequest) -> None:
    """Requesters change a request only while it is a draft or was returned to them."""
    if req.status not in EDITABLE:
        raise Conflict(f"A {req.status} request cannot be changed.", code="REQUEST_NOT_EDITABLE")


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


def update_request(db: Database, *, principal: Principal, request_id: str, audit_ctx: dict,
                   patch: dict | None = None, body: dict | None = None, if_match: str | None = None) -> list[str]:
    """Edit a draft or returned request, under its lock: a merge `patch` of its body, or a whole new `body`.

    The result is checked as a create body (422); `facility` and `pathway` are fixed once the request
    has been submitted (409 FIELD_LOCKED).  Returns the changed sections.
    """
    if not principal.is_requester:
        raise Forbidden("Only the requesting organization changes a request.")
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        ensure_editable(req)  # a locked request answers 409 whatever the patch says
        if body is None:
            body = load_create_body(merge_patch(stored_body(req), patch or {}))
        if req.submitted_at is not None:
            locked = [name for name in LOCKED_AFTER_SUBMIT if body[name] != getattr(req, name)]
            if locked:
                from gateway.errors import FieldError

                raise Conflict("The facility and the legal basis of a submitted request cannot change; create a "
                               "new request instead.", code="FIELD_LOCKED",
                               errors=[FieldError("FIELD_LOCKED", name, "fixed once submitted") for name in locked])
        if (body["reference"], body["facility"]) != (req.reference, req.facility) and _open_reference_exists(
                session, req.org_id, body["reference"], facility=body["facility"], other_than=req.id):
            raise duplicate_reference()
        old, new = stored_body(req), _BODY.dump(body)
        changed = sorted(k for k in new if new[k] != old.get(k))
        for name in ("reference", "facility", "pathway", "purpose", "public_benefit_claim", "fee_waiver_requested",
                     "instructions", *SECTIONS):
            setattr(req, name, new[name] if name in SECTIONS else body[name])
        lifecycle.touch(req)
        lifecycle.add_event(session, req, "updated", principal.audit_actor, fields=changed)
        lifecycle.audit_change(session, req, "request.update", actor=principal.audit_actor,
                               org_id=principal.org_id, audit_ctx=audit_ctx)
        return changed


def cancel_request(db: Database, *, principal: Principal, request_id: str, audit_ctx: dict,
                   reason: str | None = None, if_match: str | None = None) -> None:
    """Cancel a draft, submitted, routed or returned request (the reason, if any, is recorded)."""
    if not principal.is_requester:
        raise Forbidden("Only the requesting organization cancels a request.")
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        lifecycle.move(session, req, "cancelled", actor=principal.audit_actor, audit_ctx=audit_ctx,
                       org_id=principal.org_id, note=reason)
