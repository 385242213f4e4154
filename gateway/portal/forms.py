"""The request form: a flat HTML form to and from the API's create body.

The portal never judges a request itself: the body built here goes through
the same `RequestCreateSchema` and the same rules as an API call; this module
only translates names, blanks and checkboxes, and words errors for people.
"""

from __future__ import annotations

from collections.abc import Mapping

from marshmallow import ValidationError

from gateway.errors import FieldError, flatten_messages
from gateway.intake.schemas import (
    AUTHORITIES,
    DELIVERY_METHODS,
    MAX_GROUP_FACILITIES,
    PATHWAYS,
    PURPOSES,
    RECORD_TYPES,
    SENSITIVE,
    SPECIFIC_CONSENTS,
    RequestCreateSchema,
)

LABELS = {
    "reference": "Your reference", "facility": "Where the patient received care", "pathway": "Legal basis",
    "purpose": "Purpose", "practice.name": "Practice name", "practice.address": "Practice address",
    "patient.first_name": "Patient's first name", "patient.last_name": "Patient's last name",
    "patient.date_of_birth": "Patient's date of birth", "patient.other_names": "Other names used",
    "patient.mrn": "Medical record number", "records.types": "Records requested",
    "records.date_from": "Records from", "records.date_to": "Records to", "records.sensitive": "Sensitive information",
    "records.format": "Format", "delivery.method": "Delivery", "delivery.recipient.name": "Recipient's name",
    "delivery.recipient.address": "Recipient's address", "authorization.signed_by": "Signed by",
    "authorization.signer_name": "Signer's name", "authorization.signed_on": "Date signed",
    "authorization.expires_on": "Expiration date", "authorization.expiration_event": "Expiration event",
    "authorization.discloser": "Who may release the records (as written)",
    "authorization.recipient": "Who may receive them (as written)",
    "authorization.information_description": "Information described", "authorization.purpose_statement":
    "Purpose stated", "authorization.representative.authority": "Representative's authority",
    "authorization.representative.description": "Description of the authority",
    "authorization.specific_consents": "Specific consents given", "legal_process.return_date": "Return date",
    "instructions": "Instructions for the records team",
}
CHOICE_LABELS = {
    "pathway": {"authorization": "A signed HIPAA authorization", "subpoena": "A subpoena",
                "court_order": "A court order"},
    "purpose": {"litigation": "Litigation", "insurance_claim": "Insurance claim", "underwriting": "Underwriting",
                "continuity_of_care": "Continuity of care", "disability_determination": "Disability determination",
                "social_security_benefits": "Social Security benefits", "personal": "Personal use",
                "other": "Other"},
    "records.types": {"full_chart": "Full chart", "visit_notes": "Visit notes",
                      "discharge_summaries": "Discharge summaries", "lab_results": "Lab results",
                      "radiology_reports": "Radiology reports", "radiology_images": "Radiology images",
                      "operative_reports": "Operative reports", "pathology": "Pathology",
                      "medications": "Medications", "billing": "Billing records",
                      "psychotherapy_notes": "Psychotherapy notes"},
    "records.sensitive": {"hiv": "HIV/AIDS", "genetic": "Genetic testing", "mental_health": "Mental health",
                          "substance_use_disorder": "Substance use disorder treatment"},
    "records.format": {"electronic": "Electronic", "paper": "Paper"},
    "delivery.method": {"secure_download": "Secure download from this portal",
                        "provider_direct": "Directly to a provider", "mail": "Mail", "pickup": "Pick up"},
    "authorization.signed_by": {"patient": "The patient", "representative": "A personal representative"},
    "authorization.representative.authority": {
        "health_care_proxy": "Health care proxy", "durable_poa_health_care": "Durable power of attorney (health care)",
        "advance_directive": "Advance directive", "guardian": "Guardian", "conservator": "Conservator",
        "parent_of_minor": "Parent of a minor", "estate_executor": "Executor or administrator of the estate"},
    "authorization.specific_consents": {"hiv": "HIV/AIDS information", "genetic": "Genetic testing",
                                        "substance_use_disorder": "Substance use disorder treatment",
                                        "psychotherapy_notes": "Psychotherapy notes"},
}
_ENUMS = {"pathway": PATHWAYS, "purpose": PURPOSES, "records.types": RECORD_TYPES, "records.sensitive": SENSITIVE,
          "delivery.method": DELIVERY_METHODS, "authorization.representative.authority": AUTHORITIES,
          "authorization.specific_consents": SPECIFIC_CONSENTS}
assert all(set(CHOICE_LABELS[k]) == set(v) for k, v in _ENUMS.items()), "labels out of step with the schema"

TEXT = ("reference", "purpose", "pathway", "practice.name", "practice.address", "patient.first_name",
        "patient.last_name", "patient.mrn", "records.format", "delivery.method", "delivery.recipient.name",
        "delivery.recipient.address", "authorization.signed_by", "authorization.signer_name",
        "authorization.expiration_event", "authorization.discloser", "authorization.recipient",
        "authorization.information_description", "authorization.purpose_statement",
        "authorization.representative.authority", "authorization.representative.description", "instructions")
DATES = ("patient.date_of_birth", "records.date_from", "records.date_to", "authorization.signed_on",
         "authorization.expires_on", "legal_process.return_date")
FLAGS = ("patient.deceased", "patient.minor", "authorization.statements.right_to_revoke",
         "authorization.statements.no_conditioning", "authorization.statements.redisclosure",
         "public_benefit_claim", "fee_waiver_requested")
