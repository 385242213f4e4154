"""Records staff's actions on a request's page: claim, assign, status changes with reasons, withdrawing releases,
and viewing documents (what a clerk reads on that page is `detail.staff_context`, the queue is `worklist.py`,
the dashboard `dashboard.py`).

Each handler calls the routing service the API calls (`gateway.routing.staff`),
so the workflow's rules live in one place; a refused action is shown on the
request page beside the form that caused it, not as a bare error page.
"""

from __future__ import annotations

from itertools import chain

from flask import current_app, g, redirect, request, url_for
from marshmallow import ValidationError

from gateway.auth.web import audit_context, requires
from gateway.errors import Conflict, FieldError, Forbidden, NotFound, Unprocessable, flatten_messages
from gateway.intake import documents, service
from gateway.intake.document_views import visible_document
from gateway.intake.uploads import StorageDown
from gateway.intake.views import visible_request
from gateway.portal import bp
from gateway.portal.detail import render_detail, shown_request
from gateway.routing import staff
from gateway.routing.views import TransitionSchema
from gateway.storage.store import StorageUnavailable, StoredObjectMissing, content_disposition
from gateway.web import adapters

# A stored document shown in the browser is untrusted content.  Images are sandboxed (no script, no
# origin).  Chrome refuses to render a PDF under `sandbox`, so a PDF is not; uploads already refuse PDFs
# with scripts or other active content.  Either may be framed by the portal's own request page (the
# authorization beside the checks, `detail.FRAMING_CSP`) and by no other site.
VIEWER_CSP = "sandbox; default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"
PDF_VIEWER_CSP = "frame-ancestors 'self'"
# Where on the form a refusal points (the error summary links to that field).
_ERROR_FIELDS = {"REASONS_REQUIRED": "reasons", "INVALID_TRANSITION": "to"}
# The note's own messages (too long, control characters) are plain already; the lists' are not.
_FIELD_MESSAGES = {"to": "Choose the status to move the request to.", "reasons": "Choose reasons from the list."}


def _refused(request_id: str, error: Unprocessable | Conflict | Forbidden, *, field: str | None = None):
    """The request page again, the refusal summarised at the staff actions (its read audited like any view)."""
    if error.code == "VALIDATION_FAILED" and error.errors:
        errors = [FieldError(e.code, _form_field(e.field), e.message) for e in error.errors]
    else:  # a rule of the workflow: the service's sentence says it best
        errors = [FieldError(error.code, field, error.detail)]
    return render_detail(shown_request(request_id), status=error.status, action_errors=errors)


def _form_field(path: str | None) -> str | None:
    """`reasons.0` (marshmallow's path to a list item) is the `reasons` fieldset on the form."""
    return path.split(".")[0] if path else None


@bp.route("/requests/<request_id>/claim", methods=["POST"])
@requires("facility_staff")
def claim_request(request_id):
    """Take a routed request: it becomes in progress, assigned to you."""
    try:
        staff.claim(adapters().db, principal=g.principal, request_id=request_id, audit_ctx=audit_context())
    except Conflict as error:  # someone claimed it first, or it moved on meanwhile
        return _refused(request_id, error)
    return redirect(url_for("portal.request_detail", request_id=request_id) + "#staff-actions", code=303)


@bp.route("/requests/<request_id>/assign", methods=["POST"])
@requires("facility_staff")
def assign_request(request_id):
    """Hand the request to a colleague of its facility (the same change as POST /v1/requests/{id}/assign)."""
    visible_request(request_id)  # a foreign request is the 404 page before the form is even read
    user_id = (request.form.get("user_id") or "").strip()[:36]
    if not user_id:
        return _refused(request_id, Unprocessable("Choose the colleague to assign it to.", errors=[
            FieldError("FIELD_REQUIRED", "user_id", "Choose the colleague to assign it to.")]))
    try:
        staff.assign(adapters().db, principal=g.principal, request_id=request_id, user_id=user_id,
                     audit_ctx=audit_context())
    except (Unprocessable, Conflict) as error:  # the service's sentence, beside the colleague list
        return render_detail(shown_request(request_id), status=error.status,
                             action_errors=[FieldError(error.code, "user_id", error.detail)])
    return redirect(url_for("portal.request_detail", request_id=request_id) + "#staff-actions", code=303)


@bp.route("/requests/<request_id>/transition", methods=["POST"])
@requires("facility_staff")
def transition_request(request_id):
    """Move a request on (the same change as POST /v1/requests/{id}/transitions); refusals shown on its page."""
    visible_request(request_id)  # a foreign request is the 404 page before the form is even read
    try:
        body = TransitionSchema().load({"to": request.form.get("to") or None,
                                        "reasons": request.form.getlist("reasons"),
                                        "note": request.form.get("note") or None})
    except ValidationError as invalid:
        errors = [FieldError(e.code, _form_field(e.field), _FIELD_MESSAGES.get(_form_field(e.field), e.message))
                  for e in flatten_messages(invalid.messages)]
        return _refused(request_id, Unprocessable("The form has invalid fields.", errors=errors))
    try:
        staff.change_status(adapters().db, principal=g.principal, request_id=request_id, to=body["to"],
                            reasons=body["reasons"], note=body.get("note") or None, audit_ctx=audit_context())
    except (Unprocessable, Conflict) as error:
        return _refused(request_id, error, field=_ERROR_FIELDS.get(error.code))
    return redirect(url_for("portal.request_detail", request_id=request_id) + "#staff-actions", code=303)


@bp.route("/requests/<request_id>/documents/<document_id>/withdraw", methods=["POST"])
@requires("facility_staff")
def withdraw_document(request_id, document_id):
    """Take back released records uploaded by mistake (before fulfilment): the file is deleted, the act audited."""
    try:
        documents.withdraw_release(adapters().db, store=adapters().store, principal=g.principal,
                                   request_id=request_id, document_id=document_id, audit_ctx=audit_context())
    except (Conflict, Forbidden) as error:
        return _refused(request_id, error)
    return redirect(url_for("portal.request_detail", request_id=request_id) + "#documents", code=303)


@bp.route("/requests/<request_id>/documents/<document_id>/view")
@requires("requester", "requester_admin", "facility_staff")
def view_document(request_id, document_id):
    """A document shown in the browser (audited), sandboxed: it runs no script and has no origin."""
    document = visible_document(request_id, document_id)
    service.audit_read(adapters().db, g.principal, "document.read", "document", document.id, audit_context())
    try:
        chunks = iter(adapters().store.open(document.storage_key))
        first = next(chunks, b"")  # an unreachable store fails here, while a 503 page can still be sent
    except StorageUnavailable:
        raise StorageDown("Document storage is unavailable. Retry shortly.") from None
    except StoredObjectMissing:
        raise NotFound() from None
    response = current_app.response_class(chain((first,), chunks), status=200, mimetype=document.content_type,
                                          direct_passthrough=True)
    response.headers["Content-Length"] = str(document.size)
    # content_disposition sanitises the name; only its leading disposition type changes.
    response.headers["Content-Disposition"] = "inline" + content_disposition(document.filename)[len("attachment"):]
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    g.portal_csp = PDF_VIEWER_CSP if document.content_type == "application/pdf" else VIEWER_CSP
    g.portal_frame_options = "SAMEORIGIN"  # the request page frames it (its CSP names 'self' only)
    return response
