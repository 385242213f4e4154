"""Unit tests of the rules package: names, fees, clocks, required documents, catalogue, policy, robustness."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import FieldError
from gateway.intake.rules import (
    CATALOGUE,
    REGISTRY,
    DocumentFacts,
    Revocation,
    check_request,
    due_basis,
    due_on,
    fee_estimate,
    load_policy,
    names_match,
    required_documents,
)
from gateway.intake.rules.catalogue import ADVISORY
from tests.intake.test_rules_table import BASE_CTX, COMMUNITY, SCENARIOS, TUFTS, body, docs

# Judged against the facilities' calendar: .ci/run repeats these with the machine in far time zones.
pytestmark = pytest.mark.date_sensitive

# --- names_match ---------------------------------------------------------------------------------

SAME = [
    ("Smith & Jones, L.L.P.", "smith and jones llp"),
    ("Smith & Jones LLP", "Smith and Jones"),
    ("The Smith Law Group, P.C.", "Smith Law Group"),
    ("Tufts Medical Center", "TUFTS MEDICAL CENTER, INC."),
    ("Clínica São José", "Clinica Sao Jose"),
    ("  Smith   &  Jones  ", "Smith and Jones"),
    ("Acme Corp.", "ACME Corporation"),
    ("O'Brien & Co.", "OBrien"),
    ("Harbor Mutual Insurance Company", "Harbor Mutual Insurance Co"),
    ("Doe, Roe & Poe PLLC", "Doe Roe and Poe"),
    ("J.K. Legal Services, Ltd.", "JK Legal Services"),
]
DIFFERENT = [
    ("Smith & Jones", "Smith Jones & Brown"),
    ("Smith & Jones LLP", "Smith & Johns LLP"),
    ("Tufts Medical Center", "Lowell General Hospital"),
    ("Smith Law Group", "Smith Law"),
    ("LLP", "Inc"),
    ("", ""),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_names_match_ignores_cosmetic_differences_both_ways(a, b):
    assert names_match(a, b)
    assert names_match(b, a)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_names_match_refuses_substantive_differences_both_ways(a, b):
    assert not names_match(a, b)
    assert not names_match(b, a)


def test_names_match_accepts_any_alias():
    aliases = ("Tufts MC", "Tufts Medical Center Inc.")
    assert names_match("tufts mc", "Tufts Medical Center", aliases)
    assert names_match("Tufts Medical Center, Inc", "Tufts Medical Center", aliases)
    assert not names_match("Tufts Children's", "Tufts Medical Center", aliases)


def test_names_match_takes_a_lone_string_alias_as_one_name():
    assert names_match("Tufts MC", "Tufts Medical Center", "Tufts MC")
    assert not names_match("T", "Tufts Medical Center", "Tufts MC")  # not the alias's letters


@pytest.mark.parametrize("blank", [None, "", "   ", 42, ["Smith"]])
def test_names_match_never_matches_blank_or_odd_values(blank):
    assert not names_match(blank, "Smith")
    assert not names_match("Smith", blank)


# --- fee_estimate ----------------------------------------------------------------------------------

def _ctx_on(day: date):
    return replace(BASE_CTX, today=day)


def test_fee_estimate_without_pages_is_the_base_fee_with_the_formula():
    assert fee_estimate(body(), BASE_CTX) == {
        "amount": "28.69", "currency": "USD",
        "per_page": [{"from": 1, "to": 100, "rate": "0.96"}, {"from": 101, "rate": "0.49"}],
        "basis": "M.G.L. c.111 §70", "status": "estimated", "reason": None,
    }


def test_fee_estimate_with_pages_adds_each_tier_in_decimal():
    schedule = max(BASE_CTX.policy.fee_schedules, key=lambda s: s.effective_on)
    expected = schedule.base + 100 * schedule.tiers[0].rate + 150 * schedule.tiers[1].rate
    estimate = fee_estimate(body(), BASE_CTX, pages=250)
    assert Decimal(estimate["amount"]) == expected == Decimal("198.19")
    assert fee_estimate(body(), BASE_CTX, pages=100)["amount"] == "124.69"
    assert fee_estimate(body(), BASE_CTX, pages=0)["amount"] == "28.69"


@pytest.mark.parametrize(("today", "base", "rate"), [
    (date(2024, 9, 30), "28.38", "0.95"),
    (date(2024, 10, 1), "28.69", "0.96"),
    (date(2023, 10, 1), "28.38", "0.95"),
    (date(2023, 1, 1), "28.38", "0.95"),  # before any schedule: the oldest known
])
def test_fee_schedule_is_chosen_by_effective_date(today, base, rate):
    estimate = fee_estimate(body(), _ctx_on(today))
    assert estimate["amount"] == base
    assert estimate["per_page"][0]["rate"] == rate


@pytest.mark.parametrize(("changes", "word"), [
    ({"delivery.method": "provider_direct"}, "provider_direct"),
    ({"purpose": "continuity_of_care"}, "continuity of care"),
    ({"purpose": "social_security_benefits"}, "Social Security"),
    ({"purpose": "disability_determination", "public_benefit_claim": True}, "needs-based"),
    ({"purpose": "continuity_of_care", "fee_waiver_requested": True}, "continuity of care"),
])
def test_no_charge_says_why(changes, word):
    estimate = fee_estimate(body(changes), BASE_CTX, pages=250)
    assert estimate["status"] == "no_charge"
    assert estimate["amount"] == "0.00"
    assert word in estimate["reason"]


def test_disability_without_a_benefit_claim_is_charged():
    assert fee_estimate(body({"purpose": "disability_determination"}), BASE_CTX)["status"] == "estimated"


def test_fee_waiver_puts_the_estimate_in_review():
    estimate = fee_estimate(body({"fee_waiver_requested": True}), BASE_CTX, pages=250)
    assert estimate["status"] == "waiver_pending"
    assert estimate["amount"] == "198.19"
    assert "waiver" in estimate["reason"]


def test_fee_estimate_never_holds_a_float():
    def walk(value):
        assert not isinstance(value, float)
        for child in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
            walk(child)

    for changes in ({}, {"fee_waiver_requested": True}, {"delivery.method": "provider_direct"}):
        walk(fee_estimate(body(changes), BASE_CTX, pages=321))


# --- due_on ------------------------------------------------------------------------------------------

def _with_facility(**changes):
    return replace(BASE_CTX, facility=replace(TUFTS, **changes))


def test_calendar_days_count_weekends_and_holidays():
    ctx = _with_facility(turnaround_days=5)
    assert due_on(body(), ctx, date(2026, 11, 20)) == date(2026, 11, 25)
    assert due_on(body(), BASE_CTX, date(2026, 11, 20)) == date(2026, 11, 30)


def test_business_days_skip_the_weekend_and_thanksgiving():
    ctx = _with_facility(turnaround_days=5, turnaround_business_days=True)
    # Fri 20 → Mon 23, Tue 24, Wed 25, (Thu 26 Thanksgiving), Fri 27, Mon 30.
    assert date(2026, 11, 26) in ctx.policy.holidays
    assert due_on(body(), ctx, date(2026, 11, 20)) == date(2026, 11, 30)
    assert due_on(body(), replace(ctx, facility=replace(ctx.facility, turnaround_days=3)),
                  date(2026, 11, 13)) == date(2026, 11, 18)


def test_unknown_facility_defaults_to_ten_calendar_days():
    assert due_on(body(), replace(BASE_CTX, facility=None), date(2026, 11, 23)) == date(2026, 12, 3)


def test_hipaa_thirty_days_when_the_patient_directs_the_records():
    ctx = _with_facility(turnaround_days=45)
    personal = body({"purpose": "personal"})
    assert due_on(personal, ctx, date(2026, 11, 23)) == date(2026, 12, 23)
    assert due_basis(personal, ctx, date(2026, 11, 23)).rule == "45 CFR 164.524(b)(2)"
    by_rep = body({"purpose": "personal", "authorization.signed_by": "representative"})
    assert due_on(by_rep, ctx, date(2026, 11, 23)) == date(2027, 1, 7)
    # The facility's 10 days beat HIPAA's 30.
    assert due_on(personal, BASE_CTX, date(2026, 11, 23)) == date(2026, 12, 3)


def test_subpoena_return_date_wins_when_earlier():
    subpoena = body({"pathway": "subpoena", "legal_process": {"return_date": date(2026, 11, 27)}})
    assert due_on(subpoena, BASE_CTX, date(2026, 11, 23)) == date(2026, 11, 27)
    assert due_basis(subpoena, BASE_CTX, date(2026, 11, 23)).basis == "legal_process"
    later = body({"pathway": "subpoena", "legal_process": {"return_date": date(2027, 2, 1)}})
    assert due_basis(later, BASE_CTX, date(2026, 11, 23)).basis == "facility_target"
    # A return date on an authorization request is not a legal deadline.
    stray = body({"legal_process": {"return_date": date(2026, 11, 24)}})
    assert due_on(stray, BASE_CTX, date(2026, 11, 23)) == date(2026, 12, 3)


# --- required_documents ------------------------------------------------------------------------------

def _kinds(changes, documents=()):
    return required_documents(body(changes), replace(BASE_CTX, documents=docs(*documents)))


@pytest.mark.parametrize(("changes", "kinds"), [
    ({}, ["authorization"]),
    ({"authorization.signed_by": "representative",
      "authorization.representative": {"authority": "health_care_proxy", "description": "x"}},
     ["authorization", "representative_authority"]),
    ({"authorization.signed_by": "representative", "authorization.representative": None},
     ["authorization", "representative_authority"]),
    ({"authorization.signed_by": "representative", "patient.deceased": True,
      "authorization.representative": {"authority": "estate_executor", "description": "x"}},
     ["authorization", "letters_of_authority", "death_certificate"]),
    ({"authorization.signed_by": "representative",
      "authorization.representative": {"authority": "estate_executor", "description": "x"}}, ["authorization"]),
    ({"pathway": "subpoena"}, ["subpoena", "satisfactory_assurances"]),
    ({"pathway": "court_order"}, ["court_order"]),
    ({"pathway": None}, []),
])
def test_required_document_kinds_follow_pathway_signer_and_status(changes, kinds):
    assert [d["kind"] for d in _kinds(changes)] == kinds
    assert all(d["satisfied"] is False for d in _kinds(changes))


def test_a_court_order_replaces_assurances_on_a_subpoena():
    assert _kinds({"pathway": "subpoena"}, ["subpoena", "court_order"]) == [
        {"kind": "subpoena", "satisfied": True}, {"kind": "court_order", "satisfied": True}]


def test_satisfied_only_when_present_and_clean():
    assert _kinds({}, ["authorization"]) == [{"kind": "authorization", "satisfied": True}]
    assert _kinds({}, [("authorization", "pending")]) == [{"kind": "authorization", "satisfied": False}]
    assert _kinds({}, [("authorization", "infected"), "supporting"]) == [{"kind": "authorization", "satisfied": False}]


# --- catalogue, registry and the table -------------------------------------------------------------

RULES_DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
_ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|(.*)\|\s*$")


def documented_rules() -> dict[str, tuple[str, str, str]]:
    """docs/rules.md's code tables: code → (section heading, citation, message)."""
    out, section = {}, None
    for line in RULES_DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        match = _ROW.match(line)
        if match:
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", match.group(2))]
            assert len(cells) == 2, f"row of {match.group(1)} needs citation and message: {line}"
            assert match.group(1) not in out, f"{match.group(1)} is documented twice"
            out[match.group(1)] = (section, *cells)
    return out


