"""Invoices and payment for released records (API.md v1.1 "Invoices and payment"; M.G.L. c.111 §70).

Each change runs under the request's row lock (`lifecycle.locked_request`), writes its timeline event,
audit entry and webhook notification in the same transaction, and moves the request through the
lifecycle only:

    issue (staff, from in_progress)  amount due        → awaiting_payment
                                     waived/no charge  → fulfilled if a release is uploaded, else stays
    payment (staff)                  the amount due    → fulfilled if a release is uploaded, else stays
                                                         awaiting_payment until staff fulfil it
                                     (a request returned and cured with its invoice still due is paid
                                     from in_progress: the one invoice survives the return)
    dispute (requester)              flags the invoice; staff see it in their queue and on the request

The amount comes from the fee rules (`rules.fees`): the schedule in force on the invoice date (the
clock's today in the facilities' calendar), its base charge and page tiers, and the §70 no-charge cases
(provider-direct, continuity of care, benefit claims), which win over a waiver.  Money is Decimal in
code, integer cents in the database and decimal strings on the wire.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.auth.principal import Principal
from gateway.clock import Clock
from gateway.db import Database, utcnow
from gateway.errors import Conflict, FieldError, Forbidden, NotFound, Unprocessable
from gateway.intake import assessment, lifecycle
from gateway.intake.models import RecordsRequest
from gateway.intake.release_models import Invoice, Payment, to_cents
from gateway.intake.rules import fees
from gateway.intake.service import body_of

INVOICEABLE = "in_progress"
# Where a payment is taken: awaiting it, or worked again after a return with the first invoice still due (one
# invoice per request: it survives a return and a cure, and its payment then releases the records as usual).
PAYABLE = ("awaiting_payment", "in_progress")
_NO_CHARGE_LABEL = "Copies of records: no charge under M.G.L. c.111 §70"
_WAIVED_LABEL = "Fee waived"
_NOTHING_TO_CHARGE = "Nothing to charge."


class InvoiceExists(Conflict):
    code, title = "INVOICE_EXISTS", "Invoice already issued"


class InvoiceRequired(Conflict):
    code, title = "INVOICE_REQUIRED", "No invoice"


class PaymentAmountMismatch(Unprocessable):
    code, title = "PAYMENT_AMOUNT_MISMATCH", "Payment amount mismatch"


def _require_staff_of(principal: Principal, req: RecordsRequest) -> None:
    if not principal.has_role("facility_staff") or req.facility not in principal.facilities:
        raise Forbidden("Only records staff of this request's facility invoice it and record its payment.")


def _releases(req: RecordsRequest) -> list:
    return [d for d in req.documents if d.kind == "release" and d.scan_status == "clean"]


def price(req: RecordsRequest, *, pages: int, waive: bool, on) -> dict:
    """What the invoice says for this request, `pages` pages, invoiced on `on`: status, lines, total, reason."""
    schedule = fees.schedule_on(assessment.policy(), on)
    lines, total = fees.invoice_lines(schedule, pages)
    priced = {"schedule": schedule, "status": "due", "lines": lines, "total": total, "reason": None}
    no_charge = fees.no_charge_reason(body_of(req))
    if no_charge:  # the law's no-charge cases win over a waiver: nothing is owed to waive
        zero = fees.money(fees.ZERO)
        priced.update(status="no_charge", reason=no_charge, total=fees.ZERO,
                      lines=[{"label": _NO_CHARGE_LABEL, "quantity": pages, "rate": zero, "amount": zero}])
    elif waive:
        waived = fees.money(-total)
        priced.update(status="waived", total=fees.ZERO,
                      lines=[*lines, {"label": _WAIVED_LABEL, "quantity": 1, "rate": waived, "amount": waived}])
    elif total <= 0:
        priced.update(status="no_charge", reason=_NOTHING_TO_CHARGE)
    return priced


def issue_invoice(db: Database, *, principal: Principal, request_id: str, pages: int, waive: bool,
                  waiver_reason: str | None, clock: Clock, audit_ctx: dict, if_match: str | None = None) -> str:
    """Issue the request's one invoice (staff of its facility, from in_progress); returns the invoice id."""
    if waive and not waiver_reason:
        raise Unprocessable("Say why the fee is waived.", code="WAIVER_REASON_REQUIRED",
                            errors=[FieldError("WAIVER_REASON_REQUIRED", "waiver_reason", "required to waive")])
    actor = principal.audit_actor
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        _require_staff_of(principal, req)
        if lifecycle.invoice_of(session, req) is not None:
            raise InvoiceExists("This request already has its invoice; one invoice settles a request.")
        if req.hold_reason == lifecycle.AUTH_REVOKED:
            raise lifecycle.RequestRevoked("The patient revoked this authorization: nothing will be released.")
        if req.status != INVOICEABLE:
            raise lifecycle.InvalidTransition(f"A {req.status} request is not invoiced; claim it first.")
        today = clock.today()
        priced = price(req, pages=pages, waive=waive, on=today)
        invoice = Invoice(
            request_id=req.id, status=priced["status"], amount_cents=to_cents(priced["total"]),
            lines=priced["lines"], pages=pages, basis=priced["schedule"].basis,
            schedule_effective_on=priced["schedule"].effective_on, issued_on=today, issued_at=utcnow(),
            issued_by=actor, waiver_reason=waiver_reason if priced["status"] == "waived" else None,
            no_charge_reason=priced["reason"], disputed=False)
        session.add(invoice)
        session.flush()
        lifecycle.add_event(session, req, "invoice_issued", actor, invoice_id=invoice.id, amount=invoice.amount,
                            invoice_status=invoice.status)
        lifecycle.audit_change(session, req, "invoice.issue", actor=actor, audit_ctx=audit_ctx,
                               object_type="invoice", object_id=invoice.id)
        lifecycle.notify(session, req, "request.invoice_issued", invoice_id=invoice.id,
                         invoice_status=invoice.status, amount=invoice.amount, currency=invoice.currency)
        if invoice.status == "due":
            lifecycle.move(session, req, "awaiting_payment", actor=actor, audit_ctx=audit_ctx,
                           invoice_id=invoice.id)
        elif _releases(req):
            lifecycle.fulfil(session, req, actor=actor, audit_ctx=audit_ctx, invoice_id=invoice.id)
        else:
            lifecycle.touch(req)  # nothing to pay; staff fulfil once the released records are uploaded
        return invoice.id


