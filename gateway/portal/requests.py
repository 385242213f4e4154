"""Requester pages: the organization's requests, the request form, a request's page, uploads, submit.

Each handler calls the intake service functions the API calls, inside the same
tenant guard.  A request's page itself (`detail.render_detail`, audited as a
read of it) is shared with the staff, message and invoice forms.
"""

from __future__ import annotations

from flask import g, jsonify, redirect, request, url_for

from gateway.auth.models import Organization
from gateway.auth.web import audit_context, requires
from gateway.errors import Conflict, FieldError
from gateway.facilities.service import get_facility, list_facilities
from gateway.intake import assessment, documents, groups, service, submission
from gateway.intake.document_views import visible_document
from gateway.intake.upload_web import receive_upload
from gateway.intake.views import visible_request
from gateway.portal import bp, forms
from gateway.portal.detail import render_detail, shown_request
from gateway.portal.web import once_per_form, upload_answer
from gateway.portal.web import page as _page
from gateway.web import adapters, clock, db_session

REQUESTERS = ("requester", "requester_admin")
READERS = (*REQUESTERS, "facility_staff")



def _facilities():
    return list_facilities(db_session())


def _facility_names() -> dict[str, str]:
    return {f.code: f.name for f in _facilities()}


def _today():
    return clock().today()


def _form_context(*, values, errors=(), deficiencies=(), req=None):
    return {"values": values, "errors": list(errors), "deficiencies": list(deficiencies), "req": req,
            "facilities": _facilities(), "forms": forms}


def _practice_required(code: str | None) -> bool:
    facility = get_facility(db_session(), code) if code else None
    return bool(facility and facility.requires_practice)


@bp.route("/requests/new", methods=["GET"])
@requires(*REQUESTERS)
def new_request():
    """The request form, in steps: facility, patient, records, delivery, authorization."""
    return _page("portal/request_form.html", **_form_context(values=forms.values_from_body(None)))


@bp.route("/requests/new", methods=["POST"])
@requires(*REQUESTERS)
@once_per_form()
def create_request():
    """Create the draft (the same create as POST /v1/requests), then on to its documents; with other facilities
    ticked too, one draft per facility, filed together (a request group), then on to the group's page."""
    catalogue = {f.code: f for f in _facilities()}
    also, unknown = forms.other_facilities(request.form, known=set(catalogue))
    chosen = [catalogue.get(code) for code in (request.form.get("facility"), *also)]
    body = forms.body_from_form(request.form, practice_required=any(f and f.requires_practice for f in chosen))
    loaded, errors = forms.load(body)
    if errors or unknown:
        return _page("portal/request_form.html", 422,
                     **_form_context(values=forms.values_from_form(request.form), errors=[*errors, *unknown]))
    if also:
        group_id, _ids = groups.create_group(adapters().db, principal=g.principal, audit_ctx=audit_context(),
                                             body=forms.group_body(loaded, also))
        return redirect(url_for("portal.request_group", group_id=group_id, created=1) + "#documents", code=303)
    request_id = service.create_request(adapters().db, principal=g.principal, body=loaded, audit_ctx=audit_context())
    return redirect(url_for("portal.request_detail", request_id=request_id, created=1) + "#documents", code=303)


@bp.route("/requests/validate", methods=["POST"])
@bp.route("/requests/<request_id>/validate", methods=["POST"])
@requires(*REQUESTERS)
def validate_form(request_id=None):
    """Live checks while the form is filled in: field errors and the rules' deficiencies, nothing stored."""
    body = forms.body_from_form(request.form, practice_required=_practice_required(request.form.get("facility")))
    loaded, errors = forms.load(body)
    if errors:
        return jsonify({"errors": [e.to_dict() for e in errors], "deficiencies": []})
    session = db_session()
    docs = visible_request(request_id).documents if request_id else ()
    result = assessment.assess(session, loaded, org=session.get(Organization, g.principal.org_id),
                               documents=docs, on=_today())
    return jsonify({"errors": [], "deficiencies": result.deficiencies, "valid": result.valid})


@bp.route("/requests/<request_id>")
@requires(*READERS)
def request_detail(request_id):
    """One request: status, what stands in the way, documents, fee, due date, timeline, actions."""
    return render_detail(shown_request(request_id))


@bp.route("/requests/<request_id>/edit", methods=["GET"])
@requires(*REQUESTERS)
def edit_request(request_id):
    """The request form filled with a draft or returned request, the rules' findings beside the fields."""
    req = shown_request(request_id)
    service.ensure_editable(req)
    resource = assessment.resource(db_session(), req, on=_today(), viewer=g.principal)
    return _page("portal/request_form.html", **_form_context(
        values=forms.values_from_body(service.body_of(req)), deficiencies=resource["deficiencies"], req=req))


@bp.route("/requests/<request_id>/edit", methods=["POST"])
@requires(*REQUESTERS)
def update_request(request_id):
    """Save the corrected form (the same update as PATCH /v1/requests/{id})."""
    req = visible_request(request_id)
    service.ensure_editable(req)
    body = forms.body_from_form(request.form, practice_required=_practice_required(request.form.get("facility")))
    loaded, errors = forms.load(body)
    if errors:
        return _page("portal/request_form.html", 422, **_form_context(
            values=forms.values_from_form(request.form), errors=errors, req=req))
    try:
        service.update_request(adapters().db, principal=g.principal, request_id=req.id, body=loaded,
                               audit_ctx=audit_context())
    except Conflict as locked:  # the facility or legal basis of a submitted request, or a duplicate reference
        return _page("portal/request_form.html", 409, **_form_context(
            values=forms.values_from_form(request.form), req=req,
            errors=locked.errors or [FieldError(locked.code, None, locked.detail)]))
    return redirect(url_for("portal.request_detail", request_id=req.id), code=303)


@bp.route("/requests/<request_id>/documents", methods=["POST"])
@requires("requester", "requester_admin", "facility_staff")
def upload_document(request_id):
    """One file from the upload widget (or the plain form): streamed, scanned, stored only if clean."""
    return upload_answer(receive_upload(request_id), url_for("portal.request_detail", request_id=request_id))


@bp.route("/requests/<request_id>/submit", methods=["POST"])
@requires(*REQUESTERS)
def submit_request(request_id):
    """Submit: every rule is checked; a deficient request stays as it was and says why."""
    try:
        submission.submit(adapters().db, principal=g.principal, request_id=request_id, clock=clock(),
                          audit_ctx=audit_context(), reading_wait=adapters().settings.reading_submit_wait)
    except submission.RequestDeficient as deficient:
        return render_detail(shown_request(request_id), status=422, submit_errors=deficient.errors)
    return redirect(url_for("portal.request_detail", request_id=request_id), code=303)


@bp.route("/requests/<request_id>/cancel", methods=["POST"])
@requires(*REQUESTERS)
def cancel_request(request_id):
    """Cancel a draft, submitted or routed request."""
    reason = (request.form.get("reason") or "").strip()[:500] or None
    service.cancel_request(adapters().db, principal=g.principal, request_id=request_id, reason=reason,
                           audit_ctx=audit_context())
    return redirect(url_for("portal.request_detail", request_id=request_id), code=303)


@bp.route("/requests/<request_id>/documents/<document_id>/download")
@requires(*READERS)
def download_document(request_id, document_id):
    """Download (audited): a redirect to a link valid for five minutes, served as an attachment."""
    document = visible_document(request_id, document_id)
    service.audit_read(adapters().db, g.principal, "document.download", "document", document.id, audit_context())
    response = redirect(documents.download_url(adapters().store, document), code=303)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