def test_docs_rules_md_documents_exactly_the_catalogue():
    """The project's own rules page (docs/rules.md) and the code's catalogues (blocking, advisory) agree."""
    documented = documented_rules()
    both = {**CATALOGUE, **ADVISORY}
    assert set(documented) == set(both), "codes differ between docs/rules.md and the catalogues"
    for code, info in both.items():
        assert documented[code] == (info.section, info.citation, info.message), code


def test_docs_rules_md_lists_codes_in_catalogue_order():
    assert list(documented_rules()) == [*CATALOGUE, *ADVISORY]


def test_advisory_codes_are_the_readers_codes_and_never_blocking():
    from gateway.reading import ADVISORY_CODES

    assert tuple(ADVISORY) == ADVISORY_CODES
    assert not set(ADVISORY) & set(CATALOGUE)


def test_catalogue_entries_are_complete():
    for code, info in CATALOGUE.items():
        assert info.code == code
        assert info.citation and info.section and info.message


def test_registry_covers_the_catalogue_exactly():
    registered = [code for rule in REGISTRY for code in rule.codes]
    assert set(registered) == set(CATALOGUE)
    for rule in REGISTRY:
        doc = (rule.check.__doc__ or "").strip()
        assert doc, f"{rule.name} needs a one-line docstring"


