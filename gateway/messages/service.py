"""Posting to and reading a request's message thread.

Requesters (the organization's users and API keys) and records staff of the
request's facility post; staff may mark a message `internal` (a note for
colleagues that the requester never sees).  Posting takes the request's row
lock like every other change, so a message and a status change are ordered,
but it is not a change to the request: its `version` stays.  A message that
the requester can see writes a `request.message_posted` event (ids only)
through the outbox: webhooks and e-mail, never the text.  Posts and reads are
audited against the request.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway.audit.service import record_now
from gateway.auth.models import Organization
from gateway.auth.principal import Principal
from gateway.auth.tenancy import visible_select
from gateway.db import Database, new_id, utcnow
from gateway.errors import Conflict, Forbidden
from gateway.facilities.service import get_facility
from gateway.intake import lifecycle
from gateway.intake.models import RecordsRequest
from gateway.messages import access  # noqa: F401  (registers the tenant rule)
from gateway.messages.models import RequestMessage
from gateway.pagination import keyset_page

MAX_BODY = 5000
EVENT = "request.message_posted"


def is_staff_of(principal: Principal, req: RecordsRequest) -> bool:
    """Records staff of the request's facility (and not a requester)."""
    return (not principal.is_requester and principal.has_role("facility_staff")
            and req.facility in principal.facilities)


def author_name(session: Session, principal: Principal, req: RecordsRequest) -> str:
    """How the thread names the author: a role label for staff, the organization for requesters."""
    if principal.is_requester:
        org = session.get(Organization, principal.org_id)
        return org.name if org else "Requester"
    facility = get_facility(session, req.facility)
    return f"Records team, {facility.name if facility else req.facility}"


def post_message(db: Database, *, principal: Principal, request_id: str, body: str, internal: bool,
                 audit_ctx: dict) -> str:
    """Add a message (or, for staff, an internal note) to a submitted request's thread; returns its id."""
    if not (principal.is_requester or principal.has_role("facility_staff")):
        raise Forbidden("Only the requesting organization and the facility's records staff write messages.")
    if internal and principal.is_requester:
        raise Forbidden("Only records staff write internal notes.")
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx) as (session, req):
        staff = is_staff_of(principal, req)
        if not principal.is_requester and not staff:
            raise Forbidden("Only records staff of this facility write on its requests.")
        if req.submitted_at is None:
            raise Conflict("Submit the request first: messages go to the records team, who see a request once "
                           "it is submitted.", code="REQUEST_NOT_SUBMITTED")
        message = RequestMessage(id=new_id(), request_id=req.id, at=utcnow(),
                                 author_kind="staff" if staff else "requester",
                                 author_actor=principal.audit_actor, author_name=author_name(session, principal, req),
                                 body=body, internal=bool(internal and staff))
        session.add(message)
        session.flush()
        lifecycle.audit_change(session, req, "request.message.post", actor=principal.audit_actor,
                               org_id=principal.org_id, audit_ctx=audit_ctx)
        if not message.internal:
            lifecycle.notify(session, req, EVENT, actor=principal.audit_actor, message_id=message.id)
        return message.id


def list_messages(session: Session, principal: Principal, req: RecordsRequest, *, limit: int,
                  cursor: str | None) -> tuple[list[RequestMessage], str | None]:
    """The thread as the principal may see it, oldest first; returns (items, next_cursor)."""
    query = visible_select(principal, RequestMessage).where(RequestMessage.request_id == req.id)
    return keyset_page(session, query, columns=[RequestMessage.at, RequestMessage.id], limit=limit, cursor=cursor,
                       descending=False)


def get_message(session: Session, principal: Principal, message_id: str) -> RequestMessage | None:
    """One message the principal may see (the one just posted), or None."""
    return session.scalars(visible_select(principal, RequestMessage)
                           .where(RequestMessage.id == message_id)).one_or_none()


def audit_read(db: Database, principal: Principal, request_id: str, audit_ctx: dict) -> None:
    """Record a read of the thread before it leaves (503 if it cannot be recorded)."""
    record_now(db, actor=principal.audit_actor, org_id=principal.org_id, action="request.messages.read",
               object_type="request", object_id=request_id, **audit_ctx)


def as_dict(message: RequestMessage) -> dict:
    """The message resource: `{"id", "at", "author": {"kind", "name"}, "body", "internal"}`."""
    return {"id": message.id, "at": message.at, "author": {"kind": message.author_kind, "name": message.author_name},
            "body": message.body, "internal": message.internal}
