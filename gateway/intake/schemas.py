"""Marshmallow schemas of the request resource (API.md "Requests").

Structure is checked here: unknown fields, over-long strings, control
characters, impossible dates and values outside the enumerations are 422s with
one error per field.  Whether the request can be released (expired
authorization, missing consent, unknown facility...) is the rules' business
(`gateway.intake.rules`), so a draft may be incomplete.
"""

from __future__ import annotations

import re
from datetime import date

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from gateway.intake.models import DOCUMENT_KINDS, STATUSES
from gateway.intake.rules.clocks import BASES as DUE_BASES
from gateway.pagination import cursor_field
from gateway.schemas import Flag, PlainText, QueryFlag, Timestamp

PATHWAYS = ("authorization", "subpoena", "court_order")
PURPOSES = ("litigation", "insurance_claim", "underwriting", "continuity_of_care", "disability_determination",
            "social_security_benefits", "personal", "other")
RECORD_TYPES = ("full_chart", "visit_notes", "discharge_summaries", "lab_results", "radiology_reports",
                "radiology_images", "operative_reports", "pathology", "medications", "billing", "psychotherapy_notes")
SENSITIVE = ("hiv", "genetic", "mental_health", "substance_use_disorder")
DELIVERY_METHODS = ("provider_direct", "secure_download", "mail", "pickup")
AUTHORITIES = ("health_care_proxy", "durable_poa_health_care", "advance_directive", "guardian", "conservator",
               "parent_of_minor", "estate_executor")
SPECIFIC_CONSENTS = ("hiv", "genetic", "substance_use_disorder", "psychotherapy_notes")
EARLIEST_DATE = date(1880, 1, 1)  # nobody alive or with records was born earlier

_CONTROL_CHARS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069"
_CONTROL_ONE_LINE_CHARS = "\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
_CONTROL_ONE_LINE = re.compile(f"[{_CONTROL_ONE_LINE_CHARS}]")
# What str.strip() removes (str.isspace), spelled out so the OpenAPI pattern means the same in every engine.
_SPACE_CHARS = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# ISO dates from 1880 to 2200, as PlausibleDate accepts them (with format: date ruling out 2026-02-30).
DATE_PATTERN = r"^(18[89][0-9]|19[0-9]{2}|2[01][0-9]{2}|2200)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


def text_pattern(*, multiline: bool, non_blank: bool) -> str:
    """The JSON-schema pattern of what Text accepts: no control characters, and something besides space."""
    allowed = f"[^{_CONTROL_CHARS if multiline else _CONTROL_ONE_LINE_CHARS}]"
    if not non_blank:
        return f"^{allowed}*$"
    visible = f"[^{_CONTROL_CHARS if multiline else _CONTROL_ONE_LINE_CHARS}{_SPACE_CHARS}]"
    return f"^{allowed}*{visible}{allowed}*$"


class Text(fields.String):
    """A stripped string without control or bidi-override characters (multi-line when `multiline`)."""

    def __init__(self, max_length: int, *, multiline: bool = False, validate_also=None, **kwargs):
        if not kwargs.get("required"):
            kwargs.setdefault("allow_none", True)
            kwargs.setdefault("load_default", None)
        checks = [validate.Length(max=max_length), *([validate_also] if validate_also else [])]
        non_blank = any(isinstance(v, validate.Length) and (v.min or 0) > 0 for v in checks)
        kwargs["metadata"] = {"pattern": text_pattern(multiline=multiline, non_blank=non_blank),
                              **kwargs.get("metadata", {})}
        super().__init__(validate=checks, **kwargs)
        self.multiline = multiline
        self.max_length = max_length

    def _deserialize(self, value, attr, data, **kwargs):
        raw = super()._deserialize(value, attr, data, **kwargs)
        if len(raw) > self.max_length:  # as sent, as the documented maxLength counts, not once stripped
            raise ValidationError(f"Longer than maximum length {self.max_length}.")
        text = raw.strip()
        pattern = _CONTROL if self.multiline else _CONTROL_ONE_LINE
        if pattern.search(text):
            raise ValidationError("Control and direction-override characters are not allowed.")
        return text