LISTS = ("records.types", "records.sensitive", "authorization.specific_consents")
REQUIRED = ("reference", "facility", "pathway", "purpose", "patient.first_name", "patient.last_name",
            "patient.date_of_birth", "delivery.method")
OPTIONAL_SECTIONS = ("practice", "delivery.recipient", "authorization.representative", "legal_process")


def _put(body: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for name in parents:
        body = body.setdefault(name, {})
    body[last] = value


def _get(body: Mapping, path: str):
    for name in path.split("."):
        if not isinstance(body, Mapping):
            return None
        body = body.get(name)
    return body


def _blank(value) -> bool:
    return value in (None, "", [], False) or (isinstance(value, dict) and all(_blank(v) for v in value.values()))


def body_from_form(form, *, practice_required: bool) -> dict:
    """The create body a submitted form stands for (not yet validated)."""
    body: dict = {"facility": (form.get("facility") or "").strip()}
    for path in TEXT:
        value = (form.get(path) or "").strip()
        if value or path in REQUIRED:
            _put(body, path, value)
    for path in DATES:
        value = (form.get(path) or "").strip()
        if value or path in REQUIRED:
            _put(body, path, value)
    for path in FLAGS:
        _put(body, path, form.get(path) == "on")
    for path in LISTS:
        _put(body, path, [v for v in form.getlist(path) if v])
    other_names = [line.strip() for line in (form.get("patient.other_names") or "").splitlines() if line.strip()]
    _put(body, "patient.other_names", other_names)
    for path in OPTIONAL_SECTIONS:  # an untouched optional section is absent, not a set of blanks
        section = _get(body, path)
        if section is not None and _blank(section) and not (path == "practice" and practice_required):
            *parents, last = path.split(".")
            _get(body, ".".join(parents)).pop(last) if parents else body.pop(last)
    if body.get("pathway", "authorization") != "authorization" and _blank(body.get("authorization")):
        body.pop("authorization", None)
    for required in ("records", "delivery"):
        body.setdefault(required, {})
    return body


def drop_blank_required(body: dict) -> dict:
    """A blank required field is "missing" (said once, in words), not an invalid empty value."""
    for path in REQUIRED:
        if _get(body, path) == "":
            *parents, last = path.split(".")
            (_get(body, ".".join(parents)) if parents else body).pop(last)
    return body


def load(body: dict) -> tuple[dict | None, list[FieldError]]:
    """Validate a body with the API's own schema; (loaded, []) or (None, errors in plain words)."""
    drop_blank_required(body)
    try:
        return RequestCreateSchema().load(body), []
    except ValidationError as error:
        return None, [plain(e) for e in flatten_messages(error.messages)]


def plain(error: FieldError) -> FieldError:
    """A schema error worded for a person, naming the field by its label."""
    label = LABELS.get(error.field or "", "This field")
    message = error.message
    if "Missing data" in message or "Field may not be null" in message:
        message = f"{label}: this is required."
    elif "Not a valid date" in message or "plausible date" in message:
        message = f"{label}: enter a real date."
    elif "Longer than maximum length" in message:
        message = f"{label}: this is too long."
    elif "Must be one of" in message:
        message = f"{label}: choose one of the options."
    else:
        message = f"{label}: {message}"
    return FieldError(error.code, error.field, message)


def values_from_body(body: Mapping | None) -> dict:
    """Flat form values (path → value) to fill the form with a stored or submitted body."""
    if not body:
        return {"pathway": "authorization", "records.format": "electronic", "delivery.method": "secure_download",
                "authorization.signed_by": "patient"}
    values: dict = {}
    for path in (*TEXT, *DATES, *FLAGS, *LISTS, "facility"):
        value = _get(body, path)
        if value is not None:
            values[path] = value.isoformat() if hasattr(value, "isoformat") else value
    values["patient.other_names"] = "\n".join(_get(body, "patient.other_names") or [])
    return values


ALSO = "also_facilities"  # the create form's "send the same request to these facilities too"


def other_facilities(form, *, known: set[str]) -> tuple[list[str], list[FieldError]]:
    """The facilities ticked besides the chosen one (in form order, each once), or an error for a code that
    is not a facility (a tampered form): nothing is created then."""
    chosen = (form.get("facility") or "").strip()
    also: list[str] = []
    for ticked in form.getlist(ALSO):
        code = ticked.strip()
        if code and code != chosen and code not in also:
            also.append(code)
    if any(code not in known for code in also):
        return [], [FieldError("INVALID_FIELD", ALSO, "Other facilities: choose facilities from the list.")]
    if 1 + len(also) > MAX_GROUP_FACILITIES:
        return [], [FieldError("INVALID_FIELD", ALSO, f"Other facilities: at most {MAX_GROUP_FACILITIES} in all.")]
    return also, []


def group_body(loaded: dict, also: list[str]) -> dict:
    """A validated one-facility create body as the body of a group: its facility first, then `also`."""
    common = {name: value for name, value in loaded.items() if name != "facility"}
    return {**common, "facilities": [loaded["facility"], *also]}


def values_from_form(form) -> dict:
    """Flat values exactly as typed, to show a refused form again."""
    values = {path: form.get(path, "") for path in (*TEXT, *DATES, "facility", "patient.other_names")}
    values[ALSO] = form.getlist(ALSO)
    values.update({path: form.get(path) == "on" for path in FLAGS})
    values.update({path: form.getlist(path) for path in LISTS})
    return values


def options(path: str) -> list[tuple[str, str]]:
    """(value, label) pairs of a choice field, in the schema's order."""
    return list(CHOICE_LABELS[path].items())
