"""Portal sessions: start on sign-in, resume per request (idle and absolute limits), end.

The browser holds a random 256-bit token; only its SHA-256 is stored, so a
database reader cannot hijack sessions.  Every end (sign-out, idle, lifetime,
deactivated account) is written to the audit trail.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.db import utcnow
from gateway.portal.models import PortalSession


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Resumed:
    """The outcome of presenting a session token: the live session, or why there is none."""

    session: PortalSession | None
    ended_because: str | None = None  # idle, expired, signed_out, unknown


def start(session: Session, *, user_id: str, org_id: str | None, lifetime: int, audit_ctx: dict) -> tuple[
        PortalSession, str]:
    """A new session for a user who just proved their password; returns it and the cookie token."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = PortalSession(token_hash=_hash(token), user_id=user_id, csrf_token=secrets.token_urlsafe(32),
                        created_at=now, last_seen_at=now, expires_at=now + timedelta(seconds=lifetime))
    session.add(row)
    session.flush()
    record(session, actor=f"user:{user_id}", org_id=org_id, action="portal.session_start",
           object_type="portal_session", object_id=row.id, **audit_ctx)
    return row, token


def resume(session: Session, token: str | None, *, idle_timeout: int, now: datetime | None = None,
           touch: bool = True) -> Resumed:
    """The live session for `token` (touched unless `touch` is false); an idle or expired one is
    ended (audited) and refused."""
    if not token:
        return Resumed(None, "unknown")
    now = now or utcnow()
    row = session.scalars(select(PortalSession).where(PortalSession.token_hash == _hash(token))).one_or_none()
    if row is None:
        return Resumed(None, "unknown")
    if row.ended_at is not None:
        return Resumed(None, row.end_reason or "signed_out")
    if now - row.last_seen_at > timedelta(seconds=idle_timeout):
        end(session, row, reason="idle", now=now, audit_ctx={})
        return Resumed(None, "idle")
    if now >= row.expires_at:
        end(session, row, reason="expired", now=now, audit_ctx={})
        return Resumed(None, "expired")
    if touch:
        row.last_seen_at = now
    return Resumed(row)


def idle_remaining(row: PortalSession, *, idle_timeout: int, now: datetime | None = None) -> int:
    """Seconds until the session counts as idle."""
    return max(0, int(idle_timeout - ((now or utcnow()) - row.last_seen_at).total_seconds()))


def end(session: Session, row: PortalSession, *, reason: str, audit_ctx: dict, now: datetime | None = None) -> None:
    """End a session (once) and audit why."""
    if row.ended_at is not None:
        return
    row.ended_at, row.end_reason = now or utcnow(), reason
    record(session, actor=f"user:{row.user_id}", action=f"portal.session_end.{reason}",
           object_type="portal_session", object_id=row.id, **audit_ctx)
