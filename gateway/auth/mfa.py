"""A second factor for people: TOTP (RFC 6238) with single-use recovery codes.

Enrolment is two steps: `begin_enrolment` makes a secret and ten recovery
codes (shown once; the secret is kept sealed with gateway/crypto.py, the codes
only as keyed hashes) and leaves the enrolment pending; `confirm_enrolment`
enables it once the person's authenticator app produces a valid code, so a
mistyped secret never locks anyone out.  From then on sign-in needs a code
(gateway/auth/login.py asks `check_code` after the password was right).

A code is accepted for the current 30-second step and one step either side
(clock drift), and only for a step later than the last one accepted: the
`last_step` compare-and-set is one UPDATE, so two sign-ins racing with the
same code cannot both win, on PostgreSQL or SQLite.  A recovery code is
consumed the same way (UPDATE ... WHERE used_at IS NULL).

Settings can require the second factor for staff, auditors and admins
(`GATEWAY_MFA_REQUIRED`); such a person who has not enrolled may sign in, but
may then only enrol (`must_enrol`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway import crypto
from gateway.audit.service import record
from gateway.auth.models import User
from gateway.auth.passwords import NO_PASSWORD
from gateway.db import Base, UTCDateTime, utcnow

ISSUER = "Records Request Gateway"
STEP_SECONDS = 30
DRIFT_STEPS = 1
DIGITS = 6
RECOVERY_CODES = 10
# Recovery codes: 10 characters of a 32-letter alphabet without look-alikes (50 bits), shown as xxxxx-xxxxx.
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_RECOVERY_LENGTH = 10
_SEAL_PURPOSE = "mfa-totp-secret"
# Who must use a second factor when the setting requires it: everyone who sees many patients' records or
# administers accounts.  Requesters see only their own organization's requests.
REQUIRED_ROLES = frozenset({"facility_staff", "auditor", "requester_admin", "gateway_admin"})


class TotpEnrolment(Base):
    """A person's TOTP secret: pending until the first code confirms it, then enabled."""

    __tablename__ = "user_mfa_totp"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    secret_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last time step a code was accepted for; a code for this step or an earlier one is refused.
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """One single-use recovery code, kept as an HMAC keyed by the gateway's secret key."""

    __tablename__ = "user_mfa_recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MfaError(Exception):
    """A refusal with a stable problem code."""

    code = "MFA_ERROR"


class AlreadyEnabled(MfaError):
    """Enrolling again while a second factor is on: turn it off first (with a code)."""

    code = "MFA_ALREADY_ENABLED"


class NotPending(MfaError):
    """Confirming with no enrolment waiting for its first code."""

    code = "MFA_NOT_PENDING"


class NotEnabled(MfaError):
    """Turning off a second factor that is not on."""

    code = "MFA_NOT_ENABLED"


@dataclass(frozen=True)
class Enrolment:
    """What the person is shown once: the secret, the otpauth URI (the QR code) and the recovery codes."""

    secret: str
    otpauth_uri: str
    recovery_codes: list[str]


def current_step(now: datetime) -> int:
    """The RFC 6238 time step of an instant (30-second steps since the Unix epoch)."""
    return int(now.timestamp()) // STEP_SECONDS


def _recovery_hash(secret_key: str, user_id: str, code: str) -> str:
    # Keyed, so a database dump alone cannot test guesses; bound to the user, so equal codes hash apart.
    key = hashlib.sha256(b"records-gateway:mfa-recovery-code:" + secret_key.encode()).digest()
    return hmac.new(key, f"{user_id}:{code}".encode(), hashlib.sha256).hexdigest()


def normalize(code: str) -> str:
    """A code as typed, without spaces and dashes, lower-cased."""
    return "".join(code.split()).replace("-", "").lower()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def enrolment_of(session: Session, user_id: str, *, lock: bool = False) -> TotpEnrolment | None:
    """The user's TOTP row, pending or enabled (locked for update when asked)."""
    query = select(TotpEnrolment).where(TotpEnrolment.user_id == user_id)
    return session.scalars(query.with_for_update() if lock else query).one_or_none()


def is_enabled(session: Session, user_id: str) -> bool:
    """Whether the user has a confirmed second factor."""
    return session.scalar(select(TotpEnrolment.enabled_at).where(TotpEnrolment.user_id == user_id)) is not None


def is_satisfied(session: Session, user_id: str) -> bool:
    """Whether the person's sign-ins already have a second factor: a confirmed TOTP, or no password here at all
    (an account made by hospital sign-on signs in only through the hospital's provider, which owns the factor).
    """
    if is_enabled(session, user_id):
        return True
    return session.scalar(select(User.password_hash).where(User.id == user_id)) == NO_PASSWORD


def must_enrol(session: Session, *, user_id: str, roles, required: bool) -> bool:
    """True when the setting requires a second factor for one of `roles` and the user has none yet."""
    return required and not REQUIRED_ROLES.isdisjoint(roles) and not is_satisfied(session, user_id)


def _lock_user(session: Session, user_id: str) -> User:
    # Serializes a person's enrolment changes (two tabs enrolling at once) on PostgreSQL; SQLite has one writer.
    return session.scalars(select(User).where(User.id == user_id).with_for_update()).one()


