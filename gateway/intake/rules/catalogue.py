"""Every deficiency code of RULES.md with its citation, section and default message.

The codes are stable API: the OpenAPI spec lists this catalogue, and a test
keeps it equal to the set of codes in RULES.md.  Messages are written for a
paralegal and never contain PHI; rules may replace one with a more specific
message, never with one quoting the body.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuleInfo:
    """One deficiency code: where it comes from and what it says by default."""

    code: str
    section: str
    citation: str
    message: str


S1 = "1. Authorization core elements"
S2 = "2. Required statements"
S3 = "3. Defective authorizations"
S4 = "4. Who signed: personal representatives"
S5 = "5. Legal process without an authorization"
S6 = "6. Specially protected information"
S7 = "7. The request itself"

_ENTRIES = (
    # §1 — 45 CFR 164.508(c)(1)
    (S1, "AUTH_MISSING_DESCRIPTION", "45 CFR 164.508(c)(1)(i)",
     "The authorization must describe the information to be released specifically and meaningfully."),
    (S1, "AUTH_MISSING_DISCLOSER", "45 CFR 164.508(c)(1)(ii)",
     "The authorization must name the facility or provider allowed to release the records."),
    (S1, "AUTH_MISSING_RECIPIENT", "45 CFR 164.508(c)(1)(iii)",
     "The authorization must name who may receive the records."),
    (S1, "AUTH_MISSING_PURPOSE", "45 CFR 164.508(c)(1)(iv)",
     'The authorization must state the purpose of the release ("at the request of the individual" is enough).'),
    (S1, "AUTH_MISSING_EXPIRATION", "45 CFR 164.508(c)(1)(v)",
     "The authorization must give an expiration date or an expiration event."),
    (S1, "AUTH_MISSING_SIGNATURE", "45 CFR 164.508(c)(1)(vi)",
     "The authorization must show the signer's name and the date it was signed."),
    (S1, "AUTH_MISSING_REPRESENTATIVE_AUTHORITY", "45 CFR 164.508(c)(1)(vi)",
     "An authorization signed by a personal representative must state the kind of authority and describe it."),
    # §2 — 164.508(c)(2)
    (S2, "AUTH_MISSING_REVOCATION_STATEMENT", "45 CFR 164.508(c)(2)(i)",
     "The authorization must state that it may be revoked in writing, and how."),
    (S2, "AUTH_MISSING_CONDITIONING_STATEMENT", "45 CFR 164.508(c)(2)(ii)",
     "The authorization must state that treatment, payment, enrollment or eligibility cannot be "
     "conditioned on signing it."),
    (S2, "AUTH_MISSING_REDISCLOSURE_STATEMENT", "45 CFR 164.508(c)(2)(iii)",
     "The authorization must state that the recipient may redisclose the information and that it may then "
     "no longer be protected."),
    # §3 — 164.508(b)(2)
    (S3, "AUTH_EXPIRED", "45 CFR 164.508(b)(2)(i)",
     "The authorization has expired; a newly signed authorization is needed."),
    (S3, "AUTH_SIGNED_IN_FUTURE", "45 CFR 164.508(b)(2)(v)",
     "The authorization's signature date is later than today; check the date."),
    (S3, "AUTH_SIGNED_AFTER_EXPIRY", "45 CFR 164.508(b)(2)(i)",
     "The authorization was signed after its own expiration date; check both dates."),
    (S3, "AUTH_TOO_OLD", "Facility policy: maximum authorization age",
     "The authorization was signed longer ago than this facility accepts; a newly signed one is needed."),
    (S3, "AUTH_REVOKED", "45 CFR 164.508(b)(2)(iii)",
     "The patient has revoked authorizations for this recipient; a newly signed authorization is needed."),
    (S3, "AUTH_DISCLOSER_MISMATCH", "45 CFR 164.508(c)(1)(ii)",
     "The authorization names a different facility or provider than the one this request is addressed to."),
    (S3, "AUTH_RECIPIENT_MISMATCH", "45 CFR 164.508(c)(1)(iii)",
     "The authorization's recipient is neither the requesting organization nor the delivery recipient."),
    (S3, "AUTH_PSYCHOTHERAPY_NOTES_COMBINED", "45 CFR 164.508(a)(2), (b)(3)(ii)",
     "Psychotherapy notes need an authorization of their own; request them separately from other records."),
    # §4 — 164.502(g)
    (S4, "DOC_AUTHORIZATION_REQUIRED", "45 CFR 164.508(b)(1)",
     "Upload the signed authorization."),
    (S4, "DOC_REPRESENTATIVE_AUTHORITY_REQUIRED", "45 CFR 164.502(g); 164.514(h)",
     "Upload proof of the representative's authority (health care proxy, durable power of attorney for "
     "health care, advance directive, guardianship or conservatorship decree, or proof of parental authority)."),
    (S4, "DOC_LETTERS_OF_AUTHORITY_REQUIRED", "45 CFR 164.502(g)(4)",
     "Upload the letters of authority showing the signer is the executor or administrator of the estate."),
    (S4, "DOC_DEATH_CERTIFICATE_REQUIRED", "45 CFR 164.502(g)(4); 164.514(h)",
     "Upload the death certificate; it is needed when an estate's executor requests the records."),
    (S4, "REPRESENTATIVE_AUTHORITY_INVALID", "45 CFR 164.502(g)",
     "The representative's kind of authority does not fit the patient's situation."),
    # §5 — 164.512(e)
    (S5, "DOC_SUBPOENA_REQUIRED", "45 CFR 164.512(e)(1)(ii)",
     "Upload the subpoena."),
    (S5, "DOC_SATISFACTORY_ASSURANCES_REQUIRED", "45 CFR 164.512(e)(1)(ii)",
     "A subpoena without a court order needs satisfactory assurances: proof that the patient was notified and "
     "the time to object has passed, or that a qualified protective order has been sought."),
    (S5, "DOC_COURT_ORDER_REQUIRED", "45 CFR 164.512(e)(1)(i)",
     "Upload the court order."),
    (S5, "PATHWAY_REQUESTER_MISMATCH", "45 CFR 164.512(e); gateway policy: legal process from law firms only",
     "Subpoena and court-order requests are accepted from law firms only; other organizations need a "
     "patient authorization."),
    # §6
    (S6, "CONSENT_SUD_PART2_REQUIRED", "42 CFR 2.31",
     "Substance use disorder records need the patient's specific written consent."),
    (S6, "CONSENT_HIV_SPECIFIC_REQUIRED", "M.G.L. c.111 §70F",
     "HIV test information needs the patient's specific written consent."),
    (S6, "CONSENT_GENETIC_SPECIFIC_REQUIRED", "M.G.L. c.111 §70G",
     "Genetic test information needs the patient's specific written consent."),
    (S6, "CONSENT_PSYCHOTHERAPY_NOTES_REQUIRED", "45 CFR 164.508(a)(2)",
     "Psychotherapy notes need the patient's specific authorization for psychotherapy notes."),
    # §7
    (S7, "FACILITY_UNKNOWN", "Gateway facility catalogue",
     "Choose one of the facilities listed by GET /v1/facilities."),
    (S7, "PRACTICE_REQUIRED", "Facility policy: community practices",
     "Name the practice (doctor's office) that holds the records."),
    (S7, "PATIENT_DOB_IN_FUTURE", "Request validation: patient identity",
     "The patient's date of birth is later than today; check it."),
    (S7, "RECORDS_DATE_RANGE_INVALID", "Request validation: records requested",
     "The records date range is invalid: the start must not be after the end, and neither may be in the future."),
    (S7, "RECORDS_TYPES_REQUIRED", "Request validation: records requested",
     "Choose at least one type of record."),
    (S7, "DOCUMENT_NOT_CLEAN", "Gateway policy: documents must pass the malware scan",
     "A required document has not passed the virus scan; upload it again or wait for the scan to finish."),
    (S7, "DOC_UNREADABLE", "Facility policy: requests that cannot be read are sent back",
     "The signed document could not be read; upload a clear, complete copy (a scan at 200 dpi or more)."),
)

CATALOGUE: dict[str, RuleInfo] = {
    code: RuleInfo(code=code, section=section, citation=citation, message=message)
    for section, code, citation, message in _ENTRIES
}

# Advisory codes: what reading the signed form found (gateway.reading).  They never block a submission, so
# no rule produces them; they ride on the document's `reading.findings`, for the requester and for staff.
S8 = "8. Reading the signed form (advisory)"
_ADVISORY = (
    (S8, "FORM_PATIENT_NAME_NOT_FOUND", "45 CFR 164.508(c)(1); facility intake check",
     "The patient's name as typed was not found on the signed form."),
    (S8, "FORM_DOB_NOT_FOUND", "Facility intake check: patient identity",
     "The date of birth as typed was not found on the signed form."),
    (S8, "FORM_DISCLOSER_NOT_FOUND", "45 CFR 164.508(c)(1)(ii)",
     "The facility allowed to release the records was not found on the signed form."),
    (S8, "FORM_RECIPIENT_NOT_FOUND", "45 CFR 164.508(c)(1)(iii)",
     "The recipient as typed was not found on the signed form."),
    (S8, "FORM_STATEMENT_NOT_FOUND", "45 CFR 164.508(c)(2)",
     "A required statement was not found on the signed form."),
    (S8, "FORM_DATE_MISMATCH", "45 CFR 164.508(c)(1)(v), (vi)",
     "A signature or expiration date on the signed form differs from the typed one."),
)
ADVISORY: dict[str, RuleInfo] = {
    code: RuleInfo(code=code, section=section, citation=citation, message=message)
    for section, code, citation, message in _ADVISORY
}
