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

from sqlalchemy import false, select
from sqlalchemy.orm import Session

from gateway.audit.service import record
from gateway.auth.principal import Principal
from gateway.auth.tenancy import tenant_rule
from gateway.db import utcnow
from gateway.portal.models import PortalSession


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Resumed:
    """The outcome of presenting a session token: the live session, or why there is none."""

    session: PortalSession | None
    ended_because: str | None = None  # idle, expired, signed_out, unknown


def start(session: Session, *, user_id: str, org_id: str | None, lifetime: int, audit_ctx: dict,
          epoch: int | None = None, client: str | None = None) -> tuple[PortalSession, str]:
    """A new session for a user who just proved their password; returns it and the cookie token.

    `epoch` is the user's credentials epoch at sign-in (a later password change or deactivation ends the
    session): the one the password was checked under, else read now; `client` a short label of the
    browser (`client_label`).
    """
    if epoch is None:
        from gateway.auth.models import User

        epoch = session.scalar(select(User.credentials_epoch).where(User.id == user_id)) or 0
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = PortalSession(token_hash=_hash(token), user_id=user_id, csrf_token=secrets.token_urlsafe(32),
                        created_at=now, last_seen_at=now, expires_at=now + timedelta(seconds=lifetime),
                        credentials_epoch=epoch, client=client)
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


@tenant_rule(PortalSession)
def _own_sessions(principal: Principal):
    # A person sees and ends their own browser sessions only; an API key has none.
    return PortalSession.user_id == principal.id if principal.kind == "user" else false()


def live_sessions(session: Session, *, user_id: str, epoch: int, idle_timeout: int,
                  now: datetime | None = None) -> list[PortalSession]:
    """The user's sessions that would still be let in (not ended, idle, expired, or of an older epoch)."""
    now = now or utcnow()
    rows = session.scalars(select(PortalSession).where(
        PortalSession.user_id == user_id, PortalSession.ended_at.is_(None), PortalSession.expires_at > now,
        PortalSession.last_seen_at >= now - timedelta(seconds=idle_timeout),
        PortalSession.credentials_epoch == epoch).order_by(PortalSession.last_seen_at.desc(), PortalSession.id))
    return list(rows)


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Chromium/", "Chromium"), ("Safari/", "Safari"))
_SYSTEMS = (("Windows", "Windows"), ("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def client_label(user_agent: str | None) -> str:
    """"Firefox on Windows": enough to tell one's sessions apart, nothing more of the User-Agent is kept."""
    ua = user_agent or ""
    if "HeadlessChrome/" in ua:
        browser = "Chrome"
    else:
        browser = next((name for marker, name in _BROWSERS if marker in ua), "A browser")
    system = next((name for marker, name in _SYSTEMS if marker in ua), None)
    return f"{browser} on {system}" if system else browser
