"""Who may see which requests, documents and timeline entries, registered with the one tenant guard.

Requesters see their organization's requests.  Records staff see requests
routed to one of their facilities (from routing on: a draft is nobody's
business but its author's).  Operators and auditors see none: administering
the gateway or reading the audit log does not need PHI.

Released records leave only at release: a requester sees a document of kind
`release` only once its request is `fulfilled` — never before, and never on a
request that was denied, returned or cancelled — and timeline entries about
release documents are staff-only.  Every read path (resource, document list,
metadata, content, timeline, portal pages, exports) goes through these rules.
"""

from __future__ import annotations

from sqlalchemy import false, or_, select

from gateway.auth.principal import Principal
from gateway.auth.tenancy import tenant_rule, visibility
from gateway.intake.models import Document, RecordsRequest, RequestEvent, RequestGroup

RELEASE = "release"
RELEASED = "fulfilled"


@tenant_rule(RecordsRequest)
def _requests(principal: Principal):
    if principal.is_requester and principal.org_id:
        return RecordsRequest.org_id == principal.org_id
    if principal.has_role("facility_staff") and principal.facilities:
        return RecordsRequest.facility.in_(sorted(principal.facilities)) & RecordsRequest.routed_at.is_not(None)
    return false()


def _visible_request_ids(principal: Principal):
    return select(RecordsRequest.id).where(visibility(principal, RecordsRequest))


def _released_request_ids(principal: Principal):
    return select(RecordsRequest.id).where(visibility(principal, RecordsRequest), RecordsRequest.status == RELEASED)


@tenant_rule(Document)
def _documents(principal: Principal):
    visible = Document.request_id.in_(_visible_request_ids(principal))
    if principal.is_requester:
        return visible & or_(Document.kind != RELEASE, Document.request_id.in_(_released_request_ids(principal)))
    return visible


@tenant_rule(RequestEvent)
def _events(principal: Principal):
    visible = RequestEvent.request_id.in_(_visible_request_ids(principal))
    if principal.is_requester:
        return visible & RequestEvent.staff_only.is_(False)
    return visible


def document_visible_to(principal: Principal, req: RecordsRequest, document: Document) -> bool:
    """The same rule for an already-loaded document of an already-visible request (the resource's list)."""
    if principal.is_requester:
        return document.kind != RELEASE or req.status == RELEASED
    return True


@tenant_rule(RequestGroup)
def _groups(principal: Principal):
    # A group spans facilities; records staff see its requests one by one, never the group.
    if principal.is_requester and principal.org_id:
        return RequestGroup.org_id == principal.org_id
    return false()
