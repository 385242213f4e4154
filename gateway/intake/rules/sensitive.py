"""Specially protected information: RULES.md §6 and the psychotherapy-notes rule of §3.

Specific consent is checked on the authorization and subpoena pathways: a
subpoena alone does not release HIV, genetic, Part 2 or psychotherapy records,
so the patient's specific consent (`authorization.specific_consents`) must come
with it.  On the court_order pathway the order itself can authorize the
release (for Part 2 records, 42 CFR 2.64), so no consent is asked for; legal
review reads the order.  `mental_health` has no consent code: it routes to
sensitive-review only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gateway.errors import FieldError
from gateway.intake.rules.authorization import on_authorization
from gateway.intake.rules.context import RuleContext
from gateway.intake.rules.facts import pathway, words
from gateway.intake.rules.registry import finding, rule

PSYCHOTHERAPY_NOTES = "psychotherapy_notes"
_CATEGORY_CODES = (
    ("substance_use_disorder", "CONSENT_SUD_PART2_REQUIRED"),
    ("hiv", "CONSENT_HIV_SPECIFIC_REQUIRED"),
    ("genetic", "CONSENT_GENETIC_SPECIFIC_REQUIRED"),
)


def _consent_needed(body: Mapping) -> bool:
    return pathway(body) in ("authorization", "subpoena")


def _consents(body: Mapping) -> tuple[str, ...]:
    return words(body, "authorization.specific_consents")


@rule(*(code for _, code in _CATEGORY_CODES))
def sensitive_categories_consented(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """Each requested SUD, HIV or genetic category needs its own specific consent."""
    if not _consent_needed(body):
        return
    requested = words(body, "records.sensitive")
    consents = _consents(body)
    for category, code in _CATEGORY_CODES:
        if category in requested and category not in consents:
            yield finding(code, "records.sensitive")


@rule("CONSENT_PSYCHOTHERAPY_NOTES_REQUIRED")
def psychotherapy_notes_consented(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """Psychotherapy notes need a specific authorization for them (164.508(a)(2))."""
    if _consent_needed(body) and PSYCHOTHERAPY_NOTES in words(body, "records.types") \
            and PSYCHOTHERAPY_NOTES not in _consents(body):
        yield finding("CONSENT_PSYCHOTHERAPY_NOTES_REQUIRED", "records.types")


@rule("AUTH_PSYCHOTHERAPY_NOTES_COMBINED")
def psychotherapy_notes_alone(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """An authorization for psychotherapy notes may not also cover other records (164.508(b)(3)(ii))."""
    types = words(body, "records.types")
    if on_authorization(body) and PSYCHOTHERAPY_NOTES in types and any(t != PSYCHOTHERAPY_NOTES for t in types):
        yield finding("AUTH_PSYCHOTHERAPY_NOTES_COMBINED", "records.types")