def otpauth_uri(secret: str, email: str) -> str:
    """The `otpauth://totp/...` URI authenticator apps read from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=email, issuer_name=ISSUER)


def begin_enrolment(session: Session, *, user_id: str, secret_key: str, audit: dict) -> Enrolment:
    """A new pending enrolment (replacing one still pending); AlreadyEnabled while one is on.

    `audit` carries actor, org_id, ip and request_id for the audit entry.
    """
    user = _lock_user(session, user_id)
    row = enrolment_of(session, user_id)
    if row is not None and row.enabled_at is not None:
        raise AlreadyEnabled("Two-step sign-in is already on; turn it off first to set it up again.")
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    sealed = crypto.seal(secret_key, secret, purpose=_SEAL_PURPOSE)
    if row is None:
        session.add(TotpEnrolment(user_id=user_id, secret_sealed=sealed, created_at=utcnow()))
    else:
        row.secret_sealed, row.created_at, row.last_step = sealed, utcnow(), None
    codes = _replace_recovery_codes(session, user_id, secret_key)
    record(session, action="mfa.totp.enrol", object_type="user", object_id=user_id, **audit)
    return Enrolment(secret=secret, otpauth_uri=otpauth_uri(secret, user.email), recovery_codes=codes)


def pending_secret(session: Session, *, user_id: str, secret_key: str) -> tuple[str, str] | None:
    """The secret and otpauth URI of a pending enrolment (to show its QR code again), or None."""
    row = enrolment_of(session, user_id)
    if row is None or row.enabled_at is not None:
        return None
    secret = crypto.unseal(secret_key, row.secret_sealed, purpose=_SEAL_PURPOSE)
    return secret, otpauth_uri(secret, session.get(User, user_id).email)


def _replace_recovery_codes(session: Session, user_id: str, secret_key: str) -> list[str]:
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODES)]
    session.add_all(RecoveryCode(user_id=user_id, code_hash=_recovery_hash(secret_key, user_id, normalize(code)))
                    for code in codes)
    return codes


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step within the drift window whose code is `code` (compared in constant time), or None."""
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    step, found = current_step(now), None
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):  # every candidate, found or not
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            found = candidate
    return found


def _claim_step(session: Session, user_id: str, step: int) -> bool:
    """Record `step` as used unless it (or a later one) already was: one atomic compare-and-set."""
    result = session.execute(
        update(TotpEnrolment)
        .where(TotpEnrolment.user_id == user_id, TotpEnrolment.enabled_at.is_not(None),
               (TotpEnrolment.last_step.is_(None)) | (TotpEnrolment.last_step < step))
        .values(last_step=step).execution_options(synchronize_session=False))
    return result.rowcount == 1


def confirm_enrolment(session: Session, *, user_id: str, code: str, secret_key: str, now: datetime,
                      audit: dict) -> bool:
    """Enable a pending enrolment with its first code: True, or False for a wrong code (audited as a failure,
    so the caller commits before refusing); NotPending when none waits."""
    _lock_user(session, user_id)
    row = enrolment_of(session, user_id)
    if row is None or row.enabled_at is not None:
        raise NotPending("There is no two-step sign-in set-up waiting for its first code; start one first.")
    secret = crypto.unseal(secret_key, row.secret_sealed, purpose=_SEAL_PURPOSE)
    step = _matching_step(secret, normalize(code), now)
    if step is None:
        record(session, action="mfa.totp.confirm", result="failure", object_type="user", object_id=user_id,
               **audit)
        return False
    row.enabled_at, row.last_step = now, step
    record(session, action="mfa.totp.confirm", object_type="user", object_id=user_id, **audit)
    return True


def check_code(session: Session, *, user_id: str, code: str, secret_key: str, now: datetime) -> str | None:
    """Prove the second factor with a TOTP code or a recovery code, consuming it.

    Returns "totp" or "recovery_code", or None when the code is wrong, replayed, already used, or the user
    has no enabled second factor.  Runs inside the caller's transaction (the sign-in's, with its lockouts).
    """
    row = enrolment_of(session, user_id)
    if row is None or row.enabled_at is None:
        return None
    typed = normalize(code)
    if len(typed) == DIGITS and typed.isdigit():
        try:
            secret = crypto.unseal(secret_key, row.secret_sealed, purpose=_SEAL_PURPOSE)
        except ValueError:
            return None  # sealed under another key: refuse rather than fail open
        step = _matching_step(secret, typed, now)
        return "totp" if step is not None and _claim_step(session, user_id, step) else None
    if len(typed) != _RECOVERY_LENGTH:
        return None
    used = session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None),
               RecoveryCode.code_hash == _recovery_hash(secret_key, user_id, typed))
        .values(used_at=now).execution_options(synchronize_session=False))
    return "recovery_code" if used.rowcount == 1 else None


def recovery_codes_left(session: Session, user_id: str) -> int:
    """How many unused recovery codes the user has."""
    from sqlalchemy import func

    return session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))) or 0


def disable(session: Session, *, user_id: str, audit: dict) -> None:
    """Turn the second factor off (the caller has just checked a code); NotEnabled when it is not on."""
    _lock_user(session, user_id)
    row = enrolment_of(session, user_id)
    if row is None or row.enabled_at is None:
        raise NotEnabled("Two-step sign-in is not on.")
    session.delete(row)
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    record(session, action="mfa.totp.disable", object_type="user", object_id=user_id, **audit)


def reset(session: Session, *, user_id: str, audit: dict) -> bool:
    """An operator's reset for a person who lost both phone and recovery codes (`gateway users mfa-reset`):
    the second factor is removed, pending or on; they set it up again at their next sign-in.  False if none."""
    row = enrolment_of(session, user_id, lock=True)
    if row is None:
        return False
    session.delete(row)
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    record(session, action="mfa.totp.reset", object_type="user", object_id=user_id, **audit)
    return True