def record_payment(db: Database, *, principal: Principal, request_id: str, method: str, reference: str,
                   amount: Decimal, audit_ctx: dict, if_match: str | None = None) -> str:
    """Record the payment settling the invoice (exactly the amount due); returns the payment id."""
    actor = principal.audit_actor
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        _require_staff_of(principal, req)
        invoice = lifecycle.invoice_of(session, req)
        if invoice is None:
            raise InvoiceRequired("No invoice has been issued for this request.")
        if invoice.status != "due":
            raise Conflict("The invoice is already paid." if invoice.status == "paid" else
                           f"The invoice is {invoice.status.replace('_', ' ')}: nothing is due.",
                           code="INVOICE_NOT_DUE")
        if req.hold_reason == lifecycle.AUTH_REVOKED:
            raise lifecycle.RequestRevoked("The patient revoked this authorization: nothing will be released.")
        if req.status not in PAYABLE:
            raise lifecycle.InvalidTransition(f"A {req.status} request is not awaiting payment.")
        if to_cents(amount) != invoice.amount_cents:
            raise PaymentAmountMismatch(
                f"One payment settles the invoice: the amount must be exactly {invoice.amount} {invoice.currency}.",
                errors=[FieldError("PAYMENT_AMOUNT_MISMATCH", "amount", f"the amount due is {invoice.amount}")])
        payment = Payment(invoice_id=invoice.id, request_id=req.id, method=method, reference=reference,
                          amount_cents=invoice.amount_cents, recorded_at=utcnow(), recorded_by=actor)
        session.add(payment)
        session.flush()
        invoice.status, invoice.paid_at = "paid", payment.recorded_at
        lifecycle.add_event(session, req, "payment_recorded", actor, invoice_id=invoice.id, payment_id=payment.id,
                            method=method, reference=reference, amount=invoice.amount)
        lifecycle.audit_change(session, req, "payment.record", actor=actor, audit_ctx=audit_ctx,
                               object_type="payment", object_id=payment.id)
        lifecycle.notify(session, req, "request.invoice_paid", invoice_id=invoice.id, invoice_status="paid",
                         amount=invoice.amount, currency=invoice.currency)
        if _releases(req):
            lifecycle.fulfil(session, req, actor=actor, audit_ctx=audit_ctx, payment_id=payment.id)
        else:
            lifecycle.touch(req)  # paid: staff fulfil once the released records are uploaded
        return payment.id


