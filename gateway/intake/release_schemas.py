"""Marshmallow schemas of invoices, payments, disputes and the accounting of disclosures (API.md v1.1)."""

from __future__ import annotations

import re
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate

from gateway.intake.release_models import PAYMENT_METHODS
from gateway.intake.schemas import PlausibleDate, Strict, Text
from gateway.schemas import Flag, Timestamp, WholeNumber

_MONEY = re.compile(r"^\d{1,7}(\.\d{1,2})?$")
MAX_PAGES = 1_000_000


class Money(fields.String):
    """A non-negative amount of dollars as a decimal string ("123.45"); numbers are refused (no floats)."""

    def __init__(self, **kwargs):
        kwargs["metadata"] = {"pattern": r"^\s*\d{1,7}(\.\d{1,2})?\s*$", **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not _MONEY.match(value.strip()):
            raise ValidationError('Give the amount as a decimal string, for example "123.45".')
        return Decimal(value.strip())


class InvoiceCreateSchema(Strict):
    """The body of `POST /v1/requests/{id}/invoice`."""

    pages = WholeNumber(required=True, validate=validate.Range(0, MAX_PAGES),
                           metadata={"description": "Pages released; the fee schedule's tiers apply to them.",
                                     "example": 312})
    waive = Flag(load_default=False, metadata={"description": "Waive the fee (financial hardship)."})
    waiver_reason = Text(500, multiline=True, metadata={"description": "Required when `waive` is true."})


class PaymentCreateSchema(Strict):
    """The body of `POST /v1/requests/{id}/payments`."""

    method = fields.String(required=True, validate=validate.OneOf(PAYMENT_METHODS))
    reference = Text(100, required=True, validate_also=validate.Length(min=1),
                     metadata={"description": "Check number, receipt or card authorization.",
                               "example": "CHK-1042"})
    amount = Money(required=True, metadata={"description": "Exactly the amount due.", "example": "228.57"})


class PaymentSchema(Schema):
    id = fields.String()
    invoice_id = fields.String()
    method = fields.String()
    reference = fields.String()
    amount = fields.String(metadata={"example": "228.57"})
    currency = fields.String()
    recorded_at = Timestamp()


class DisputeSchema(Strict):
    """The body of `POST /v1/requests/{id}/invoice/dispute`."""

    note = Text(2000, required=True, multiline=True, validate_also=validate.Length(min=1),
                metadata={"description": "What is wrong with the invoice (seen by the records team)."})


class PatientQuerySchema(Strict):
    first_name = Text(100, required=True, validate_also=validate.Length(min=1))
    last_name = Text(100, required=True, validate_also=validate.Length(min=1))
    date_of_birth = PlausibleDate(required=True)


class DisclosureSearchSchema(Strict):
    """The body of `POST /v1/disclosures/search` (patient data travels in the body, never in the URL)."""

    patient = fields.Nested(PatientQuerySchema, required=True)
    since = PlausibleDate(data_key="from", load_default=None, allow_none=True,
                          metadata={"description": "First day (facilities' calendar); at most six years back, "
                                                   "and six years back when omitted."})
    until = PlausibleDate(data_key="to", load_default=None, allow_none=True,
                          metadata={"description": "Last day, included (default today)."})
    include_exempt = Flag(load_default=False, metadata={
        "description": "Also list releases exempt from the accounting (under the patient's authorization)."})


class DocumentRefSchema(Schema):
    id = fields.String()
    sha256 = fields.String()
    pages = fields.Integer(allow_none=True)


class PartyRefSchema(Schema):
    name = fields.String(allow_none=True)
    address = fields.String(allow_none=True)


class DisclosureSchema(Schema):
    """One release of records (45 CFR 164.528(b)(2))."""

    class Meta:
        ordered = True

    id = fields.String()
    disclosed_at = Timestamp()
    request_id = fields.String()
    facility = fields.String()
    pathway = fields.String()
    recipient = fields.Nested(PartyRefSchema)
    description = fields.String()
    purpose_statement = fields.String()
    documents = fields.List(fields.Nested(DocumentRefSchema))
    accountable = fields.Boolean(metadata={"description": "True for releases a patient's accounting must list "
                                                          "(subpoena, court order); false when exempt."})


class DisclosurePageSchema(Schema):
    items = fields.List(fields.Nested(DisclosureSchema))
    next_cursor = fields.String(allow_none=True)
    since = fields.Date(data_key="from", metadata={"description": "The first day searched (after the six-year "
                                                                  "limit)."})
    until = fields.Date(data_key="to", metadata={"description": "The last day searched."})