def test_every_catalogue_code_is_produced_by_a_table_scenario():
    produced = {f.code for s in SCENARIOS for f in check_request(s.body, s.ctx)}
    expected = {code for s in SCENARIOS for code in s.expected}
    assert produced == expected == set(CATALOGUE)


def test_findings_come_out_in_catalogue_order():
    order = list(CATALOGUE)
    for scenario in SCENARIOS:
        codes = [f.code for f in check_request(scenario.body, scenario.ctx)]
        assert codes == sorted(codes, key=order.index)


def test_revocation_needs_the_same_recipient_and_patient():
    revoked = Revocation("Ana", "Silva", date(1980, 2, 29), "Smith & Jones LLP", date(2026, 11, 10))
    ctx = replace(BASE_CTX, revocations=(revoked,))
    assert [f.code for f in check_request(body(), ctx)] == ["AUTH_REVOKED"]
    assert check_request(body({"patient.first_name": "Anna"}), ctx) == []


# --- policy ----------------------------------------------------------------------------------------

def test_packaged_policy_has_both_schedules_and_the_holidays():
    policy = load_policy()
    assert [(s.effective_on, s.base) for s in policy.fee_schedules] == [
        (date(2023, 10, 1), Decimal("28.38")), (date(2024, 10, 1), Decimal("28.69"))]
    for holiday in (date(2025, 4, 21), date(2026, 4, 20), date(2027, 6, 19), date(2028, 11, 23),
                    date(2026, 11, 26), date(2027, 7, 5), date(2028, 12, 25)):
        assert holiday in policy.holidays
    assert {d.year for d in policy.holidays} == {2025, 2026, 2027, 2028}


