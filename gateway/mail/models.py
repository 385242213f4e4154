"""E-mail notifications: one row per (event, user), written with the event's fan-out and sent by a job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow

# pending → sent | failed (refused for good) | abandoned (three days of outages) | skipped (the user opted
# out or left before it went).
MAIL_STATES = ("pending", "sent", "failed", "abandoned", "skipped")


class MailNotification(Base):
    """One e-mail to one portal user about one event on one of their organization's requests."""

    __tablename__ = "mail_notifications"
    __table_args__ = (
        UniqueConstraint("event_id", "user_id"),
        Index("ix_mail_notifications_due", "state", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # The outbox event it comes from (`evt-<outbox id>`, the webhook event id too): one e-mail per user.
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(60))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id"), index=True)
    # What the message says: the request's reference and facility name, the status, dates and codes.
    # Never patient data or message text; the address is read from the user at send time.
    context: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When housekeeping may next hand it to a job; None once settled.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A short reason code (smtp_451, timeout, ConnectionRefusedError), never a server reply.
    last_error: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
