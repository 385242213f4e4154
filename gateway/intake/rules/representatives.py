"""Whether a personal representative's authority fits the patient: RULES.md §4 (45 CFR 164.502(g)).

The patient's age comes from the date of birth and today (a 29 February
birthday counts as 1 March in common years); the date of birth wins over the
`minor` flag when they disagree, and the flag is used only without a usable
date of birth.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gateway.errors import FieldError
from gateway.intake.rules.authorization import on_authorization
from gateway.intake.rules.context import RuleContext
from gateway.intake.rules.facts import authority, is_deceased, is_minor, signed_by_representative
from gateway.intake.rules.registry import finding, rule

ESTATE_EXECUTOR = "estate_executor"
HEALTH_CARE_AGENTS = frozenset({"health_care_proxy", "durable_poa_health_care", "advance_directive"})
# A guardianship or conservatorship ends at the ward's death, so it cannot act for a deceased patient.
COURT_APPOINTED = frozenset({"guardian", "conservator"})

_EXECUTOR_LIVING = ("An estate's executor can act only for a deceased patient; the patient is recorded as living. "
                    "The patient or a living patient's representative must sign.")
_PARENT_OF_ADULT = "A parent can sign only for a minor; the patient is an adult and must sign or name a representative."
_AGENT_DECEASED = ("A health care agent's authority ends at the patient's death; the executor or administrator of "
                   "the estate must sign.")
_GUARDIAN_DECEASED = ("A guardianship or conservatorship ends at the patient's death; the executor or administrator "
                      "of the estate must sign.")


def authority_problem(body: Mapping, ctx: RuleContext) -> str | None:
    """Why the stated authority cannot act for this patient, or None when it fits (or is not stated)."""
    kind = authority(body)
    deceased = is_deceased(body)
    if kind == ESTATE_EXECUTOR and not deceased:
        return _EXECUTOR_LIVING
    if kind == "parent_of_minor" and not is_minor(body, ctx.today):
        return _PARENT_OF_ADULT
    if deceased and kind in HEALTH_CARE_AGENTS:
        return _AGENT_DECEASED
    if deceased and kind in COURT_APPOINTED:
        return _GUARDIAN_DECEASED
    return None


def representative_signed(body: Mapping) -> bool:
    """Whether the request relies on an authorization signed by a personal representative."""
    return on_authorization(body) and signed_by_representative(body)


@rule("REPRESENTATIVE_AUTHORITY_INVALID")
def authority_fits_patient(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """Executor only for the deceased, parent only for a minor, agents and guardians only for the living.

    A parent of a deceased minor is left alone: RULES.md names only the adult case.
    """
    if representative_signed(body):
        problem = authority_problem(body, ctx)
        if problem:
            yield finding("REPRESENTATIVE_AUTHORITY_INVALID", "authorization.representative.authority", problem)
