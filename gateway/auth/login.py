"""Password sign-in with lockouts per account and per client address.

Counters live in the database, not Redis, so brute-force protection holds
even while Redis is down.  Every attempt, allowed or not, is audited, and the
audit entry commits even when the sign-in fails.  Every attempt costs one
Argon2 verification (a dummy hash stands in for unknown, inactive and locked
accounts), so timing reveals neither accounts nor lockouts.  A person with a
second factor (gateway.auth.mfa) also needs a code: asked for only once the
password was right, and a wrong code counts toward the lockouts like a wrong
password.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth import mfa
from gateway.auth.models import LoginThrottle, Organization, User
from gateway.auth.passwords import verify_password
from gateway.auth.service import find_user_by_email
from gateway.auth.tokens import IssuedToken, TokenService
from gateway.db import Database, utcnow

# Offices share one address, so the per-address limit is looser than the per-account one.
ADDRESS_FACTOR = 4


class LoginFailed(Exception):
    """Wrong email or password (one answer for both)."""


class MfaRequired(LoginFailed):
    """The password was right, but the account has a second factor and no code came with it.

    A LoginFailed, so a caller that does not ask for codes refuses the sign-in.
    """

    def __init__(self, user_id: str):
        super().__init__("second factor required")
        self.user_id = user_id


class LoginLocked(Exception):
    """Too many failures; `retry_after` seconds until the lock lifts."""

    def __init__(self, retry_after: int):
        super().__init__("locked")
        self.retry_after = retry_after


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failures within the window lock for how long."""

    max_failures: int
    lockout_seconds: int


def _account_subject(email: str) -> str:
    return "account:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:64]


def _throttle(session: Session, subject: str, now: datetime) -> LoginThrottle:
    row = session.scalars(select(LoginThrottle).where(LoginThrottle.subject == subject)
                          .with_for_update()).one_or_none()
    if row is None:
        try:
            with session.begin_nested():
                row = LoginThrottle(subject=subject, failures=0, window_started_at=now)
                session.add(row)
                session.flush()
        except IntegrityError:  # a concurrent attempt created it first
            row = session.scalars(select(LoginThrottle).where(LoginThrottle.subject == subject)
                                  .with_for_update()).one()
    return row


def _locked_for(row: LoginThrottle, now: datetime) -> int:
    if row.locked_until and row.locked_until > now:
        return int((row.locked_until - now).total_seconds()) + 1
    return 0


def _count_failure(row: LoginThrottle, limit: int, policy: ThrottlePolicy, now: datetime) -> None:
    window = timedelta(seconds=policy.lockout_seconds)
    if now - row.window_started_at > window:
        row.failures, row.window_started_at = 0, now
    row.failures += 1
    if row.failures >= limit:
        row.locked_until, row.failures, row.window_started_at = now + window, 0, now


def sign_in(db: Database, tokens: TokenService, *, email: str, password: str, ip: str | None,
            request_id: str | None, policy: ThrottlePolicy, otp: str | None = None,
            secret_key: str = "") -> IssuedToken:
    """Check the password (and second factor) and issue a token, or raise LoginFailed / MfaRequired /
    LoginLocked."""
    claims = check_password(db, email=email, password=password, ip=ip, request_id=request_id, policy=policy,
                            otp=otp, secret_key=secret_key)
    # Signed after the commit: signing may create the first key in its own transaction,
    # which must not wait on this one's write lock (SQLite has a single writer).
    return tokens.issue(**claims)


