"""Whether the authorization names the right parties and still stands: the matching rules of RULES.md §3.

Names are compared with names_match, so cosmetic differences never fail a
request.  Like the other authorization rules these apply only on the
authorization pathway, and only when the name to compare is present (a blank
one is already an AUTH_MISSING_* finding).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gateway.errors import FieldError
from gateway.intake.rules.authorization import on_authorization
from gateway.intake.rules.context import FacilityPolicy, Revocation, RuleContext
from gateway.intake.rules.facts import day, text, words
from gateway.intake.rules.names import affiliates_of, names_match
from gateway.intake.rules.registry import finding, rule


@rule("AUTH_DISCLOSER_MISMATCH")
def discloser_is_facility(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """The discloser must name the facility: see `discloser_names`."""
    discloser = text(body, "authorization.discloser")
    facility = ctx.facility
    if not on_authorization(body) or not discloser or facility is None:
        return
    practice = text(body, "practice.name") if facility.requires_practice else None
    if discloser_names(discloser, facility, practice=practice):
        return
    yield finding("AUTH_DISCLOSER_MISMATCH", "authorization.discloser")


def discloser_names(discloser: str, facility: FacilityPolicy, *, practice: str | None = None) -> bool:
    """Whether an authorization's discloser names `facility` (RULES.md §3, AUTH_DISCLOSER_MISMATCH).

    It does when it is the facility's name or an alias, or the name of the health system that runs it
    (configuration: the facility's `health_system` and its legal variants), or an "… and its affiliates"
    form of any of those or of another facility of the same system — affiliates are the entities under the
    system's common control.  For a doctor's office (a facility that requires a practice) naming the
    practice is the usual way to fill in the form, so it matches too; the community-practices network's
    names are that facility's aliases.  Another system's facility never matches.
    """
    own = (facility.name, *facility.aliases, *facility.system_names, *([practice] if practice else ()))
    if names_match(discloser, own[0], own[1:]):
        return True
    base = affiliates_of(discloser)
    return base is not None and names_match(base, own[0], (*own[1:], *facility.affiliate_names))


@rule("AUTH_RECIPIENT_MISMATCH")
def recipient_is_requester(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """The recipient must be the requesting organization or the delivery recipient."""
    recipient = text(body, "authorization.recipient")
    if not on_authorization(body) or not recipient:
        return
    if names_match(recipient, ctx.requester_org_name) or names_match(recipient, text(body, "delivery.recipient.name")):
        return
    yield finding("AUTH_RECIPIENT_MISMATCH", "authorization.recipient")


def _same_patient(body: Mapping, revocation: Revocation) -> bool:
    if day(body, "patient.date_of_birth") != revocation.patient_date_of_birth:
        return False
    if names_match(revocation.patient_first_name, text(body, "patient.first_name")) and \
            names_match(revocation.patient_last_name, text(body, "patient.last_name")):
        return True
    # A revocation filed under a former name still binds: compare the full name with other_names.
    full = f"{revocation.patient_first_name} {revocation.patient_last_name}"
    return any(names_match(full, other) for other in words(body, "patient.other_names"))


@rule("AUTH_REVOKED")
def not_revoked(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """A revocation by this patient for this recipient defeats authorizations signed on or before it.

    An authorization signed after the revocation is a new authorization and stands.
    Without a signature date the rule waits: AUTH_MISSING_SIGNATURE already blocks.
    """
    if revoked_by(ctx.revocations, body) is not None:
        yield finding("AUTH_REVOKED", "authorization")


def revoked_by(revocations, body: Mapping) -> Revocation | None:
    """The first revocation that defeats this body's authorization (the AUTH_REVOKED test; also used to hold
    requests already in flight when a revocation is recorded)."""
    signed = day(body, "authorization.signed_on")
    recipient = text(body, "authorization.recipient")
    if not on_authorization(body) or signed is None or not recipient:
        return None
    return next((revocation for revocation in revocations
                 if signed <= revocation.effective_on and names_match(recipient, revocation.recipient)
                 and _same_patient(body, revocation)), None)