class PlausibleDate(fields.Date):
    """An ISO date no earlier than 1880 and no later than the year 2200."""

    def __init__(self, **kwargs):
        kwargs["metadata"] = {"pattern": DATE_PATTERN, **kwargs.get("metadata", {})}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST_DATE <= parsed <= date(2200, 12, 31):
            raise ValidationError("Not a plausible date.")
        return parsed


def _date(**kwargs):
    kwargs.setdefault("allow_none", True)
    kwargs.setdefault("load_default", None)
    return PlausibleDate(**kwargs)


def _choice(options, **kwargs):
    return fields.String(validate=validate.OneOf(options), **kwargs)


def _choices(options, **kwargs):
    return fields.List(_choice(options), load_default=list, validate=validate.Length(max=len(options)), **kwargs)


class Strict(Schema):
    class Meta:
        unknown = RAISE
        ordered = True


class PatientSchema(Strict):
    first_name = Text(100, required=True, validate_also=validate.Length(min=1))
    last_name = Text(100, required=True, validate_also=validate.Length(min=1))
    date_of_birth = PlausibleDate(required=True)
    other_names = fields.List(Text(100), load_default=list, validate=validate.Length(max=10))
    mrn = Text(50)
    deceased = Flag(load_default=False)
    minor = Flag(load_default=False)


class RecordsSchema(Strict):
    types = _choices(RECORD_TYPES)
    date_from = _date()
    date_to = _date()
    sensitive = _choices(SENSITIVE)
    format = _choice(("electronic", "paper"), load_default="electronic")


class PartySchema(Strict):
    name = Text(200)
    address = Text(500, multiline=True)


class DeliverySchema(Strict):
    method = _choice(DELIVERY_METHODS, required=True)
    recipient = fields.Nested(PartySchema, allow_none=True, load_default=None)


class RepresentativeSchema(Strict):
    authority = _choice(AUTHORITIES, allow_none=True, load_default=None)
    description = Text(500, multiline=True)


class StatementsSchema(Strict):
    right_to_revoke = Flag(load_default=False)
    no_conditioning = Flag(load_default=False)
    redisclosure = Flag(load_default=False)


class AuthorizationSchema(Strict):
    signed_by = _choice(("patient", "representative"), allow_none=True, load_default=None)
    signer_name = Text(200)
    signed_on = _date()
    expires_on = _date()
    expiration_event = Text(300)
    discloser = Text(200)
    recipient = Text(200)
    information_description = Text(2000, multiline=True)
    purpose_statement = Text(500, multiline=True)
    statements = fields.Nested(StatementsSchema, load_default=dict)
    representative = fields.Nested(RepresentativeSchema, allow_none=True, load_default=None)
    specific_consents = _choices(SPECIFIC_CONSENTS)


class LegalProcessSchema(Strict):
    return_date = _date(metadata={"description": "A subpoena's return date; the due date is no later."})


class RequestCreateSchema(Strict):
    """The body of `POST /v1/requests` and `POST /v1/requests/validate`."""

    reference = Text(100, required=True, validate_also=validate.Length(min=1),
                     metadata={"description": "Your own reference; unique among your open requests."})
    facility = Text(64, required=True, validate_also=validate.Length(min=1),
                    metadata={"description": "A facility code from GET /v1/facilities."})
    practice = fields.Nested(PartySchema, allow_none=True, load_default=None)
    pathway = _choice(PATHWAYS, required=True)
    purpose = _choice(PURPOSES, required=True)
    patient = fields.Nested(PatientSchema, required=True)
    records = fields.Nested(RecordsSchema, required=True)
    delivery = fields.Nested(DeliverySchema, required=True)
    authorization = fields.Nested(AuthorizationSchema, allow_none=True, load_default=None)
    legal_process = fields.Nested(LegalProcessSchema, allow_none=True, load_default=None)
    public_benefit_claim = Flag(load_default=False, metadata={
        "description": "The records support a claim or appeal under the Social Security Act or a "
                       "needs-based benefit program (no fee, M.G.L. c.111 §70)."})
    fee_waiver_requested = Flag(load_default=False)
    instructions = Text(2000, multiline=True)


