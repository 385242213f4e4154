"""The lifecycle of a person's account: deactivation and reactivation, roles and facilities, password change.

Who may manage whom (API.md v1.1 "Accounts"): an organization's own admins
manage its users; the gateway's operators (`gateway_admin`) manage records
staff, auditors, other operators and organizations' admins, never an
organization's plain requesters (least privilege, as in gateway.auth.rights).
Nobody deactivates or changes the roles of themselves, and an organization's
last active admin stays (both 409, so an organization cannot lock itself out).

Ending credentials at once, across every gunicorn worker, rests on state in
the database, not in any process: `users.active` and `users.credentials_epoch`
are re-read on every authenticated request (gateway.auth.web for access
tokens, gateway.portal.web for portal sessions).  A deactivation, password
reset or password change bumps the epoch, so every token and portal session
issued under the old one is refused on its very next request; reactivation
does not bring them back.  (The bearer guard's "known good" memory only lets a
credential past the per-address failure limit; it never authenticates one.)

Every change is audited, and what a role/facility/activation change changed is
kept in `account_changes` (before and after, never a secret), tied to its audit
entry by `audit_seq`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth import login
from gateway.auth.models import ROLES, AccountChange, LoginThrottle, Organization, User
from gateway.auth.passwords import WeakPassword, hash_password, verify_password
from gateway.auth.principal import REQUESTER_ROLES, Principal
from gateway.db import Database, utcnow
from gateway.errors import BadRequest, Conflict, FieldError, Forbidden, TooManyRequests, Unprocessable
from gateway.facilities.service import get_facility

OPERATOR, ORG_ADMIN = "gateway_admin", "requester_admin"
# Roles a person of a requester organization may hold, and those only the gateway's own people hold.
ORG_ROLES = frozenset(REQUESTER_ROLES)
STAFF_ROLES = frozenset(ROLES) - ORG_ROLES


class AccountConflict(Conflict):
    """An account change that would leave someone (or an organization) locked out; `code` says which."""


@dataclass(frozen=True)
class Outcome:
    """What a change left: the user resource and whether anything changed."""

    user: User
    changed: bool


# -- rights ------------------------------------------------------------------------------------------------------

def ensure_may_manage(principal: Principal, target: User) -> None:
    """May `principal` deactivate, reactivate or change `target`?  Forbidden (403) when not."""
    if principal.kind != "user":
        raise Forbidden("Accounts are managed by people, not API keys.")
    if target.org_id is not None and principal.has_role(ORG_ADMIN) and principal.org_id == target.org_id:
        return
    if principal.has_role(OPERATOR):
        # Operators: the gateway's own people, and organizations' admins (a firm whose admin left is not stuck),
        # never an organization's requesters: those are its admins' to manage.
        if target.org_id is None or ORG_ADMIN in (target.roles or ()):
            return
        raise Forbidden("An organization's requesters are managed by its own admins.")
    raise Forbidden("Your role does not allow this operation.")


def _ensure_not_self(principal: Principal, target: User, what: str) -> None:
    if principal.id == target.id:
        raise AccountConflict(f"You cannot {what} your own account; ask another administrator.",
                              code="CANNOT_CHANGE_OWN_ACCOUNT")


def _ensure_other_active_admin(session: Session, target: User) -> None:
    """Refuse to take away an organization's last active admin (the org row is locked while counting)."""
    if target.org_id is None or ORG_ADMIN not in (target.roles or ()) or not target.active:
        return
    session.execute(select(Organization.id).where(Organization.id == target.org_id).with_for_update())
    others = session.scalars(select(User.roles).where(User.org_id == target.org_id, User.active.is_(True),
                                                      User.id != target.id))
    if not any(ORG_ADMIN in (roles or ()) for roles in others):
        raise AccountConflict("This is the organization's last active admin; make someone else an admin first.",
                              code="LAST_ADMIN")


def _locked_user(session: Session, user_id: str) -> User:
    user = session.scalars(select(User).where(User.id == user_id).with_for_update()).one()
    return user


def _snapshot(user: User) -> dict:
    return {"roles": sorted(user.roles or ()), "facilities": sorted(user.facilities or ()), "active": user.active}


def _audit_change(session: Session, *, actor: str, user: User, action: str, before: dict, audit_ctx: dict) -> None:
    event = record(session, actor=actor, org_id=user.org_id, action=action, object_type="user",
                   object_id=user.id, immediately=True, **audit_ctx)  # the change names its audit entry
    session.add(AccountChange(actor=actor, user_id=user.id, action=action, before=before,
                              after=_snapshot(user), audit_seq=event.seq, at=utcnow()))


# -- deactivation ------------------------------------------------------------------------------------------------