def check_password(db: Database, *, email: str, password: str, ip: str | None, request_id: str | None,
                   policy: ThrottlePolicy, otp: str | None = None, secret_key: str = "") -> dict:
    """Check the password under the lockouts (audited); the user's claims, or LoginFailed / LoginLocked.

    Both the API's token sign-in and the portal's session sign-in go through here.  With a second factor
    enabled, `otp` (a TOTP or recovery code, checked with `secret_key`) must prove it: none is MfaRequired.
    """
    now = utcnow()
    outcome: Exception | None = None
    claims = None
    with db.transaction() as session:
        account = _throttle(session, _account_subject(email), now)
        address = _throttle(session, f"ip:{ip or 'unknown'}", now)
        user = find_user_by_email(session, email)
        audit = {"ip": ip, "request_id": request_id,
                 "actor": f"user:{user.id}" if user else "anonymous",
                 "org_id": user.org_id if user else None, "object_type": "user",
                 "object_id": user.id if user else None}
        wait = max(_locked_for(account, now), _locked_for(address, now))
        # Exactly one Argon2 verification on every path: an unknown e-mail, an inactive account and a locked
        # one are checked against a dummy hash with the same parameters, so the time taken tells nothing.
        # While locked the real hash is never consulted: a correct guess must not be confirmed.
        checkable = user is not None and user.active and not wait
        password_ok = verify_password(user.password_hash if checkable else None, password)
        if wait:
            record(session, action="auth.login", result="blocked", **audit)
            outcome = LoginLocked(wait)
        elif not password_ok or not _org_active(session, user):
            _count_failure(account, policy.max_failures, policy, now)
            _count_failure(address, policy.max_failures * ADDRESS_FACTOR, policy, now)
            record(session, action="auth.login", result="failure", **audit)
            outcome = LoginFailed()
        else:
            # Only now, with the password right, is the second factor looked at: a wrong password says
            # nothing about it.
            factor = "password"
            if mfa.is_enabled(session, user.id):
                factor = mfa.check_code(session, user_id=user.id, code=otp, secret_key=secret_key,
                                        now=now) if otp else "missing"
            if factor == "missing":
                # Not a failure (the password was right) nor a success: the failure count stays as it is.
                record(session, action="auth.mfa", result="denied", **audit)
                outcome = MfaRequired(user.id)
            elif factor is None:
                _count_failure(account, policy.max_failures, policy, now)
                _count_failure(address, policy.max_failures * ADDRESS_FACTOR, policy, now)
                record(session, action="auth.mfa", result="failure", **audit)
                outcome = LoginFailed()
            else:
                claims = _succeeded(session, user, account, factor, audit, now)
    if outcome is not None:
        raise outcome
    return claims


def _succeeded(session: Session, user, account: LoginThrottle, factor: str, audit: dict, now: datetime) -> dict:
    account.failures, account.locked_until = 0, None
    user.last_login_at = now
    if factor == "recovery_code":  # worth its own entry: the person may have lost their phone
        record(session, action="mfa.recovery_code.use", **audit)
    record(session, action="auth.login", result="success", **audit)
    return {"subject": user.id, "org_id": user.org_id, "roles": list(user.roles),
            "facilities": list(user.facilities), "epoch": user.credentials_epoch or 0}


def check_second_factor(db: Database, *, user_id: str, otp: str, ip: str | None, request_id: str | None,
                        policy: ThrottlePolicy, secret_key: str, signing_in: bool = True) -> dict:
    """The second step of a sign-in whose password was already right (the portal's code page), or a code
    proving the person before their second factor is turned off: the user's claims, or LoginFailed /
    LoginLocked, under the same lockouts as the password (a wrong code counts as a failure)."""
    now = utcnow()
    outcome: Exception | None = None
    claims = None
    with db.transaction() as session:
        user = session.get(User, user_id)
        if user is None:
            raise LoginFailed()
        account = _throttle(session, _account_subject(user.email), now)
        address = _throttle(session, f"ip:{ip or 'unknown'}", now)
        audit = {"ip": ip, "request_id": request_id, "actor": f"user:{user.id}", "org_id": user.org_id,
                 "object_type": "user", "object_id": user.id}
        wait = max(_locked_for(account, now), _locked_for(address, now))
        if wait:
            record(session, action="auth.mfa", result="blocked", **audit)
            outcome = LoginLocked(wait)
        elif not user.active or not _org_active(session, user):
            record(session, action="auth.mfa", result="failure", **audit)
            outcome = LoginFailed()
        else:
            factor = mfa.check_code(session, user_id=user.id, code=otp, secret_key=secret_key, now=now)
            if factor is None:
                _count_failure(account, policy.max_failures, policy, now)
                _count_failure(address, policy.max_failures * ADDRESS_FACTOR, policy, now)
                record(session, action="auth.mfa", result="failure", **audit)
                outcome = LoginFailed()
            elif signing_in:
                claims = _succeeded(session, user, account, factor, audit, now)
            else:
                if factor == "recovery_code":
                    record(session, action="mfa.recovery_code.use", **audit)
                claims = {"subject": user.id, "org_id": user.org_id}
    if outcome is not None:
        raise outcome
    return claims


def _org_active(session: Session, user) -> bool:
    if user.org_id is None:
        return True
    org = session.get(Organization, user.org_id)
    return org is not None and org.active
