"""A person's own portal sessions over the API: list them, and end one (e.g. a browser left signed in elsewhere).

They live with the portal, which owns its sessions; the auth domain only moves
a user's credentials epoch, never reaching into the portal.
"""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from gateway.auth.account_views import PEOPLE, people_only
from gateway.auth.models import User
from gateway.auth.tenancy import get_visible
from gateway.auth.web import audit_context, current_principal, requires
from gateway.portal import sessions
from gateway.portal.models import PortalSession
from gateway.schemas import Timestamp
from gateway.web import adapters, db_session, settings

blp = Blueprint("sessions", __name__, description="Your own portal sessions.")



class SessionSchema(Schema):
    id = fields.String()
    client = fields.String(allow_none=True, metadata={"description": 'the browser, e.g. "Firefox on Windows"'})
    created_at = Timestamp()
    last_seen_at = Timestamp()
    expires_at = Timestamp()
    current = fields.Boolean(metadata={"description": "the portal session making this call (never, over the API)"})


class SessionListSchema(Schema):
    items = fields.List(fields.Nested(SessionSchema))


def own_sessions(user_id: str, current_id: str | None = None) -> list[dict]:
    """The caller's live portal sessions, most recently used first (the portal page shows the same)."""
    session = db_session()
    user = session.get(User, user_id)
    rows = sessions.live_sessions(session, user_id=user_id, epoch=user.credentials_epoch or 0,
                                  idle_timeout=settings().portal_idle_timeout)
    return [{"id": r.id, "client": r.client, "created_at": r.created_at, "last_seen_at": r.last_seen_at,
             "expires_at": r.expires_at, "current": r.id == current_id} for r in rows]


def end_own_session(session_id: str) -> None:
    """End one of the caller's sessions (404 for anyone else's, through the tenancy guard); audited."""
    principal, db = current_principal(), adapters().db
    row = get_visible(db_session(), principal, PortalSession, session_id, db=db, audit_context=audit_context())
    with db.transaction() as session:
        mine = session.get(PortalSession, row.id)
        sessions.end(session, mine, reason="ended_by_user", audit_ctx=audit_context())


@blp.route("/v1/me/sessions", methods=["GET"])
@requires(*PEOPLE)
@people_only
@blp.response(200, SessionListSchema)
def list_my_sessions():
    """Your live portal sessions (signed-in browsers), most recently used first."""
    return {"items": own_sessions(current_principal().id)}


@blp.route("/v1/me/sessions/<session_id>", methods=["DELETE"])
@requires(*PEOPLE)
@people_only
@blp.response(204)
def end_my_session(session_id):
    """End one of your portal sessions: that browser is signed out at its next request."""
    end_own_session(session_id)
