"""The account page: who you are signed in as, and whether you receive notification e-mail.

The same service as `PATCH /v1/me` (gateway.auth.service.set_email_notifications);
the change is audited.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for

from gateway.auth import service
from gateway.auth.models import Organization, User
from gateway.auth.web import audit_context
from gateway.portal import bp
from gateway.portal.web import page
from gateway.web import adapters, db_session


@bp.route("/account", methods=["GET"])
def account():
    """Your account: e-mail address, organization, roles, and the notification e-mail switch."""
    session, principal = db_session(), g.principal
    user = session.get(User, principal.id)
    org = session.get(Organization, principal.org_id) if principal.org_id else None
    return page("portal/account.html", user=user, org=org, saved=request.args.get("saved"),
                receives_mail=principal.is_requester)


@bp.route("/account/notifications", methods=["POST"])
def update_notifications():
    """Turn notification e-mail on or off (a checkbox: absent means off)."""
    enabled = request.form.get("email_notifications") == "on"
    service.set_email_notifications(adapters().db, principal=g.principal, enabled=enabled, audit_ctx=audit_context())
    return redirect(url_for("portal.account", saved="on" if enabled else "off"), code=303)
