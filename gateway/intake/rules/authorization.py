"""Authorization elements, statements and dates: RULES.md §1, §2 and the date rules of §3.

Every rule here applies only when `pathway` is "authorization": a subpoena or a
court order is the legal basis on its own and needs no authorization.  A
missing `authorization` object simply reads as every element missing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from gateway.errors import FieldError
from gateway.intake.rules.context import RuleContext
from gateway.intake.rules.facts import day, get, pathway, signed_by_representative, text
from gateway.intake.rules.registry import finding, rule

# Free-text elements of 164.508(c)(1) whose absence is the whole test.
_TEXT_ELEMENTS = (
    ("AUTH_MISSING_DESCRIPTION", "authorization.information_description"),
    ("AUTH_MISSING_DISCLOSER", "authorization.discloser"),
    ("AUTH_MISSING_RECIPIENT", "authorization.recipient"),
    ("AUTH_MISSING_PURPOSE", "authorization.purpose_statement"),
)
_STATEMENTS = (
    ("AUTH_MISSING_REVOCATION_STATEMENT", "authorization.statements.right_to_revoke"),
    ("AUTH_MISSING_CONDITIONING_STATEMENT", "authorization.statements.no_conditioning"),
    ("AUTH_MISSING_REDISCLOSURE_STATEMENT", "authorization.statements.redisclosure"),
)


def on_authorization(body: Mapping) -> bool:
    """Whether the request relies on a patient authorization."""
    return pathway(body) == "authorization"


@rule(*(code for code, _ in _TEXT_ELEMENTS))
def text_elements(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """Description, discloser, recipient and purpose must each be stated (164.508(c)(1)(i)-(iv))."""
    if on_authorization(body):
        for code, field in _TEXT_ELEMENTS:
            if not text(body, field):
                yield finding(code, field)


@rule("AUTH_MISSING_EXPIRATION")
def expiration_stated(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """An expiration date or an expiration event must be given; either one suffices."""
    if on_authorization(body) and day(body, "authorization.expires_on") is None \
            and not text(body, "authorization.expiration_event"):
        yield finding("AUTH_MISSING_EXPIRATION", "authorization.expires_on")


@rule("AUTH_MISSING_SIGNATURE")
def signature_present(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """A signer's name and a signature date are both required; one finding names the first missing."""
    if not on_authorization(body):
        return
    if not text(body, "authorization.signer_name"):
        yield finding("AUTH_MISSING_SIGNATURE", "authorization.signer_name")
    elif day(body, "authorization.signed_on") is None:
        yield finding("AUTH_MISSING_SIGNATURE", "authorization.signed_on")


@rule("AUTH_MISSING_REPRESENTATIVE_AUTHORITY")
def representative_authority_described(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """A representative's signature needs the kind of authority and its description."""
    if not (on_authorization(body) and signed_by_representative(body)):
        return
    if not isinstance(get(body, "authorization.representative"), Mapping):
        yield finding("AUTH_MISSING_REPRESENTATIVE_AUTHORITY", "authorization.representative")
    elif not text(body, "authorization.representative.authority"):
        yield finding("AUTH_MISSING_REPRESENTATIVE_AUTHORITY", "authorization.representative.authority")
    elif not text(body, "authorization.representative.description"):
        yield finding("AUTH_MISSING_REPRESENTATIVE_AUTHORITY", "authorization.representative.description")


@rule(*(code for code, _ in _STATEMENTS))
def required_statements(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """The three statements of 164.508(c)(2) must each be affirmed (true, not merely present)."""
    if on_authorization(body):
        for code, field in _STATEMENTS:
            if get(body, field) is not True:
                yield finding(code, field)


@rule("AUTH_EXPIRED")
def not_expired(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """Expired means expires_on < today: an authorization expiring today is still valid today.

    An authorization that expires by event has no date to pass, so it never expires here.
    """
    expires = day(body, "authorization.expires_on")
    if on_authorization(body) and expires is not None and expires < ctx.today:
        yield finding("AUTH_EXPIRED", "authorization.expires_on")


@rule("AUTH_SIGNED_IN_FUTURE")
def not_signed_in_future(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """A signature dated after today is false information; signed today is fine."""
    signed = day(body, "authorization.signed_on")
    if on_authorization(body) and signed is not None and signed > ctx.today:
        yield finding("AUTH_SIGNED_IN_FUTURE", "authorization.signed_on")


@rule("AUTH_SIGNED_AFTER_EXPIRY")
def not_signed_after_expiry(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """An authorization signed after its own expiration date was never valid.

    Reported alongside AUTH_EXPIRED when both hold: they are different mistakes
    (a wrong date on the form versus an old form) and the fix differs.
    """
    signed = day(body, "authorization.signed_on")
    expires = day(body, "authorization.expires_on")
    if on_authorization(body) and signed is not None and expires is not None and signed > expires:
        yield finding("AUTH_SIGNED_AFTER_EXPIRY", "authorization.signed_on")


@rule("AUTH_TOO_OLD")
def not_too_old(body: Mapping, ctx: RuleContext) -> Iterator[FieldError]:
    """Signed more than the facility's maximum age ago (only when the facility is known)."""
    signed = day(body, "authorization.signed_on")
    if not on_authorization(body) or signed is None or ctx.facility is None:
        return
    limit = ctx.facility.max_authorization_age_days
    if (ctx.today - signed).days > limit:
        yield finding("AUTH_TOO_OLD", "authorization.signed_on",
                      f"The authorization was signed more than {limit} days ago, longer than this facility "
                      "accepts; a newly signed authorization is needed.")
