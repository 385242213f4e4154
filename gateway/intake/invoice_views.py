"""`/v1/requests/{id}/invoice`, `/invoice.pdf`, `/invoice/dispute` and `/payments` (API.md v1.1 "Invoices and
payment").  Every answer about one request carries its ETag; the changes accept If-Match."""

from __future__ import annotations

from flask import request, url_for
from flask_smorest import Blueprint

from gateway.auth.web import audit_context, current_principal, requires
from gateway.intake import invoices, lifecycle, service
from gateway.intake.release_schemas import DisputeSchema, InvoiceCreateSchema, PaymentCreateSchema, PaymentSchema
from gateway.intake.schemas import InvoiceSchema
from gateway.intake.views import READERS, REQUESTERS, visible_request
from gateway.storage.store import content_disposition
from gateway.web import IDEMPOTENCY_HEADER, IF_MATCH_HEADER, adapters, clock, db_session, idempotent, settings

blp = Blueprint("invoices", __name__, url_prefix="/v1/requests",
                description="Invoices and payment for released records (M.G.L. c.111 §70).")

_STALE = "PRECONDITION_FAILED: If-Match names an older version; nothing changed"


def _if_match() -> str | None:
    return request.headers.get("If-Match")


def _invoice_answer(request_id: str, status: int = 200, headers: dict | None = None):
    """The request's invoice, read after the service committed, with the request's ETag."""
    req = visible_request(request_id)
    invoice = invoices.invoice_for(db_session(), req)
    return invoice.to_resource(), status, {"ETag": lifecycle.etag(req), **(headers or {})}


@blp.route("/<request_id>/invoice", methods=["POST"])
@requires("facility_staff")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER, IF_MATCH_HEADER])
@blp.arguments(InvoiceCreateSchema)
@blp.response(201, InvoiceSchema)
@blp.alt_response(409, description="INVOICE_EXISTS: a request has one invoice; INVALID_TRANSITION: only an "
                                   "in_progress request is invoiced; AUTH_REVOKED")
@blp.alt_response(412, description=_STALE)
@blp.alt_response(422, description="WAIVER_REASON_REQUIRED: waiving needs a reason; VALIDATION_FAILED")
def issue_invoice(body, request_id):
    """Invoice the released records: pages priced on the fee schedule in force today, or waived with a reason,
    or no charge where M.G.L. c.111 §70 says so. An amount due makes the request `awaiting_payment`; nothing
    to pay releases it at once if the released records are uploaded."""
    invoices.issue_invoice(adapters().db, principal=current_principal(), request_id=request_id,
                           pages=body["pages"], waive=body["waive"], waiver_reason=body.get("waiver_reason"),
                           clock=clock(), if_match=_if_match(), audit_ctx=audit_context())
    return _invoice_answer(request_id, 201, {"Location": url_for("invoices.get_invoice", request_id=request_id)})


@blp.route("/<request_id>/invoice", methods=["GET"])
@requires(*READERS, scope="requests:read")
@blp.response(200, InvoiceSchema)
def get_invoice(request_id):
    """The request's invoice (404 before one is issued)."""
    req = visible_request(request_id)
    invoice = invoices.invoice_for(db_session(), req)
    service.audit_read(adapters().db, current_principal(), "invoice.read", "invoice", invoice.id, audit_context())
    return invoice.to_resource(), 200, {"ETag": lifecycle.etag(req)}


@blp.route("/<request_id>/invoice.pdf", methods=["GET"])
@requires(*READERS, scope="requests:read")
@blp.doc(responses={200: {"description": "The invoice as a PDF to file: payee and mailing address, your "
                                         "reference, lines, amount, status, basis and how to pay. No patient "
                                         "data.", "content": {"application/pdf": {"schema": {
                                             "type": "string", "format": "binary"}}}}})
def invoice_pdf(request_id):
    """The invoice as a PDF (audited as a read)."""
    from flask import current_app

    req = visible_request(request_id)
    invoice = invoices.invoice_for(db_session(), req)  # 404 when none was issued
    service.audit_read(adapters().db, current_principal(), "invoice.pdf", "invoice", invoice.id, audit_context())
    data = invoices.invoice_pdf(db_session(), req, payees_file=settings().payees_file)
    response = current_app.response_class(data, status=200, mimetype="application/pdf")
    response.headers["Content-Disposition"] = content_disposition(f"invoice-{req.reference}.pdf")
    response.headers["ETag"] = lifecycle.etag(req)
    return response


@blp.route("/<request_id>/invoice/dispute", methods=["POST"])
@requires(*REQUESTERS, scope="requests:write")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER, IF_MATCH_HEADER])
@blp.arguments(DisputeSchema)
@blp.response(200, InvoiceSchema)
@blp.alt_response(409, description="INVOICE_REQUIRED: no invoice has been issued")
@blp.alt_response(412, description=_STALE)
def dispute_invoice(body, request_id):
    """Dispute the invoice with a note for the records team (a later dispute replaces the note)."""
    invoices.dispute_invoice(adapters().db, principal=current_principal(), request_id=request_id, note=body["note"],
                             if_match=_if_match(), audit_ctx=audit_context())
    return _invoice_answer(request_id)


@blp.route("/<request_id>/payments", methods=["POST"])
@requires("facility_staff")
@idempotent
@blp.doc(parameters=[IDEMPOTENCY_HEADER, IF_MATCH_HEADER])
@blp.arguments(PaymentCreateSchema)
@blp.response(201, PaymentSchema)
@blp.alt_response(409, description="INVOICE_REQUIRED: no invoice; INVOICE_NOT_DUE: already paid (one payment "
                                   "settles an invoice), waived or no charge; INVALID_TRANSITION; AUTH_REVOKED")
@blp.alt_response(412, description=_STALE)
@blp.alt_response(422, description="PAYMENT_AMOUNT_MISMATCH: the amount must be exactly the amount due")
def record_payment(body, request_id):
    """Record the payment of the invoice (check, cash or card, with its reference). The invoice becomes paid, and
    the request fulfilled (the records released) if the released records are uploaded; otherwise it stays
    awaiting_payment until staff fulfil it."""
    payment_id = invoices.record_payment(
        adapters().db, principal=current_principal(), request_id=request_id, method=body["method"],
        reference=body["reference"], amount=body["amount"], if_match=_if_match(), audit_ctx=audit_context())
    req = visible_request(request_id)
    invoice = invoices.invoice_for(db_session(), req)
    payment = invoices.payment_for(db_session(), invoice)
    assert payment is not None and payment.id == payment_id
    return payment.to_resource(), 201, {"ETag": lifecycle.etag(req),
                                        "Location": url_for("invoices.get_invoice", request_id=request_id)}
