"""The authorization of a Task's request as a Consent (IHE Privacy Consent on FHIR shapes), read-only.

Built from the request's `authorization` section, the same fields the rules
judged, in the shapes a Task's contained Consent uses (gateway.fhir.translate),
so what a payer sent is what it reads back.  The Consent's id is the Task's.
"""

from __future__ import annotations

from gateway.fhir import translate
from gateway.intake.models import RecordsRequest

_V3_AUTHORITY = {v: k for k, v in translate.AUTHORITY_OF.items() if k in ("GUARD", "HPOWATT", "EXCEST", "PRN")}
_LABEL_OF = {"hiv": "HIV", "genetic": "GDIS", "substance_use_disorder": "ETH", "psychotherapy_notes": "PSYTHPN"}


def render_consent(req: RecordsRequest) -> dict | None:
    """The Consent of a request's authorization, or None when it has none."""
    auth = req.authorization
    if not auth:
        return None
    patient = req.patient or {}
    contained = [{"resourceType": "Patient", "id": "patient",
                  "name": [{"family": patient.get("last_name"), "given": [patient.get("first_name")]}],
                  "birthDate": patient.get("date_of_birth")}]
    performer = {"reference": "#patient"}
    if auth.get("signed_by") == "representative":
        rep = auth.get("representative") or {}
        authority = rep.get("authority")
        relationship = {"text": rep.get("description") or authority}
        if authority:
            relationship["coding"] = [{"system": translate.V3_ROLE, "code": _V3_AUTHORITY[authority]}
                                      if authority in _V3_AUTHORITY else
                                      {"system": "https://records-gateway.invalid/fhir/CodeSystem/authority",
                                       "code": authority}]
        contained.append({"resourceType": "RelatedPerson", "id": "signer", "patient": {"reference": "#patient"},
                          "name": [{"text": auth.get("signer_name")}], "relationship": [relationship]})
        performer = {"reference": "#signer"}
    provision = {"type": "permit"}
    period = {k: v for k, v in (("start", auth.get("signed_on")), ("end", auth.get("expires_on"))) if v}
    if period:
        provision["period"] = period
    if auth.get("recipient"):
        provision["actor"] = [{"role": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
            "reference": {"display": auth["recipient"]}}]
    if auth.get("purpose_statement"):
        provision["purpose"] = [{"system": translate.V3_ACT_REASON, "code": "HPAYMT",
                                 "display": auth["purpose_statement"]}] if req.purpose == "insurance_claim" else \
            [{"display": auth["purpose_statement"]}]
    if auth.get("information_description"):
        provision["code"] = [{"text": auth["information_description"]}]
    labels = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": _LABEL_OF[c]}
              for c in auth.get("specific_consents") or [] if c in _LABEL_OF]
    if labels:
        provision["securityLabel"] = labels
    consent = {
        "resourceType": "Consent", "id": req.id, "contained": contained, "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": translate.LOINC, "code": translate.RELEASE_CONSENT}]}],
        "patient": {"reference": "#patient"}, "performer": [performer],
        "policy": [{"uri": translate.STATEMENT_POLICY + name} for name in translate.STATEMENTS
                   if (auth.get("statements") or {}).get(name)] or
        [{"uri": "https://www.hhs.gov/hipaa/for-professionals/privacy/index.html"}],
        "provision": provision,
    }
    if auth.get("signed_on"):
        consent["dateTime"] = auth["signed_on"]
    if auth.get("discloser"):
        consent["organization"] = [{"display": auth["discloser"]}]
    return consent
