"""Requester pages for several facilities in one request: the group's page (each request's status and
checks), one upload for all of its requests, and "submit every ready request".

The same service functions as `/v1/request-groups` and `POST /v1/requests/{id}/submit`, inside the same
tenant guard: another organization's group is a 404.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for

from gateway.auth.web import audit_context, requires
from gateway.errors import Conflict, FieldError
from gateway.facilities.service import list_facilities
from gateway.intake import assessment, groups, service, submission
from gateway.intake.documents import REQUESTER_EDITABLE, REQUESTER_KINDS
from gateway.intake.schemas import GroupDocumentsSchema
from gateway.intake.upload_web import receive_upload
from gateway.portal import bp
from gateway.portal.web import page, upload_answer
from gateway.web import adapters, clock, db_session

REQUESTERS = ("requester", "requester_admin")


@bp.route("/request-groups/<group_id>")
@requires(*REQUESTERS)
def request_group(group_id):
    """The requests created together for one patient at several facilities, each with its status and checks."""
    return _render_group(group_id)


def _render_group(group_id: str, *, status: int = 200, outcomes: dict | None = None):
    session = db_session()
    group, requests = groups.get_group(session, g.principal, group_id, db=adapters().db, audit_ctx=audit_context())
    service.audit_read(adapters().db, g.principal, "request_group.read", "request_group", group.id, audit_context())
    today = clock().today()
    # The requester's own checks, as each request's page shows them: only while it is still theirs to change.
    checks = {r.id: assessment.assess_request(session, r, on=today).deficiencies
              for r in requests if r.status in REQUESTER_EDITABLE}
    names = {f.code: f.name for f in list_facilities(session)}
    return page("portal/request_group.html", status, group=group, requests=requests, facility_names=names,
                today=today, checks=checks, outcomes=outcomes or {}, upload_kinds=REQUESTER_KINDS,
                can_upload=bool(checks), created=request.args.get("created") == "1")


def _present_group_documents(group_id: str, documents) -> tuple[dict, str]:
    items = {"items": [{"request_id": d.request_id, "document": d} for d in documents]}
    return GroupDocumentsSchema().dump(items), url_for("portal.request_group", group_id=group_id)


@bp.route("/request-groups/<group_id>/documents", methods=["POST"])
@requires(*REQUESTERS)
def upload_group_document(group_id):
    """One file for every draft or returned request of the group: scanned and stored once (as
    `POST /v1/request-groups/{id}/documents`)."""
    received = receive_upload(group_id, upload_class=groups.GroupDocumentUpload, present=_present_group_documents)
    return upload_answer(received, url_for("portal.request_group", group_id=group_id))


@bp.route("/request-groups/<group_id>/submit", methods=["POST"])
@requires(*REQUESTERS)
def submit_group(group_id):
    """Submit each of the group's requests that is still the requester's to send, one at a time, each checked
    on its own (as its own submit): the ready ones go, a deficient one stays a draft and says why."""
    session = db_session()
    _group, requests = groups.get_group(session, g.principal, group_id, db=adapters().db, audit_ctx=audit_context())
    waiting = [r.id for r in requests if r.status in REQUESTER_EDITABLE]
    session.rollback()  # each submit below takes its request's lock in a transaction of its own
    outcomes: dict[str, list] = {}
    for request_id in waiting:
        try:
            submission.submit(adapters().db, principal=g.principal, request_id=request_id, clock=clock(),
                              audit_ctx=audit_context(), reading_wait=adapters().settings.reading_submit_wait)
            outcomes[request_id] = []
        except submission.RequestDeficient as deficient:
            outcomes[request_id] = [error.to_dict() for error in deficient.errors]
        except Conflict as conflict:  # changed meanwhile (cancelled, revoked…): said on its row, the others go on
            outcomes[request_id] = [FieldError(conflict.code, None, conflict.detail).to_dict()]
    if any(outcomes.values()):
        return _render_group(group_id, status=422, outcomes=outcomes)
    return redirect(url_for("portal.request_group", group_id=group_id), code=303)
