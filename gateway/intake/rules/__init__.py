"""Release-of-information rules (RULES.md) as pure functions of a request body and a RuleContext.

Nothing here touches Flask, the database or the network; the only I/O is
load_policy reading the packaged policy.json when asked.

Input: `body` is the API.md create body as the marshmallow schema loads it
(dates as `datetime.date`, strings stripped).  Any field may be missing, None or
"" in a draft; the rules treat the three alike and never raise.  Besides the
API.md fields the rules read:
- `legal_process`: `{"return_date": date | None}` or None, a subpoena's or
  court order's return date; due_on is no later than it (RULES.md §9).
- `public_benefit_claim`: bool, the records support a claim or appeal under the
  Social Security Act or a needs-based benefit program; with purpose
  `disability_determination` it makes the fee no-charge (RULES.md §8; purpose
  `social_security_benefits` is no-charge on its own).

Output: check_request returns every deficiency as gateway.errors.FieldError,
in catalogue (RULES.md) order, without duplicates;
required_documents, fee_estimate, due_on/due_basis give the rest of the
validate response; CATALOGUE lists every code for the OpenAPI spec.
"""

# The rule modules register their rules on import.
from gateway.intake.rules import authorization, documents, parties, representatives, request, sensitive  # noqa: F401
from gateway.intake.rules.catalogue import CATALOGUE, RuleInfo
from gateway.intake.rules.clocks import (
    BASES,
    EXTENDABLE_BASIS,
    HIPAA_EXTENSION_DAYS,
    Deadline,
    due_basis,
    due_on,
    extend_access_clock,
)
from gateway.intake.rules.context import (
    DocumentFacts,
    FacilityPolicy,
    FeeSchedule,
    FeeTier,
    Policy,
    Revocation,
    RuleContext,
)
from gateway.intake.rules.documents import required_documents
from gateway.intake.rules.fees import fee_estimate
from gateway.intake.rules.names import names_match, normalize_name
from gateway.intake.rules.parties import revoked_by
from gateway.intake.rules.policy import load_policy
from gateway.intake.rules.registry import REGISTRY, check_request

__all__ = [
    "BASES",
    "CATALOGUE",
    "EXTENDABLE_BASIS",
    "HIPAA_EXTENSION_DAYS",
    "REGISTRY",
    "Deadline",
    "DocumentFacts",
    "FacilityPolicy",
    "FeeSchedule",
    "FeeTier",
    "Policy",
    "Revocation",
    "RuleContext",
    "RuleInfo",
    "check_request",
    "due_basis",
    "due_on",
    "extend_access_clock",
    "fee_estimate",
    "load_policy",
    "names_match",
    "normalize_name",
    "required_documents",
    "revoked_by",
]
