"""A CDex Task ↔ the gateway's request: what a Task says, as the create body `POST /v1/requests` takes.

Nothing here touches the database: `task_to_body` reads a Task (already validated
as an R4B Task) into a create body and the authorization attachments it carries;
`request_to_task` renders a request (and its outputs, once released) as a Task.
Field errors name the FHIR element they came from (`Task.input[2]...`), so a
payer's integration team can find them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator

from gateway.errors import FieldError, Unprocessable
from gateway.intake.schemas import AUTHORITIES

CDEX_TEMP = "http://hl7.org/fhir/us/davinci-cdex/CodeSystem/cdex-temp"
HREX_TEMP = "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp"
LOINC = "http://loinc.org"
PROFILES = {"attachment-request": "http://hl7.org/fhir/us/davinci-cdex/StructureDefinition/cdex-task-attachment-request",
            "data-request": "http://hl7.org/fhir/us/davinci-cdex/StructureDefinition/cdex-task-data-request"}
RELEASE_CONSENT = "64292-6"  # LOINC: release of information consent
FACILITY_SYSTEM = "https://records-gateway.invalid/fhir/NamingSystem/facility-code"
ORGANIZATION_SYSTEM = "https://records-gateway.invalid/fhir/NamingSystem/organization-id"
STATEMENT_POLICY = "https://records-gateway.invalid/fhir/policy/statement/"  # + right_to_revoke etc.
STATEMENTS = ("right_to_revoke", "no_conditioning", "redisclosure")
V3_ROLE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
# What a payer asks for (LOINC document and attachment codes) as the gateway's record types.
RECORD_TYPES = {"34117-2": "visit_notes", "11506-3": "visit_notes", "34133-9": "visit_notes",
                "18842-5": "discharge_summaries", "11502-2": "lab_results", "18748-4": "radiology_reports",
                "11504-8": "operative_reports", "11526-1": "pathology", "10160-0": "medications",
                "11488-4": "visit_notes", "28570-0": "visit_notes", "60591-5": "full_chart"}
LOINC_OF = {"visit_notes": "34117-2", "discharge_summaries": "18842-5", "lab_results": "11502-2",
            "radiology_reports": "18748-4", "operative_reports": "11504-8", "pathology": "11526-1",
            "medications": "10160-0", "full_chart": "60591-5"}
# Representatives' authority, from HL7 v3 role codes (or the gateway's own codes, sent as they are).
AUTHORITY_OF = {"GUARD": "guardian", "POWATT": "durable_poa_health_care", "HPOWATT": "durable_poa_health_care",
                "EXCEST": "estate_executor", "PRN": "parent_of_minor", "MTH": "parent_of_minor",
                "FTH": "parent_of_minor", "NPRN": "parent_of_minor"}
SPECIFIC_OF = {"HIV": "hiv", "GDIS": "genetic", "ETH": "substance_use_disorder", "SUD": "substance_use_disorder",
               "PSYTHPN": "psychotherapy_notes"}
PURPOSE_OF = {"TREAT": "continuity_of_care", "ETREAT": "continuity_of_care", "HPAYMT": "insurance_claim",
              "CLMATTCH": "insurance_claim", "COVAUTH": "insurance_claim", "COVERAGE": "insurance_claim",
              "PATRQT": "personal", "LEGAL": "litigation"}
MAX_ATTACHMENTS = 5


def _codes(concept) -> list[tuple[str | None, str | None]]:
    return [(c.get("system"), c.get("code")) for c in (concept or {}).get("coding", []) if isinstance(c, dict)]


def _has_code(concept, system: str, code: str) -> bool:
    return (system, code) in _codes(concept)


def _first_text(concept) -> str | None:
    if not concept:
        return None
    if concept.get("text"):
        return concept["text"]
    for coding in concept.get("coding", []):
        if coding.get("display") or coding.get("code"):
            return coding.get("display") or coding.get("code")
    return None


def _contained(task: dict, reference) -> dict | None:
    ref = (reference or {}).get("reference") or ""
    if not ref.startswith("#"):
        return None
    return next((r for r in task.get("contained", []) if r.get("id") == ref[1:]), None)


def _name(resource: dict) -> tuple[str | None, str | None]:
    names = resource.get("name") or []
    if not names:
        return None, None
    name = names[0]
    given = " ".join(name.get("given") or []) or None
    return given, name.get("family")


def task_code(task: dict) -> str:
    """`attachment-request` or `data-request` (422 otherwise)."""
    for code in ("attachment-request", "data-request"):
        if _has_code(task.get("code"), CDEX_TEMP, code):
            return code
    raise Unprocessable("Task.code must be cdex-temp `attachment-request` or `data-request`.",
                        errors=[FieldError("INVALID_FIELD", "Task.code", "unsupported task code")])


def task_to_body(task: dict, *, org_name: str) -> tuple[dict, str | None, list[tuple[str, str]]]:
    """The create body a Task asks for, its identifier system, and its authorization attachments
    as (element path, base64 data).  Structural problems are 422s naming the element."""
    errors: list[FieldError] = []
    if task.get("status") != "requested":
        errors.append(FieldError("INVALID_FIELD", "Task.status", "a new Task is `requested`"))
    if task.get("intent") != "order":
        errors.append(FieldError("INVALID_FIELD", "Task.intent", "must be `order`"))
    identifiers = [i for i in task.get("identifier", []) if i.get("value")]
    if not identifiers:
        errors.append(FieldError("FIELD_REQUIRED", "Task.identifier", "the payer's tracking identifier is required"))
    owner = ((task.get("owner") or {}).get("identifier") or {}).get("value")
    if not owner:
        errors.append(FieldError("FIELD_REQUIRED", "Task.owner.identifier", "the facility code is required"))
    patient = _contained(task, task.get("for"))
    if patient is None or patient.get("resourceType") != "Patient":
        errors.append(FieldError("FIELD_REQUIRED", "Task.for", "a reference to a contained Patient is required"))
    types, consent, attachments = [], None, []
    for index, entry in enumerate(task.get("input", [])):
        where = f"Task.input[{index}]"
        kind = entry.get("type")
        if _has_code(kind, HREX_TEMP, "data-code") or _has_code(kind, CDEX_TEMP, "data-code"):
            found = [RECORD_TYPES.get(code) for system, code in _codes(entry.get("valueCodeableConcept"))
                     if system == LOINC]
            found = [f for f in found if f]
            if not found:
                errors.append(FieldError("FHIR_DATA_CODE_UNSUPPORTED", where + ".valueCodeableConcept",
                                         "no LOINC code this gateway maps to a record type"))
            types.extend(t for t in found[:1] if t not in types)
        elif _has_code(kind, HREX_TEMP, "data-query") or _has_code(kind, CDEX_TEMP, "data-query"):
            errors.append(FieldError("FHIR_DATA_QUERY_UNSUPPORTED", where, "ask for documents by LOINC data-code"))
        elif _has_code(kind, LOINC, RELEASE_CONSENT):
            if "valueAttachment" in entry:
                data = entry["valueAttachment"].get("data")
                if not data:
                    errors.append(FieldError("FIELD_REQUIRED", where + ".valueAttachment.data",
                                             "the signed authorization, base64-encoded"))
                else:
                    attachments.append((where, data))
            elif "valueReference" in entry:
                consent = _contained(task, entry["valueReference"])
                if consent is None or consent.get("resourceType") != "Consent":
                    errors.append(FieldError("INVALID_FIELD", where + ".valueReference",
                                             "must reference a contained Consent"))
                    consent = None
    if len(attachments) > MAX_ATTACHMENTS:
        errors.append(FieldError("INVALID_FIELD", "Task.input", f"at most {MAX_ATTACHMENTS} attachments"))
    if errors:
        raise Unprocessable("The Task cannot be read as a records request; see the issues.", errors=errors)
    first, family = _name(patient)
    mrn = next((i.get("value") for i in patient.get("identifier", []) if _has_code(
        i.get("type"), "http://terminology.hl7.org/CodeSystem/v2-0203", "MR")), None)
    body = {
        "reference": identifiers[0]["value"], "facility": owner, "pathway": "authorization",
        "purpose": _purpose(task, consent),
        "patient": {"first_name": first, "last_name": family, "date_of_birth": patient.get("birthDate"),
                    "mrn": mrn, "deceased": bool(patient.get("deceasedBoolean", False))},
        "records": {"types": types, "format": "electronic"},
        "delivery": {"method": "secure_download", "recipient": {"name": org_name}},
        "authorization": _authorization(task, consent, patient) if consent is not None else None,
    }
    return body, identifiers[0].get("system"), attachments


def _purpose(task: dict, consent: dict | None) -> str:
    for purpose in (((consent or {}).get("provision") or {}).get("purpose") or []):
        if purpose.get("code") in PURPOSE_OF:
            return PURPOSE_OF[purpose["code"]]
    return "insurance_claim"  # a payer's attachment request supports a claim or a prior authorization


def _authorization(task: dict, consent: dict, patient: dict) -> dict:
    provision = consent.get("provision") or {}
    signed_by, signer, representative = None, None, None
    for performer in consent.get("performer", []):
        who = _contained(task, performer)
        if who is patient:
            signed_by, signer = "patient", " ".join(filter(None, _name(patient))) or None
        elif who is not None and who.get("resourceType") == "RelatedPerson":
            signed_by, signer = "representative", " ".join(filter(None, _name(who))) or None
            relationship = (who.get("relationship") or [{}])[0]
            authorities = [AUTHORITY_OF.get(code) or (code if code in AUTHORITIES else None)
                           for _system, code in _codes(relationship)]
            authority = next((a for a in authorities if a), None)
            representative = {"authority": authority, "description": _first_text(relationship)}
    recipient = next((actor.get("reference", {}).get("display") for actor in provision.get("actor", [])
                      if _has_code(actor.get("role"), "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                   "PRCP")), None)
    policies = {p.get("uri") for p in consent.get("policy", [])}
    purposes = [p.get("display") or p.get("code") for p in provision.get("purpose", [])]
    descriptions = [_first_text(code) for code in provision.get("code", [])]
    return {
        "signed_by": signed_by, "signer_name": signer,
        "signed_on": (consent.get("dateTime") or "")[:10] or None,
        "expires_on": ((provision.get("period") or {}).get("end") or "")[:10] or None,
        "discloser": next((o.get("display") for o in consent.get("organization", []) if o.get("display")), None),
        "recipient": recipient,
        "information_description": "; ".join(d for d in descriptions if d) or None,
        "purpose_statement": ", ".join(p for p in purposes if p) or None,
        "statements": {name: STATEMENT_POLICY + name in policies for name in STATEMENTS},
        "representative": representative,
        "specific_consents": sorted({SPECIFIC_OF[code] for label in provision.get("securityLabel", [])
                                     for code in [label.get("code")] if code in SPECIFIC_OF}),
    }


def decoded_chunks(data: str, where: str, chunk_chars: int = 64 * 1024) -> Iterator[bytes]:
    """Base64 text decoded a slice at a time (each a multiple of 4 characters), for the upload pipeline."""
    text = "".join(data.split())
    step = chunk_chars - chunk_chars % 4
    for start in range(0, len(text), step):
        try:
            yield base64.b64decode(text[start:start + step], validate=True)
        except (binascii.Error, ValueError):
            raise Unprocessable("The attachment is not valid base64.",
                                errors=[FieldError("INVALID_FIELD", where + ".valueAttachment.data",
                                                   "not base64")]) from None
