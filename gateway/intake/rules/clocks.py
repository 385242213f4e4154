"""When a request is due: RULES.md §9.

Three clocks may run; the earliest wins:
- the facility's target turnaround, in business days (weekends and
  policy.holidays skipped) or calendar days as the facility says; 10 calendar
  days when the facility is unknown (the RULES.md default);
- HIPAA's 30-day access clock (45 CFR 164.524(b)(2)) when the patient directs
  the records (purpose `personal`, signed by the patient);
- on the subpoena and court_order pathways, `legal_process.return_date` when given.
On a tie the legal deadline is named, then HIPAA, then the facility target,
because the stricter source is the one worth citing.

The HIPAA access clock may be extended once, by no more than 30 days, with a
written statement of the reasons (164.524(b)(2)(iii)); `extend_access_clock`
gives the new date.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from gateway.intake.rules.context import RuleContext
from gateway.intake.rules.facts import as_body, day, pathway, text, to_date

DEFAULT_TURNAROUND_DAYS = 10
HIPAA_ACCESS_DAYS = 30
HIPAA_EXTENSION_DAYS = 30
BASES = ("facility_target", "hipaa_access", "legal_process")
EXTENDABLE_BASIS = "hipaa_access"
SATURDAY = 5


@dataclass(frozen=True)
class Deadline:
    """One clock's due date, what it is and what it cites."""

    due_on: date
    basis: str  # "legal_process" | "hipaa_access" | "facility_target"
    rule: str


def add_business_days(start: date, days: int, holidays: Iterable[date] = ()) -> date:
    """The date `days` business days after start, skipping weekends and holidays."""
    closed = frozenset(holidays)
    current = start
    remaining = max(0, days)
    while remaining:
        current += timedelta(days=1)
        if current.weekday() < SATURDAY and current not in closed:
            remaining -= 1
    return current


def facility_target(ctx: RuleContext, submitted_on: date) -> Deadline:
    """The facility's own turnaround target from the submission date."""
    facility = ctx.facility
    if facility is None:
        return Deadline(submitted_on + timedelta(days=DEFAULT_TURNAROUND_DAYS), "facility_target",
                        f"Default turnaround: {DEFAULT_TURNAROUND_DAYS} calendar days")
    days = max(0, facility.turnaround_days)
    if facility.turnaround_business_days:
        return Deadline(add_business_days(submitted_on, days, ctx.policy.holidays), "facility_target",
                        f"Facility policy: target turnaround ({days} business days)")
    return Deadline(submitted_on + timedelta(days=days), "facility_target",
                    f"Facility policy: target turnaround ({days} calendar days)")


def deadlines(body: Any, ctx: RuleContext, submitted_on: date) -> list[Deadline]:
    """Every clock that runs for this request, legal ones first."""
    body = as_body(body)
    found: list[Deadline] = []
    returns = day(body, "legal_process.return_date")
    if pathway(body) in ("subpoena", "court_order") and returns is not None:
        found.append(Deadline(returns, "legal_process", "Return date of the legal process"))
    if text(body, "purpose") == "personal" and text(body, "authorization.signed_by") == "patient":
        found.append(Deadline(submitted_on + timedelta(days=HIPAA_ACCESS_DAYS), "hipaa_access",
                              "45 CFR 164.524(b)(2)"))
    found.append(facility_target(ctx, submitted_on))
    return found


def due_basis(body: Any, ctx: RuleContext, submitted_on: date) -> Deadline:
    """The earliest deadline and the clock it comes from."""
    # A caller passing a datetime (or nothing usable) still gets a date, never a TypeError.
    submitted = to_date(submitted_on) or ctx.today
    clocks = deadlines(body, ctx, submitted)
    # min() keeps the first of equal dates, and deadlines() lists the stricter sources first.
    return min(clocks, key=lambda d: d.due_on)


def due_on(body: Any, ctx: RuleContext, submitted_on: date) -> date:
    """The date the request is due: the earliest of the clocks that run for it."""
    return due_basis(body, ctx, submitted_on).due_on


def extend_access_clock(due_on: date) -> date:
    """The due date after the one extension of the HIPAA access clock (45 CFR 164.524(b)(2)(iii))."""
    return due_on + timedelta(days=HIPAA_EXTENSION_DAYS)
