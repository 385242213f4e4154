"""Table-driven scenarios for check_request: small deltas on one valid body, each with its EXACT set of codes.

`body(**{"authorization.expires_on": ...})` changes one dotted path of the base
body (DELETE removes the key); `case(...)` also changes the context (documents,
facility, requester, revocations, today).  test_rules_units imports SCENARIOS to
prove every catalogue code is produced by at least one of them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from datetime import date

import pytest

from gateway.intake.rules import (
    DocumentFacts,
    FacilityPolicy,
    Revocation,
    RuleContext,
    check_request,
    load_policy,
)
from gateway.intake.rules.catalogue import CATALOGUE

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
pytestmark = pytest.mark.date_sensitive

TODAY = date(2026, 11, 23)
DELETE = object()

# The health system's names, as facilities are configured (migration 0015): they name each of its facilities.
SYSTEM = ("Tufts Medicine", "Tufts Medicine Health System", "Wellforce")
TUFTS = FacilityPolicy(code="tufts-mc", name="Tufts Medical Center", aliases=("Tufts MC", "Tufts Medical Center Inc."),
                       turnaround_days=10, turnaround_business_days=False, requires_practice=False,
                       max_authorization_age_days=180, system_names=SYSTEM,
                       affiliate_names=("Lowell General Hospital", "LGH", "MelroseWakefield Hospital",
                                        "Community Practices", "Tufts Medicine community practices"))
COMMUNITY = FacilityPolicy(code="community-practices", name="Community Practices",
                           aliases=("Tufts Medicine community practices", "Tufts Medicine Community Care"),
                           turnaround_days=5, turnaround_business_days=True, requires_practice=True,
                           max_authorization_age_days=180, system_names=SYSTEM,
                           affiliate_names=("Tufts Medical Center", "Tufts MC", "Lowell General Hospital"))
# A facility of another health system: Tufts Medicine's names never name it.
WINCHESTER = FacilityPolicy(code="winchester", name="Winchester Hospital", aliases=(),
                            turnaround_days=10, turnaround_business_days=False, requires_practice=False,
                            max_authorization_age_days=180, system_names=("Beth Israel Lahey Health",),
                            affiliate_names=("Beth Israel Deaconess Medical Center", "Lahey Hospital"))

BASE_BODY = {
    "reference": "CLAIM-2026-0042",
    "facility": "tufts-mc",
    "practice": None,
    "pathway": "authorization",
    "purpose": "litigation",
    "patient": {"first_name": "Ana", "last_name": "Silva", "date_of_birth": date(1980, 2, 29),
                "other_names": [], "mrn": "A7781234", "deceased": False, "minor": False},
    "records": {"types": ["visit_notes", "lab_results"], "date_from": date(2025, 1, 1),
                "date_to": date(2026, 10, 31), "sensitive": [], "format": "electronic"},
    "delivery": {"method": "secure_download", "recipient": {"name": "Smith & Jones LLP", "address": "1 Main St"}},
    "authorization": {
        "signed_by": "patient", "signer_name": "Ana Silva", "signed_on": date(2026, 11, 1),
        "expires_on": date(2027, 5, 1), "expiration_event": None,
        "discloser": "Tufts Medical Center", "recipient": "Smith & Jones LLP",
        "information_description": "All visit notes and lab results 2025-2026",
        "purpose_statement": "Litigation",
        "statements": {"right_to_revoke": True, "no_conditioning": True, "redisclosure": True},
        "representative": None,
        "specific_consents": [],
    },
    "legal_process": None,
    "public_benefit_claim": False,
    "fee_waiver_requested": False,
    "instructions": None,
}


def body(changes: dict | None = None, /, **dotted) -> dict:
    """The base body with each dotted path ("authorization.expires_on") set, or removed with DELETE."""
    result = copy.deepcopy(BASE_BODY)
    for path, value in {**(changes or {}), **dotted}.items():
        *parents, leaf = path.replace("__", ".").split(".")
        node = result
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return result


def docs(*kinds) -> tuple[DocumentFacts, ...]:
    """Documents by kind, clean unless given as (kind, scan_status)."""
    return tuple(DocumentFacts(*k) if isinstance(k, tuple) else DocumentFacts(k, "clean") for k in kinds)


BASE_CTX = RuleContext(today=TODAY, facility=TUFTS, requester_org_name="Smith & Jones, L.L.P.",
                       requester_org_kind="law_firm", documents=docs("authorization"), revocations=(),
                       policy=load_policy())


@dataclass(frozen=True)
class Scenario:
    name: str
    body: dict
    ctx: RuleContext
    expected: frozenset[str]


def case(name: str, changes: dict, expected: set[str] | str = "", *, raw: dict | None = None, **ctx) -> Scenario:
    """A scenario: body deltas, expected codes (a set or a space-separated string) and context changes."""
    codes = set(expected.split()) if isinstance(expected, str) else set(expected)
    built = raw if raw is not None else body(changes)
    return Scenario(name, built, replace(BASE_CTX, **ctx), frozenset(codes))


REP = "authorization.representative"
SUBPOENA = {"pathway": "subpoena", "authorization": None}
SUBPOENA_DOCS = docs("subpoena", "satisfactory_assurances")
COURT = {"pathway": "court_order", "authorization": None}
ESTATE = {"patient.deceased": True, "authorization.signed_by": "representative",
          REP: {"authority": "estate_executor", "description": "Executor of the estate"}}
ESTATE_DOCS = docs("authorization", "letters_of_authority", "death_certificate")
REP_DOCS = docs("authorization", "representative_authority")
LEAP_CHILD = {"patient.date_of_birth": date(2008, 2, 29), "authorization.signed_by": "representative",
              REP: {"authority": "parent_of_minor", "description": "Mother of the patient"},
              "authorization.signed_on": date(2026, 2, 1), "authorization.expires_on": date(2026, 8, 1),
              "records.date_to": date(2026, 1, 31)}
REVOCATION = Revocation(patient_first_name="ANA", patient_last_name="silva", patient_date_of_birth=date(1980, 2, 29),
                        recipient="Smith and Jones L.L.P.", effective_on=date(2026, 11, 10))


def rep(authority: str, description: str = "Described on the form") -> dict:
    """Body deltas for an authorization signed by a representative with this authority."""
    return {"authorization.signed_by": "representative", REP: {"authority": authority, "description": description}}


SCENARIOS: list[Scenario] = [
    # --- valid requests -------------------------------------------------------------------------
    case("valid base request", {}),
    case("authorization signed today", {"authorization.signed_on": TODAY}),
    case("authorization expiring today", {"authorization.expires_on": TODAY}),
    case("expiry by event instead of date",
         {"authorization.expires_on": None, "authorization.expiration_event": "End of the litigation"}),
    case("signed exactly the maximum age ago", {"authorization.signed_on": date(2026, 5, 27)}),
    case("discloser given as a facility alias", {"authorization.discloser": "Tufts MC"}),
    case("discloser differs only cosmetically", {"authorization.discloser": "TUFTS MEDICAL CENTER, INC."}),
    case("recipient differs only cosmetically", {"authorization.recipient": "smith and jones llp"}),
    case("recipient is the delivery recipient, not the requester",
         {"authorization.recipient": "Acme Copy Service", "delivery.recipient.name": "Acme Copy Service, Inc."}),
    case("insurer on the authorization pathway", {}, requester_org_kind="insurer",
         requester_org_name="Harbor Mutual Insurance"),
    case("discloser names the health system", {"authorization.discloser": "Tufts Medicine"}),
    case("discloser names the health system's legal form", {"authorization.discloser": "Tufts Medicine, Inc."}),
    case("discloser names the health system's former name", {"authorization.discloser": "Wellforce Inc."}),
    case("discloser is the facility and its affiliates",
         {"authorization.discloser": "Tufts Medical Center and its affiliates"}),
    case("discloser is an alias & affiliates", {"authorization.discloser": "Tufts MC & Affiliates"}),
    case("discloser is the system and all of its affiliated hospitals",
         {"authorization.discloser": "Tufts Medicine, Inc. and all of its affiliated hospitals"}),
    case("discloser is a sister hospital and its affiliates",
         {"authorization.discloser": "Lowell General Hospital, including its subsidiaries and affiliates"}),
    case("community practice under the health system's name",
         {"facility": "community-practices", "practice": {"name": "Main Street Family Medicine", "address": "x"},
          "authorization.discloser": "Tufts Medicine"}, facility=COMMUNITY),
    case("community practice under the community-practices network",
         {"facility": "community-practices", "practice": {"name": "Main Street Family Medicine", "address": "x"},
          "authorization.discloser": "Tufts Medicine Community Practices"}, facility=COMMUNITY),
    case("community practice and its affiliates",
         {"facility": "community-practices", "practice": {"name": "Main Street Family Medicine", "address": "x"},
          "authorization.discloser": "Main Street Family Medicine and its affiliates"}, facility=COMMUNITY),
    case("community practice named and used as discloser",
         {"facility": "community-practices", "practice": {"name": "Main Street Family Medicine", "address": "x"},
          "authorization.discloser": "Main Street Family Medicine, P.C."}, facility=COMMUNITY),
    case("community practice with the facility name as discloser",
         {"facility": "community-practices", "practice": {"name": "Main Street Family Medicine", "address": "x"},
          "authorization.discloser": "Community Practices"}, facility=COMMUNITY),
    case("subpoena with satisfactory assurances", SUBPOENA, documents=SUBPOENA_DOCS),
    case("subpoena with a court order so no assurances needed", SUBPOENA,
         documents=docs("subpoena", "court_order")),
    case("court order", COURT, documents=docs("court_order")),
    case("court order ignores an expired authorization on the body",
         {"pathway": "court_order", "authorization.expires_on": date(2020, 1, 1)}, documents=docs("court_order")),
    case("HIV under a court order needs no consent", {**COURT, "records.sensitive": ["hiv"]},
         documents=docs("court_order")),
    case("SUD under a court order needs no consent", {**COURT, "records.sensitive": ["substance_use_disorder"]},
         documents=docs("court_order")),
    case("HIV with specific consent", {"records.sensitive": ["hiv"], "authorization.specific_consents": ["hiv"]}),
    case("SUD with specific consent", {"records.sensitive": ["substance_use_disorder"],
                                       "authorization.specific_consents": ["substance_use_disorder"]}),
    case("genetic with specific consent", {"records.sensitive": ["genetic"],
                                           "authorization.specific_consents": ["genetic"]}),
    case("mental health needs no specific consent", {"records.sensitive": ["mental_health"]}),
    case("HIV on a subpoena with the patient's specific consent",
         {"pathway": "subpoena", "records.sensitive": ["hiv"], "authorization.specific_consents": ["hiv"]},
         documents=SUBPOENA_DOCS),
    case("psychotherapy notes alone with their consent",
         {"records.types": ["psychotherapy_notes"], "authorization.specific_consents": ["psychotherapy_notes"]}),
    case("health care proxy for a living adult", rep("health_care_proxy"), documents=REP_DOCS),
    case("guardian for a living patient", rep("guardian"), documents=REP_DOCS),
    case("conservator for a living patient", rep("conservator"), documents=REP_DOCS),
    case("parent of a minor", {**rep("parent_of_minor"), "patient.date_of_birth": date(2012, 6, 1)},
         documents=REP_DOCS),
    case("date of birth wins over a false minor flag",
         {**rep("parent_of_minor"), "patient.date_of_birth": date(2012, 6, 1), "patient.minor": False},
         documents=REP_DOCS),
    case("minor flag used when the date of birth is missing",
         {**rep("parent_of_minor"), "patient.date_of_birth": None, "patient.minor": True}, documents=REP_DOCS),
    case("leap-day birth: still a minor on 2026-02-28", LEAP_CHILD, documents=REP_DOCS, today=date(2026, 2, 28)),
    case("executor for a deceased patient with letters and death certificate", ESTATE, documents=ESTATE_DOCS),
    case("a representative on a subpoena is not examined",
         {**SUBPOENA, "authorization": {"signed_by": "representative"}}, documents=SUBPOENA_DOCS),
    case("revocation for another recipient", {}, revocations=(replace(REVOCATION, recipient="Doe Insurance"),)),
    case("authorization signed after the revocation is new",
         {"authorization.signed_on": date(2026, 11, 15)}, revocations=(REVOCATION,)),
    case("revocation by another patient with the same name",
         {}, revocations=(replace(REVOCATION, patient_date_of_birth=date(1981, 3, 1)),)),
    case("records date range open at both ends", {"records.date_from": None, "records.date_to": None}),
    case("records up to today", {"records.date_to": TODAY}),
    case("an infected document of a kind not required", {},
         documents=docs("authorization", ("supporting", "infected"))),
    case("a clean authorization beside a pending one", {},
         documents=docs(("authorization", "pending"), "authorization")),
    # --- §1 core elements ---------------------------------------------------------------------
    case("description empty", {"authorization.information_description": ""}, "AUTH_MISSING_DESCRIPTION"),
    case("description missing", {"authorization.information_description": DELETE}, "AUTH_MISSING_DESCRIPTION"),
    case("discloser missing is not also a mismatch", {"authorization.discloser": None}, "AUTH_MISSING_DISCLOSER"),
    case("recipient missing is not also a mismatch", {"authorization.recipient": ""}, "AUTH_MISSING_RECIPIENT"),
    case("purpose statement missing", {"authorization.purpose_statement": None}, "AUTH_MISSING_PURPOSE"),
    case("neither expiry date nor event", {"authorization.expires_on": None}, "AUTH_MISSING_EXPIRATION"),
    case("blank expiry event", {"authorization.expires_on": None, "authorization.expiration_event": "   "},
         "AUTH_MISSING_EXPIRATION"),
    case("signer name missing", {"authorization.signer_name": ""}, "AUTH_MISSING_SIGNATURE"),
    case("signature date missing", {"authorization.signed_on": None}, "AUTH_MISSING_SIGNATURE"),
    case("signer and date both missing: one finding",
         {"authorization.signer_name": None, "authorization.signed_on": None}, "AUTH_MISSING_SIGNATURE"),
    case("representative without any representative block",
         {"authorization.signed_by": "representative"},
         "AUTH_MISSING_REPRESENTATIVE_AUTHORITY DOC_REPRESENTATIVE_AUTHORITY_REQUIRED"),
    case("representative without authority, proof uploaded",
         {"authorization.signed_by": "representative", REP: {"authority": None, "description": "Son"}},
         "AUTH_MISSING_REPRESENTATIVE_AUTHORITY", documents=REP_DOCS),
    case("representative authority without description", rep("guardian", ""),
         "AUTH_MISSING_REPRESENTATIVE_AUTHORITY", documents=REP_DOCS),
    case("no authorization at all on the authorization pathway", {"authorization": None},
         "AUTH_MISSING_DESCRIPTION AUTH_MISSING_DISCLOSER AUTH_MISSING_RECIPIENT AUTH_MISSING_PURPOSE "
         "AUTH_MISSING_EXPIRATION AUTH_MISSING_SIGNATURE AUTH_MISSING_REVOCATION_STATEMENT "
         "AUTH_MISSING_CONDITIONING_STATEMENT AUTH_MISSING_REDISCLOSURE_STATEMENT"),
    # --- §2 statements -------------------------------------------------------------------------
    case("revocation statement missing", {"authorization.statements.right_to_revoke": False},
         "AUTH_MISSING_REVOCATION_STATEMENT"),
    case("conditioning statement missing", {"authorization.statements.no_conditioning": None},
         "AUTH_MISSING_CONDITIONING_STATEMENT"),
    case("redisclosure statement missing", {"authorization.statements.redisclosure": DELETE},
         "AUTH_MISSING_REDISCLOSURE_STATEMENT"),
    case("statements block missing", {"authorization.statements": None},
         "AUTH_MISSING_REVOCATION_STATEMENT AUTH_MISSING_CONDITIONING_STATEMENT AUTH_MISSING_REDISCLOSURE_STATEMENT"),
    # --- §3 defects ------------------------------------------------------------------------------
    case("expired yesterday", {"authorization.expires_on": date(2026, 11, 22)}, "AUTH_EXPIRED"),
    case("expired date governs even with an event",
         {"authorization.expires_on": date(2026, 1, 1), "authorization.expiration_event": "End of litigation",
          "authorization.signed_on": date(2025, 12, 1)}, "AUTH_EXPIRED AUTH_TOO_OLD"),
    case("signed tomorrow", {"authorization.signed_on": date(2026, 11, 24)}, "AUTH_SIGNED_IN_FUTURE"),
    case("signed after expiry, therefore expired",
         {"authorization.signed_on": date(2026, 11, 20), "authorization.expires_on": date(2026, 11, 19)},
         "AUTH_SIGNED_AFTER_EXPIRY AUTH_EXPIRED"),
    case("signed in the future after its expiry",
         {"authorization.signed_on": date(2026, 11, 25), "authorization.expires_on": date(2026, 11, 24)},
         "AUTH_SIGNED_AFTER_EXPIRY AUTH_SIGNED_IN_FUTURE"),
    case("signed one day more than the maximum age ago", {"authorization.signed_on": date(2026, 5, 26)},
         "AUTH_TOO_OLD"),
    case("too old is not judged for an unknown facility",
         {"facility": "mass-general", "authorization.signed_on": date(2025, 1, 1)}, "FACILITY_UNKNOWN",
         facility=None),
    case("revoked for this recipient", {}, "AUTH_REVOKED", revocations=(REVOCATION,)),
    case("signed on the day of the revocation", {"authorization.signed_on": date(2026, 11, 10)}, "AUTH_REVOKED",
         revocations=(REVOCATION,)),
    case("revoked under the patient's former name", {"patient.other_names": ["Ana Souza"]}, "AUTH_REVOKED",
         revocations=(replace(REVOCATION, patient_last_name="Souza"),)),
    case("discloser is another hospital", {"authorization.discloser": "Lowell General Hospital"},
         "AUTH_DISCLOSER_MISMATCH"),
    case("discloser is another health system", {"authorization.discloser": "Mass General Brigham"},
         "AUTH_DISCLOSER_MISMATCH"),
    case("discloser is another system's hospital and its affiliates",
         {"authorization.discloser": "Beth Israel Deaconess Medical Center and its affiliates"},
         "AUTH_DISCLOSER_MISMATCH"),
    case("discloser adds a word of substance to the system's name",
         {"authorization.discloser": "Tufts Medicine Foundation"}, "AUTH_DISCLOSER_MISMATCH"),
    case("a sister hospital without the affiliates form is another facility", {"authorization.discloser": "LGH"},
         "AUTH_DISCLOSER_MISMATCH"),
    case("affiliates alone name nobody", {"authorization.discloser": "its affiliates"}, "AUTH_DISCLOSER_MISMATCH"),
    case("Tufts Medicine does not name another system's facility",
         {"facility": "winchester", "authorization.discloser": "Tufts Medicine"}, "AUTH_DISCLOSER_MISMATCH",
         facility=WINCHESTER),
    case("Tufts Medical Center and its affiliates does not name another system's facility",
         {"facility": "winchester", "authorization.discloser": "Tufts Medical Center and its affiliates"},
         "AUTH_DISCLOSER_MISMATCH", facility=WINCHESTER),
    case("another system's facility under its own system's name",
         {"facility": "winchester", "authorization.discloser": "Beth Israel Lahey Health"}, facility=WINCHESTER),
    case("community practice discloser is another practice and its affiliates",
         {"facility": "community-practices", "practice": {"name": "Main Street Family Medicine", "address": "x"},
          "authorization.discloser": "Elm Street Pediatrics and affiliates"}, "AUTH_DISCLOSER_MISMATCH",
         facility=COMMUNITY),
    case("community practice discloser names another practice",
         {"facility": "community-practices", "practice": {"name": "Main Street Family Medicine", "address": "x"},
          "authorization.discloser": "Elm Street Pediatrics"}, "AUTH_DISCLOSER_MISMATCH", facility=COMMUNITY),
    case("recipient is someone else", {"authorization.recipient": "Doe Insurance Co."}, "AUTH_RECIPIENT_MISMATCH"),
    case("recipient with an extra partner is another firm", {"authorization.recipient": "Smith Jones & Brown LLP"},
         "AUTH_RECIPIENT_MISMATCH"),
    case("psychotherapy notes on a combined authorization",
         {"records.types": ["visit_notes", "psychotherapy_notes"],
          "authorization.specific_consents": ["psychotherapy_notes"]}, "AUTH_PSYCHOTHERAPY_NOTES_COMBINED"),
    case("psychotherapy notes combined and without consent", {"records.types": ["visit_notes", "psychotherapy_notes"]},
         "AUTH_PSYCHOTHERAPY_NOTES_COMBINED CONSENT_PSYCHOTHERAPY_NOTES_REQUIRED"),
    # --- §4 who signed ---------------------------------------------------------------------------
    case("authorization document missing", {}, "DOC_AUTHORIZATION_REQUIRED", documents=()),
    case("authorization document infected", {}, "DOCUMENT_NOT_CLEAN",
         documents=docs(("authorization", "infected"))),
    case("authorization document scan pending", {}, "DOCUMENT_NOT_CLEAN", documents=docs(("authorization", "pending"))),
    case("authorization read and illegible", {}, "DOC_UNREADABLE", documents=docs(("authorization", "clean", False))),
    case("an illegible copy and a legible one", {}, documents=docs(("authorization", "clean", False),
                                                                   ("authorization", "clean", True))),
    case("an illegible copy and one not read (pending or failed)", {},
         documents=docs(("authorization", "clean", False), ("authorization", "clean", None))),
    case("proof of authority illegible", rep("health_care_proxy"), "DOC_UNREADABLE",
         documents=docs("authorization", ("representative_authority", "clean", False))),
    case("an illegible supporting document is not read for the rules", {},
         documents=docs("authorization", ("supporting", "clean", False))),
    case("proxy without proof of authority", rep("health_care_proxy"), "DOC_REPRESENTATIVE_AUTHORITY_REQUIRED"),
    case("proof of authority not yet scanned clean", rep("durable_poa_health_care"), "DOCUMENT_NOT_CLEAN",
         documents=docs("authorization", ("representative_authority", "error"))),
    case("executor without letters of authority", ESTATE, "DOC_LETTERS_OF_AUTHORITY_REQUIRED",
         documents=docs("authorization", "death_certificate")),
    case("executor without death certificate", ESTATE, "DOC_DEATH_CERTIFICATE_REQUIRED",
         documents=docs("authorization", "letters_of_authority")),
    case("executor with neither estate document", ESTATE,
         "DOC_LETTERS_OF_AUTHORITY_REQUIRED DOC_DEATH_CERTIFICATE_REQUIRED"),
    case("executor with infected letters", ESTATE, "DOCUMENT_NOT_CLEAN DOC_DEATH_CERTIFICATE_REQUIRED",
         documents=docs("authorization", ("letters_of_authority", "infected"))),
    case("executor for a living patient", rep("estate_executor"), "REPRESENTATIVE_AUTHORITY_INVALID"),
    case("parent for an adult", rep("parent_of_minor"), "REPRESENTATIVE_AUTHORITY_INVALID", documents=REP_DOCS),
    case("minor flag does not beat an adult date of birth", {**rep("parent_of_minor"), "patient.minor": True},
         "REPRESENTATIVE_AUTHORITY_INVALID", documents=REP_DOCS),
    case("leap-day birth: an adult on 2026-03-01", LEAP_CHILD, "REPRESENTATIVE_AUTHORITY_INVALID",
         documents=REP_DOCS, today=date(2026, 3, 1)),
    case("health care proxy for a deceased patient", {**rep("health_care_proxy"), "patient.deceased": True},
         "REPRESENTATIVE_AUTHORITY_INVALID", documents=REP_DOCS),
    case("durable POA for a deceased patient", {**rep("durable_poa_health_care"), "patient.deceased": True},
         "REPRESENTATIVE_AUTHORITY_INVALID"),
    case("advance directive for a deceased patient", {**rep("advance_directive"), "patient.deceased": True},
         "REPRESENTATIVE_AUTHORITY_INVALID"),
    case("guardian for a deceased patient", {**rep("guardian"), "patient.deceased": True},
         "REPRESENTATIVE_AUTHORITY_INVALID", documents=REP_DOCS),
    case("conservator for a deceased patient", {**rep("conservator"), "patient.deceased": True},
         "REPRESENTATIVE_AUTHORITY_INVALID"),
    # --- §5 legal process ------------------------------------------------------------------------
    case("subpoena without the subpoena", SUBPOENA, "DOC_SUBPOENA_REQUIRED",
         documents=docs("satisfactory_assurances")),
    case("subpoena without assurances or court order", SUBPOENA, "DOC_SATISFACTORY_ASSURANCES_REQUIRED",
         documents=docs("subpoena")),
    case("subpoena with no documents", SUBPOENA, "DOC_SUBPOENA_REQUIRED DOC_SATISFACTORY_ASSURANCES_REQUIRED",
         documents=()),
    case("subpoena with a court order still being scanned", SUBPOENA, "DOCUMENT_NOT_CLEAN",
         documents=docs("subpoena", ("court_order", "pending"))),
    case("subpoena document infected", SUBPOENA, "DOCUMENT_NOT_CLEAN",
         documents=docs(("subpoena", "infected"), "satisfactory_assurances")),
    case("court order pathway without the order", COURT, "DOC_COURT_ORDER_REQUIRED", documents=docs("subpoena")),
    case("subpoena from an insurer", SUBPOENA, "PATHWAY_REQUESTER_MISMATCH", documents=SUBPOENA_DOCS,
         requester_org_kind="insurer"),
    case("court order from a provider", COURT, "PATHWAY_REQUESTER_MISMATCH", documents=docs("court_order"),
         requester_org_kind="provider"),
    # --- §6 specially protected information ------------------------------------------------------
    case("SUD without Part 2 consent", {"records.sensitive": ["substance_use_disorder"]},
         "CONSENT_SUD_PART2_REQUIRED"),
    case("HIV without specific consent", {"records.sensitive": ["hiv"]}, "CONSENT_HIV_SPECIFIC_REQUIRED"),
    case("genetic without specific consent", {"records.sensitive": ["genetic", "mental_health"]},
         "CONSENT_GENETIC_SPECIFIC_REQUIRED"),
    case("psychotherapy notes alone without consent", {"records.types": ["psychotherapy_notes"]},
         "CONSENT_PSYCHOTHERAPY_NOTES_REQUIRED"),
    case("HIV on a subpoena", {**SUBPOENA, "records.sensitive": ["hiv"]}, "CONSENT_HIV_SPECIFIC_REQUIRED",
         documents=SUBPOENA_DOCS),
    case("psychotherapy notes with other records on a subpoena: consent, not combination",
         {**SUBPOENA, "records.types": ["visit_notes", "psychotherapy_notes"]},
         "CONSENT_PSYCHOTHERAPY_NOTES_REQUIRED", documents=SUBPOENA_DOCS),
    case("consent for one category does not cover another",
         {"records.sensitive": ["hiv", "genetic", "substance_use_disorder"],
          "authorization.specific_consents": ["hiv"]},
         "CONSENT_GENETIC_SPECIFIC_REQUIRED CONSENT_SUD_PART2_REQUIRED"),
    # --- §7 the request itself -----------------------------------------------------------------
    case("unknown facility", {"facility": "mass-general"}, "FACILITY_UNKNOWN", facility=None),
    case("community practices without a practice",
         {"facility": "community-practices", "authorization.discloser": "Community Practices"}, "PRACTICE_REQUIRED",
         facility=COMMUNITY),
    case("date of birth in the future", {"patient.date_of_birth": date(2027, 1, 1)}, "PATIENT_DOB_IN_FUTURE"),
    case("records range runs backwards", {"records.date_from": date(2026, 6, 1), "records.date_to": date(2026, 1, 1)},
         "RECORDS_DATE_RANGE_INVALID"),
    case("records range ends tomorrow", {"records.date_to": date(2026, 11, 24)}, "RECORDS_DATE_RANGE_INVALID"),
    case("records range starts in the future, open end",
         {"records.date_from": date(2027, 1, 1), "records.date_to": None}, "RECORDS_DATE_RANGE_INVALID"),
    case("no record types", {"records.types": []}, "RECORDS_TYPES_REQUIRED"),
    case("record types missing", {"records.types": None}, "RECORDS_TYPES_REQUIRED"),
    # --- combinations ----------------------------------------------------------------------------
    case("four independent problems at once",
         {"authorization.expires_on": date(2026, 11, 1), "records.sensitive": ["hiv"],
          "records.date_to": date(2026, 12, 31), "authorization.statements.redisclosure": False},
         "AUTH_EXPIRED CONSENT_HIV_SPECIFIC_REQUIRED RECORDS_DATE_RANGE_INVALID AUTH_MISSING_REDISCLOSURE_STATEMENT"),
    case("unknown facility, no documents, wrong recipient, no types",
         {"facility": "nowhere", "authorization.recipient": "Someone Else", "records.types": []},
         "FACILITY_UNKNOWN DOC_AUTHORIZATION_REQUIRED AUTH_RECIPIENT_MISMATCH RECORDS_TYPES_REQUIRED",
         facility=None, documents=()),
    case("an empty draft", {}, "FACILITY_UNKNOWN RECORDS_TYPES_REQUIRED", raw={}, facility=None, documents=()),
]

PHI_VALUES = ("Ana", "Silva", "Souza", "1980", "02-29", "A7781234", "2008")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_produces_exactly_the_expected_codes(scenario: Scenario):
    found = check_request(scenario.body, scenario.ctx)
    assert {f.code for f in found} == scenario.expected
    assert len(found) == len(set(found)), "a finding was reported twice"
    assert found == check_request(scenario.body, scenario.ctx), "order must be deterministic"
    for f in found:
        assert f.rule and f.field and f.message
        assert not any(value in f.message for value in PHI_VALUES), f"PHI in message of {f.code}"


def test_table_is_large_and_names_are_unique():
    assert len(SCENARIOS) >= 70
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)
    assert all(code in CATALOGUE for s in SCENARIOS for code in s.expected)
