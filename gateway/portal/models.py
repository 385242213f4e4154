"""Portal sign-in sessions, kept server-side so sign-out and idle expiry are real."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow


class PortalSession(Base):
    """One signed-in browser: the cookie holds a random token, this row only its SHA-256."""

    __tablename__ = "portal_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    # The synchronizer token every form and XHR of this session must echo.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # signed_out, idle, expired, deactivated, password_reset, password_changed, ended_by_user
    end_reason: Mapped[str | None] = mapped_column(String(20))
    # A short label of the browser ("Firefox on Windows") so its owner can tell sessions apart.
    client: Mapped[str | None] = mapped_column(String(80))
    # The user's credentials epoch at sign-in (gateway.auth.accounts): a password reset or change elsewhere,
    # or a deactivation, moves the user's on, and the guard ends this session at its next request.
    credentials_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
