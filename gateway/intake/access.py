"""Who may see which requests and documents, registered with the one tenant guard.

Requesters see their organization's requests.  Records staff see requests
routed to one of their facilities (from routing on: a draft is nobody's
business but its author's).  Operators and auditors see none: administering
the gateway or reading the audit log does not need PHI.
"""

from __future__ import annotations

from sqlalchemy import false, select

from gateway.auth.principal import Principal
from gateway.auth.tenancy import tenant_rule, visibility
from gateway.intake.models import Document, RecordsRequest, RequestEvent


@tenant_rule(RecordsRequest)
def _requests(principal: Principal):
    if principal.is_requester and principal.org_id:
        return RecordsRequest.org_id == principal.org_id
    if principal.has_role("facility_staff") and principal.facilities:
        return RecordsRequest.facility.in_(sorted(principal.facilities)) & RecordsRequest.routed_at.is_not(None)
    return false()


def _visible_request_ids(principal: Principal):
    return select(RecordsRequest.id).where(visibility(principal, RecordsRequest))


@tenant_rule(Document)
def _documents(principal: Principal):
    return Document.request_id.in_(_visible_request_ids(principal))


@tenant_rule(RequestEvent)
def _events(principal: Principal):
    return RequestEvent.request_id.in_(_visible_request_ids(principal))
