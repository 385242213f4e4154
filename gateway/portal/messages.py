"""The message thread on a request's page: requesters and records staff write, staff also leave internal notes.

The same service as `/v1/requests/{id}/messages` (gateway.messages.service),
inside the same tenant guard: a requester's page never holds an internal note.
The thread is shown on the request's page (`detail.message_context`), and
showing it is audited as a read of it, like the API.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for
from marshmallow import ValidationError

from gateway.auth.web import audit_context, requires
from gateway.errors import Conflict, FieldError
from gateway.intake.views import visible_request
from gateway.messages import service
from gateway.messages.views import MessageCreateSchema
from gateway.portal import bp
from gateway.portal.detail import render_detail, shown_request
from gateway.web import adapters

FIELD = "message"
TOO_LONG = f"Write your message in at most {service.MAX_BODY:,} characters, without control characters."


def _refused(request_id: str, message: str, body: str):
    # The request's page includes this thread: the refusal is shown there, the text kept.
    g.message_form = {"errors": [FieldError("INVALID_FIELD", FIELD, message)], "body": body}
    return render_detail(shown_request(request_id), status=422)


@bp.route("/requests/<request_id>/messages", methods=["POST"])
@requires("requester", "requester_admin", "facility_staff")
def post_message(request_id):
    """Send a message on the request's thread (staff: optionally an internal note), then back to the thread."""
    visible_request(request_id)  # a foreign request is the 404 page before the form is read
    text = request.form.get("body") or ""
    try:
        body = MessageCreateSchema().load({"body": text, "internal": request.form.get("internal") == "1"})
    except ValidationError:
        return _refused(request_id, "Write a message first." if not text.strip() else TOO_LONG, text[:service.MAX_BODY])
    try:
        service.post_message(adapters().db, principal=g.principal, request_id=request_id, body=body["body"],
                             internal=body["internal"], audit_ctx=audit_context())
    except Conflict as error:
        return _refused(request_id, error.detail, text)
    return redirect(url_for("portal.request_detail", request_id=request_id) + "#messages", code=303)
