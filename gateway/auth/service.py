"""Provisioning organizations, users, records staff and auditors."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth.models import ORG_KINDS, Organization, User
from gateway.auth.passwords import hash_password
from gateway.auth.principal import Principal
from gateway.db import Database
from gateway.errors import Forbidden
from gateway.facilities.service import get_facility

EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"
_EMAIL = re.compile(EMAIL_PATTERN)


class ProvisioningError(ValueError):
    """A provisioning request cannot be carried out; `code` is stable."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code, self.field = code, field


def normalize_email(email: str) -> str:
    """Login names compare case-insensitively."""
    email = (email or "").strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise ProvisioningError("EMAIL_INVALID", "not a valid email address", "email")
    return email


def create_organization(session: Session, *, name: str, kind: str) -> Organization:
    """A new requester organization; names are unique."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise ProvisioningError("NAME_INVALID", "name must be 1 to 200 characters", "name")
    if kind not in ORG_KINDS:
        raise ProvisioningError("ORG_KIND_INVALID", f"kind must be one of {', '.join(ORG_KINDS)}", "kind")
    org = Organization(name=name, kind=kind)
    return _insert(session, org, "ORG_EXISTS", "an organization with that name exists")


def create_user(session: Session, *, email: str, password: str, roles: list[str],
                org_id: str | None = None, facilities: list[str] = ()) -> User:
    """A new user; requester roles need an organization, staff need known facilities."""
    requester_roles = {"requester", "requester_admin"}
    if set(roles) & requester_roles:
        if not org_id or session.get(Organization, org_id) is None:
            raise ProvisioningError("ORG_NOT_FOUND", "no such organization", "org")
        if not set(roles) <= requester_roles:
            raise ProvisioningError("ROLES_INVALID", "requester users cannot hold staff or operator roles", "role")
    elif org_id:
        raise ProvisioningError("ROLES_INVALID", "only requester users belong to an organization", "org")
    if "facility_staff" in roles:
        if not facilities:
            raise ProvisioningError("FACILITY_REQUIRED", "records staff need at least one facility", "facility")
        unknown = [code for code in facilities if get_facility(session, code) is None]
        if unknown:
            raise ProvisioningError("FACILITY_UNKNOWN", f"unknown facility: {', '.join(unknown)}", "facility")
    try:
        password_hash = hash_password(password)
    except ValueError as error:
        raise ProvisioningError("PASSWORD_WEAK", str(error), "password") from None
    user = User(email=normalize_email(email), password_hash=password_hash, org_id=org_id,
                roles=sorted(set(roles)), facilities=sorted(set(facilities)))
    return _insert(session, user, "EMAIL_EXISTS", "a user with that email exists")


def find_user_by_email(session: Session, email: str) -> User | None:
    """The user who signs in with this email, if any."""
    try:
        email = normalize_email(email)
    except ProvisioningError:
        return None
    return session.scalars(select(User).where(User.email == email)).one_or_none()


def email_notifications(session: Session, principal: Principal) -> bool | None:
    """Whether this person gets notification e-mail (None for an API key: keys get none)."""
    if principal.kind != "user":
        return None
    user = session.get(User, principal.id)
    return bool(user and user.email_notifications)


def set_email_notifications(db: Database, *, principal: Principal, enabled: bool, audit_ctx: dict) -> bool:
    """Turn the caller's own notification e-mail on or off (a change is audited); returns the new setting."""
    if principal.kind != "user":
        raise Forbidden("E-mail preferences belong to people; an API key receives no e-mail.")
    with db.transaction() as session:
        user = session.get(User, principal.id)
        if user.email_notifications != enabled:
            user.email_notifications = enabled
            record(session, actor=principal.audit_actor, org_id=principal.org_id,
                   action="user.email_notifications." + ("on" if enabled else "off"), object_type="user",
                   object_id=user.id, **audit_ctx)
        return enabled


def _insert(session: Session, row, code: str, message: str):
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise ProvisioningError(code, message) from None
    return row