SECTIONS = ("practice", "patient", "records", "delivery", "authorization", "legal_process")
MAX_GROUP_FACILITIES = 10


def _distinct(values: list) -> None:
    if len(set(values)) != len(values):
        raise ValidationError("Name each facility once.")


class RequestGroupCreateSchema(RequestCreateSchema):
    """`POST /v1/requests` for several facilities: the create body with `facilities` instead of `facility`."""

    class Meta(Strict.Meta):
        exclude = ("facility",)

    facilities = fields.List(
        Text(64, required=True, validate_also=validate.Length(min=1)), required=True,
        validate=[validate.Length(min=1, max=MAX_GROUP_FACILITIES), _distinct],
        metadata={"description": "Facility codes from GET /v1/facilities, each once: one request per facility, "
                                 "all sharing this body and reference.", "uniqueItems": True})


class ScanSchema(Schema):
    status = fields.String(attribute="scan_status", metadata={"example": "clean"})
    engine = fields.String(attribute="scan_engine")
    signature_version = fields.String(attribute="scan_signature_version", allow_none=True)
    scanned_at = Timestamp()


_SCAN = ScanSchema()

class ReadingFindingSchema(Schema):
    code = fields.String(metadata={"description": "An advisory FORM_* code (docs/rules.md §8)"})
    field = fields.String()
    message = fields.String()
    page = fields.Integer(allow_none=True)


class ReadingSchema(Schema):
    """What the signed form said when read (API.md "Reading the authorization"); advisory, never the text."""

    status = fields.String(validate=validate.OneOf(("pending", "done", "failed")))
    legible = fields.Boolean(allow_none=True)
    confidence = fields.Integer(allow_none=True, metadata={"description": "0–100; 100 for a text layer"})
    pages_read = fields.Integer(allow_none=True)
    findings = fields.List(fields.Nested(ReadingFindingSchema))


class DocumentSchema(Schema):
    id = fields.String()
    kind = fields.String(validate=validate.OneOf(DOCUMENT_KINDS))
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    pages = fields.Integer(allow_none=True)
    # One instance: a schema is costly to build, cheap to reuse (a lambda: Function would pass `dump` a context).
    scan = fields.Function(lambda d: _SCAN.dump(d))  # noqa: PLW0108
    uploaded_at = Timestamp()
    reading = fields.Nested(ReadingSchema, allow_none=True,
                            metadata={"description": "authorization and representative_authority documents only"})


class RoutingSchema(Schema):
    queue = fields.String()
    routed_at = Timestamp()


class InvoiceLineSchema(Schema):
    label = fields.String(metadata={"example": "Pages 1–100"})
    quantity = fields.Integer(metadata={"example": 100})
    rate = fields.String(metadata={"description": "Decimal string", "example": "0.96"})
    amount = fields.String(metadata={"description": "Decimal string (negative for a waiver)", "example": "96.00"})


class InvoiceSchema(Schema):
    """The invoice of a request (API.md v1.1 "Invoices and payment"; M.G.L. c.111 §70)."""

    class Meta:
        ordered = True

    id = fields.String()
    amount = fields.String(metadata={"description": "Decimal string: the amount due or paid", "example": "228.57"})
    currency = fields.String(metadata={"example": "USD"})
    lines = fields.List(fields.Nested(InvoiceLineSchema))
    basis = fields.String(metadata={"example": "M.G.L. c.111 §70"})
    status = fields.String(validate=validate.OneOf(("due", "paid", "waived", "no_charge")))
    pages = fields.Integer(allow_none=True)
    issued_on = fields.Date(metadata={"description": "The invoice date; the fee schedule in force on it applies."})
    issued_at = Timestamp()
    paid_at = Timestamp(allow_none=True)
    disputed = fields.Boolean()
    dispute_note = fields.String(metadata={"description": "The requester's note (present once disputed)."})
    disputed_at = Timestamp()
    reason = fields.String(allow_none=True, metadata={
        "description": "Why nothing is charged: the §70 no-charge case, or the staff's waiver reason."})


