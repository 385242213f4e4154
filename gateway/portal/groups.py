"""Requester pages for several facilities in one request: the group's page, listing each request's status."""

from __future__ import annotations

from flask import g

from gateway.auth.web import audit_context, requires
from gateway.intake import groups, service
from gateway.portal import bp
from gateway.portal.web import page
from gateway.web import adapters, clock, db_session

REQUESTERS = ("requester", "requester_admin")


@bp.route("/request-groups/<group_id>")
@requires(*REQUESTERS)
def request_group(group_id):
    """The requests created together for one patient at several facilities, each with its status."""
    session = db_session()
    group, requests = groups.get_group(session, g.principal, group_id, db=adapters().db, audit_ctx=audit_context())
    service.audit_read(adapters().db, g.principal, "request_group.read", "request_group", group.id, audit_context())
    from gateway.facilities.service import list_facilities

    names = {f.code: f.name for f in list_facilities(session)}
    return page("portal/request_group.html", group=group, requests=requests, facility_names=names,
                today=clock().today())