def deactivate(db: Database, *, principal: Principal, user_id: str, audit_ctx: dict) -> Outcome:
    """Deactivate a user: every token and portal session stops working at once, and sign-in is refused."""
    with db.write_transaction() as session:
        user = _locked_user(session, user_id)
        ensure_may_manage(principal, user)
        _ensure_not_self(principal, user, "deactivate")
        if not user.active:
            return Outcome(user, False)
        _ensure_other_active_admin(session, user)
        _end_account(session, user, actor=principal.audit_actor, audit_ctx=audit_ctx)
        return Outcome(user, True)


def _end_account(session: Session, user: User, *, actor: str, audit_ctx: dict) -> None:
    from gateway.auth.models import PasswordReset

    before = _snapshot(user)
    now = utcnow()
    user.active, user.deactivated_at = False, now
    user.credentials_epoch = (user.credentials_epoch or 0) + 1
    # A reset link already on its way must not bring the account back to life after reactivation.
    for reset in session.scalars(select(PasswordReset).where(PasswordReset.user_id == user.id,
                                                             PasswordReset.used_at.is_(None))):
        reset.used_at = now
    _audit_change(session, actor=actor, user=user, action="user.deactivate", before=before, audit_ctx=audit_ctx)


@dataclass(frozen=True)
class ConsoleOutcome:
    """What `gateway users deactivate|reactivate` did to one account."""

    user_id: str
    changed: bool
    org_without_admin: bool = False  # the organization has no active admin left (its operators must name one)


def set_active_from_console(db: Database, *, email: str, active: bool, actor: str) -> ConsoleOutcome | None:
    """The operators' console (`gateway users deactivate|reactivate --email`): any account, at once (None when
    no account has that address).

    This is the break-glass path for an account that must stop now — a compromised password, a person who
    left — when nobody who may manage it through the API can act: so none of the API's who-manages-whom rules
    apply, not even the last-admin one (the answer says when an organization is left without an active admin).
    Deactivation ends the account's tokens and portal sessions as the API's does; both are audited under the
    console's actor, with the before and after kept in `account_changes`."""
    from gateway.auth.service import find_user_by_email

    with db.write_transaction() as session:
        found = find_user_by_email(session, email)
        if found is None:
            return None
        user = _locked_user(session, found.id)
        if user.active == active:
            return ConsoleOutcome(user.id, False)
        if not active:
            _end_account(session, user, actor=actor, audit_ctx={})
            return ConsoleOutcome(user.id, True, _org_without_admin(session, user))
        before = _snapshot(user)
        user.active, user.deactivated_at = True, None
        _audit_change(session, actor=actor, user=user, action="user.reactivate", before=before, audit_ctx={})
        return ConsoleOutcome(user.id, True)


def _org_without_admin(session: Session, user: User) -> bool:
    if user.org_id is None or ORG_ADMIN not in (user.roles or ()):
        return False
    others = session.scalars(select(User.roles).where(User.org_id == user.org_id, User.active.is_(True)))
    return not any(ORG_ADMIN in (roles or ()) for roles in others)


def reactivate(db: Database, *, principal: Principal, user_id: str, audit_ctx: dict) -> Outcome:
    """Let a deactivated user sign in again (their old tokens and sessions stay ended)."""
    with db.write_transaction() as session:
        user = _locked_user(session, user_id)
        ensure_may_manage(principal, user)
        _ensure_not_self(principal, user, "reactivate")
        if user.active:
            return Outcome(user, False)
        before = _snapshot(user)
        user.active, user.deactivated_at = True, None
        _audit_change(session, actor=principal.audit_actor, user=user, action="user.reactivate", before=before,
                      audit_ctx=audit_ctx)
        return Outcome(user, True)


# -- roles and facilities ----------------------------------------------------------------------------------------

def _invalid(code: str, field: str, message: str) -> Unprocessable:
    return Unprocessable(message, code=code, errors=[FieldError(code, field, message)])


def _validated(session: Session, user: User, roles: list[str] | None, facilities: list[str] | None
               ) -> tuple[list[str], list[str]]:
    new_roles = sorted(set(user.roles or ()) if roles is None else set(roles))
    unknown = [r for r in new_roles if r not in ROLES]
    if unknown or not new_roles:
        raise _invalid("ROLES_INVALID", "roles", f"roles are one or more of {', '.join(ROLES)}")
    if user.org_id is not None and not set(new_roles) <= ORG_ROLES:
        raise _invalid("ROLES_INVALID", "roles",
                       "a requester organization's users hold only requester and requester_admin")
    if user.org_id is None and set(new_roles) & ORG_ROLES:
        raise _invalid("ROLES_INVALID", "roles", "requester roles belong to users of a requester organization")
    staff = "facility_staff" in new_roles
    if facilities is None:
        new_facilities = sorted(set(user.facilities or ())) if staff else []
    else:
        new_facilities = sorted(set(facilities))
    if new_facilities and not staff:
        raise _invalid("FACILITIES_NOT_APPLICABLE", "facilities", "facilities apply to facility_staff only")
    if staff and not new_facilities:
        raise _invalid("FACILITY_REQUIRED", "facilities", "records staff need at least one facility")
    missing = [code for code in new_facilities if get_facility(session, code) is None]
    if missing:
        raise _invalid("FACILITY_UNKNOWN", "facilities", f"unknown facility: {', '.join(missing)}")
    return new_roles, new_facilities