class DueExtensionSchema(Schema):
    extended_at = Timestamp()
    reason = fields.String(metadata={"description": "The records team's written reason for the delay"})
    days = fields.Integer(metadata={"example": 30})


class RequestSchema(RequestCreateSchema):
    """The request resource every read returns."""

    class Meta:
        ordered = True

    id = fields.String()
    status = fields.String(validate=validate.OneOf(STATUSES))
    version = fields.Integer(metadata={"description": "+1 on every change; the ETag. Send it back in If-Match "
                                                      "to change the request only if nobody changed it since."})
    hold_reason = fields.String(allow_none=True, metadata={"description": "Why an on_hold request is held "
                                                                          "(AUTH_REVOKED: a patient revocation)."})
    assigned_to = fields.String(allow_none=True, metadata={"description": "The records clerk working it."})
    documents = fields.List(fields.Nested(DocumentSchema))
    required_documents = fields.List(fields.Dict())
    deficiencies = fields.List(fields.Dict())
    routing = fields.Nested(RoutingSchema, allow_none=True)
    fee_estimate = fields.Dict(allow_none=True)
    due_on = fields.Date(allow_none=True)
    invoice = fields.Nested(InvoiceSchema, allow_none=True, metadata={"description": "null until one is issued"})
    due_basis = fields.String(allow_none=True, validate=validate.OneOf(DUE_BASES), metadata={
        "description": "Which clock set due_on at submission (RULES.md §9): the facility's target turnaround, "
                       "HIPAA's 30-day access clock (45 CFR 164.524(b)(2)), or the legal process's return date. "
                       "Null before submission."})
    due_rule = fields.String(allow_none=True, metadata={"description": "What that clock cites", "example":
                                                        "45 CFR 164.524(b)(2)"})
    due_extension = fields.Nested(DueExtensionSchema, allow_none=True, metadata={
        "description": "The one 30-day extension of the HIPAA access clock, when staff made it"})
    created_at = Timestamp()
    updated_at = Timestamp()
    submitted_at = Timestamp(allow_none=True)


class RequestGroupCreatedSchema(Schema):
    """The answer of `POST /v1/requests` with `facilities`: the group and its new drafts, one per facility."""

    class Meta:
        ordered = True

    group_id = fields.String()
    requests = fields.List(fields.Nested(RequestSchema))


class RequestGroupSchema(Schema):
    """A request group: the requests created together for one patient at several facilities."""

    class Meta:
        ordered = True

    id = fields.String()
    reference = fields.String()
    created_at = Timestamp()
    requests = fields.List(fields.Nested(RequestSchema), metadata={"description": "In facility order."})


class GroupDocumentSchema(Schema):
    """One request's copy of a document uploaded to its group (the same stored file for every request)."""

    request_id = fields.String()
    document = fields.Nested(DocumentSchema)


class GroupDocumentsSchema(Schema):
    """The answer of `POST /v1/request-groups/{group_id}/documents`."""

    items = fields.List(fields.Nested(GroupDocumentSchema))


class RequestPageSchema(Schema):
    items = fields.List(fields.Nested(RequestSchema))
    next_cursor = fields.String(allow_none=True)


LIST_SORTS = ("-created_at", "due_on", "-updated_at")
_SORT_DESCRIPTION = ("`-created_at`: newest first (default); `due_on`: oldest due date first (requests without "
                     "one last); `-updated_at`: last updated first")


