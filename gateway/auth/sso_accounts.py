"""Hospital sign-on accounts: who an identity at the hospital's provider is here, and their facilities.

A person signed in through the provider is known by (issuer, subject) — the `sub` claim never changes for
one person at one provider, while an e-mail address can be renamed or reused — in `external_identities`.

The first sign-in of an identity provisions a `facility_staff` user: the hospital's provider is the
authority on who works in its records teams, and asking an operator to create every clerk's account
first would defeat the point of signing on with the hospital's account.  The one exception is an e-mail
address that already belongs to a user here: that user is linked only when it is a records-staff account
(nothing more) and the provider says it verified the address; any other account (a requester, an auditor,
an operator) is never taken over through the provider.  A provisioned user has no usable password
(`password_hash` holds a marker no Argon2 hash can equal), so the provider is its only way in.

On every sign-in the user's facilities are set from the claim (the hospital moves people between
teams), and a deactivated user (`users.active` false) is refused: the gateway's own deactivation wins
over the provider.  Every outcome is audited.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway.audit.service import record
from gateway.auth.hospital_sso import SsoRefused
from gateway.auth.models import User
from gateway.auth.passwords import NO_PASSWORD
from gateway.auth.service import ProvisioningError, normalize_email
from gateway.db import Base, Database, UTCDateTime, new_id, utcnow
from gateway.facilities.service import get_facility

logger = logging.getLogger(__name__)

STAFF_ROLE = "facility_staff"


class ExternalIdentity(Base):
    """A person at the hospital's identity provider, linked to one gateway user."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    issuer: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class SignedOn:
    """A user allowed in by the provider: start their portal session."""

    user_id: str
    provisioned: bool


def mapped_facilities(claim_value, mapping: dict[str, tuple[str, ...]]) -> list[str]:
    """The facility codes the claim's value(s) map to (a string or a list of strings; anything else: none)."""
    values = [claim_value] if isinstance(claim_value, str) else claim_value
    if not isinstance(values, list):
        return []
    codes: set[str] = set()
    for value in values:
        if isinstance(value, str):
            codes.update(mapping.get(value, ()))
    return sorted(codes)


def sign_on(db: Database, *, issuer: str, claims: dict, facility_claim: str,
            mapping: dict[str, tuple[str, ...]], audit_ctx: dict) -> SignedOn:
    """Find or provision the user of a validated ID token and set their facilities; SsoRefused when not allowed.

    Refusals are audited in their own transaction, so they are kept although nothing else is written.
    """
    try:
        try:
            with db.transaction() as session:
                return _sign_on(session, issuer=issuer, claims=claims, facility_claim=facility_claim,
                                mapping=mapping, audit_ctx=audit_ctx)
        except IntegrityError:
            # The same person's first sign-in twice at once (two tabs): the other one linked it.
            raise SsoRefused("SSO_CONFLICT", 409, "Your account was being set up by another sign-in at the same "
                             "time. Please sign in again.", "conflict") from None
    except SsoRefused as refused:
        with db.transaction() as session:
            record(session, actor=f"user:{refused.user_id}" if refused.user_id else "anonymous",
                   action=f"auth.sso.{refused.reason}", result="denied", object_type="user",
                   object_id=refused.user_id, **audit_ctx)
        refused.audited = True
        raise


def _refuse(code: str, status: int, message: str, reason: str, user: User | None = None) -> SsoRefused:
    return SsoRefused(code, status, message, reason, user_id=user.id if user is not None else None)


def _sign_on(session: Session, *, issuer: str, claims: dict, facility_claim: str,
             mapping: dict[str, tuple[str, ...]], audit_ctx: dict) -> SignedOn:
    subject = claims["sub"]
    mapped = mapped_facilities(claims.get(facility_claim), mapping)
    facilities = [code for code in mapped if get_facility(session, code) is not None]
    if len(facilities) != len(mapped):  # GATEWAY_SSO_FACILITY_MAP names a facility the catalogue lacks
        logger.warning("hospital sign-on maps to unknown facilities",
                       extra={"unknown": sorted(set(mapped) - set(facilities))})
    identity = session.scalars(select(ExternalIdentity).where(
        ExternalIdentity.issuer == issuer, ExternalIdentity.subject == subject)).one_or_none()
    user = session.get(User, identity.user_id) if identity is not None else None
    if not facilities:
        raise _refuse("SSO_NO_FACILITY", 403, "Your hospital account is not assigned to a records team that "
                      "uses this portal. Ask your records manager to add you to one.", "no_facility", user)
    provisioned = False
    if user is None:
        user, provisioned = _link_or_provision(session, issuer=issuer, subject=subject, claims=claims,
                                               facilities=facilities, audit_ctx=audit_ctx)
    if not user.active:
        raise _refuse("SSO_ACCOUNT_INACTIVE", 403, "Your account here is no longer active. Ask the gateway's "
                      "administrators.", "inactive", user)
    if STAFF_ROLE not in (user.roles or ()):
        raise _refuse("SSO_NOT_STAFF", 403, "Hospital sign-on is for records staff; sign in with your email "
                      "address and password instead.", "not_staff", user)
    actor = f"user:{user.id}"
    if sorted(user.facilities or ()) != facilities:
        user.facilities = facilities
        record(session, actor=actor, action="user.facilities_from_sso", object_type="user", object_id=user.id,
               **audit_ctx)
    now = utcnow()
    user.last_login_at = now
    session.execute(ExternalIdentity.__table__.update()
                    .where(ExternalIdentity.issuer == issuer, ExternalIdentity.subject == subject)
                    .values(last_sign_in_at=now))
    record(session, actor=actor, action="auth.sso.login", object_type="user", object_id=user.id, **audit_ctx)
    return SignedOn(user.id, provisioned)


def _link_or_provision(session: Session, *, issuer: str, subject: str, claims: dict, facilities: Iterable[str],
                       audit_ctx: dict) -> tuple[User, bool]:
    try:
        email = normalize_email(claims.get("email") if isinstance(claims.get("email"), str) else "")
    except ProvisioningError:
        raise _refuse("SSO_EMAIL_MISSING", 403, "Your hospital account has no e-mail address the portal can "
                      "use. Ask your hospital's identity team.", "email_missing") from None
    existing = session.scalars(select(User).where(User.email == email)).one_or_none()
    if existing is not None:
        if claims.get("email_verified") is not True or list(existing.roles or ()) != [STAFF_ROLE]:
            raise _refuse("SSO_EMAIL_IN_USE", 409, "An account here already uses your e-mail address and cannot "
                          "be linked to your hospital account. Ask the gateway's administrators.", "email_in_use")
        user, provisioned, action = existing, False, "user.sso_linked"
    else:
        user = User(email=email, password_hash=NO_PASSWORD, org_id=None, roles=[STAFF_ROLE],
                    facilities=sorted(facilities))
        session.add(user)
        session.flush()
        provisioned, action = True, "user.sso_provisioned"
    session.add(ExternalIdentity(issuer=issuer, subject=subject, user_id=user.id))
    session.flush()
    record(session, actor=f"user:{user.id}", action=action, object_type="user", object_id=user.id, **audit_ctx)
    return user, provisioned
