"""The facts the rules read besides the body: today, the facility, the requester, documents, policy.

Every type here is a frozen dataclass so a context can be built once per check
and shared; nothing in this module does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

FEE_BASIS = "M.G.L. c.111 §70"


@dataclass(frozen=True)
class DocumentFacts:
    """One uploaded document as the rules see it: its kind and its scan verdict."""

    kind: str
    scan_status: str  # only "clean" counts; pending, infected or failed scans never do
    # The reading of a signed form: True/False once read, None when not read (other kinds, pending, failed).
    legible: bool | None = None


@dataclass(frozen=True)
class Revocation:
    """A patient's recorded revocation of authorizations for one recipient."""

    patient_first_name: str
    patient_last_name: str
    patient_date_of_birth: date
    recipient: str
    effective_on: date


@dataclass(frozen=True)
class FacilityPolicy:
    """The policy values of one facility (configuration, not code)."""

    code: str
    name: str
    aliases: tuple[str, ...]
    turnaround_days: int
    turnaround_business_days: bool
    requires_practice: bool
    max_authorization_age_days: int
    # The health system's name and legal variants ("Tufts Medicine", "Wellforce"): they name every facility of it.
    system_names: tuple[str, ...] = ()
    # The names and aliases of the system's other facilities: they name this one only in an "… and its
    # affiliates" form ("Lowell General Hospital and its affiliates" covers Tufts Medical Center).
    affiliate_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeeTier:
    """A per-page rate for pages from_page..to_page (to_page None: no upper bound)."""

    from_page: int
    to_page: int | None
    rate: Decimal


@dataclass(frozen=True)
class FeeSchedule:
    """The maximum fees in force from effective_on until the next schedule."""

    effective_on: date
    base: Decimal
    tiers: tuple[FeeTier, ...]
    basis: str = FEE_BASIS


@dataclass(frozen=True)
class Policy:
    """Gateway-wide configuration the rules need: fee schedules and the holiday calendar."""

    fee_schedules: tuple[FeeSchedule, ...]
    holidays: frozenset[date]


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule may consult besides the body; built by the caller, never by a rule."""

    today: date
    facility: FacilityPolicy | None  # None when body["facility"] is not a known facility code
    requester_org_name: str
    requester_org_kind: str  # "law_firm" | "insurer" | "provider"
    documents: tuple[DocumentFacts, ...]
    revocations: tuple[Revocation, ...]
    policy: Policy