_OVERDUE_DESCRIPTION = ("`true`: only requests the records team still owes (submitted, routed, in_progress, "
                        "on_hold) past their due date, judged in the facilities' calendar; `false`: no filter")


class RequestFilterFields(Schema):
    """The request list's filters, as query parameters (GET) or in a search body (POST)."""

    status = fields.String(validate=validate.OneOf(STATUSES))
    facility = PlainText(64)
    reference = PlainText(100, metadata={"description": "Exactly this reference"})
    created_after = fields.AwareDateTime(default_timezone=None, metadata={
        "description": "Created strictly after this timestamp (with its zone)"})
    updated_after = fields.AwareDateTime(default_timezone=None, metadata={
        "description": "Changed strictly after this timestamp (with its zone): what changed since the last sync"})
    overdue = Flag(load_default=False, metadata={"description": _OVERDUE_DESCRIPTION})


class RequestListArgsSchema(RequestFilterFields):
    overdue = QueryFlag(load_default=False, metadata={"description": _OVERDUE_DESCRIPTION})
    limit = fields.Integer(load_default=25, validate=validate.Range(1, 100))
    cursor = cursor_field()
    sort = fields.String(load_default="-created_at", validate=validate.OneOf(LIST_SORTS),
                         metadata={"description": _SORT_DESCRIPTION})


class RequestFiltersSchema(RequestFilterFields):
    class Meta:
        unknown = RAISE


class RequestSearchSchema(Schema):
    """The body of `POST /v1/requests/search`: the terms never travel in a URL."""

    class Meta:
        unknown = RAISE

    text = Text(100, required=True, validate_also=validate.Length(min=2), metadata={
        "description": "Part of the request's reference, or words starting the patient's name or a former name "
                       "(case and accents ignored, any order)"})
    filters = fields.Nested(RequestFiltersSchema, load_default=dict)
    sort = fields.String(load_default="-created_at", validate=validate.OneOf(LIST_SORTS),
                         metadata={"description": _SORT_DESCRIPTION})
    limit = fields.Integer(load_default=25, validate=validate.Range(1, 100))
    cursor = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200),
                           metadata={"description": "`next_cursor` of the previous page of the same search"})


class EventSchema(Schema):
    at = Timestamp()
    type = fields.String(metadata={"example": "status_changed"})
    status = fields.String()
    actor = fields.String()
    detail = fields.Dict()


class EventPageSchema(Schema):
    items = fields.List(fields.Nested(EventSchema))
    next_cursor = fields.String(allow_none=True)


class ValidationSchema(Schema):
    """The answer of `POST /v1/requests/validate`."""

    valid = fields.Boolean()
    deficiencies = fields.List(fields.Dict())
    required_documents = fields.List(fields.Dict())
    fee_estimate = fields.Dict()
    due_on = fields.Date(allow_none=True, metadata={"description": "If submitted today"})
    due_basis = fields.String(allow_none=True, validate=validate.OneOf(DUE_BASES),
                              metadata={"description": "The clock that would set due_on"})


class RevocationCreateSchema(Strict):
    """A patient's revocation of authorizations for a recipient, from a date."""

    patient = fields.Nested("RevokingPatientSchema", required=True)
    recipient = Text(200, required=True, validate_also=validate.Length(min=1))
    effective_on = PlausibleDate(required=True)
    document_id = PlainText(36, load_default=None, allow_none=True, metadata={
        "description": "The written revocation, if uploaded as a document of a request you work."})


class RevokingPatientSchema(Strict):
    first_name = Text(100, required=True, validate_also=validate.Length(min=1))
    last_name = Text(100, required=True, validate_also=validate.Length(min=1))
    date_of_birth = PlausibleDate(required=True)


class RevocationSchema(Schema):
    id = fields.String()
    recipient = fields.String()
    effective_on = fields.Date()
    document_id = fields.String(allow_none=True)
    held_requests = fields.List(fields.String(), metadata={
        "description": "Open requests it put on hold (AUTH_REVOKED) that you may see."})
    created_at = Timestamp()