def dispute_invoice(db: Database, *, principal: Principal, request_id: str, note: str, audit_ctx: dict,
                    if_match: str | None = None) -> None:
    """The requester disputes the invoice (a later dispute replaces the note); staff see it in their queue."""
    if not principal.is_requester:
        raise Forbidden("Only the requesting organization disputes its invoice.")
    actor = principal.audit_actor
    with lifecycle.locked_request(db, principal, request_id, audit_ctx=audit_ctx, if_match=if_match) as (session, req):
        invoice = lifecycle.invoice_of(session, req)
        if invoice is None:
            raise InvoiceRequired("No invoice has been issued for this request.")
        invoice.disputed, invoice.dispute_note, invoice.disputed_at = True, note, utcnow()
        lifecycle.touch(req)
        lifecycle.add_event(session, req, "invoice_disputed", actor, invoice_id=invoice.id, note=note)
        lifecycle.audit_change(session, req, "invoice.dispute", actor=actor, org_id=principal.org_id,
                               audit_ctx=audit_ctx, object_type="invoice", object_id=invoice.id)
        lifecycle.notify(session, req, "request.invoice_disputed", invoice_id=invoice.id,
                         invoice_status=invoice.status)


def invoice_for(session: Session, req: RecordsRequest) -> Invoice:
    """The request's invoice, or NotFound when none was issued."""
    invoice = lifecycle.invoice_of(session, req)
    if invoice is None:
        raise NotFound()
    return invoice


def payment_for(session: Session, invoice: Invoice) -> Payment | None:
    """The payment that settled an invoice, if any."""
    return session.scalars(select(Payment).where(Payment.invoice_id == invoice.id)).one_or_none()


def queue_flags(session: Session, request_ids: list[str]) -> dict[str, tuple[str, bool]]:
    """For a page of the staff queue: each invoiced request's (invoice status, disputed)."""
    if not request_ids:
        return {}
    rows = session.execute(select(Invoice.request_id, Invoice.status, Invoice.disputed)
                           .where(Invoice.request_id.in_(request_ids)))
    return {request_id: (status, bool(disputed)) for request_id, status, disputed in rows}



def invoice_pdf(session: Session, req: RecordsRequest, *, payees_file: str | None = None) -> bytes:
    """The invoice as a PDF to file: payee, reference, lines, amount, status, basis and how to pay."""
    from gateway.auth.models import Organization
    from gateway.facilities.service import get_facility
    from gateway.intake.invoice_pdf import InvoiceSheet, render_invoice
    from gateway.intake.payees import payee_for

    invoice = invoice_for(session, req)
    facility = get_facility(session, req.facility)
    facility_name = facility.name if facility else req.facility
    org = session.get(Organization, req.org_id)
    payment = payment_for(session, invoice)
    return render_invoice(InvoiceSheet(
        invoice=invoice.to_resource(), reference=req.reference, request_id=req.id, facility_name=facility_name,
        payee=payee_for(req.facility, facility_name, path=payees_file), bill_to=org.name if org else "",
        schedule_effective_on=invoice.schedule_effective_on,
        payment=payment.to_resource() if payment is not None else None))
