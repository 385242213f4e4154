"""Who may read which messages, registered with the one tenant guard.

A message is visible to whoever may see its request (intake's rule: the
requesting organization, and staff of the facility once it is routed);
internal notes to records staff only, never to a requester.
"""

from __future__ import annotations

from sqlalchemy import select

from gateway.auth.principal import Principal
from gateway.auth.tenancy import tenant_rule, visibility
from gateway.intake import access as _intake_access  # noqa: F401  (the request rule this one builds on)
from gateway.intake.models import RecordsRequest
from gateway.messages.models import RequestMessage


@tenant_rule(RequestMessage)
def _messages(principal: Principal):
    visible = RequestMessage.request_id.in_(select(RecordsRequest.id).where(visibility(principal, RecordsRequest)))
    if principal.is_requester:
        return visible & RequestMessage.internal.is_(False)
    return visible
