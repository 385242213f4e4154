"""A release of a Task's records as an AuditEvent (IHE BALP PrivacyDisclosure shapes), read-only.

Built from the disclosure record `lifecycle.fulfil` writes with every release
(gateway.intake.disclosures): who disclosed (the facility as custodian), to whom
(the requesting organization as information recipient), when, why, and which
documents (by id and SHA-256).  No patient identity is in it, as in the record.
"""

from __future__ import annotations

from gateway.fhir import translate
from gateway.intake.release_models import Disclosure

BALP_PROFILE = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PrivacyDisclosure.Disclosure"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"


def render_audit_event(disclosure: Disclosure) -> dict:
    recipient = disclosure.recipient or {}
    return {
        "resourceType": "AuditEvent", "id": disclosure.id, "meta": {"profile": [BALP_PROFILE]},
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110106", "display": "Export"},
        "subtype": [{"system": "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle", "code": "disclose",
                     "display": "Disclose Record Lifecycle Event"}],
        "action": "R", "recorded": disclosure.disclosed_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "outcome": "0",
        "purposeOfEvent": [{"text": disclosure.purpose_statement or disclosure.purpose}],
        "agent": [
            {"type": {"coding": [{"system": _PARTICIPATION, "code": "CST", "display": "custodian"}]},
             "who": {"identifier": {"system": translate.FACILITY_SYSTEM, "value": disclosure.facility}},
             "requestor": False},
            {"type": {"coding": [{"system": _PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
             "who": {"identifier": {"system": translate.ORGANIZATION_SYSTEM, "value": disclosure.org_id},
                     **({"display": recipient["name"]} if recipient.get("name") else {})},
             "requestor": True},
        ],
        "source": {"observer": {"display": "Records Request Gateway"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                             "display": "Application Server"}]},
        "entity": [{"what": {"reference": f"Task/{disclosure.request_id}"},
                    "role": {"system": _OBJECT_ROLE, "code": "20", "display": "Job"}}] + [
            {"what": {"identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{doc['id']}"}},
             "role": {"system": _OBJECT_ROLE, "code": "3", "display": "Report"},
             "detail": [{"type": "sha256", "valueString": doc.get("sha256") or ""}]}
            for doc in disclosure.documents or []],
    }
