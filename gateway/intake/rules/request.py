"""The request itself and who sends legal process: RULES.md §7 and PATHWAY_REQUESTER_MISMATCH (§5).

These rules apply on every pathway.  DOCUMENT_NOT_CLEAN (§7) lives with the
other document rules in documents.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gateway.errors import FieldError
from gateway.intake.rules.context import RuleContext
from gateway.intake.rules.facts import day, pathway, text, words
from gateway.intake.rules.registry import finding, rule

LEGAL_PATHWAYS = ("subpoena", "court_order")


@rule("FACILITY_UNKNOWN")
def facility_known(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """The facility must be one of the catalogue's codes (the caller resolves it into ctx.facility)."""
    if ctx.facility is None:
        yield finding("FACILITY_UNKNOWN", "facility")


@rule("PRACTICE_REQUIRED")
def practice_named(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """A facility that spans several offices (community-practices) needs the practice named."""
    if ctx.facility is not None and ctx.facility.requires_practice and not text(body, "practice.name"):
        yield finding("PRACTICE_REQUIRED", "practice.name")


@rule("PATIENT_DOB_IN_FUTURE")
def birth_date_past(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """A date of birth after today is a typo that would misidentify the patient."""
    born = day(body, "patient.date_of_birth")
    if born is not None and born > ctx.today:
        yield finding("PATIENT_DOB_IN_FUTURE", "patient.date_of_birth")


@rule("RECORDS_DATE_RANGE_INVALID")
def date_range_valid(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """The range may be open at either end, but must not run backwards or into the future.

    At most one finding per field: the start is reported when it is after the end
    or in the future, the end when it is in the future.
    """
    start = day(body, "records.date_from")
    end = day(body, "records.date_to")
    if start is not None and ((end is not None and start > end) or start > ctx.today):
        yield finding("RECORDS_DATE_RANGE_INVALID", "records.date_from")
    if end is not None and end > ctx.today:
        yield finding("RECORDS_DATE_RANGE_INVALID", "records.date_to")


@rule("RECORDS_TYPES_REQUIRED")
def record_types_chosen(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """At least one record type must be requested."""
    if not words(body, "records.types"):
        yield finding("RECORDS_TYPES_REQUIRED", "records.types")


@rule("PATHWAY_REQUESTER_MISMATCH")
def legal_process_from_law_firm(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """Subpoenas and court orders are accepted from law firms only."""
    if pathway(body) in LEGAL_PATHWAYS and ctx.requester_org_kind != "law_firm":
        yield finding("PATHWAY_REQUESTER_MISMATCH", "pathway")