def test_packaged_policy_says_where_the_holidays_come_from():
    raw = json.loads((Path(__file__).resolve().parents[2] / "gateway/intake/rules/policy.json").read_text())
    assert "Patriots" in raw["holidays_comment"] and "Juneteenth" in raw["holidays_comment"]


def test_load_policy_from_a_path_and_refuse_float_money(tmp_path):
    good = tmp_path / "policy.json"
    good.write_text(json.dumps({"fee_schedules": [{"effective_on": "2030-10-01", "base": "30.00", "tiers": [
        {"from_page": 1, "to_page": None, "rate": "1.00"}]}], "holidays": ["2030-12-25"]}))
    policy = load_policy(good)
    assert policy.holidays == frozenset({date(2030, 12, 25)})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fee_schedules": [{"effective_on": "2030-10-01", "base": 30.0, "tiers": []}]}))
    with pytest.raises(ValueError, match="decimal string"):
        load_policy(bad)


# --- robustness: arbitrary bodies never raise --------------------------------------------------------

KEYS = ["facility", "practice", "name", "pathway", "purpose", "patient", "first_name", "last_name", "date_of_birth",
        "other_names", "deceased", "minor", "records", "types", "date_from", "date_to", "sensitive", "delivery",
        "method", "recipient", "authorization", "signed_by", "signer_name", "signed_on", "expires_on",
        "expiration_event", "discloser", "information_description", "purpose_statement", "statements",
        "right_to_revoke", "no_conditioning", "redisclosure", "representative", "authority", "description",
        "specific_consents", "legal_process", "return_date", "public_benefit_claim", "fee_waiver_requested"]
WORDS = ["authorization", "subpoena", "court_order", "representative", "patient", "estate_executor", "guardian",
         "parent_of_minor", "health_care_proxy", "hiv", "genetic", "substance_use_disorder", "psychotherapy_notes",
         "visit_notes", "provider_direct", "personal", "continuity_of_care", "social_security_benefits",
         "disability_determination", "Tufts Medical Center", "Smith & Jones LLP", "", "  "]
LEAVES = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12)
          | st.sampled_from(WORDS) | st.dates() | st.datetimes() | st.just(float("inf")))
VALUES = st.recursive(LEAVES, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), children, max_size=6),
                      max_leaves=30)
BODIES = VALUES | st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=len(KEYS))
CONTEXTS = st.builds(
    lambda facility, documents, revocations, today: replace(
        BASE_CTX, facility=facility, documents=documents, revocations=revocations, today=today),
    st.sampled_from([None, TUFTS, COMMUNITY, replace(COMMUNITY, turnaround_days=0)]),
    st.lists(st.builds(DocumentFacts, st.sampled_from(["authorization", "subpoena", "court_order",
                                                       "representative_authority", "x"]),
                       st.sampled_from(["clean", "pending", "infected"])), max_size=4).map(tuple),
    st.lists(st.builds(Revocation, st.sampled_from(["Ana", ""]), st.sampled_from(["Silva", "x"]), st.dates(),
                       st.sampled_from(WORDS), st.dates()), max_size=2).map(tuple),
    st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=BODIES, ctx=CONTEXTS, submitted=st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31)),
       pages=st.none() | st.integers(min_value=-5, max_value=100_000) | st.booleans())
def test_arbitrary_bodies_never_raise(raw, ctx, submitted, pages):
    found = check_request(raw, ctx)
    assert all(isinstance(f, FieldError) and f.code in CATALOGUE for f in found)
    assert isinstance(required_documents(raw, ctx), list)
    assert fee_estimate(raw, ctx, pages)["currency"] == "USD"
    assert isinstance(due_on(raw, ctx, submitted), date)


@given(raw=BODIES)
@settings(max_examples=100, deadline=None)
def test_arbitrary_values_in_a_valid_body_never_raise(raw):
    # Graft the arbitrary value onto every section of a valid body to reach the deep paths.
    for section in ("patient", "records", "delivery", "authorization", "legal_process", "practice"):
        mixed = body({section: raw})
        check_request(mixed, BASE_CTX)
        required_documents(mixed, BASE_CTX)
        fee_estimate(mixed, BASE_CTX)
        due_on(mixed, BASE_CTX, datetime(2026, 11, 23, 12, 0).date())
