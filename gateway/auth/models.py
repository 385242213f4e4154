"""Organizations, users, API keys, signing keys and login throttles."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow

ORG_KINDS = ("law_firm", "insurer", "provider")
ROLES = ("requester", "requester_admin", "facility_staff", "auditor", "gateway_admin")
SCOPES = ("requests:write", "requests:read", "documents:read")


class Organization(Base):
    """A requester organization: a law firm, an insurer or a healthcare provider."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    """A person who signs in: requester staff (with an org), records staff, auditors, operators."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Stored lower-cased; unique across the gateway because it is the login name.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    roles: Mapped[list] = mapped_column(JSON, default=list)
    # Facility codes a facility_staff user works for.
    facilities: Mapped[list] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # E-mail about the organization's requests (status changes, messages); each person may turn it off.
    email_notifications: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Bumped when the user's credentials must all stop working (deactivation, password reset or change):
    # access tokens carry the epoch they were issued under and are refused once it moves on.
    credentials_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """A requester organization's key for its systems; only a hash of the secret is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    # The lookup half of `rgw_<public_id>_<secret>`; not secret by itself.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100), default="")
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(80))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SigningKey(Base):
    """A JWT signing key pair; retired keys stay published until their last token has expired."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict] = mapped_column(JSON)
    # PKCS#8 PEM encrypted with the gateway secret key: a database dump alone cannot mint tokens.
    private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class LoginThrottle(Base):
    """Failed sign-ins counted per account and per client address, for lockouts."""

    __tablename__ = "login_throttles"
    __table_args__ = (UniqueConstraint("subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # "account:<sha256 of email>" or "ip:<address>" -- no raw email stored here.
    subject: Mapped[str] = mapped_column(String(100))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PasswordReset(Base):
    """One password-reset e-mail: only the token's SHA-256 is kept; the e-mail is sent by a job."""

    __tablename__ = "password_resets"
    __table_args__ = (Index("ix_password_resets_due", "mail_state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when the token was used, or made useless by a newer reset or a deactivation.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The e-mail: pending → sent | failed | abandoned | skipped, as notification e-mails (gateway.mail).
    mail_state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(120))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AccountChange(Base):
    """What an account change changed (roles, facilities, active): before and after, never a secret.

    The audit entry of the same transaction says who and when; `audit_seq` ties the two together.
    """

    __tablename__ = "account_changes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(80))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(60))
    before: Mapped[dict] = mapped_column(JSON)
    after: Mapped[dict] = mapped_column(JSON)
    audit_seq: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