def update_roles(db: Database, *, principal: Principal, user_id: str, roles: list[str] | None,
                 facilities: list[str] | None, audit_ctx: dict) -> Outcome:
    """Change a user's roles and/or facilities (validated, audited with before and after).

    Roles and facilities are read from the database on every request, so the change applies to the user's
    live tokens and sessions at once; an access token's own `roles` claim is informational.
    """
    with db.write_transaction() as session:
        user = _locked_user(session, user_id)
        ensure_may_manage(principal, user)
        new_roles, new_facilities = _validated(session, user, roles, facilities)
        if new_roles == sorted(user.roles or ()) and new_facilities == sorted(user.facilities or ()):
            return Outcome(user, False)
        _ensure_not_self(principal, user, "change the roles of")
        if ORG_ADMIN in (user.roles or ()) and ORG_ADMIN not in new_roles:
            _ensure_other_active_admin(session, user)
        if user.org_id is not None and principal.org_id != user.org_id:
            # An operator may not use a role change to reach into an organization: an admin stays an admin.
            if ORG_ADMIN not in new_roles:
                raise Forbidden("An organization's admins decide who else is an admin.")
        before = _snapshot(user)
        user.roles, user.facilities = new_roles, new_facilities
        _audit_change(session, actor=principal.audit_actor, user=user, action="user.roles_change", before=before,
                      audit_ctx=audit_ctx)
        return Outcome(user, True)


# -- passwords ---------------------------------------------------------------------------------------------------

class CurrentPasswordWrong(BadRequest):
    code, title = "PASSWORD_INCORRECT", "Current password is wrong"


def change_password(db: Database, *, principal: Principal, current: str, new: str, policy: login.ThrottlePolicy,
                    audit_ctx: dict) -> int:
    """Change the caller's own password; returns the new credentials epoch.

    A wrong current password counts toward the account's sign-in lockout (and is refused while locked, 429).
    Every other token and portal session of the user ends; the portal keeps the session that made the change
    by moving it to the new epoch.
    """
    if principal.kind != "user":
        raise Forbidden("Passwords belong to people; an API key has none.")
    try:
        new_hash = hash_password(new)
    except WeakPassword as weak:
        raise _invalid("PASSWORD_WEAK", "new", str(weak)) from None
    now = utcnow()
    outcome: Exception | None = None
    with db.write_transaction() as session:
        user = _locked_user(session, principal.id)
        account = login._throttle(session, login._account_subject(user.email), now)
        wait = login._locked_for(account, now)
        # One Argon2 verification on every path, as at sign-in; never the real hash while locked.
        ok = verify_password(None if wait else user.password_hash, current) and not wait
        audit = {"actor": principal.audit_actor, "org_id": user.org_id, "object_type": "user",
                 "object_id": user.id, **audit_ctx}
        if wait:
            record(session, action="user.password_change", result="blocked", **audit)
            outcome = TooManyRequests("Too many wrong passwords; try again later.", retry_after=wait,
                                      code="LOGIN_LOCKED")
        elif not ok:
            login._count_failure(account, policy.max_failures, policy, now)
            record(session, action="user.password_change", result="failure", **audit)
            outcome = CurrentPasswordWrong("The current password is not right.",
                                           errors=[FieldError("PASSWORD_INCORRECT", "current",
                                                              "the current password is not right")])
        else:
            account.failures, account.locked_until = 0, None
            user.password_hash = new_hash
            user.credentials_epoch = (user.credentials_epoch or 0) + 1
            record(session, action="user.password_change", **audit)
            epoch = user.credentials_epoch
    if outcome is not None:
        raise outcome
    return epoch


def set_password_and_end_credentials(session: Session, user: User, password_hash: str) -> int:
    """A new password and a new epoch (every token and session ends); clears the account's lockout."""
    user.password_hash = password_hash
    user.credentials_epoch = (user.credentials_epoch or 0) + 1
    row = session.scalars(select(LoginThrottle).where(
        LoginThrottle.subject == login._account_subject(user.email))).one_or_none()
    if row is not None:
        row.failures, row.locked_until = 0, None
    return user.credentials_epoch


def refusal_reason(db: Database, user_id: str) -> str:
    """Why a portal session of this user was refused: `deactivated`, or `password_changed` (an older epoch)."""
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is None or not user.active:
            return "deactivated"
        org = session.get(Organization, user.org_id) if user.org_id else None
        if user.org_id and (org is None or not org.active):
            return "deactivated"
    return "password_changed"


def count_active_admins(session: Session, org_id: str) -> int:
    """Active requester_admin users of an organization (the portal shows who may not be deactivated)."""
    roles = session.scalars(select(User.roles).where(User.org_id == org_id, User.active.is_(True)))
    return sum(1 for r in roles if ORG_ADMIN in (r or ()))

