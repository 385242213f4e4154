"""Invoice pages on a request: staff issue the invoice and record the payment, requesters see how to pay,
download the PDF and dispute it (`_invoice.html`, included from the request page).

Each handler calls the service the API calls (`gateway.intake.invoices`); a refusal is shown beside the
invoice forms on the request page, the form's values kept.
"""

from __future__ import annotations

from flask import current_app, g, redirect, request, url_for
from marshmallow import ValidationError

from gateway.auth.web import audit_context, requires
from gateway.errors import Conflict, FieldError, Forbidden, Unprocessable, flatten_messages
from gateway.facilities.service import get_facility
from gateway.intake import invoices, service
from gateway.intake.payees import payee_for
from gateway.intake.release_models import PAYMENT_METHODS, dollars
from gateway.intake.release_schemas import DisputeSchema, PaymentCreateSchema
from gateway.intake.views import visible_request
from gateway.portal import bp
from gateway.portal.detail import render_detail, shown_request
from gateway.storage.store import content_disposition
from gateway.web import adapters, clock, db_session, settings

METHOD_LABELS = {"check": "Check", "cash": "Cash", "card": "Card"}
INVOICE_STATUS_LABELS = {"due": "Amount due", "paid": "Paid", "waived": "Fee waived", "no_charge": "No charge"}
assert set(METHOD_LABELS) == set(PAYMENT_METHODS), "payment method labels out of step with PAYMENT_METHODS"
# Where a refusal points on the page: each form's fields have ids of their own (field_id of these paths).
_FIELDS = {"issue": {"pages": "invoice.pages", "waiver_reason": "invoice.waiver_reason"},
           "payment": {"method": "payment.method", "reference": "payment.reference", "amount": "payment.amount"},
           "dispute": {"note": "dispute.note"}}
_MESSAGES = {"invoice.pages": "Enter the number of pages released, a whole number.",
             "payment.amount": 'Enter the amount as dollars and cents, for example "228.57".',
             "payment.method": "Choose how it was paid.",
             "payment.reference": "Enter the check number or receipt reference (up to 100 characters).",
             "dispute.note": "Say what is wrong with the invoice (up to 2,000 characters)."}


@bp.app_context_processor
def billing_context():
    """What the invoice partial and the navigation need: payees, labels, and whether the viewer is an auditor."""
    principal = g.get("principal") if g.get("portal") else None
    return {"payee_of": _payee_of, "dollars": dollars, "INVOICE_STATUS_LABELS": INVOICE_STATUS_LABELS,
            "METHOD_LABELS": METHOD_LABELS, "is_auditor": bool(principal and principal.has_role("auditor"))}


def _payee_of(req):
    facility = get_facility(db_session(), req.facility)
    return payee_for(req.facility, facility.name if facility else req.facility, path=settings().payees_file)


def _refused(request_id: str, form: str, error: Unprocessable | Conflict | Forbidden):
    """The request page again, the refusal and the form's values at the invoice section."""
    fields = _FIELDS[form]
    if error.code == "VALIDATION_FAILED" and error.errors:  # the form's own mistakes, one per field
        errors = [FieldError(e.code, path, _MESSAGES.get(path, e.message))
                  for e in error.errors for path in [fields.get((e.field or "").split(".")[0])]]
    else:  # a rule of the workflow (amount due, waiver reason, already issued): the service's sentence says it
        path = fields.get(error.errors[0].field) if error.errors else None
        errors = [FieldError(error.code, path, error.detail)]
    g.invoice_errors, g.invoice_form, g.invoice_values = errors, form, request.form.to_dict()
    return render_detail(shown_request(request_id), status=error.status)


def _done(request_id: str):
    return redirect(url_for("portal.request_detail", request_id=request_id) + "#invoice", code=303)


@bp.route("/requests/<request_id>/invoice", methods=["POST"])
@requires("facility_staff")
def issue_invoice(request_id):
    """Issue the invoice from the page count, or waive it with a reason (the same as POST /v1/requests/{id}/invoice)."""
    visible_request(request_id)  # a foreign request is the 404 page before the form is read
    pages = (request.form.get("pages") or "").strip()
    waive = request.form.get("waive") == "on"
    if not pages.isdigit() or len(pages) > 7:
        return _refused(request_id, "issue", Unprocessable("The form has invalid fields.", errors=[
            FieldError("INVALID_FIELD", "pages", "not a whole number")]))
    try:
        invoices.issue_invoice(adapters().db, principal=g.principal, request_id=request_id, pages=int(pages),
                               waive=waive, waiver_reason=(request.form.get("waiver_reason") or "").strip()[:500]
                               or None, clock=clock(), audit_ctx=audit_context())
    except (Unprocessable, Conflict, Forbidden) as error:
        return _refused(request_id, "issue", error)
    return _done(request_id)


@bp.route("/requests/<request_id>/payments", methods=["POST"])
@requires("facility_staff")
def record_payment(request_id):
    """Record the payment (the same as POST /v1/requests/{id}/payments); the records are released with it."""
    visible_request(request_id)
    try:
        body = PaymentCreateSchema().load({name: request.form.get(name) or None
                                           for name in ("method", "reference", "amount")})
    except ValidationError as invalid:
        return _refused(request_id, "payment", Unprocessable("The form has invalid fields.",
                                                             errors=flatten_messages(invalid.messages)))
    try:
        invoices.record_payment(adapters().db, principal=g.principal, request_id=request_id, method=body["method"],
                                reference=body["reference"], amount=body["amount"], audit_ctx=audit_context())
    except (Unprocessable, Conflict, Forbidden) as error:
        return _refused(request_id, "payment", error)
    return _done(request_id)


@bp.route("/requests/<request_id>/invoice/dispute", methods=["POST"])
@requires("requester", "requester_admin")
def dispute_invoice(request_id):
    """Dispute the invoice with a note for the records team."""
    visible_request(request_id)
    try:
        body = DisputeSchema().load({"note": request.form.get("note") or None})
    except ValidationError as invalid:
        return _refused(request_id, "dispute", Unprocessable("The form has invalid fields.",
                                                             errors=flatten_messages(invalid.messages)))
    try:
        invoices.dispute_invoice(adapters().db, principal=g.principal, request_id=request_id, note=body["note"],
                                 audit_ctx=audit_context())
    except (Unprocessable, Conflict, Forbidden) as error:
        return _refused(request_id, "dispute", error)
    return _done(request_id)


@bp.route("/requests/<request_id>/invoice.pdf")
@requires("requester", "requester_admin", "facility_staff")
def invoice_pdf(request_id):
    """The invoice as a PDF to file (audited as a read)."""
    req = visible_request(request_id)
    invoice = invoices.invoice_for(db_session(), req)
    service.audit_read(adapters().db, g.principal, "invoice.pdf", "invoice", invoice.id, audit_context())
    data = invoices.invoice_pdf(db_session(), req, payees_file=settings().payees_file)
    response = current_app.response_class(data, status=200, mimetype="application/pdf")
    response.headers["Content-Disposition"] = content_disposition(f"invoice-{req.reference}.pdf")
    return response
